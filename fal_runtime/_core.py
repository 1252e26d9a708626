"""The sans-IO core: every decision of fal's queue protocol, shared by the sync and async clients.

URLs, headers, credentials, response parsing, error mapping, retry decisions and backoff live here as plain
functions of their inputs (no httpx, no sockets, no clock or randomness that a test cannot pass in). `Client` and
`AsyncClient` only move bytes: they build a `RequestSpec` here, send it, turn what came back into a `Reply` or an
`errors.TransportError`, and ask `Core` what it means. So the two clients cannot drift apart, and every rule can be
tested without a network.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from fal_runtime import errors
from fal_runtime._status import CancelOutcome, Status, parse_status

Operation = Literal[
    "submit", "run", "stream", "status", "result", "failed_result", "cancel", "upload", "download", "read", "write"
]
"""What a request is for; the retry rules depend on it. `failed_result` is the result of a request whose status
said COMPLETED with an error: its 5xx from fal is the stored outcome, not a transient failure. `upload` covers the
storage token and every CDN request: repeating one at worst stores an unused copy of a file. `download` is the GET of
an output file, as idempotent as a status call. `read` and `write` are requests that are not endpoint calls
(`Client.api_request`: the Platform API, realtime tokens): a read changes nothing and is retried like a status call;
a write may change something and is sent again only when it provably never arrived (nothing was sent, or 429)."""

_CREATES_WORK: frozenset[Operation] = frozenset({"submit", "run", "stream"})
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_INGRESS_STATUSES = frozenset({502, 503, 504})
USER_AGENT = "fal-typed/0.1"

# fal-client 1.0.3's `_BACKUP_DOMAINS`: when a connection to one of these hosts cannot be established, the same
# request goes once to its twin on fal's second domain. Exact host names only: a host configured by the user (a
# proxy, a local server) never falls back anywhere.
BACKUP_HOSTS: Mapping[str, str] = {"fal.run": "falrun.com", "queue.fal.run": "queue.falrun.com"}
BACKUP_CONNECT_TIMEOUT = 5.0  # fal-client's cap on the connect timeout to a mapped host, so falling back is quick
_FAL_DOMAINS = ("fal.run", "fal.ai", "falrun.com")
API_HOST_ENV = "FAL_API_HOST"  # fal's Platform API host, read at each call
DEFAULT_API_HOST = "api.fal.ai"
BILLABLE_UNITS_HEADER = "x-fal-billable-units"  # on a request's result: what fal bills for it, in the endpoint's unit
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
Auth = Literal["required", "optional", "none"]
"""Whether a request that is not an endpoint call carries the key: `required` (MissingCredentialsError before
anything is sent when there is none), `optional` (sent when one is configured) or `none`. Either way the key goes only
to fal's hosts and the client's configured ones (`Core.headers`)."""

LIFECYCLE_HEADER = "X-Fal-Object-Lifecycle-Preference"
UPLOAD_LIFECYCLE_HEADER = "X-Fal-Object-Lifecycle"  # fal-client sends both on a CDN upload
_LIFETIME_NAMES: Mapping[str, int | None] = {  # fal-client's and fal-js's `expires_in` names
    "never": None,
    "immediate": 60,  # fal treats 0 as "no expiration", so fal's clients ask for a minute
    "1h": 3600,
    "1d": 86400,
    "7d": 604800,
    "30d": 2592000,
    "1y": 31536000,
}


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request, before auth: `Core.headers` adds the key at send time so a spec never holds it."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    params: Mapping[str, str | Sequence[str]] = field(default_factory=dict)  # a sequence: a repeated parameter
    json: Any = None
    timeout: float | None = None  # the caller's per-call limit (`timeout` option), on top of the client's
    content: bytes | None = None  # a raw body (uploads), instead of `json`
    credentials: bool = True  # False: never send the fal key (CDN requests carry their own token)


@dataclass(frozen=True)
class Reply:
    """An HTTP response as the core sees it: status, headers with lower-case names, and the body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def from_fal(self) -> bool:
        """fal's own responses carry `x-fal-request-id`; an error without it came from the ingress in front."""
        return "x-fal-request-id" in self.headers

    def json(self) -> Any:
        return json.loads(self.content)


