"""One exception tree for everything the runtime raises, rooted at `FalError`.

Callers catch `FalError` for "anything fal-related went wrong", or a leaf for the cases they handle differently
(`RateLimitError` to back off, `UnprocessableEntityError` to show field errors, `ClientTimeoutError` to give up).
Messages carry what a caller can act on (status, fal's request id, error type, detail) and never the API key: the core
scrubs the key from anything a server echoes back before it reaches a message.

Names follow openai-python's (`APIConnectionError`, `APITimeoutError`, `UnprocessableEntityError`) so that none
shadows a builtin (`ConnectionError`, `TimeoutError`) or reads like pydantic's `ValidationError`, which a bad argument
raises before any request is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FalError(Exception):
    """Base of every error raised by fal_runtime."""


class ConfigurationError(FalError):
    """The client's configuration cannot work, found before any request: a CA file named by `SSL_CERT_FILE` or
    `verify=` that does not exist or holds no certificate. Fix the setting; retrying cannot help."""


class MissingCredentialsError(ConfigurationError):
    """No API key: pass `key=` or set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET)."""


class TransportError(FalError):
    """No HTTP response arrived (connection refused or reset, DNS, TLS, protocol error, timeout).

    `request_sent` is False only when the request provably never left this machine (the connection was never
    established), which is what makes it safe to send a submit again.
    """

    def __init__(self, message: str, *, request_sent: bool, transient: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent
        # False for what retrying cannot fix: configuration errors (bad URL scheme, proxy) and a server certificate
        # that fails verification (untrusted issuer, expired, host-name mismatch).
        self.transient = transient


class APIConnectionError(TransportError):
    """The connection could not be established; nothing was sent.

    `refused` is True when the host answered that nothing listens on the port (ECONNREFUSED): retried only
    `RetryPolicy.refused_retries` times. `transient` is False when the server's certificate failed verification.
    """

    def __init__(self, message: str, *, transient: bool = True, refused: bool = False) -> None:
        super().__init__(message, request_sent=False, transient=transient)
        self.refused = refused


class APITimeoutError(TransportError):
    """A connect, read, write or pool deadline expired."""


class ClientTimeoutError(APITimeoutError):
    """`client_timeout` expired while waiting; the request was cancelled server-side (best effort)."""

    def __init__(self, message: str, *, request_id: str, cancelled: bool) -> None:
        super().__init__(message, request_sent=True)
        self.request_id = request_id
        self.cancelled = cancelled  # False when the cancel call itself failed


class HTTPError(FalError):
    """fal (or its ingress) answered with an error status."""

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
        self.request_id = request_id  # fal's `x-fal-request-id`; None when an ingress proxy answered
        self.error_type = error_type  # fal's `error_type` (body or `X-Fal-Error-Type` header)
        self.detail = detail  # the body's `detail` (a string, or FastAPI's list of field errors)


class AuthenticationError(HTTPError):
    """The key was refused (401) or lacks access to the endpoint (403)."""


class UnprocessableEntityError(HTTPError):
    """fal or the model rejected the input (422); `errors` lists `{"loc", "msg", "type"}` per field."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.detail if isinstance(e, dict)] if isinstance(self.detail, list) else []


class NotFoundError(HTTPError):
    """Unknown endpoint or request (404)."""


class RateLimitError(HTTPError):
    """Too many requests (429), after the allowed retries.

    `retry_after` is the wait fal asked for, in seconds (its `Retry-After` header, delta-seconds or an HTTP date,
    read as the retry logic reads it), or None when fal sent none: a caller pacing its own requests can honour it.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        request_id: str | None = None,
        error_type: str | None = None,
        detail: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id, error_type=error_type, detail=detail)
        self.retry_after = retry_after


class ServerError(HTTPError):
    """fal or its ingress failed (5xx), after the allowed retries."""


class StartTimeoutError(HTTPError):
    """The request did not start within `start_timeout` (504 with `X-Fal-Request-Timeout-Type: user`).

    Never retried: the deadline was the caller's own, and a second submit would only wait in the queue again.
    """


class RequestFailedError(HTTPError):
    """The request completed with an error: this is the error its result call returned."""


class ProtocolError(FalError):
    """fal answered 2xx with a body this runtime cannot read (not JSON, or missing required fields), or an answer
    larger than the call's byte cap (`max_bytes`: the connection was closed there)."""


class DownloadError(FalError):
    """An output file could not be fetched whole, or is not what fal said it is; nothing was written
    (`FalFile.save` / `download`)."""


class OutputExistsError(DownloadError, FileExistsError):
    """`save(path, overwrite=False)` found a file at `path`; nothing was downloaded or written. Also a
    `FileExistsError`."""


class WebhookVerificationError(FalError):
    """The delivery is not a genuine, fresh, first-time delivery from fal: reject it (answer 4xx)."""


class RealtimeError(FalError):
    """A realtime app answered with an error (`{"type": "x-fal-error"}` or `{"status": "error"}`).

    `error` is fal's code (`INTERNAL_ERROR`, `Unauthorized`, ...), `reason` its explanation and `payload` the whole
    frame. The connection stays usable: when fal closed the socket after the error, the next `send` reconnects.
    """

    def __init__(self, message: str, *, error: str, reason: str = "", payload: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.reason = reason
        self.payload = dict(payload or {})


class RealtimeConnectionClosed(RealtimeError):
    """The socket closed while an answer was awaited (`code`: the WebSocket close code, 1006 when the connection was
    lost without one, None when there was no open socket). The answer is lost; the next `send` reconnects with a new
    token."""

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message, error="CONNECTION_CLOSED", reason=reason)
        self.code = code


class UnknownEndpointError(FalError, KeyError):
    """`fal_runtime.registry.load()` (and `ENDPOINTS` lookups) found no generated module for an endpoint id. Also a
    `KeyError`, as a mapping lookup raises."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
