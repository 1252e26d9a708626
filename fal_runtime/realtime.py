"""fal's realtime apps: one WebSocket per connection, msgpack frames, and a short-lived token instead of the key.

The wire protocol is the one fal's own clients speak (fal-client 1.0.3, `fal_client/client.py`: `realtime`,
`_get_realtime_token`, `_build_runner_ws_url`, `_decode_realtime_message`; @fal-ai/client 1.10.1, `src/realtime.js`
and `src/auth.js`):

1. A token: `POST {rest}/tokens/` with the key and `{"allowed_apps": [alias], "token_expiration": 120}`. fal answers
   the token as a JSON string; old proxies wrap it as `{"detail": token}` and fal-client also reads `{"token": token}`.
2. The socket: `wss://{run host}/{endpoint_id}/realtime?fal_jwt_token=TOKEN[&max_buffering=N]` (`/realtime` is not
   added twice when the id already ends with it). Only the token is in the URL: the key goes to the REST host and
   nowhere else, and the handshake carries no Authorization header.
3. Frames: each input is one msgpack binary frame; answers arrive as msgpack binary frames or JSON text frames.
   `{"type": "x-fal-message"}` frames are metadata (timings) and are skipped. `{"type": "x-fal-error", "error",
   "reason"}` raises `RealtimeError`, except `error == "TIMEOUT"`, fal's notice that the app was idle (it closes the
   socket next), which fal-js skips too. `{"status": "error", "error": "Unauthorized"}` means the token was refused:
   the socket is dropped and `RealtimeError` raised, so the next `send` connects with a new token.
4. Reconnects, as fal-js: a socket that closed is not reopened at once but at the next `send`, always with a new
   token (fal-js forgets its token when a socket closes). Opening (token, then handshake) is retried within the
   client's `RetryPolicy` after a transient failure (no connection, a timeout, 408, 429, 5xx); a refused handshake
   (401, 403, 404) is raised at once. An answer still awaited when the socket closes is lost: `recv` raises
   `RealtimeConnectionClosed`, as fal-js reports a close other than 1000 through `onError`.

Deliberate differences from fal-js: it throttles `send` to one message per 128 ms and drops the ones in between (its
callers are UIs fed by pointer events); here every `send` is sent. It drops `{"status": "error"}` answers other than
Unauthorized without a word; here they raise `RealtimeError`, so a `recv` never waits for an answer that will not
come. It refreshes its token on a timer at 90 % of the token's life, but its close handler discards that token, so
every reconnect fetches a new one anyway: fetching only when connecting is the same behaviour without the timer.

Timeouts: `open_timeout` (default 90 s, fal-client's: the handshake waits while fal starts a runner for a cold app)
bounds each handshake; `recv_timeout` (default: the client's `timeout`, 120 s) bounds each `recv`, and
`float("inf")` waits for ever; the token request uses the client's HTTP timeouts and retries. websockets pings every
20 s and drops a peer silent for 20 s more, so a dead connection is noticed within about 40 s.

Limits on what an answer may cost. An answer's frame may be `max_message_bytes` long (default 16 MiB: a few
data-URI images; fal-client sets no limit): websockets refuses a longer one and closes the socket with 1009, and
`recv` raises `ProtocolError` naming the limit; the next `send` reconnects. A frame's size does not bound what decoding
it costs: each byte of msgpack may be an empty list, 80 bytes of Python objects, so a frame may hold at most
`max_message_objects` objects (default 500,000: at worst ~35 MB and ~0.3 s to decode; fal's answers hold dozens).
They are counted before decoding (a scan of the frame's headers, which stops at the limit); a frame with more raises
`ProtocolError` naming the limit, and the connection stays usable: the frame is skipped, the next `recv` reads the
next one. A frame larger than 64 KiB is decoded on a worker thread, and `recv` waits for it only until its deadline:
past it, `recv` raises `APITimeoutError` and the next `recv` returns that answer once decoded, so none is lost.

Secrets. The token is in the socket's URL, which websockets logs at DEBUG (`> GET /...?fal_jwt_token=...`) and a
gateway refusing a handshake may echo: the logger given to websockets scrubs the token (and the key) from every record
(its `websockets.client` logger, so logging is configured as usual), and a refused handshake's status, headers and
body, connection errors, close reasons and error frames are scrubbed of both before they reach an exception.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import re
import ssl
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Self, TypedDict, TypeVar, Unpack
from urllib.parse import quote, quote_plus, urlencode

import httpx
from pydantic import BaseModel

from fal_runtime import errors
from fal_runtime._core import USER_AGENT, Core, Reply, RequestSpec
from fal_runtime.errors import RealtimeConnectionClosed, RealtimeError

try:
    import msgpack  # type: ignore[import-untyped]
    from websockets.asyncio.client import ClientConnection as AsyncSocket
    from websockets.asyncio.client import connect as async_connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
    from websockets.frames import Frame
    from websockets.sync.client import ClientConnection as SyncSocket
    from websockets.sync.client import connect as sync_connect
except ImportError as exc:  # optional dependencies: only realtime apps need them
    raise ImportError("fal realtime apps need the `websockets` and `msgpack` packages") from exc

if TYPE_CHECKING:
    from fal_runtime._client import AsyncClient, Client

__all__ = [
    "AsyncRealtimeConnection",
    "AsyncTypedRealtimeConnection",
    "RealtimeConnection",
    "RealtimeConnectionClosed",
    "RealtimeError",
    "RealtimeOptions",
    "TypedRealtimeConnection",
    "realtime_connect",
    "realtime_connect_async",
]

logger = logging.getLogger("fal_runtime")

REALTIME_PATH = "/realtime"
TOKEN_EXPIRATION = 120  # seconds; fal-client's and fal-js's default
OPEN_TIMEOUT = 90.0  # fal-client's: a cold app's handshake waits for a runner to start
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the largest answer's frame (fal-client sets none): a few data-URI images
MAX_MESSAGE_OBJECTS = 500_000  # objects an answer may hold: at worst ~35 MB and ~0.3 s to count and decode
INLINE_DECODE_BYTES = 64 * 1024  # frames up to this size are decoded at once; larger ones on a worker thread
MAX_BUFFERING = (1, 60)  # the range fal accepts for `max_buffering`
MESSAGE_TOO_BIG = 1009  # the close code websockets sends when a frame is over `max_size`
UNAUTHORIZED = "Unauthorized"
NORMAL_CLOSURE = 1000
ABNORMAL_CLOSURE = 1006  # RFC 6455's code for a connection lost without a close frame
_NAMESPACES = ("workflows", "comfy")  # ids whose alias is their third part: `workflows/owner/alias`
_ENDPOINT_SHAPES = re.compile(r"([0-9]+)-([a-zA-Z0-9-]+)")  # the legacy `123-alias` form of `123/alias`

InputT = TypeVar("InputT", bound=BaseModel)
OutputT = TypeVar("OutputT", bound=BaseModel)


class _TokenRequest(TypedDict):
    method: str
    path_or_url: str
    headers: dict[str, str]
    json: Any
    idempotent: bool
    raise_for_status: bool


class RealtimeOptions(TypedDict, total=False):
    """The options of `Client.realtime` (and `Endpoint.realtime`); each is documented on `Client.realtime`."""

    path: str | None
    max_buffering: int | None
    token_expiration: int
    open_timeout: float
    recv_timeout: float | None
    max_message_bytes: int | None
    max_message_objects: int | None


# The protocol, without I/O.


def _app_parts(endpoint_id: str) -> list[str]:
    """fal's `ensureEndpointIdFormat`: `owner/alias[/path]` as its parts, the legacy `123-alias` as `123/alias`."""
    parts = [p for p in endpoint_id.split("/") if p]
    if len(parts) > 1:
        return parts
    match = _ENDPOINT_SHAPES.fullmatch(endpoint_id)
    if match is None:
        raise ValueError(f"invalid endpoint id {endpoint_id!r}: expected owner/alias")
    return list(match.groups())


