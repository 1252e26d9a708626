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
  a test can prove the key never reached the socket; POST `{"close_after": n, "close_code": c, "times": k}` makes the
  next k connections close with code c once they answered n inputs; DELETE forgets both.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


class RealtimeRoutes:
    """The token route, the realtime socket, and `/_local/realtime`; the tokens and records are this object's."""

    def __init__(self, fal: LocalFal, run_prefix: str) -> None:
        self.fal = fal
        self.run_prefix = run_prefix
        self._lock = threading.Lock()  # tests read the records from another thread
        self._tokens: dict[str, tuple[frozenset[str], float]] = {}  # token → (apps, expiry on time.time())
        self._seen: list[dict[str, Any]] = []
        self._closing: list[_Closing] = []

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
        if not self._token_valid(websocket.query_params.get("fal_jwt_token", ""), _alias(endpoint.id)):
            await websocket.send_denial_response(_json({"detail": "Invalid or expired realtime token"}, 401))
            return
        await websocket.accept()
        closing = self._take_closing()
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
            return JSONResponse({"ok": True})
        try:
            body = await request.json()
            closing = _Closing(
                int(body.get("close_after", 1)), int(body.get("close_code", 1001)), int(body.get("times", 1))
            )
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"detail": str(exc) or "expected a JSON object"}, 400)
        with self._lock:
            self._closing.append(closing)
        return JSONResponse({"ok": True})

    def _record(self, seen: dict[str, Any]) -> None:
        with self._lock:
            self._seen.append(seen)

    def _token_valid(self, token: str, alias: str) -> bool:
        with self._lock:
            apps, expires = self._tokens.get(token, (frozenset(), 0.0))
        return alias in apps and time.time() < expires

    def _take_closing(self) -> _Closing | None:
        with self._lock:
            if not self._closing:
                return None
            closing = self._closing[0]
            closing.times -= 1
            if closing.times <= 0:
                self._closing.pop(0)
            return closing


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
