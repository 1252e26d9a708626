"""Verify fal's webhook deliveries, then read them as typed events.

fal signs `"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256_hex(raw_body)}"` with **Ed25519** (not HMAC) and publishes
its public keys as a JWKS. A delivery is genuine when any published key verifies the signature, its timestamp is
within `tolerance` seconds of now, and the same signature has not been seen before (a replay). Framework-neutral:
give it the request headers and the raw body, exactly as received.

    verifier = WebhookVerifier()
    event = verifier.verify_and_parse(request.headers, await request.body(), output=flux.Output)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import BaseModel

from fal_runtime._core import base_url
from fal_runtime.errors import FalError

JWKS_PATH = "/.well-known/jwks.json"  # on fal's REST host: https://rest.fal.ai/.well-known/jwks.json
MAX_JWKS_AGE = 24 * 3600.0
TOLERANCE = 300.0
REFRESH_COOLDOWN = 30.0  # seconds between fetches caused by unknown signatures
_HEADERS = ("x-fal-webhook-request-id", "x-fal-webhook-user-id", "x-fal-webhook-timestamp", "x-fal-webhook-signature")

OutputT = TypeVar("OutputT", bound=BaseModel)
Jwks = Mapping[str, Any]


class WebhookVerificationError(FalError):
    """The delivery is not a genuine, fresh, first-time delivery from fal: reject it (answer 4xx)."""


@dataclass(frozen=True)
class WebhookEvent(Generic[OutputT]):
    request_id: str
    gateway_request_id: str | None
    status: Literal["OK", "ERROR"]
    output: OutputT | None  # the endpoint's Output when status is OK and the payload validates
    error: str | None  # fal's error for status ERROR
    payload: Any  # the payload as sent (the output, or the error body)
    payload_error: str | None  # fal could not attach the payload (too large, say)


@dataclass(frozen=True)
class _Delivery:
    """One delivery's signed facts, read from its headers and body."""

    request_id: str
    message: bytes
    signature: bytes
    timestamp: int
    now: float


