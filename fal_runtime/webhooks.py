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
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import BaseModel

from fal_runtime.errors import FalError

FAL_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
MAX_JWKS_AGE = 24 * 3600.0
TOLERANCE = 300.0
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


class WebhookVerifier:
    """Verifies deliveries against fal's JWKS, fetched lazily, cached at most `max_age` seconds and refreshed
    once when no cached key verifies a signature (fal rotated its keys)."""

    def __init__(
        self,
        jwks_url: str = FAL_JWKS_URL,
        *,
        max_age: float = MAX_JWKS_AGE,
        tolerance: float = TOLERANCE,
        fetch_jwks: Callable[[str], Jwks] | None = None,
        verify: Any = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jwks_url = jwks_url
        self.max_age = min(max_age, MAX_JWKS_AGE)
        self.tolerance = tolerance
        self._fetch = fetch_jwks or (lambda url: _fetch_jwks(url, verify))
        self._clock = clock
        self._keys: list[VerifyKey] = []
        self._fetched_at: float | None = None
        self._seen: dict[str, float] = {}  # signature → when it stops mattering (timestamp + tolerance)
        self._lock = threading.Lock()

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Check one delivery; returns its request id, or raises `WebhookVerificationError` saying why."""
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
        keys, fresh = self._current_keys(now)
        if not any(_verifies(key, message, signature) for key in keys):
            # An unknown signature may mean fal rotated its keys: refresh once (unless just fetched), then decide.
            if fresh or not any(_verifies(key, message, signature) for key in self._current_keys(now, refresh=True)[0]):
                raise WebhookVerificationError("signature does not verify against any of fal's published keys")
        with self._lock:
            self._seen = {s: until for s, until in self._seen.items() if until > now}
            if signature_hex in self._seen:
                raise WebhookVerificationError("this delivery was already accepted (a replay)")
            self._seen[signature_hex] = timestamp + self.tolerance
        return request_id

    def parse(self, body: bytes, output: type[OutputT]) -> WebhookEvent[OutputT]:
        """The delivery as a typed event; call after `verify`."""
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

    def _current_keys(self, now: float, *, refresh: bool = False) -> tuple[list[VerifyKey], bool]:
        """The cached keys (fetched first when stale or asked to), and whether they were fetched just now."""
        with self._lock:
            fetch = refresh or self._fetched_at is None or now - self._fetched_at > self.max_age
            if fetch:
                self._keys = _keys(self._fetch(self.jwks_url))
                self._fetched_at = now
            return list(self._keys), fetch


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
        response = httpx.get(url, timeout=10.0, verify=verify)
        response.raise_for_status()
        data: Jwks = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise WebhookVerificationError(f"cannot fetch fal's webhook keys from {url}: {type(exc).__name__}") from None
    return data