def token_alias(endpoint_id: str) -> str:
    """The app a token is for (fal's `AppId.alias`): `fal-ai/flux/dev` → `flux`, `workflows/me/app` → `app`."""
    parts = _app_parts(endpoint_id)
    return parts[2] if parts[0] in _NAMESPACES and len(parts) > 2 else parts[1]


def socket_path(endpoint_id: str, path: str | None) -> str:
    """The socket's path (fal-js's `resolveEndpointPath`): `path` if given, else `/realtime` unless the id ends with
    it already."""
    app = "/".join(quote(p, safe="") for p in _app_parts(endpoint_id))
    if path:
        return f"{app}/{path.lstrip('/')}"
    return app if f"/{app}".endswith(REALTIME_PATH) else f"{app}{REALTIME_PATH}"


def socket_url(run_base: str, endpoint_id: str, path: str | None, token: str, max_buffering: int | None) -> str:
    """The socket's URL on the run host (`https://fal.run` → `wss://fal.run`), the token in `fal_jwt_token`."""
    scheme, _, rest = run_base.partition("://")
    query = {"fal_jwt_token": token}
    if max_buffering is not None:
        query["max_buffering"] = str(max_buffering)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/{socket_path(endpoint_id, path)}?{urlencode(query)}"


def token_request(core: Core, endpoint_id: str, expiration: int) -> RequestSpec:
    body = {"allowed_apps": [token_alias(endpoint_id)], "token_expiration": expiration}
    return RequestSpec("POST", f"{core.rest_base}/tokens/", {"Accept": "application/json"}, {}, body)