class WebhookVerifier:
    """Verifies deliveries against fal's JWKS, fetched lazily and cached at most `max_age` seconds.

    When no cached key verifies a signature, fal may have rotated its keys: the JWKS is fetched again, once, unless
    it was fetched less than `refresh_cooldown` seconds ago, so a flood of forged signatures costs fal's JWKS host
    (and this process) at most one fetch per cooldown. fal retries a rejected delivery, so a genuine one signed
    with a brand-new key is accepted on its next attempt.

    `verify` fetches with a blocking call; in an async web framework use `verify_async` (the same checks, with the
    fetch awaited) so a key fetch never blocks the event loop.
    """

    def __init__(
        self,
        jwks_url: str | None = None,
        *,
        max_age: float = MAX_JWKS_AGE,
        tolerance: float = TOLERANCE,
        refresh_cooldown: float = REFRESH_COOLDOWN,
        fetch_jwks: Callable[[str], Jwks] | None = None,
        fetch_jwks_async: Callable[[str], Awaitable[Jwks]] | None = None,
        verify: Any = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`jwks_url` defaults to the JWKS on fal's REST host (FAL_REST_HOST, then rest.fal.ai), as the clients'
        uploads do, so an app pointed at the local server trusts the local server's keys. `fetch_jwks` /
        `fetch_jwks_async` replace the HTTP fetch; `verify` is httpx's TLS option for the default fetch."""
        self.jwks_url = jwks_url or base_url(os.environ.get("FAL_REST_HOST") or "rest.fal.ai") + JWKS_PATH
        self.max_age = min(max_age, MAX_JWKS_AGE)
        self.tolerance = tolerance
        self.refresh_cooldown = refresh_cooldown
        self._fetch = fetch_jwks or (lambda url: _fetch_jwks(url, verify))
        self._fetch_async = fetch_jwks_async or (lambda url: _fetch_jwks_async(url, verify))
        self._clock = clock
        self._keys: list[VerifyKey] = []
        self._fetched_at: float | None = None
        self._seen: dict[str, float] = {}  # signature → when it stops mattering (timestamp + tolerance)
        self._lock = threading.Lock()

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Check one delivery; returns its request id, or raises `WebhookVerificationError` saying why."""
        delivery = self._read(headers, body)
        if self._must_fetch(delivery):
            self._install(self._fetch(self.jwks_url), delivery)
        return self._accept(delivery)

    async def verify_async(self, headers: Mapping[str, str], body: bytes) -> str:
        """`verify`, awaiting the key fetch instead of blocking on it."""
        delivery = self._read(headers, body)
        if self._must_fetch(delivery):
            self._install(await self._fetch_async(self.jwks_url), delivery)
        return self._accept(delivery)

    def parse(self, body: bytes, output: type[OutputT]) -> WebhookEvent[OutputT]:
        """The delivery as a typed event; call after `verify`. A payload that does not match `output` raises
        pydantic's ValidationError, as a result that does not match does in the clients."""
        try:
            data = json.loads(body)
        except ValueError:
            raise WebhookVerificationError("the body is not JSON") from None
        if not isinstance(data, dict) or data.get("status") not in ("OK", "ERROR") or not isinstance(data.get("request_id"), str):
            raise WebhookVerificationError("the body is not a fal webhook delivery")
        ok = data["status"] == "OK" and data.get("payload") is not None
        return WebhookEvent(
            request_id=data["request_id"],
            gateway_request_id=data.get("gateway_request_id"),
            status=data["status"],
            output=output.model_validate(data["payload"]) if ok else None,
            error=data.get("error"),
            payload=data.get("payload"),
            payload_error=data.get("payload_error"),
        )

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes, *, output: type[OutputT]) -> WebhookEvent[OutputT]:
        self.verify(headers, body)
        return self.parse(body, output)

    async def verify_and_parse_async(
        self, headers: Mapping[str, str], body: bytes, *, output: type[OutputT]
    ) -> WebhookEvent[OutputT]:
        await self.verify_async(headers, body)
        return self.parse(body, output)

    # The decisions `verify` and `verify_async` share; only the fetch differs.

    def _read(self, headers: Mapping[str, str], body: bytes) -> _Delivery:
        """The delivery's signed facts, or an error for missing or malformed headers and stale or future times."""
        values = {k.lower(): v for k, v in headers.items()}
        missing = [h for h in _HEADERS if not values.get(h)]
        if missing:
            raise WebhookVerificationError(f"missing webhook header(s): {', '.join(missing)}")
        request_id, user_id, stamp, signature_hex = (values[h] for h in _HEADERS)
        try:
            timestamp = int(stamp)
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise WebhookVerificationError("malformed timestamp or signature header") from None
        now = self._clock()
        if abs(now - timestamp) > self.tolerance:
            raise WebhookVerificationError(f"timestamp is {now - timestamp:+.0f} s from now (allowed: ±{self.tolerance:.0f} s)")
        message = f"{request_id}\n{user_id}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        return _Delivery(request_id, message, signature, timestamp, now)

    def _signed(self, delivery: _Delivery) -> bool:
        with self._lock:
            keys = list(self._keys)
        return any(_verifies(key, delivery.message, delivery.signature) for key in keys)

    def _must_fetch(self, delivery: _Delivery) -> bool:
        """Whether the JWKS must be fetched before this delivery can be decided: none cached, the cache too old, or
        an unknown signature and no fetch within the cooldown."""
        with self._lock:
            fetched_at = self._fetched_at
        if fetched_at is None or delivery.now - fetched_at > self.max_age:
            return True
        return not self._signed(delivery) and delivery.now - fetched_at >= self.refresh_cooldown

    def _install(self, jwks: Jwks, delivery: _Delivery) -> None:
        keys = _keys(jwks)
        with self._lock:
            self._keys, self._fetched_at = keys, delivery.now

    def _accept(self, delivery: _Delivery) -> str:
        if not self._signed(delivery):
            raise WebhookVerificationError("signature does not verify against any of fal's published keys")
        with self._lock:
            now = delivery.now
            self._seen = {s: until for s, until in self._seen.items() if until > now}
            seen = delivery.signature.hex()  # the bytes, not the header: `AB..` and `ab..` are one signature
            if seen in self._seen:
                raise WebhookVerificationError("this delivery was already accepted (a replay)")
            self._seen[seen] = delivery.timestamp + self.tolerance
        return delivery.request_id


def _verifies(key: VerifyKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def _keys(jwks: Jwks) -> list[VerifyKey]:
    keys = []
    for entry in jwks.get("keys", []) if isinstance(jwks, Mapping) else []:
        if isinstance(entry, Mapping) and entry.get("kty") == "OKP" and entry.get("crv") == "Ed25519" and isinstance(entry.get("x"), str):
            try:
                raw = base64.urlsafe_b64decode(entry["x"] + "=" * (-len(entry["x"]) % 4))
                keys.append(VerifyKey(raw))
            except (binascii.Error, ValueError):
                continue
    return keys


def _fetch_jwks(url: str, verify: Any) -> Jwks:
    import httpx

    try:
        return _jwks_of(httpx.get(url, timeout=10.0, verify=verify))
    except (httpx.HTTPError, ValueError) as exc:
        raise _unreachable(url, exc) from None


async def _fetch_jwks_async(url: str, verify: Any) -> Jwks:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=10.0, verify=verify) as http:
            return _jwks_of(await http.get(url))
    except (httpx.HTTPError, ValueError) as exc:
        raise _unreachable(url, exc) from None


def _jwks_of(response: Any) -> Jwks:
    response.raise_for_status()
    data: Jwks = response.json()
    return data


def _unreachable(url: str, exc: Exception) -> WebhookVerificationError:
    return WebhookVerificationError(f"cannot fetch fal's webhook keys from {url}: {type(exc).__name__}")