ApiReply = Reply
"""What `Client.api_request` returns (exported as `fal_runtime.ApiReply`): `status_code`, `headers` (lower-case names),
`content`, `ok`, `json()`."""


@dataclass(frozen=True)
class HandleData:
    """Where a submitted request lives. Status, result and cancel sit under `owner/alias`, not the full id."""

    endpoint_id: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter around the nominal delay, bounded in count and in total time.

    Delay before retry n (1-based) is `min(base_delay * 2**(n-1), max_delay) * uniform(0.5, 1.5)`, unless the server
    sent `Retry-After`, which wins but is capped at `max_retry_after` (a server asking for an hour gets at most that).
    No retry is started if it would begin later than `total` seconds after the first attempt.

    What cannot heal is never retried: a server certificate that fails verification (untrusted issuer, expired,
    host-name mismatch) and configuration errors (bad URL scheme, proxy) are raised at once. A refused connection
    (ECONNREFUSED: the host answered that nothing listens on the port, a wrong port or a server that is down) is
    retried at most `refused_retries` times (default 2: with the default delays, within 2.25 s), so a refused
    local server is reported in about a second, while a server restarting behind its address gets a chance to come
    back. Other connect failures (DNS, unreachable network, reset, connect timeout) and every other transient failure
    get all `max_retries`.
    """

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 10.0
    max_retry_after: float = 60.0
    total: float = 120.0
    refused_retries: int = 2


NO_RETRY = RetryPolicy(max_retries=0)


def app_root(endpoint_id: str) -> str:
    """`fal-ai/flux/dev` → `fal-ai/flux`: the part of an endpoint id that status, result and cancel live under."""
    parts = [p for p in endpoint_id.split("/") if p]
    if len(parts) < 2:
        raise ValueError(f"endpoint id {endpoint_id!r} is not of the form owner/alias[/path]")
    return "/".join(parts[:2])


def base_url(host: str) -> str:
    """A host setting as a base URL: `queue.fal.run`, `127.0.0.1:8443` or a full `http(s)://` URL."""
    host = host.strip().rstrip("/")
    return host if host.startswith(("https://", "http://")) else f"https://{host}"


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


def is_fal_origin(url: str) -> bool:
    """fal's own API hosts: `fal.run`, `fal.ai`, `falrun.com` (fal's backup domain) and their subdomains, over HTTPS."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and any(host == d or host.endswith("." + d) for d in _FAL_DOMAINS)


def backup_url(url: str) -> str | None:
    """The same URL on fal's backup domain (`queue.fal.run` → `queue.falrun.com`, `fal.run` → `falrun.com`), or None
    when the host is not one fal-client maps. HTTPS on the default port only: nothing else is fal's."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or parts.port not in (None, 443) or parts.username or parts.password:
        return None
    backup = BACKUP_HOSTS.get(host)
    return None if backup is None else parts._replace(netloc=backup).geturl()


def uses_backup_hosts(url: str) -> bool:
    """Whether `url` is on a host with a backup, or on a backup host (their connect timeout is capped)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in BACKUP_HOSTS or host in BACKUP_HOSTS.values()