def token_of(core: Core, reply: Reply) -> str:
    """The token in fal's answer: a JSON string, or `{"token": ...}` / `{"detail": ...}` (fal-client reads all three)."""
    data = core.json_of(reply)
    if isinstance(data, dict):
        data = data["token"] if isinstance(data.get("token"), str) else data.get("detail")
    if not isinstance(data, str) or not data:
        raise errors.ProtocolError("unexpected realtime token response from fal")
    return data


def encode(payload: Mapping[str, Any]) -> bytes:
    """One input as fal's apps read it: a msgpack map (bytes as msgpack bin, so images travel raw)."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"a realtime input is a mapping, not {type(payload).__name__}")
    frame: bytes = msgpack.packb(dict(payload), use_bin_type=True)
    return frame


def count_msgpack_objects(frame: bytes, limit: int) -> int:
    """How many objects decoding `frame` makes (each scalar, string, container and map key is one), counting no
    further than `limit + 1`: one step per object, skipping strings, bins and exts by their length, so a frame of a few
    large strings is counted in microseconds. A truncated or malformed frame is counted as far as it goes (decoding it
    fails anyway)."""
    count, at, end, sizes = 0, 0, len(frame), _MSGPACK_SIZES
    while at < end and count <= limit:
        count += 1
        size = sizes[frame[at]]
        if size:
            at += size
        else:  # str8/16/32, bin8/16/32, ext8/16/32: a header, then as many bytes as it says
            header, width = _MSGPACK_LENGTHS[frame[at]]
            at += header + int.from_bytes(frame[at + 1 : at + 1 + width], "big")
    return count


def _msgpack_sizes() -> list[int]:
    """Each msgpack type byte's whole size in bytes (header and payload), or 0 when a length field gives it."""
    sizes = [1] * 256  # fixint, fixmap, fixarray (their elements are objects of their own), nil, bool
    for byte in range(0xA0, 0xC0):  # fixstr
        sizes[byte] = 1 + (byte & 0x1F)
    sized = {0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9, 0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9}  # numbers
    sized |= {0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18, 0xDC: 3, 0xDD: 5, 0xDE: 3, 0xDF: 5}  # fixext, containers
    for byte, size in (sized | dict.fromkeys(_MSGPACK_LENGTHS, 0)).items():
        sizes[byte] = size
    return sizes


# str, bin and ext with a length field: (header bytes, bytes of the length field, which follows the type byte)
_MSGPACK_LENGTHS = {0xC4: (2, 1), 0xC5: (3, 2), 0xC6: (5, 4), 0xC7: (3, 1), 0xC8: (4, 2), 0xC9: (6, 4)}
_MSGPACK_LENGTHS |= {0xD9: (2, 1), 0xDA: (3, 2), 0xDB: (5, 4)}
_MSGPACK_SIZES = _msgpack_sizes()
# A JSON string (escapes included; possessive, so a scan never backtracks), an escape, or a separator.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*+"|\\.|[\[{,:]', re.S)


def count_json_values(text: str, limit: int) -> int:
    """An upper bound of the values (and keys) decoding `text` makes, counting no further than `limit + 1`: one plus
    the `[`, `{`, `,` and `:` outside strings (each value but the first follows one). Counted in C when the text has
    no strings or few separators in all; else token by token, stopping at the limit or where the text stops being
    JSON (an escape outside a string, two strings in a row), which decoding then reports."""
    count = 1 + sum(text.count(c) for c in "[{,:")
    if count <= limit or '"' not in text:
        return count
    count, after_string = 1, False
    for token in _JSON_TOKENS.finditer(text):
        char = text[token.start()]
        if char == "\\" or (char == '"' and after_string):
            break
        after_string = char == '"'
        if not after_string:
            count += 1
            if count > limit:
                break
    return count


def _same(value: Any) -> Any:
    """msgpack's list and map hook: it changes nothing, but calling Python code lets other threads run (a decode on
    a worker thread would otherwise hold the GIL until it ends, and `recv` could not give up at its deadline)."""
    return value


def _unpack(frame: bytes, max_objects: int | None) -> Any:
    limit = len(frame) if max_objects is None else min(max_objects, len(frame))
    return msgpack.unpackb(
        frame,
        raw=False,
        list_hook=_same,
        object_hook=_same,
        max_array_len=limit,  # a container's length is checked before it is allocated
        max_map_len=limit,
        max_str_len=len(frame),
        max_bin_len=len(frame),
        max_ext_len=len(frame),
    )


