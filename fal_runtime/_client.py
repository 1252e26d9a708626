"""`Client` and `AsyncClient`, and the process's default clients.

A client is composed of collaborators, each in its own module, rather than inheriting them: a `Core` (`_core`: every
decision, no I/O), a transport (`_transport`: the httpx pool and the send and stream loops with retries), its queue
operations (`_queue`: submit, status, result, cancel, watch, subscribe, run, stream) and its uploads (`_uploads`: data
URIs, the CDN token, multipart), the last two sending through the one transport. The sync and async classes of each
collaborator differ only in `await` (`tests/runtime/test_twins.py` checks it). This module holds the constructors and
the public surface; everything else that needs a request (the Platform API, handles, realtime tokens) uses
`api_request` or the collaborators' documented methods, never a client's private attributes.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Self, TypeVar, Unpack

import httpx
from pydantic import BaseModel

from fal_runtime._core import ApiReply, Auth, Core, RetryPolicy
from fal_runtime._options import ObjectLifetime
from fal_runtime._queue import AsyncQueue, SyncQueue
from fal_runtime._transport import AsyncTransport, SyncTransport
from fal_runtime._uploads import AsyncUploads, SyncUploads

if TYPE_CHECKING:
    from fal_runtime._handles import AsyncRequestHandle, RequestHandle
    from fal_runtime.realtime import AsyncRealtimeConnection, RealtimeConnection, RealtimeOptions

OutputT = TypeVar("OutputT", bound=BaseModel)
Params = Mapping[str, str | Sequence[str]]

__all__ = ["AsyncClient", "Client", "default_async_client", "default_client"]


class Client:
    """A synchronous fal client. Thread-safe; reuse one per process (it keeps a connection pool)."""

    def __init__(
        self,
        key: str | None = None,
        *,
        queue_host: str | None = None,
        run_host: str | None = None,
        rest_host: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        poll_interval: float = 0.5,
        verify: ssl.SSLContext | str | bool = True,
        inline_max_bytes: int = 0,
        upload_concurrency: int = 4,
        max_connections: int = 100,
        http_client: httpx.Client | None = None,
        object_lifetime: ObjectLifetime | None = None,
        backup_hosts: bool = True,
    ) -> None:
        """Configure a client: hosts are resolved now, the key at the first request; nothing is sent before it.

        Args:
            key: The fal API key. Defaults to the `FAL_KEY` environment variable, else `FAL_KEY_ID:FAL_KEY_SECRET`,
                read at the first request (so the environment may be set after construction). It is never shown
                in a repr, a log line or an error message.
            queue_host: The queue host (`host`, `host:port` or a URL). Defaults to `FAL_QUEUE_RUN_HOST`, else
                `queue.fal.run`.
            run_host: The synchronous run host used by `run` and `stream`. Defaults to `FAL_RUN_HOST`, else
                `fal.run`.
            rest_host: The REST host that issues CDN upload tokens. Defaults to
                `FAL_REST_HOST`, else `rest.fal.ai`.
            timeout: Seconds each read (and write) may wait; default 120. A status stream sends a keep-alive every
                15 s, so a long wait does not trip it.
            connect_timeout: Seconds each connection attempt may take; default 10.
            retry: How transient failures (transport errors, 408, 429, 5xx) are retried; default `RetryPolicy()`
                (5 retries, exponential backoff with jitter, 120 s in all; a refused connection 2 retries, so it is
                reported within about 2 s; a certificate that fails verification none). `RetryPolicy(max_retries=0)`
                disables retries. Submit, run and stream are retried only when fal provably started no work.
            poll_interval: Seconds between status polls; default 0.5. Used only when the status stream is
                unavailable.
            verify: TLS verification, as httpx takes it: True (the system's CA bundle, default, or the file
                `SSL_CERT_FILE` names), a CA file path, an `ssl.SSLContext`, or False to disable verification. A CA
                file that does not exist is a `ConfigurationError` naming it, raised here, before any request.
            inline_max_bytes: File inputs that are not URLs (paths, bytes, file objects, PIL images) of at most this
                many bytes are sent inline as data URIs; larger ones are uploaded to fal's storage. Default 0:
                always upload.
            upload_concurrency: Parts of one multipart upload (files above 100 MiB) sent at once; default 4.
            max_connections: Size of the connection pool; default 100. Threads beyond it wait for a connection.
            http_client: An `httpx.Client` to use instead of the client's own (proxies, tests). `verify` and
                `max_connections` do not apply to it (its own settings do); the timeouts do. `close()` closes it.
            object_lifetime: How long fal keeps files, by default: uploads (`upload`, file inputs) and the outputs of
                `submit`, `subscribe` and `run`. Seconds (> 0) or "immediate" (60 s), "1h", "1d", "7d", "30d",
                "1y", "never" (fal's own retention). Default None: nothing is sent and fal's retention applies. A
                call's own `object_lifetime` wins. Checked here: ValueError/TypeError for anything else.
            backup_hosts: Default True, as fal-client 1.0.3 always does: when a connection to `fal.run`
                or `queue.fal.run` cannot be established (nothing was sent), the same request goes once to
                `falrun.com` / `queue.falrun.com`, fal's backup domain, before the usual retry rules apply, and
                connecting to either is capped at 5 s. Only those two exact hosts: a configured host (`queue_host`,
                `FAL_QUEUE_RUN_HOST`, ...) never falls back, and the key goes to no other host.
        """
        self._core = Core(
            key=key,
            queue_host=queue_host,
            run_host=run_host,
            rest_host=rest_host,
            retry=retry,
            object_lifetime=object_lifetime,
            backup_hosts=backup_hosts,
        )
        self._transport = SyncTransport(
            self._core,
            timeout=timeout,
            connect_timeout=connect_timeout,
            verify=verify,
            http_client=http_client,
            max_connections=max_connections,
        )
        self._queue = SyncQueue(self._core, self._transport, poll_interval)
        self._uploads = SyncUploads(self._core, self._transport, inline_max_bytes, upload_concurrency)

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(queue={self._core.queue_base!r}, run={self._core.run_base!r})"

    # Endpoint calls (what `Endpoint` and the generated functions call).

    def submit(
        self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any
    ) -> RequestHandle[OutputT]:
        """Queue a request; the handle reads its status, result, or cancels it. Retried only when provably unsent."""
        return self._queue.submit(endpoint_id, payload, output=output, **options)

    def get_handle(self, endpoint_id: str, request_id: str, *, output: type[OutputT]) -> RequestHandle[OutputT]:
        """The handle of a request submitted earlier, from its endpoint id and request id alone."""
        return self._queue.get_handle(endpoint_id, request_id, output=output)

    def subscribe(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        """Submit, wait for completion (status stream, else polling), return the result; see `SubscribeOptions`.
        What fal bills for the request: `submit`, then `handle.result()` and `handle.billable_units`."""
        return self._queue.subscribe(endpoint_id, payload, output=output, **options)

    def run(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        """One round trip to fal.run: no queue, no status, no server-side retries. It returns the output alone: for
        what fal bills, `submit`, then `handle.result()` and `handle.billable_units`."""
        return self._queue.run(endpoint_id, payload, output=output, **options)

    def stream(self, endpoint_id: str, payload: dict[str, Any], **options: Any) -> Iterator[dict[str, Any]]:
        """The events of a streaming endpoint, each a JSON object (the model's partial output)."""
        return self._queue.stream(endpoint_id, payload, **options)

    # Files.

    def upload(self, value: Any, *, object_lifetime: ObjectLifetime | None = None) -> str:
        """A URL fal can read for a file-input value: a str as given (an http(s) URL or data URI; any other string is a
        ValueError naming `pathlib.Path`); a path, bytes, binary file object or PIL image
        inlined as a data URI (up to `inline_max_bytes`) or uploaded to fal's storage (multipart above 100 MiB).

        `object_lifetime`: how long fal keeps an uploaded file, in seconds or as "immediate" (60 s), "1h", "1d",
        "7d", "30d", "1y" or "never" (fal's default retention); default: the client's `object_lifetime`. Sent as
        fal-client sends it, as `X-Fal-Object-Lifecycle` and `X-Fal-Object-Lifecycle-Preference` headers of
        `{"expiration_duration_seconds": N}` on the CDN upload. Checked before anything is read or sent."""
        return self._uploads.upload(value, object_lifetime=object_lifetime)

    def upload_all(self, values: list[Any], *, object_lifetime: ObjectLifetime | None = None) -> list[str]:
        """`upload` of each value, one file after another."""
        return self._uploads.upload_all(values, object_lifetime=object_lifetime)

    # Other requests: the Platform API, realtime tokens, anything that is not an endpoint call.

    def api_request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Params | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        auth: Auth = "required",
        timeout: float | None = None,
        max_bytes: int | None = None,
        raise_for_status: bool = True,
    ) -> ApiReply:
        """Send one request that is not an endpoint call, through this client's pool, TLS settings and retry policy.

        Args:
            method: The HTTP method.
            path_or_url: A path on fal's Platform API (`"/models"` → `https://{FAL_API_HOST or api.fal.ai}/v1/models`,
                the host read at each call), or a full http(s) URL.
            params: The query; a sequence value repeats the parameter (`{"endpoint_id": ["a", "b"]}`).
            json: A JSON body. content: a raw body instead. headers: extra headers (they win over the client's
                own).
            idempotent: Whether sending the request twice is harmless. Default: True for GET, HEAD and OPTIONS and
                for a request carrying an `Idempotency-Key` header, False otherwise.
            auth: "required" (default: MissingCredentialsError before anything is sent when no key is configured),
                "optional" (the key when one is configured) or "none". The key goes only to fal's hosts and the
                client's configured ones, whatever this says.
            timeout: At most this many seconds for its connect and each read (the client's timeouts otherwise).
            max_bytes: The largest answer accepted. The body is read in chunks; past the cap (or a Content-Length
                over it) the connection is closed and `ProtocolError` raised, naming the cap. Default: no cap.
            raise_for_status: Default True: an error status (after the retries) raises the mapped `HTTPError` (fal's
                `detail` or the Platform API's `error.message` in its message). False returns it.

        Retries follow the client's `RetryPolicy`: an idempotent request is retried like a status call (transport
        errors, 408, 429 honouring `Retry-After`, 5xx); any other is sent again only when it provably never
        arrived: the connection never came up (nothing was sent) or fal answered 429.

        Returns the reply: `status_code`, `headers` (lower-case names), `content`, `json()`.
        """
        op, spec = self._core.api_request(
            method, path_or_url, params=params, json=json, content=content, headers=headers,
            idempotent=idempotent, auth=auth, timeout=timeout,
        )  # fmt: skip
        reply = self._transport.send(op, spec, max_bytes=_checked_max_bytes(max_bytes))
        if raise_for_status and not reply.ok:
            raise self._core.error_for(reply)
        return reply

    @property
    def core(self) -> Core:
        """This client's sans-IO core: its hosts (`queue_base`, `run_base`, `rest_base`), key redaction (`redact`,
        for any text quoted in an error) and the rules that read replies and decide retries. It sends nothing."""
        return self._core

    @property
    def verify(self) -> ssl.SSLContext | str | bool:
        """The TLS verification setting, as given to the constructor (the realtime socket uses it too)."""
        return self._transport.verify

    @property
    def timeouts(self) -> httpx.Timeout:
        """The httpx timeouts every request starts from (`timeout`, `connect_timeout`)."""
        return self._transport.timeout

    @property
    def http(self) -> httpx.Client:
        """The underlying `httpx.Client` (created on first use): downloads of output files share its connections.
        Requests sent through it directly carry no credentials."""
        return self._transport.http

    def close(self) -> None:
        """Close the connection pool (and an `http_client` given to the constructor)."""
        self._transport.close()

    def realtime(self, endpoint_id: str, **options: Unpack[RealtimeOptions]) -> RealtimeConnection:
        """A connection to a realtime app over fal's WebSocket protocol (see `fal_runtime.realtime`), opened by
        `with` (or the first `send`). The key only buys a short-lived token from the REST host; the socket's URL
        carries that token, never the key.

        Options:
            path: The app's WebSocket route; default `/realtime` (not added when `endpoint_id` ends with it).
            max_buffering: How many inputs fal may queue for the app (1 to 60); default: the app's own setting.
            token_expiration: Seconds the token stays valid; default 120. A reconnect always fetches a new one.
            open_timeout: Seconds each handshake may take; default 90, as fal-client (a cold app starts first).
            recv_timeout: Seconds each `recv` waits for an answer; default: this client's `timeout`; `float("inf")`
                waits for ever.
            max_message_bytes: The largest answer accepted; default 64 MiB; None: no limit.
        """
        from fal_runtime.realtime import RealtimeConnection

        return RealtimeConnection(self, endpoint_id, **options)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """An asyncio fal client; reuse one per event loop (it keeps a connection pool bound to that loop)."""

    def __init__(
        self,
        key: str | None = None,
        *,
        queue_host: str | None = None,
        run_host: str | None = None,
        rest_host: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        poll_interval: float = 0.5,
        verify: ssl.SSLContext | str | bool = True,
        inline_max_bytes: int = 0,
        upload_concurrency: int = 4,
        max_connections: int = 100,
        http_client: httpx.AsyncClient | None = None,
        object_lifetime: ObjectLifetime | None = None,
        backup_hosts: bool = True,
    ) -> None:
        """Configure a client: hosts are resolved now, the key at the first request; nothing is sent before it.

        Args:
            key: The fal API key. Defaults to the `FAL_KEY` environment variable, else `FAL_KEY_ID:FAL_KEY_SECRET`,
                read at the first request (so the environment may be set after construction). It is never shown
                in a repr, a log line or an error message.
            queue_host: The queue host (`host`, `host:port` or a URL). Defaults to `FAL_QUEUE_RUN_HOST`, else
                `queue.fal.run`.
            run_host: The synchronous run host used by `run` and `stream`. Defaults to `FAL_RUN_HOST`, else
                `fal.run`.
            rest_host: The REST host that issues CDN upload tokens. Defaults to
                `FAL_REST_HOST`, else `rest.fal.ai`.
            timeout: Seconds each read (and write) may wait; default 120. A status stream sends a keep-alive every
                15 s, so a long wait does not trip it.
            connect_timeout: Seconds each connection attempt may take; default 10.
            retry: How transient failures (transport errors, 408, 429, 5xx) are retried; default `RetryPolicy()`
                (5 retries, exponential backoff with jitter, 120 s in all; a refused connection 2 retries, so it is
                reported within about 2 s; a certificate that fails verification none). `RetryPolicy(max_retries=0)`
                disables retries. Submit, run and stream are retried only when fal provably started no work.
            poll_interval: Seconds between status polls; default 0.5. Used only when the status stream is
                unavailable.
            verify: TLS verification, as httpx takes it: True (the system's CA bundle, default, or the file
                `SSL_CERT_FILE` names), a CA file path, an `ssl.SSLContext`, or False to disable verification. A CA
                file that does not exist is a `ConfigurationError` naming it, raised here, before any request.
            inline_max_bytes: File inputs that are not URLs (paths, bytes, file objects, PIL images) of at most this
                many bytes are sent inline as data URIs; larger ones are uploaded to fal's storage. Default 0:
                always upload.
            upload_concurrency: Parts of one multipart upload (files above 100 MiB) sent at once; default 4.
            max_connections: Requests in flight at once; default 100. A status stream holds its connection while it
                waits; requests beyond the limit wait for a free one.
            http_client: An `httpx.AsyncClient` to use instead of the client's own pools (proxies, tests).
                `verify` does not apply to it (its own setting does); the timeouts and `max_connections` do.
                `aclose()` closes it.
            object_lifetime: How long fal keeps files, by default: uploads (`upload`, file inputs) and the outputs of
                `submit`, `subscribe` and `run`. Seconds (> 0) or "immediate" (60 s), "1h", "1d", "7d", "30d",
                "1y", "never" (fal's own retention). Default None: nothing is sent and fal's retention applies. A
                call's own `object_lifetime` wins. Checked here: ValueError/TypeError for anything else.
            backup_hosts: Default True, as fal-client 1.0.3 always does: when a connection to `fal.run`
                or `queue.fal.run` cannot be established (nothing was sent), the same request goes once to
                `falrun.com` / `queue.falrun.com`, fal's backup domain, before the usual retry rules apply, and
                connecting to either is capped at 5 s. Only those two exact hosts: a configured host (`queue_host`,
                `FAL_QUEUE_RUN_HOST`, ...) never falls back, and the key goes to no other host.
        """
        self._core = Core(
            key=key,
            queue_host=queue_host,
            run_host=run_host,
            rest_host=rest_host,
            retry=retry,
            object_lifetime=object_lifetime,
            backup_hosts=backup_hosts,
        )
        self._transport = AsyncTransport(
            self._core,
            timeout=timeout,
            connect_timeout=connect_timeout,
            verify=verify,
            http_client=http_client,
            max_connections=max_connections,
        )
        self._queue = AsyncQueue(self._core, self._transport, poll_interval)
        self._uploads = AsyncUploads(self._core, self._transport, inline_max_bytes, upload_concurrency)

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(queue={self._core.queue_base!r}, run={self._core.run_base!r})"

    # Endpoint calls (what `Endpoint` and the generated functions call).

    async def submit(
        self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any
    ) -> AsyncRequestHandle[OutputT]:
        """Queue a request; the handle reads its status, result, or cancels it. Retried only when provably unsent."""
        return await self._queue.submit(endpoint_id, payload, output=output, **options)

    def get_handle(self, endpoint_id: str, request_id: str, *, output: type[OutputT]) -> AsyncRequestHandle[OutputT]:
        """The handle of a request submitted earlier, from its endpoint id and request id alone."""
        return self._queue.get_handle(endpoint_id, request_id, output=output)

    async def subscribe(
        self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any
    ) -> OutputT:
        """Submit, wait for completion (status stream, else polling), return the result; see `SubscribeOptions`.
        What fal bills for the request: `submit`, then `handle.result()` and `handle.billable_units`."""
        return await self._queue.subscribe(endpoint_id, payload, output=output, **options)

    async def run(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        """One round trip to fal.run: no queue, no status, no server-side retries. It returns the output alone: for
        what fal bills, `submit`, then `handle.result()` and `handle.billable_units`."""
        return await self._queue.run(endpoint_id, payload, output=output, **options)

    def stream(self, endpoint_id: str, payload: dict[str, Any], **options: Any) -> AsyncIterator[dict[str, Any]]:
        """The events of a streaming endpoint, each a JSON object (the model's partial output)."""
        return self._queue.stream(endpoint_id, payload, **options)

    # Files.

    async def upload(self, value: Any, *, object_lifetime: ObjectLifetime | None = None) -> str:
        """A URL fal can read for a file-input value: a str as given (an http(s) URL or data URI; any other string is a
        ValueError naming `pathlib.Path`); a path, bytes, binary file object or PIL image
        inlined as a data URI (up to `inline_max_bytes`) or uploaded to fal's storage (multipart above 100 MiB).

        `object_lifetime`: how long fal keeps an uploaded file, in seconds or as "immediate" (60 s), "1h", "1d",
        "7d", "30d", "1y" or "never" (fal's default retention); default: the client's `object_lifetime`. Sent as
        fal-client sends it, as `X-Fal-Object-Lifecycle` and `X-Fal-Object-Lifecycle-Preference` headers of
        `{"expiration_duration_seconds": N}` on the CDN upload. Checked before anything is read or sent. Reading and
        encoding run in a worker thread, so the event loop never blocks on disk."""
        return await self._uploads.upload(value, object_lifetime=object_lifetime)

    async def upload_all(self, values: list[Any], *, object_lifetime: ObjectLifetime | None = None) -> list[str]:
        """`upload` of each value, all files at once."""
        return await self._uploads.upload_all(values, object_lifetime=object_lifetime)

    # Other requests: the Platform API, realtime tokens, anything that is not an endpoint call.

    async def api_request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Params | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        auth: Auth = "required",
        timeout: float | None = None,
        max_bytes: int | None = None,
        raise_for_status: bool = True,
    ) -> ApiReply:
        """Send one request that is not an endpoint call, through this client's pools, TLS settings and retry policy.

        Args:
            method: The HTTP method.
            path_or_url: A path on fal's Platform API (`"/models"` → `https://{FAL_API_HOST or api.fal.ai}/v1/models`,
                the host read at each call), or a full http(s) URL.
            params: The query; a sequence value repeats the parameter (`{"endpoint_id": ["a", "b"]}`).
            json: A JSON body. content: a raw body instead. headers: extra headers (they win over the client's
                own).
            idempotent: Whether sending the request twice is harmless. Default: True for GET, HEAD and OPTIONS and
                for a request carrying an `Idempotency-Key` header, False otherwise.
            auth: "required" (default: MissingCredentialsError before anything is sent when no key is configured),
                "optional" (the key when one is configured) or "none". The key goes only to fal's hosts and the
                client's configured ones, whatever this says.
            timeout: At most this many seconds for its connect and each read (the client's timeouts otherwise).
            max_bytes: The largest answer accepted. The body is read in chunks; past the cap (or a Content-Length
                over it) the connection is closed and `ProtocolError` raised, naming the cap. Default: no cap.
            raise_for_status: Default True: an error status (after the retries) raises the mapped `HTTPError` (fal's
                `detail` or the Platform API's `error.message` in its message). False returns it.

        Retries follow the client's `RetryPolicy`: an idempotent request is retried like a status call (transport
        errors, 408, 429 honouring `Retry-After`, 5xx); any other is sent again only when it provably never
        arrived: the connection never came up (nothing was sent) or fal answered 429.

        Returns the reply: `status_code`, `headers` (lower-case names), `content`, `json()`.
        """
        op, spec = self._core.api_request(
            method, path_or_url, params=params, json=json, content=content, headers=headers,
            idempotent=idempotent, auth=auth, timeout=timeout,
        )  # fmt: skip
        reply = await self._transport.send(op, spec, max_bytes=_checked_max_bytes(max_bytes))
        if raise_for_status and not reply.ok:
            raise self._core.error_for(reply)
        return reply

    @property
    def core(self) -> Core:
        """This client's sans-IO core: its hosts (`queue_base`, `run_base`, `rest_base`), key redaction (`redact`,
        for any text quoted in an error) and the rules that read replies and decide retries. It sends nothing."""
        return self._core

    @property
    def verify(self) -> ssl.SSLContext | str | bool:
        """The TLS verification setting, as given to the constructor (the realtime socket uses it too)."""
        return self._transport.verify

    @property
    def timeouts(self) -> httpx.Timeout:
        """The httpx timeouts every request starts from (`timeout`, `connect_timeout`)."""
        return self._transport.timeout

    def connection(self) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        """A connection slot and the least busy httpx pool, held until the block ends: downloads of output files
        share them. Requests sent through it directly carry no credentials."""
        return self._transport.connection()

    async def aclose(self) -> None:
        """Close the connection pools (and an `http_client` given to the constructor)."""
        await self._transport.aclose()

    def realtime(self, endpoint_id: str, **options: Unpack[RealtimeOptions]) -> AsyncRealtimeConnection:
        """`Client.realtime` for asyncio: use the connection with `async with` (or open it by the first `send`)."""
        from fal_runtime.realtime import AsyncRealtimeConnection

        return AsyncRealtimeConnection(self, endpoint_id, **options)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _checked_max_bytes(max_bytes: int | None) -> int | None:
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
        raise ValueError(f"max_bytes must be a positive number of bytes (or None: no cap), not {max_bytes!r}")
    return max_bytes


_default: Client | None = None
_default_lock = threading.Lock()
_default_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = weakref.WeakKeyDictionary()


def default_client() -> Client:
    """The process-wide client configured from the environment (credentials are read at the first request)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def default_async_client() -> AsyncClient:
    """One default async client per event loop: an httpx.AsyncClient's connections belong to the loop that made them."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("the default AsyncClient needs a running event loop; pass client=AsyncClient()") from None
    client = _default_async.get(loop)
    if client is None:
        client = _default_async[loop] = AsyncClient()
    return client
