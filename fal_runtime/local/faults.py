"""The failures a client must survive, made real on the wire.

- Platform errors (429 with Retry-After, 500/502/503/504, a user start-timeout 504) come from "fal itself", so they
  carry `x-fal-request-id`; an ingress 502 does not, and has nginx's HTML body, which is how clients tell them apart.
- `drop` aborts the TCP connection without any response (the client sees a transport error).
- `stall` sends the status line and headers, then holds the body for a bounded time (the client sees a read timeout).

Dropping needs the raw transport, which ASGI does not expose: `ExposeTransport` wraps the whole app and records
uvicorn's transport in the scope (uvicorn's `send` is a bound method of its request cycle, which holds it).
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import suppress

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .script import Rule

TRANSPORT_KEY = "fal_local.transport"

_PLATFORM_ERRORS = {
    "500": (500, "Internal server error", "internal_server_error"),
    "502": (502, "Runner disconnected", "runner_disconnected"),
    "503": (503, "No runner could be scheduled", "runner_scheduling_failure"),
    "504": (504, "Runner did not start in time", "startup_timeout"),
}

INGRESS_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def fal_headers(request_id: str | None = None) -> dict[str, str]:
    """Headers every response from fal itself carries."""
    return {"x-fal-request-id": request_id or str(uuid.uuid4())}


def error_response(status: int, kind: str, message: str) -> JSONResponse:
    """fal's Platform API `Error`: `{"error": {"type", "message", "request_id"}}`, with `x-fal-request-id`."""
    request_id = str(uuid.uuid4())
    body = {"error": {"type": kind, "message": message, "request_id": request_id}}
    return JSONResponse(body, status, fal_headers(request_id))


def fault_response(rule: Rule, answer: Response | None) -> Response:
    """The response a fault gives instead of `answer` (None when the operation was refused before taking effect).
    A stall is not here: it delays the real answer (`Stalled`)."""
    request_id = answer.headers.get("x-fal-request-id") if answer is not None else None
    fault = rule.fault
    if fault == "drop":
        return DropConnection()
    if fault == "body":
        return Response(rule.body, 200, headers=fal_headers(request_id), media_type="application/json")
    if fault == "ingress-502":
        return Response(INGRESS_502, 502, media_type="text/html")
    if fault == "429":
        headers = {
            **fal_headers(request_id),
            "Retry-After": f"{rule.retry_after:g}",
            "X-Fal-Error-Type": "rate_limited",
        }
        return JSONResponse({"detail": "Too many requests", "error_type": "rate_limited"}, 429, headers)
    if fault == "user-timeout-504":
        headers = {
            **fal_headers(request_id),
            "X-Fal-Request-Timeout-Type": "user",
            "X-Fal-Error-Type": "request_timeout",
        }
        return JSONResponse({"detail": "Request timed out", "error_type": "request_timeout"}, 504, headers)
    status, detail, error_type = _PLATFORM_ERRORS[str(fault)]
    headers = {**fal_headers(request_id), "X-Fal-Error-Type": error_type}
    return JSONResponse({"detail": detail, "error_type": error_type}, status, headers)


class DropConnection(Response):
    """Abort the connection instead of answering."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = scope.get(TRANSPORT_KEY)
        if transport is None:
            raise RuntimeError("no transport in scope: serve the app wrapped in ExposeTransport")
        transport.abort()
        # Wait for the server to see the disconnect, so it does not try to answer 500 on our behalf.
        with suppress(TimeoutError):
            async with asyncio.timeout(2):
                while (await receive())["type"] != "http.disconnect":
                    pass


class Stalled(Response):
    """Send `inner`'s status and headers, then nothing for `seconds`, then its body."""

    def __init__(self, inner: Response, seconds: float) -> None:
        super().__init__(status_code=inner.status_code)
        self.inner, self.seconds = inner, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if isinstance(self.inner, StreamingResponse):
            # A stream's headers go out with its first event: stall before it.
            await asyncio.sleep(self.seconds)
            await self.inner(scope, receive, send)
            return
        with suppress(OSError):
            await send(
                {"type": "http.response.start", "status": self.inner.status_code, "headers": self.inner.raw_headers}
            )
            await asyncio.sleep(self.seconds)
            await send({"type": "http.response.body", "body": self.inner.body})


class ExposeTransport:
    """Outermost ASGI wrapper: put uvicorn's transport in the scope so `DropConnection` can abort it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[TRANSPORT_KEY] = getattr(getattr(send, "__self__", None), "transport", None)
        await self.app(scope, receive, send)