def decode(
    frame: bytes | str, core: Core, *, max_objects: int | None = MAX_MESSAGE_OBJECTS, tokens: Iterable[str] = ()
) -> dict[str, Any] | None:
    """One received frame as an answer, or None for a frame to skip (metadata, fal's idle notice); fal's error frames
    raise `RealtimeError`, a frame that is not an object, or holds more than `max_objects` objects, raises
    `ProtocolError`. The key and `tokens` are scrubbed from error frames."""
    kind = "JSON" if isinstance(frame, str) else "msgpack"
    if max_objects is not None and len(frame) > max_objects:  # fewer bytes than the limit: fewer objects too
        count = (
            count_json_values(frame, max_objects)
            if isinstance(frame, str)
            else count_msgpack_objects(frame, max_objects)
        )
        if count > max_objects:
            raise errors.ProtocolError(
                f"a realtime {kind} frame of {_size(len(frame))} holds more than {max_objects} objects "
                "(max_message_objects); it was skipped"
            )
    try:
        message = json.loads(frame) if isinstance(frame, str) else _unpack(frame, max_objects)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException):
        raise errors.ProtocolError(f"a realtime frame is not valid {kind}") from None
    if not isinstance(message, dict):
        raise errors.ProtocolError(f"a realtime {kind} frame holds a {type(message).__name__}, not an object")
    if message.get("type") == "x-fal-message":
        return None
    failed = message.get("type") == "x-fal-error" or message.get("status") == "error"
    if not failed:
        return message
    error = str(message.get("error") or "UNKNOWN_ERROR")
    if error == "TIMEOUT" and message.get("type") == "x-fal-error":
        return None
    secrets = tuple(tokens)
    error = scrub_tokens(core.redact(error), secrets)
    reason = scrub_tokens(core.redact(str(message.get("reason") or "")), secrets)
    text = f"{error}: {reason}" if reason else error
    payload = _map_strings(core.redact_json(message), lambda value: scrub_tokens(value, secrets))
    raise RealtimeError(f"realtime app error: {text[:500]}", error=error, reason=reason, payload=payload)


def _size(size: int) -> str:
    return f"{size // 2**20} MiB" if size % 2**20 == 0 else f"{size:,} bytes"


# Secrets: the token travels in the socket's URL, so whatever quotes the URL may quote it.


def scrub_tokens(text: str, tokens: Iterable[str]) -> str:
    """`text` with each token (as is and URL-encoded) replaced by `[token]`."""
    forms = {form for token in tokens if token for form in (token, quote(token, safe=""), quote_plus(token))}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "[token]")
    return text


def _map_strings(value: Any, scrub: Callable[[str], str]) -> Any:
    """A JSON-like value with `scrub` applied to every string in it, keys of maps included."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {_map_strings(k, scrub): _map_strings(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, scrub) for v in value]
    return value


def _scrub_bytes(data: bytes, scrub: Callable[[str], str]) -> bytes:
    """`scrub` on bytes: read as Latin-1, which maps each byte to one character and back, so ASCII secrets match."""
    return scrub(data.decode("latin-1")).encode("latin-1", "replace")


class _ScrubbingLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets' logger for one connection (`websockets.client`, configured as usual), with every record scrubbed
    of the token and the key: websockets logs the handshake's request line, the token in its query, at DEBUG.

    A record's message is formatted here (only when its level is enabled) and scrubbed as a whole, its traceback
    included; frames are scrubbed before websockets cuts their payload short, so no piece of a token is left."""

    def __init__(self, logger: logging.Logger, scrub: Callable[[str], str]) -> None:
        super().__init__(logger, None)
        self._scrub = scrub

    def log(
        self,
        level: int,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        if not self.isEnabledFor(level):
            return
        args = tuple(_scrubbed_frame(a, self._scrub) if isinstance(a, Frame) else a for a in args)
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError, KeyError):
            text = f"{msg} {args!r}"
        if exc_info:
            if exc_info is True:
                exc_info = sys.exc_info()[1]
            if isinstance(exc_info, tuple):
                exc_info = exc_info[1]
            if isinstance(exc_info, BaseException):
                text += "\n" + "".join(traceback.format_exception(exc_info)).rstrip()
        self.logger.log(level, self._scrub(text), stack_info=stack_info, stacklevel=stacklevel, extra=extra)


def _scrubbed_frame(frame: Frame, scrub: Callable[[str], str]) -> Frame:
    return dataclasses.replace(frame, data=_scrub_bytes(bytes(frame.data), scrub))


# Decoding off the caller's thread, so that `recv` keeps its deadline.


class _Decoding(NamedTuple):
    """A frame being decoded (or decoded), and the socket it came from."""

    future: concurrent.futures.Future[dict[str, Any] | None]
    socket: Any


