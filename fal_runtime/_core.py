"""The sans-IO core: every decision of the protocol, shared by the sync and async clients.

URLs, headers, credentials, status and handle parsing, error mapping and retry decisions live here as pure
functions of their inputs; `Client` and `AsyncClient` only move bytes. So the two cannot drift apart.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from fal_runtime import errors

Operation = Literal["submit", "run", "stream", "status", "result", "cancel"]
# Operations that never create work: safe to repeat after any failure.
_IDEMPOTENT: frozenset[str] = frozenset({"status", "result", "cancel"})
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RequestSpec:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None


@dataclass(frozen=True)
class HandleData:
    endpoint_id: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in count and in total time."""

    max_retries: int = 5
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 60.0  # a server asking for longer than this gets the error instead
    total: float = 120.0  # no retry starts after this many seconds since the first attempt


def app_root(endpoint_id: str) -> str:
    """Status, result and cancel live under `owner/alias` only: `fal-ai/flux/dev` → `fal-ai/flux`."""
    parts = endpoint_id.strip("/").split("/")
    return "/".join(parts[:2])


def _base(host: str) -> str:
    host = host.strip().rstrip("/")
    return host if host.startswith(("https://", "http://")) else f"https://{host}"


class Core:
    def __init__(
        self,
        *,
        key: str | None = None,
        queue_host: str | None = None,
        run_host: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._key = key
        self.queue_base = _base(queue_host or os.environ.get("FAL_QUEUE_RUN_HOST") or "queue.fal.run")
        self.run_base = _base(run_host or os.environ.get("FAL_RUN_HOST") or "fal.run")
        self.retry = retry or RetryPolicy()

    def __repr__(self) -> str:
        return f"Core(queue={self.queue_base!r}, run={self.run_base!r}, key={'set' if self._key else 'from env'})"

    # Credentials: read at the first request, never stored in a message.

    def auth_headers(self) -> dict[str, str]:
        key = self._key or os.environ.get("FAL_KEY")
        if not key:
            key_id, secret = os.environ.get("FAL_KEY_ID"), os.environ.get("FAL_KEY_SECRET")
            if key_id and secret:
                key = f"{key_id}:{secret}"
        if not key:
            raise errors.MissingCredentialsError("no fal API key: pass key=... or set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET)")
        return {"Authorization": f"Key {key}"}

    # Requests.

    def submit(self, endpoint_id: str, payload: dict[str, Any], options: dict[str, Any]) -> RequestSpec:
        headers = self._option_headers(options)
        params = {"fal_webhook": options["webhook_url"]} if options.get("webhook_url") else {}
        return RequestSpec("POST", f"{self.queue_base}/{endpoint_id}", headers, params, payload)

    def run(self, endpoint_id: str, payload: dict[str, Any], options: dict[str, Any]) -> RequestSpec:
        return RequestSpec("POST", f"{self.run_base}/{endpoint_id}", self._option_headers(options), {}, payload)

    def stream(self, endpoint_id: str, payload: dict[str, Any], options: dict[str, Any]) -> RequestSpec:
        headers = {**self._option_headers(options), "Accept": "text/event-stream"}
        return RequestSpec("POST", f"{self.run_base}/{endpoint_id}/stream", headers, {}, payload)

    def status(self, handle: HandleData, *, logs: bool) -> RequestSpec:
        return RequestSpec("GET", handle.status_url, {}, {"logs": "1" if logs else "0"})

    def status_stream(self, handle: HandleData, *, logs: bool) -> RequestSpec:
        return RequestSpec("GET", f"{handle.status_url}/stream", {"Accept": "text/event-stream"}, {"logs": "1" if logs else "0"})

    def result(self, handle: HandleData) -> RequestSpec:
        return RequestSpec("GET", handle.response_url)

    def cancel(self, handle: HandleData) -> RequestSpec:
        return RequestSpec("PUT", handle.cancel_url)

    def _option_headers(self, options: dict[str, Any]) -> dict[str, str]:
        headers = dict(options.get("headers") or {})
        if options.get("priority"):
            headers["X-Fal-Queue-Priority"] = str(options["priority"])
        if options.get("hint"):
            headers["X-Fal-Runner-Hint"] = str(options["hint"])
        if options.get("start_timeout") is not None:
            if float(options["start_timeout"]) <= 1:
                raise ValueError("start_timeout must be more than 1 second")
            headers["X-Fal-Request-Timeout"] = f"{float(options['start_timeout']):g}"
        return headers

    # Responses.

    def handle_from_submit(self, endpoint_id: str, data: Any) -> HandleData:
        if not isinstance(data, dict) or not isinstance(data.get("request_id"), str):
            raise errors.FalError(f"unexpected submit response from fal: {str(data)[:200]}")
        fallback = self.handle_for(endpoint_id, data["request_id"])
        return HandleData(
            endpoint_id,
            data["request_id"],
            data.get("status_url") or fallback.status_url,
            data.get("response_url") or fallback.response_url,
            data.get("cancel_url") or fallback.cancel_url,
        )

    def handle_for(self, endpoint_id: str, request_id: str) -> HandleData:
        """Rebuild a handle from the endpoint id and request id alone."""
        base = f"{self.queue_base}/{app_root(endpoint_id)}/requests/{quote(request_id, safe='')}"
        return HandleData(endpoint_id, request_id, f"{base}/status", base, f"{base}/cancel")

    def error_for(self, response: httpx.Response, *, completed_with_error: bool = False) -> errors.HTTPError:
        """Map an error response to the most specific error of the tree."""
        code = response.status_code
        request_id = response.headers.get("x-fal-request-id")
        try:
            body: Any = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            body = response.text[:500]
        detail = body.get("detail", body) if isinstance(body, dict) else body
        error_type = (body.get("error_type") if isinstance(body, dict) else None) or response.headers.get("x-fal-error-type")
        message = f"HTTP {code}"
        if error_type:
            message += f" ({error_type})"
        if detail:
            message += f": {_describe(detail)}"
        if request_id:
            message += f" [request {request_id}]"
        kwargs: dict[str, Any] = dict(status_code=code, request_id=request_id, error_type=error_type, detail=detail)
        cls: type[errors.HTTPError]
        if completed_with_error and code != 422:
            cls = errors.RequestFailedError
        elif code == 422:
            cls = errors.ValidationError
        elif code == 404:
            cls = errors.NotFoundError
        elif code == 429:
            cls = errors.RateLimitError
        elif code == 504 and response.headers.get("x-fal-request-timeout-type") == "user":
            cls = errors.StartTimeoutError
        elif code >= 500:
            cls = errors.ServerError
        else:
            cls = errors.HTTPError
        return cls(message, **kwargs)

    @staticmethod
    def transport_error(exc: httpx.TransportError) -> errors.TransportError:
        if isinstance(exc, httpx.TimeoutException):
            return errors.TimeoutError(f"timed out: {type(exc).__name__}")
        return errors.TransportError(f"{type(exc).__name__}: {exc}")

    # Retries.

    def retry_delay(
        self,
        op: Operation,
        attempt: int,
        started: float,
        *,
        response: httpx.Response | None = None,
        exc: Exception | None = None,
        now: float | None = None,
    ) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None to give up.

        Status, result and cancel are repeated after any transient failure. Submit and run create billable work,
        so they are repeated only when the first attempt provably never reached fal: the connection was refused
        (nothing was sent), fal said 429 (it refused the work), or an ingress 502/503/504 came back without
        `x-fal-request-id` (fal itself never saw the request). A user start-timeout 504 is never repeated.
        """
        now = time.monotonic() if now is None else now
        if attempt >= self.retry.max_retries or now - started >= self.retry.total:
            return None
        if exc is not None:
            retryable = isinstance(exc, httpx.ConnectError) if op not in _IDEMPOTENT else isinstance(exc, httpx.TransportError)
            return self._backoff(attempt) if retryable else None
        if response is None or response.status_code not in _RETRY_STATUSES:
            return None
        code = response.status_code
        if code == 504 and response.headers.get("x-fal-request-timeout-type") == "user":
            return None
        if op not in _IDEMPOTENT:
            if not (code == 429 or (code in (502, 503, 504) and "x-fal-request-id" not in response.headers)):
                return None
        after = retry_after(response.headers.get("retry-after"), now_epoch=time.time())
        if after is not None:
            return after if after <= self.retry.max_retry_after else None
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.retry.base_delay * 2**attempt, self.retry.max_delay) * random.uniform(0.5, 1.5))  # noqa: S311


def retry_after(value: str | None, *, now_epoch: float) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_epoch)


def _describe(detail: Any) -> str:
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)[:500]
