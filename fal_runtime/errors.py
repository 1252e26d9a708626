"""One exception tree for everything the runtime raises, rooted at `FalError`.

Messages carry what a caller can act on (status, fal's request id, error type, detail) and never the API key.
"""

from __future__ import annotations

from typing import Any


class FalError(Exception):
    """Base of every error raised by fal_runtime."""


class MissingCredentialsError(FalError):
    """No API key: pass `key=` or set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET)."""


class TransportError(FalError):
    """The request did not get an HTTP response (connection refused or reset, DNS, TLS)."""


class TimeoutError(TransportError):  # noqa: A001 - deliberately our own, catchable as FalError
    """A connect, read or total deadline expired."""


class HTTPError(FalError):
    """fal answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        error_type: str | None = None,
        detail: Any = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id  # fal's `x-fal-request-id`, absent when an ingress proxy answered
        self.error_type = error_type
        self.detail = detail


class ValidationError(HTTPError):
    """fal rejected the input (422); `errors` lists `{"loc", "msg", "type"}` per field."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.detail if isinstance(e, dict)] if isinstance(self.detail, list) else []


class NotFoundError(HTTPError):
    """Unknown endpoint or request (404)."""


class RateLimitError(HTTPError):
    """Too many requests (429), after the allowed retries."""


class ServerError(HTTPError):
    """fal or its ingress failed (5xx), after the allowed retries."""


class StartTimeoutError(HTTPError):
    """The request did not start within `start_timeout` (504, `X-Fal-Request-Timeout-Type: user`); never retried."""


class RequestFailedError(HTTPError):
    """The request completed with an error: the error its result call returned."""