def _decode_soon(
    frame: bytes | str, core: Core, max_objects: int | None, tokens: tuple[str, ...]
) -> concurrent.futures.Future[dict[str, Any] | None]:
    """The decoded frame: decoded at once when small (it cannot take long), else on a worker thread (a daemon: a
    decode nobody waits for any more does not hold the interpreter's exit)."""
    future: concurrent.futures.Future[dict[str, Any] | None] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(decode(frame, core, max_objects=max_objects, tokens=tokens))
        except Exception as exc:
            future.set_exception(exc)

    if len(frame) <= INLINE_DECODE_BYTES:
        run()
    else:
        threading.Thread(target=run, name="fal-realtime-decode", daemon=True).start()
    return future


def _ssl_context(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext:
    """The client's TLS settings for the socket: the same CA file or context, `SSL_CERT_FILE`, or no checks."""
    if isinstance(verify, str):  # httpx deprecates the string form; read it the way it does
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify)


class _Realtime:
    """Settings and decisions shared by the sync and async connections; they differ only in `await`."""

    def __init__(
        self,
        core: Core,
        verify: ssl.SSLContext | str | bool,
        default_recv_timeout: float | None,
        endpoint_id: str,
        *,
        path: str | None = None,
        max_buffering: int | None = None,
        token_expiration: int = TOKEN_EXPIRATION,
        open_timeout: float = OPEN_TIMEOUT,
        recv_timeout: float | None = None,
        max_message_bytes: int | None = MAX_MESSAGE_BYTES,
        max_message_objects: int | None = MAX_MESSAGE_OBJECTS,
    ) -> None:
        low, high = MAX_BUFFERING
        if max_buffering is not None and not low <= max_buffering <= high:
            raise ValueError(f"max_buffering must be between {low} and {high}, not {max_buffering}")
        if token_expiration < 1:
            raise ValueError(f"token_expiration must be a positive number of seconds, not {token_expiration}")
        for name, limit in (("max_message_bytes", max_message_bytes), ("max_message_objects", max_message_objects)):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be positive (or None: no limit), not {limit}")
        socket_path(endpoint_id, path)  # a malformed id fails here, before any request
        self.endpoint_id = endpoint_id
        self._core = core
        self._verify = verify
        self._path = path
        self._max_buffering = max_buffering
        self._token_expiration = token_expiration
        self._open_timeout = open_timeout
        timeout = default_recv_timeout if recv_timeout is None else recv_timeout
        self._recv_timeout = None if timeout is None or math.isinf(timeout) else timeout
        self._max_message_bytes = max_message_bytes
        self._max_message_objects = max_message_objects
        self._closed = False
        self._tokens: collections.deque[str] = collections.deque(maxlen=8)  # the last ones: scrubbed from any text
        self._decoding: _Decoding | None = None  # a frame's decode that outlived the `recv` that started it
        self._ws_logger = _ScrubbingLogger(logging.getLogger("websockets.client"), self._scrub)

    def __repr__(self) -> str:  # never the key nor the token
        return f"{type(self).__name__}({self.endpoint_id!r}, {'closed' if self._closed else 'open'})"

    def _token_request(self) -> _TokenRequest:
        """The token's request, as `Client.api_request` takes it: repeating it only mints another token, so it is
        retried like a read; its error statuses are read by `token_of`."""
        spec = token_request(self._core, self.endpoint_id, self._token_expiration)
        return {
            "method": spec.method,
            "path_or_url": spec.url,
            "headers": spec.headers,
            "json": spec.json,
            "idempotent": True,
            "raise_for_status": False,
        }

    def _url(self, token: str) -> str:
        return socket_url(self._core.run_base, self.endpoint_id, self._path, token, self._max_buffering)

    def _tls(self, url: str) -> ssl.SSLContext | None:
        return _ssl_context(self._verify) if url.startswith("wss:") else None

    def _scrub(self, text: str) -> str:
        """`text` without the key nor any of this connection's recent tokens."""
        return scrub_tokens(self._core.redact(text), tuple(self._tokens))

    def _open_failure(self, exc: Exception) -> tuple[Reply | None, errors.TransportError | None]:
        """A failed handshake as the core sees failures: a refusal is a reply (status, headers, body), anything else
        a transport error that sent nothing. The token is cut from all of it (the reply's headers and body too): a
        gateway may echo the URL, and the core's errors quote replies."""
        if isinstance(exc, InvalidStatus):
            response = exc.response
            headers = {k.lower(): self._scrub(v) for k, v in response.headers.raw_items()}
            body = _scrub_bytes(bytes(response.body or b""), self._scrub)
            return Reply(response.status_code, headers, body), None
        text = self._scrub(str(exc))[:300]
        message = f"{self.endpoint_id}: realtime connection failed: {type(exc).__name__}: {text}"
        if isinstance(exc, TimeoutError):
            return None, errors.APITimeoutError(message, request_sent=False)
        return None, errors.APIConnectionError(message)

    def _open_retry_delay(
        self, attempt: int, started: float, reply: Reply | None, failure: errors.TransportError | None
    ) -> float:
        """Seconds before opening again, within the client's RetryPolicy; raises the failure when it is final.
        Opening starts no work on fal, so it is retried as freely as a status read."""
        delay = self._core.retry_delay(
            "status", attempt, time.monotonic() - started, reply=reply, failure=failure, now_epoch=time.time()
        )
        if delay is None:
            if failure is not None:
                raise failure
            assert reply is not None
            raise self._core.error_for(reply)
        why = f"HTTP {reply.status_code}" if reply is not None else type(failure).__name__
        logger.info("fal realtime %s: %s; retry %d in %.2f s", self.endpoint_id, why, attempt, delay)
        return delay

    def _closed_error(self, exc: ConnectionClosed | None) -> RealtimeConnectionClosed:
        if exc is None:
            why = "closed" if self._closed else "not connected: send an input first"
            return RealtimeConnectionClosed(f"{self.endpoint_id}: realtime connection {why}")
        close = exc.rcvd or exc.sent
        code = close.code if close is not None else ABNORMAL_CLOSURE
        reason = self._scrub(close.reason if close is not None else "no close frame")[:200]
        detail = f"code {code}: {reason}" if reason else f"code {code}"
        return RealtimeConnectionClosed(
            f"{self.endpoint_id}: the realtime connection closed ({detail})", code=code, reason=reason
        )

    def _too_big(self, exc: ConnectionClosed) -> errors.ProtocolError | None:
        """The error for a socket websockets closed because an answer was over `max_message_bytes`, else None."""
        if exc.sent is None or exc.sent.code != MESSAGE_TOO_BIG or exc.rcvd_then_sent:
            return None
        limit = "?" if self._max_message_bytes is None else _size(self._max_message_bytes)
        return errors.ProtocolError(
            f"{self.endpoint_id}: a realtime answer is larger than max_message_bytes ({limit}); the connection was "
            f"closed (code {MESSAGE_TOO_BIG}) and the next send reconnects"
        )

    def _decode_soon(self, frame: bytes | str, socket: Any) -> _Decoding:
        future = _decode_soon(frame, self._core, self._max_message_objects, tuple(self._tokens))
        self._decoding = _Decoding(future, socket)
        return self._decoding

    def _decoded_into(self, decoding: _Decoding, exc: BaseException) -> bool:
        """Whether `exc` is the frame's own failure (not an interruption of the wait): then the frame is done with."""
        future = decoding.future
        done = future.done() and not future.cancelled() and future.exception() is exc
        if done and self._decoding is decoding:
            self._decoding = None
        return done

    def _expired(self, limit: float | None) -> errors.APITimeoutError:
        return errors.APITimeoutError(f"{self.endpoint_id}: no realtime answer within {limit} s", request_sent=True)

    def _recv_deadline(self, timeout: float | None) -> tuple[float | None, float | None]:
        """This call's limit in seconds (None: none) and its deadline on the monotonic clock."""
        limit = self._recv_timeout if timeout is None else (None if math.isinf(timeout) else timeout)
        return limit, (None if limit is None else time.monotonic() + limit)

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _unauthorized(exc: BaseException) -> bool:
    """fal refused the token mid-connection: the socket is dropped, so the next `send` connects with a new one."""
    return isinstance(exc, RealtimeError) and exc.error == UNAUTHORIZED


