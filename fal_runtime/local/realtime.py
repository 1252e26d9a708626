"""fal's realtime apps on the local server: the REST host's token route and the run host's WebSocket.

- `POST /tokens/` (fal's `rest.fal.ai/tokens/`): with a fal key and `{"allowed_apps": [alias], "token_expiration":
  seconds}`, answers a token as a JSON string, good for those apps until it expires (fal's tokens are JWTs; these
  are opaque, which clients cannot tell apart: they only pass them on).
- `wss://HOST/run/<endpoint_id>/realtime?fal_jwt_token=TOKEN` (fal's `wss://fal.run/...`): a handshake without a
  live token for the app is refused with 401 before the upgrade, as fal's gateway does. Then each input frame
  (msgpack, or JSON text) is validated against the endpoint's input schema and answered with an output valid for its
  output schema, as a msgpack frame followed by a JSON `x-fal-message` timings frame, as fal's app template emits
  them (`fal/_realtime.py` in fal's SDK). An invalid input is answered as that template answers any exception: a
  JSON `{"type": "x-fal-error", "error": "INTERNAL_ERROR", "reason": ...}` frame, then a normal close.
- `/_local/realtime`, for tests: GET lists every token request and handshake seen (path, query string, headers), so
  a test can prove the key never reached the socket; POST scripts a fault for the next `times` (k, default 1) uses:
  - `{"close_after": n, "close_code": c, "times": k}`: the next k connections close with code c once they answered n
    inputs;
  - `{"refuse": status, "times": k}`: the next k handshakes are refused with that status and a body that echoes the
    token and the URL, as a careless gateway might (`{"detail": "... <token> ... <url>"}`);
  - `{"frame": {"head": b64, "repeat": b64, "count": n, "tail": b64, "text": false}, "times": k}`: the next k inputs
    are first answered with the frame `head + repeat * n + tail` (base64 parts; `text`: sent as a text frame, the
    bytes read as UTF-8), then as usual: a way to send an oversized or hostile frame without shipping it here.
  DELETE forgets every record and scripted fault.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .faults import fal_headers
from .payloads import input_errors

if TYPE_CHECKING:
    from .app import LocalFal
    from .specs import ServedEndpoint

MAX_TOKEN_SECONDS = 24 * 3600
_NAMESPACES = ("workflows", "comfy")


@dataclass
class _Closing:
    """A scripted server-side close: after `close_after` answers, with `code`, for the next `times` connections."""

    close_after: int
    code: int
    times: int


@dataclass
class _Refusal:
    """A scripted refusal: the next `times` handshakes get `status`, with a body that echoes the token."""

    status: int
    times: int


@dataclass
class _Frame:
    """A scripted frame, sent before the answer to each of the next `times` inputs."""

    data: bytes | str
    times: int


class RealtimeRoutes:
    """The token route, the realtime socket, and `/_local/realtime`; the tokens and records are this object's."""

    def __init__(self, fal: LocalFal, run_prefix: str) -> None:
        self.fal = fal
        self.run_prefix = run_prefix
        self._lock = threading.Lock()  # tests read the records from another thread
        self._tokens: dict[str, tuple[frozenset[str], float]] = {}  # token → (apps, expiry on time.time())
        self._seen: list[dict[str, Any]] = []
        self._closing: list[_Closing] = []
        self._refusals: list[_Refusal] = []
        self._frames: list[_Frame] = []

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/tokens/", self.token, methods=["POST"]),
            Route("/_local/realtime", self.control, methods=["GET", "POST", "DELETE"]),
            WebSocketRoute(f"{self.run_prefix}/{{path:path}}", self.socket),
        ]

    async def token(self, request: Request) -> Response:
        raw = await request.body()
        self._record({"kind": "token", "authorization": credential_digest(request.headers.get("authorization", "")),
                      "body": raw.decode()})  # fmt: skip

        async def produce() -> Response:
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "key" or not credentials.strip():
                return _json({"detail": "Missing or malformed Authorization header (expected 'Key ...')"}, 401)
            try:
                body = json.loads(raw)
                apps, seconds = body["allowed_apps"], body.get("token_expiration", 120)
                valid = isinstance(apps, list) and apps and all(isinstance(a, str) for a in apps)
                if not valid or not isinstance(seconds, int) or not 0 < seconds <= MAX_TOKEN_SECONDS:
                    raise ValueError
            except (ValueError, TypeError, KeyError):
                detail = [{"loc": ["body"], "msg": "expected allowed_apps and token_expiration", "type": "value_error"}]
                return _json({"detail": detail}, 422)
            token = secrets.token_urlsafe(32)
            with self._lock:
                self._tokens[token] = (frozenset(apps), time.time() + seconds)
            return _json(token)

        return await self.fal.guarded(None, "token", produce)

    async def socket(self, websocket: WebSocket) -> None:
        path = websocket.path_params["path"].strip("/")
        self._record(
            {
                "kind": "socket",
                "path": websocket.url.path,
                "query": websocket.url.query,
                "headers": dict(websocket.headers),
            }
        )
        # `<id>/realtime`, or the id itself when fal publishes the app as `.../realtime` (fal-js adds no second one)
        endpoint = self.fal.endpoints.get(path.removesuffix("/realtime")) or self.fal.endpoints.get(path)
        if endpoint is None or not path.endswith("/realtime"):
            await websocket.send_denial_response(_json({"detail": f"Path {websocket.url.path} not found"}, 404))
            return
        refusal = _take(self._lock, self._refusals)
        if refusal is not None:
            token = websocket.query_params.get("fal_jwt_token", "")
            detail = f"token {token} refused for {websocket.url}"  # an echo of the token, as a careless gateway sends
            await websocket.send_denial_response(_json({"detail": detail}, refusal.status))
            return
        if not self._token_valid(websocket.query_params.get("fal_jwt_token", ""), _alias(endpoint.id)):
            await websocket.send_denial_response(_json({"detail": "Invalid or expired realtime token"}, 401))
            return
        await websocket.accept()
        closing = _take(self._lock, self._closing)
        try:
            await self._serve(websocket, endpoint, closing)
        except WebSocketDisconnect:
            return

    async def _serve(self, websocket: WebSocket, endpoint: ServedEndpoint, closing: _Closing | None) -> None:
        """Answer inputs until the client leaves, an input is invalid, or a scripted close is due."""
        base = f"https://{websocket.url.netloc}"
        answered = 0
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            started = time.monotonic()
            payload, problem = _input(message, endpoint)
            if problem:
                error = {"type": "x-fal-error", "error": "INTERNAL_ERROR", "reason": problem}
                await websocket.send_text(json.dumps(error))
                await websocket.close(1000)
                return
            self.fal.script.record_input(endpoint.id, payload)
            scripted = _take(self._lock, self._frames)
            data = None if scripted is None else scripted.data
            if isinstance(data, str):
                await websocket.send_text(data)
            elif data is not None:
                await websocket.send_bytes(data)
            await websocket.send_bytes(msgpack.packb(self.fal.output(endpoint, base), use_bin_type=True))
            timing = {"type": "x-fal-message", "action": "timings", "timing": time.monotonic() - started}
            await websocket.send_text(json.dumps(timing))
            answered += 1
            if closing is not None and answered >= closing.close_after:
                await websocket.close(closing.code)
                return

    async def control(self, request: Request) -> Response:
        if request.method == "GET":
            with self._lock:
                return JSONResponse(list(self._seen))
        if request.method == "DELETE":
            with self._lock:
                self._seen.clear()
                self._closing.clear()
                self._refusals.clear()
                self._frames.clear()
            return JSONResponse({"ok": True})
        try:
            body = await request.json()
            times = int(body.get("times", 1))
            scripted: _Closing | _Refusal | _Frame
            if "refuse" in body:
                scripted = _Refusal(int(body["refuse"]), times)
            elif "frame" in body:
                scripted = _Frame(_scripted_frame(body["frame"]), times)
            else:
                scripted = _Closing(int(body.get("close_after", 1)), int(body.get("close_code", 1001)), times)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            return JSONResponse({"detail": str(exc) or "expected a JSON object"}, 400)
        with self._lock:
            if isinstance(scripted, _Refusal):
                self._refusals.append(scripted)
            elif isinstance(scripted, _Frame):
                self._frames.append(scripted)
            else:
                self._closing.append(scripted)
        return JSONResponse({"ok": True})

    def _record(self, seen: dict[str, Any]) -> None:
        with self._lock:
            self._seen.append(seen)

    def _token_valid(self, token: str, alias: str) -> bool:
        with self._lock:
            apps, expires = self._tokens.get(token, (frozenset(), 0.0))
        return alias in apps and time.time() < expires