def lifetime_seconds(value: Any, name: str = "object_lifetime") -> int | None:
    """An object lifetime as fal's `expiration_duration_seconds`; None for "never" (fal's default retention, no
    header). ValueError/TypeError naming the option for anything fal's clients refuse, before any request."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name} must be a number of seconds or one of {sorted(_LIFETIME_NAMES)}, not {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{name} must be more than 0 seconds (fal reads 0 as 'never expire'), not {value}")
        return value
    if value not in _LIFETIME_NAMES:
        raise ValueError(f"{name} must be a number of seconds or one of {sorted(_LIFETIME_NAMES)}, not {value!r}")
    return _LIFETIME_NAMES[value]


def lifecycle_headers(seconds: int | None, *, upload: bool = False) -> dict[str, str]:
    """The object-lifecycle header(s) for a lifetime (none for None). Requests carry
    `X-Fal-Object-Lifecycle-Preference` (fal-js `buildObjectLifecycleHeaders`); a CDN upload carries it and
    `X-Fal-Object-Lifecycle` with the same JSON (fal-client `_object_lifecycle_headers`)."""
    if seconds is None:
        return {}
    value = json.dumps({"expiration_duration_seconds": seconds})
    return {LIFECYCLE_HEADER: value, **({UPLOAD_LIFECYCLE_HEADER: value} if upload else {})}


def resolve_key(explicit: str | None, environ: Mapping[str, str]) -> str:
    """The API key: `key=` if given, else FAL_KEY, else FAL_KEY_ID:FAL_KEY_SECRET."""
    key = explicit or environ.get("FAL_KEY")
    if not key:
        key_id, secret = environ.get("FAL_KEY_ID"), environ.get("FAL_KEY_SECRET")
        if key_id and secret:
            key = f"{key_id}:{secret}"
    if not key:
        raise errors.MissingCredentialsError(
            "no fal API key: pass Client(key=...) or set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET)"
        )
    return key


def redact(text: str, secret: str | None) -> str:
    """`text` with the key (and its secret half, for id:secret keys) replaced: servers sometimes echo credentials.

    The whole key goes first, so an echo of it leaves no trace of its id either. Redact before cutting a text short:
    a cut through the key would leave a piece of it that no longer matches.
    """
    if not secret:
        return text
    for part in sorted({secret, *secret.split(":")[1:]}, key=len, reverse=True):
        if len(part) >= 8:
            text = text.replace(part, "[redacted]")
    return text


def redact_json(value: Any, secret: str | None) -> Any:
    """A JSON value with the key redacted from every string in it, keys of objects included (see `redact`)."""
    if isinstance(value, str):
        return redact(value, secret)
    if isinstance(value, dict):
        return {redact_json(k, secret): redact_json(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, secret) for v in value]
    return value


def retry_after(value: str | None, *, now_epoch: float) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, when.timestamp() - now_epoch)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def is_user_start_timeout(reply: Reply) -> bool:
    return reply.status_code == 504 and reply.headers.get("x-fal-request-timeout-type", "").lower() == "user"


def is_event_stream(reply: Reply) -> bool:
    return reply.headers.get("content-type", "").partition(";")[0].strip().lower() == "text/event-stream"


class Core:
    """The protocol for one client configuration: hosts, key and retry policy.

    The key is resolved at the first request (`auth_headers`), not here, so a client can be built at import time
    and the environment set later; it is never part of a repr, a `RequestSpec` or an error message.
    """

    def __init__(
        self,
        *,
        key: str | None = None,
        queue_host: str | None = None,
        run_host: str | None = None,
        rest_host: str | None = None,
        retry: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
        object_lifetime: Any = None,
        backup_hosts: bool = False,
    ) -> None:
        self.object_lifetime = lifetime_seconds(object_lifetime)  # the client-wide default, checked now
        self.backup_hosts = backup_hosts
        self._environ = os.environ if environ is None else environ
        self._explicit_key = key
        self._key: str | None = None
        self.queue_base = base_url(queue_host or self._environ.get("FAL_QUEUE_RUN_HOST") or "queue.fal.run")
        self.run_base = base_url(run_host or self._environ.get("FAL_RUN_HOST") or "fal.run")
        self.rest_base = base_url(rest_host or self._environ.get("FAL_REST_HOST") or "rest.fal.ai")
        self._key_origins = {origin(b) for b in (self.queue_base, self.run_base, self.rest_base)}
        self.retry = retry or RetryPolicy()

    def __repr__(self) -> str:
        return f"Core(queue={self.queue_base!r}, run={self.run_base!r})"

    def auth_headers(self) -> dict[str, str]:
        if self._key is None:
            self._key = resolve_key(self._explicit_key, self._environ)
        return {"Authorization": f"Key {self._key}", "User-Agent": USER_AGENT}

    def headers(self, spec: RequestSpec) -> dict[str, str]:
        """The headers to send: the key only to the configured hosts or fal's own, never with a CDN token, so a URL
        from a response (a status URL, a token's upload URL) cannot lead the key anywhere else."""
        if spec.credentials and (origin(spec.url) in self._key_origins or is_fal_origin(spec.url)):
            return {**self.auth_headers(), **spec.headers}
        return {"User-Agent": USER_AGENT, **spec.headers}

    def _secret(self) -> str | None:
        """The key to redact: resolved here if no request has needed it yet (an error may come before one)."""
        if self._key is None:
            try:
                return resolve_key(self._explicit_key, self._environ)
            except errors.MissingCredentialsError:
                return None
        return self._key

    def redact(self, text: str) -> str:
        """`text` from a server, made fit for an exception or a log. Cut it short only after this."""
        return redact(text, self._secret())

    def redact_json(self, value: Any) -> Any:
        return redact_json(value, self._secret())

    # Requests.

    def backup(self, spec: RequestSpec) -> RequestSpec | None:
        """`spec` on fal's backup domain, when backups are on and its host has one (see `BACKUP_HOSTS`)."""
        url = backup_url(spec.url) if self.backup_hosts else None
        return None if url is None else dataclasses.replace(spec, url=url)

    def _lifetime_headers(self, options: Mapping[str, Any]) -> dict[str, str]:
        if "object_lifetime" in options:
            return lifecycle_headers(lifetime_seconds(options["object_lifetime"]))
        return lifecycle_headers(self.object_lifetime)

    def submit(self, endpoint_id: str, payload: dict[str, Any], options: Mapping[str, Any]) -> RequestSpec:
        params = {"fal_webhook": str(options["webhook_url"])} if options.get("webhook_url") else {}
        headers = {**option_headers(options), **self._lifetime_headers(options)}
        return RequestSpec("POST", f"{self.queue_base}/{_path(endpoint_id)}", headers, params, payload)

    def run(self, endpoint_id: str, payload: dict[str, Any], options: Mapping[str, Any]) -> RequestSpec:
        if options.get("priority") is not None:
            raise TypeError("priority orders fal's queue: it applies to submit and subscribe, not run (fal.run)")
        headers = {**option_headers(options), **self._lifetime_headers(options)}
        return RequestSpec(
            "POST", f"{self.run_base}/{_path(endpoint_id)}", headers, {}, payload, options.get("timeout")
        )

    def stream(self, endpoint_id: str, payload: dict[str, Any], options: Mapping[str, Any]) -> RequestSpec:
        headers = option_headers(options)
        url = f"{self.run_base}/{_path(endpoint_id)}/stream"
        return RequestSpec("POST", url, headers, {}, payload, options.get("timeout"))

    def status(self, handle: HandleData, *, logs: bool) -> RequestSpec:
        return RequestSpec("GET", handle.status_url, {}, {"logs": "1" if logs else "0"})

    def status_stream(self, handle: HandleData, *, logs: bool) -> RequestSpec:
        return RequestSpec("GET", f"{handle.status_url}/stream", {}, {"logs": "1" if logs else "0"})

    def result(self, handle: HandleData) -> RequestSpec:
        return RequestSpec("GET", handle.response_url)

    def cancel(self, handle: HandleData) -> RequestSpec:
        return RequestSpec("PUT", handle.cancel_url)

    def api_url(self, path_or_url: str) -> str:
        """A full http(s) URL as is; a path (`/models`) on fal's Platform API, `https://{FAL_API_HOST}/v1` + path
        (`FAL_API_HOST` read now, default `api.fal.ai`)."""
        if path_or_url.startswith(("https://", "http://")):
            return path_or_url
        if not path_or_url.startswith("/"):
            raise ValueError(f"expected an http(s) URL or a path starting with '/', not {path_or_url!r}")
        return f"{base_url(self._environ.get(API_HOST_ENV) or DEFAULT_API_HOST)}/v1{path_or_url}"

    def api_request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str | Sequence[str]] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        auth: Auth = "required",
        timeout: float | None = None,
    ) -> tuple[Operation, RequestSpec]:
        """A request that is not an endpoint call, and the retry rules it is sent under: `read` for GET, HEAD, OPTIONS,
        a request carrying an `Idempotency-Key` header, or `idempotent=True`; `write` otherwise (or for
        `idempotent=False`). With `auth="required"` and no key, MissingCredentialsError now, before anything is sent."""
        method = method.upper()
        sent = {str(k): str(v) for k, v in (headers or {}).items()}
        if idempotent is None:
            idempotent = method in _READS or any(k.lower() == "idempotency-key" for k in sent)
        if auth not in ("required", "optional", "none"):
            raise ValueError(f"auth must be 'required', 'optional' or 'none', not {auth!r}")
        if auth == "required":
            self.auth_headers()
        credentials = auth == "required" or (auth == "optional" and self.has_key())
        spec = RequestSpec(
            method, self.api_url(path_or_url), sent, dict(params or {}), json, timeout, content, credentials
        )
        return ("read" if idempotent else "write"), spec

    def has_key(self) -> bool:
        """Whether a key is configured (`key=`, FAL_KEY, or FAL_KEY_ID and FAL_KEY_SECRET)."""
        try:
            self.auth_headers()
        except errors.MissingCredentialsError:
            return False
        return True

    def handle_for(self, endpoint_id: str, request_id: str) -> HandleData:
        """Rebuild a handle from the endpoint id and request id alone (for a request submitted earlier)."""
        base = f"{self.queue_base}/{_path(app_root(endpoint_id))}/requests/{quote(request_id, safe='')}"
        return HandleData(endpoint_id, request_id, f"{base}/status", base, f"{base}/cancel")

    # Responses. Each takes the final `Reply` (after retries) and either returns its meaning or raises.

    def submitted(self, endpoint_id: str, reply: Reply) -> HandleData:
        """The handle of a successful submit. Uses the URLs fal returned; builds them only when fal left one out."""
        data = self.json_of(reply)
        if not isinstance(data, dict) or not isinstance(data.get("request_id"), str):
            raise errors.ProtocolError(f"unexpected submit response from fal: {self.redact(str(data))[:200]}")
        if self.redact(data["request_id"]) != data["request_id"]:
            # A request id ends up in handles, URLs, logs and timeout errors: one holding the key cannot be used.
            raise errors.ProtocolError("fal answered submit with a request id that contains the API key")
        fallback = self.handle_for(endpoint_id, data["request_id"])
        return HandleData(
            endpoint_id,
            data["request_id"],
            _str_or(data.get("status_url"), fallback.status_url),
            _str_or(data.get("response_url"), fallback.response_url),
            _str_or(data.get("cancel_url"), fallback.cancel_url),
        )

    @staticmethod
    def billable_units(reply: Reply) -> float | None:
        """The `x-fal-billable-units` fal sent with a result (a finite number >= 0), else None: absent or unreadable,
        it is information, never a reason to fail the result."""
        value = reply.headers.get(BILLABLE_UNITS_HEADER)
        try:
            units = float(value) if value is not None else None
        except ValueError:
            return None
        return units + 0.0 if units is not None and math.isfinite(units) and units >= 0 else None

    def parsed_status(self, reply: Reply) -> Status:
        return parse_status(self.json_of(reply), redact=self.redact)

    def stream_event(self, data: str) -> dict[str, Any]:
        """One event of a streaming endpoint: a JSON object (the model's partial output)."""
        try:
            value, readable = json.loads(data), True
        except ValueError:
            value, readable = None, False  # raised below, outside the `except`: the decode error holds `data`
        if not readable:
            raise errors.ProtocolError(f"unreadable stream event: {self.redact(data)[:200]}")
        if not isinstance(value, dict):
            raise errors.ProtocolError(f"unexpected stream event: {self.redact(data)[:200]}")
        return value

    def output_of(self, reply: Reply) -> Any:
        """The output JSON of a result or run call; the error the request completed with, raised, otherwise."""
        if not reply.ok:
            raise self.error_for(reply, outcome=True)
        return self.json_of(reply)

    def cancel_outcome(self, reply: Reply) -> CancelOutcome:
        """fal answers cancel with a `status` field; third-party code also sees 400/404 carrying the meaning."""
        try:
            state = reply.json().get("status")
        except (ValueError, AttributeError):
            state = None
        if state in ("OK", "CANCELLATION_REQUESTED") and reply.ok:
            return "requested"
        if state == "ALREADY_COMPLETED" or (state is None and reply.status_code == 400):
            return "already_completed"
        if state == "NOT_FOUND" or (state is None and reply.status_code == 404):
            return "not_found"
        if reply.ok:
            return "requested"
        raise self.error_for(reply)

    def json_of(self, reply: Reply) -> Any:
        """The body of a 2xx reply as JSON; an error status raises the mapped error."""
        if not reply.ok:
            raise self.error_for(reply)
        try:
            return reply.json()
        except (ValueError, UnicodeDecodeError):
            pass  # raised below, outside the `except`: the decode error holds the body, unredacted, as its `doc`
        raise errors.ProtocolError(
            f"fal answered HTTP {reply.status_code} with a body that is not JSON: {self.redact(_text(reply))[:200]}"
        )

    def error_for(self, reply: Reply, *, outcome: bool = False, now_epoch: float | None = None) -> errors.HTTPError:
        """Map an error reply to the most specific error of the tree.

        `outcome` marks the reply of a result call: a non-422 error there is what the request completed with
        (`RequestFailedError`), not a failure of the result call itself. A 422 is an `UnprocessableEntityError`
        either way, so field errors are found in one place.

        Everything taken from the reply (message, `detail`, `error_type`, `request_id`) is redacted first: an error
        body may echo the request's `Authorization` header.
        """
        code = reply.status_code
        request_id = self._header(reply, "x-fal-request-id")
        try:
            body: Any = self.redact_json(reply.json())
        except (ValueError, UnicodeDecodeError):
            body = self.redact(_text(reply))[:500]
        platform = _platform_error(body)
        if platform is not None:  # the Platform API's `{"error": {"type", "message", "docs_url", "request_id"}}`
            detail: Any = platform.get("message") or body
            error_type = platform.get("type") if isinstance(platform.get("type"), str) else None
            if request_id is None and isinstance(platform.get("request_id"), str):
                request_id = platform["request_id"]
        else:
            detail = body.get("detail", body) if isinstance(body, dict) else body
            error_type = body.get("error_type") if isinstance(body, dict) else None
        error_type = error_type or self._header(reply, "x-fal-error-type")
        message = f"HTTP {code}"
        if error_type:
            message += f" ({error_type})"
        if detail:
            message += f": {describe_detail(detail)}"
        if request_id:
            message += f" [request {request_id}]"
        cls: type[errors.HTTPError]
        if code == 422:
            cls = errors.UnprocessableEntityError
        elif outcome and code != 404:
            cls = errors.RequestFailedError
        elif code in (401, 403):
            cls = errors.AuthenticationError
        elif code == 404:
            cls = errors.NotFoundError
        elif code == 429:
            cls = errors.RateLimitError
        elif is_user_start_timeout(reply):
            cls = errors.StartTimeoutError
        elif code >= 500:
            cls = errors.ServerError
        else:
            cls = errors.HTTPError
        message = self.redact(message)
        if cls is errors.RateLimitError:
            now = time.time() if now_epoch is None else now_epoch
            asked = retry_after(reply.headers.get("retry-after"), now_epoch=now)
            return errors.RateLimitError(
                message,
                status_code=code,
                request_id=request_id,
                error_type=error_type,
                detail=detail,
                retry_after=asked,
            )
        return cls(message, status_code=code, request_id=request_id, error_type=error_type, detail=detail)

    def _header(self, reply: Reply, name: str) -> str | None:
        value = reply.headers.get(name)
        return None if value is None else self.redact(value)

    # Retries.

    def retry_delay(
        self,
        op: Operation,
        attempt: int,
        elapsed: float,
        *,
        reply: Reply | None = None,
        failure: errors.TransportError | None = None,
        now_epoch: float,
        remaining: float | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before sending attempt `attempt + 1` again, or None to stop (return the reply / raise).

        `attempt` counts attempts made so far (1 after the first), `elapsed` the seconds since the first began,
        `remaining` the caller's own deadline (client_timeout), if any.

        Status, result and cancel change nothing on the server, so they are repeated after any transient failure:
        a transport error, 408, 429 or 5xx. Submit, run and stream create billable work, so they are repeated only
        when the first attempt provably never started any: the connection was never established (nothing was sent),
        fal answered 429 (it refused the work), or a 502/503/504 came back without `x-fal-request-id` (the ingress
        answered; fal never saw the request). A read timeout or a reset after sending is ambiguous — the job may be
        running — so it is raised, never resent: a duplicate job costs money and the caller may hold a webhook for
        the first. A user start-timeout 504 (`X-Fal-Request-Timeout-Type: user`) is the caller's own deadline and is
        never repeated for any operation. A failure that is not `transient` (a certificate that fails verification,
        a configuration error) is never repeated, and a refused connection at most `refused_retries` times.
        """
        if not self.should_retry(op, reply=reply, failure=failure):
            return None
        assert reply is not None or failure is not None  # should_retry is False for neither
        if attempt > self.retry.max_retries:
            return None
        if isinstance(failure, errors.APIConnectionError) and failure.refused and attempt > self.retry.refused_retries:
            return None
        asked = retry_after(reply.headers.get("retry-after"), now_epoch=now_epoch) if reply is not None else None
        if asked is not None:
            delay = min(asked, self.retry.max_retry_after)
        else:
            nominal = min(self.retry.base_delay * 2 ** (attempt - 1), self.retry.max_delay)
            delay = nominal * (0.5 + jitter())
        if elapsed + delay > self.retry.total or (remaining is not None and delay >= remaining):
            return None
        return delay

    @staticmethod
    def should_retry(
        op: Operation, *, reply: Reply | None = None, failure: errors.TransportError | None = None
    ) -> bool:
        """Whether this outcome of `op` may be sent again at all (see `retry_delay` for the rule)."""
        if failure is not None:
            if not failure.transient:
                return False
            return not failure.request_sent if op in _CREATES_WORK or op == "write" else True
        if reply is None or reply.status_code not in _TRANSIENT_STATUSES or is_user_start_timeout(reply):
            return False
        if op == "write":  # no queue ingress to tell apart: only a refusal proves nothing happened
            return reply.status_code == 429
        if op in _CREATES_WORK:
            return reply.status_code == 429 or (reply.status_code in _INGRESS_STATUSES and not reply.from_fal)
        if op == "failed_result":
            return reply.status_code in (408, 429) or not reply.from_fal
        return True


def option_headers(options: Mapping[str, Any]) -> dict[str, str]:
    """The headers that carry per-call options; `headers=` comes first so an option set explicitly wins."""
    headers = {str(k): str(v) for k, v in (options.get("headers") or {}).items()}
    if options.get("priority"):
        if options["priority"] not in ("normal", "low"):
            raise ValueError(f"priority must be 'normal' or 'low', not {options['priority']!r}")
        headers["X-Fal-Queue-Priority"] = str(options["priority"])
    if options.get("hint"):
        headers["X-Fal-Runner-Hint"] = str(options["hint"])
    if options.get("start_timeout") is not None:
        seconds = float(options["start_timeout"])
        if not seconds > 1:  # fal rejects 1 s or less; also catches NaN
            raise ValueError(f"start_timeout must be more than 1 second, not {options['start_timeout']!r}")
        headers["X-Fal-Request-Timeout"] = f"{seconds:g}"
    return headers


def describe_detail(detail: Any) -> str:
    """fal's `detail` for a message: FastAPI field errors as `loc: msg; ...`, anything else as text (truncated)."""
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        if len(detail) > 5:
            parts.append(f"... {len(detail) - 5} more")
        return "; ".join(parts)
    return str(detail)[:500]


def _platform_error(body: Any) -> dict[str, Any] | None:
    """The `error` object of a Platform API error body (`{"error": {"type", "message", ...}}`), if it is one."""
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) and isinstance(error.get("message"), str) else None


def _path(endpoint_id: str) -> str:
    return "/".join(quote(p, safe="") for p in endpoint_id.split("/") if p)


def _str_or(value: Any, fallback: str) -> str:
    return value if isinstance(value, str) and value else fallback


def _text(reply: Reply) -> str:
    return reply.content.decode("utf-8", "replace")