def _ends_iteration(exc: RealtimeConnectionClosed) -> bool:
    """Iteration ends quietly at a normal close (fal's after an idle notice) or when there is no socket left."""
    return exc.code in (None, NORMAL_CLOSURE)


class RealtimeConnection(_Realtime):
    """A realtime connection to one app: `send` inputs (dicts), `recv` answers (dicts), or iterate over the answers.

    Opened when entered as a context manager (or by the first `send`); reopened with a new token by the `send` after
    a close. Thread-safe: one thread may `recv` while others `send`.
    """

    def __init__(self, client: Client, endpoint_id: str, **options: Unpack[RealtimeOptions]) -> None:
        super().__init__(client.core, client.verify, client.timeouts.read, endpoint_id, **options)
        self._client = client
        self._socket: SyncSocket | None = None
        self._lock = threading.Lock()

    def connect(self) -> Self:
        """Open the socket now, if it is not open (a token, then the handshake)."""
        self._open_socket()
        return self

    def send(self, payload: Mapping[str, Any]) -> None:
        """Send one input as a msgpack frame, reconnecting first if the socket closed since the last one."""
        frame = encode(payload)
        closed: ConnectionClosed | None = None
        for _ in range(2):  # a socket found closed is replaced once; a new one that closes at once is an error
            socket = self._open_socket()
            try:
                socket.send(frame)
                return
            except ConnectionClosed as exc:  # raised before writing: the frame was not sent
                closed = exc
                self._forget(socket)
        raise self._closed_error(closed)

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """The next answer; `timeout` overrides the connection's `recv_timeout` for this call.

        Raises `RealtimeError` for fal's error frames, `RealtimeConnectionClosed` when the socket closes first (or
        none is open) and `APITimeoutError` when no answer came in time (the connection stays usable; an answer
        still being decoded then is the next `recv`'s). `ProtocolError` for an answer over a limit: over
        `max_message_objects`, the frame is skipped and the connection stays usable; over `max_message_bytes`,
        websockets closes the socket (1009) and the next `send` reconnects.
        """
        limit, deadline = self._recv_deadline(timeout)
        while True:
            decoding = self._decoding  # an answer a previous `recv` gave up waiting for comes first
            if decoding is None:
                socket = self._socket
                if socket is None:
                    raise self._closed_error(None)
                try:
                    frame = socket.recv(timeout=self._remaining(deadline))
                except TimeoutError:
                    raise self._expired(limit) from None
                except ConnectionClosed as exc:
                    self._forget(socket)
                    raise (self._too_big(exc) or self._closed_error(exc)) from None
                decoding = self._decode_soon(frame, socket)
            try:
                message = decoding.future.result(self._remaining(deadline))
            except TimeoutError:  # still decoding: the next `recv` waits for it again
                raise self._expired(limit) from None
            except BaseException as exc:
                if self._decoded_into(decoding, exc) and _unauthorized(exc):
                    self._forget(decoding.socket)
                raise
            self._decoding = None
            if message is not None:
                return message

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Each answer as it arrives, until the socket closes normally or `close()` is called."""
        while True:
            try:
                yield self.recv()
            except RealtimeConnectionClosed as exc:
                if _ends_iteration(exc):
                    return
                raise

    def close(self) -> None:
        """Close the socket; the connection cannot be used again."""
        with self._lock:  # after a handshake under way, so its socket is closed too
            self._closed = True
            socket, self._socket = self._socket, None
            self._decoding = None
        if socket is not None:
            socket.close()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_socket(self) -> SyncSocket:
        with self._lock:  # one handshake at a time; other senders wait for its socket
            if self._closed:
                raise self._closed_error(None)
            if self._socket is None:
                self._socket = self._handshake()
            return self._socket

    def _handshake(self) -> SyncSocket:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            token = token_of(self._core, self._client.api_request(**self._token_request()))
            self._tokens.append(token)  # before the handshake, whose request line websockets logs
            url = self._url(token)
            try:
                opened = sync_connect(
                    url,
                    ssl=self._tls(url),
                    open_timeout=self._open_timeout,
                    max_size=self._max_message_bytes,
                    user_agent_header=USER_AGENT,
                    logger=self._ws_logger,
                )
                # Entered, as websockets >= 17.1 wants a socket held open on purpose (it warns otherwise); `close`
                # and `_forget` close it.
                return opened.__enter__()
            except (OSError, TimeoutError, WebSocketException) as exc:
                reply, failure = self._open_failure(exc)
            time.sleep(self._open_retry_delay(attempt, started, reply, failure))

    def _forget(self, socket: SyncSocket) -> None:
        """Drop a socket that closed (or whose token was refused), so the next `send` opens a new one."""
        with self._lock:
            if self._socket is socket:
                self._socket = None
        socket.close()


class AsyncRealtimeConnection(_Realtime):
    """`RealtimeConnection` for asyncio: `async with`, `await send/recv`, `async for`."""

    def __init__(self, client: AsyncClient, endpoint_id: str, **options: Unpack[RealtimeOptions]) -> None:
        super().__init__(client.core, client.verify, client.timeouts.read, endpoint_id, **options)
        self._client = client
        self._socket: AsyncSocket | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> Self:
        await self._open_socket()
        return self

    async def send(self, payload: Mapping[str, Any]) -> None:
        frame = encode(payload)
        closed: ConnectionClosed | None = None
        for _ in range(2):
            socket = await self._open_socket()
            try:
                await socket.send(frame)
                return
            except ConnectionClosed as exc:
                closed = exc
                await self._forget(socket)
        raise self._closed_error(closed)

    async def recv(self, timeout: float | None = None) -> dict[str, Any]:
        limit, deadline = self._recv_deadline(timeout)
        while True:
            decoding = self._decoding
            if decoding is None:
                socket = self._socket
                if socket is None:
                    raise self._closed_error(None)
                try:  # cancelling websockets' recv loses nothing
                    frame = await asyncio.wait_for(socket.recv(), self._remaining(deadline))
                except TimeoutError:
                    raise self._expired(limit) from None
                except ConnectionClosed as exc:
                    await self._forget(socket)
                    raise (self._too_big(exc) or self._closed_error(exc)) from None
                decoding = self._decode_soon(frame, socket)
            try:
                if not decoding.future.done():  # shielded: giving up on it leaves it running, for the next `recv`
                    waiting = asyncio.shield(asyncio.wrap_future(decoding.future))
                    await asyncio.wait_for(waiting, self._remaining(deadline))
                message = decoding.future.result()
            except TimeoutError:
                raise self._expired(limit) from None
            except BaseException as exc:  # cancelled while waiting: the decode is kept, as after a timeout
                if self._decoded_into(decoding, exc) and _unauthorized(exc):
                    await self._forget(decoding.socket)
                raise
            self._decoding = None
            if message is not None:
                return message

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                yield await self.recv()
            except RealtimeConnectionClosed as exc:
                if _ends_iteration(exc):
                    return
                raise

    async def close(self) -> None:
        async with self._lock:  # after a handshake under way, so its socket is closed too
            self._closed = True
            socket, self._socket = self._socket, None
            self._decoding = None
        if socket is not None:
            await socket.close()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _open_socket(self) -> AsyncSocket:
        async with self._lock:
            if self._closed:
                raise self._closed_error(None)
            if self._socket is None:
                self._socket = await self._handshake()
            return self._socket

    async def _handshake(self) -> AsyncSocket:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            token = token_of(self._core, await self._client.api_request(**self._token_request()))
            self._tokens.append(token)
            url = self._url(token)
            try:
                return await async_connect(
                    url,
                    ssl=self._tls(url),
                    open_timeout=self._open_timeout,
                    max_size=self._max_message_bytes,
                    user_agent_header=USER_AGENT,
                    logger=self._ws_logger,
                )
            except (OSError, TimeoutError, WebSocketException) as exc:
                reply, failure = self._open_failure(exc)
            await asyncio.sleep(self._open_retry_delay(attempt, started, reply, failure))

    async def _forget(self, socket: AsyncSocket) -> None:
        if self._socket is socket:
            self._socket = None
        await socket.close()


# Typed connections: what `Endpoint.realtime` returns.


class TypedRealtimeConnection(Generic[InputT, OutputT]):
    """A `RealtimeConnection` for one endpoint: `send` takes its `Input` (a model, a dict or field keywords) and is
    validated before anything is sent; `recv` and iteration give its `Output`."""

    def __init__(
        self,
        connection: RealtimeConnection,
        prepare: Callable[[InputT | Mapping[str, Any] | None, dict[str, Any]], dict[str, Any]],
        parse: Callable[[dict[str, Any]], OutputT],
    ) -> None:
        self.connection = connection
        self._prepare = prepare
        self._parse = parse

    def __repr__(self) -> str:
        return f"Typed{self.connection!r}"

    def send(self, arguments: InputT | Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        self.connection.send(self._prepare(arguments, fields))

    def recv(self, timeout: float | None = None) -> OutputT:
        return self._parse(self.connection.recv(timeout))

    def __iter__(self) -> Iterator[OutputT]:
        return (self._parse(message) for message in self.connection)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Self:
        self.connection.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTypedRealtimeConnection(Generic[InputT, OutputT]):
    """`TypedRealtimeConnection` for asyncio."""

    def __init__(
        self,
        connection: AsyncRealtimeConnection,
        prepare: Callable[[InputT | Mapping[str, Any] | None, dict[str, Any]], Awaitable[dict[str, Any]]],
        parse: Callable[[dict[str, Any]], OutputT],
    ) -> None:
        self.connection = connection
        self._prepare = prepare
        self._parse = parse

    def __repr__(self) -> str:
        return f"Typed{self.connection!r}"

    async def send(self, arguments: InputT | Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        await self.connection.send(await self._prepare(arguments, fields))

    async def recv(self, timeout: float | None = None) -> OutputT:
        return self._parse(await self.connection.recv(timeout))

    async def __aiter__(self) -> AsyncIterator[OutputT]:
        async for message in self.connection:
            yield self._parse(message)

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> Self:
        await self.connection.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# fal-client's module-level `fal_client.realtime` / `realtime_async`, on the default clients.


def realtime_connect(endpoint_id: str, **options: Unpack[RealtimeOptions]) -> RealtimeConnection:
    """`default_client().realtime(...)`: a connection configured from the environment."""
    from fal_runtime._client import default_client

    return default_client().realtime(endpoint_id, **options)


def realtime_connect_async(endpoint_id: str, **options: Unpack[RealtimeOptions]) -> AsyncRealtimeConnection:
    """`default_async_client().realtime(...)`, for `async with` inside a running event loop."""
    from fal_runtime._client import default_async_client

    return default_async_client().realtime(endpoint_id, **options)