_Scripted = TypeVar("_Scripted", _Closing, _Refusal, _Frame)


def _take(lock: threading.Lock, queue: list[_Scripted]) -> _Scripted | None:
    """The first scripted fault of `queue`, used once more (and dropped when used up), or None."""
    with lock:
        if not queue:
            return None
        scripted = queue[0]
        scripted.times -= 1
        if scripted.times <= 0:
            queue.pop(0)
        return scripted


def _scripted_frame(spec: Mapping[str, Any]) -> bytes | str:
    """`head + repeat * count + tail` from base64 parts; a str when `text` (the bytes read as UTF-8)."""
    parts = {name: base64.b64decode(spec.get(name, "")) for name in ("head", "repeat", "tail")}
    data = parts["head"] + parts["repeat"] * int(spec.get("count", 0)) + parts["tail"]
    return data.decode() if spec.get("text") else data


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status, fal_headers())


def _alias(endpoint_id: str) -> str:
    """The app name a token grants (`fal-ai/flux/dev` → `flux`; `workflows/me/app` → `app`)."""
    parts = endpoint_id.split("/")
    return parts[2] if parts[0] in _NAMESPACES and len(parts) > 2 else parts[1]


def _input(message: Mapping[str, Any], endpoint: ServedEndpoint) -> tuple[Any, str]:
    """The frame's input and what is wrong with it ("" when it is valid): fal's field errors as one line."""
    try:
        if message.get("bytes") is not None:
            payload = msgpack.unpackb(message["bytes"], raw=False)
        else:
            payload = json.loads(message.get("text") or "")
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException):
        return None, "the input is not a msgpack (or JSON) object"
    errors = input_errors(endpoint, payload)
    if not errors:
        return payload, ""
    return payload, "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'input'}: {e['msg']}" for e in errors)


def credential_digest(authorization: str) -> str:
    """An Authorization header as the control route shows it: the scheme and a SHA-256 of the credentials, so a
    test can tell which key was sent without the key itself being served back."""
    scheme, _, credentials = authorization.partition(" ")
    return f"{scheme} sha256:{hashlib.sha256(credentials.encode()).hexdigest()}" if credentials else scheme
