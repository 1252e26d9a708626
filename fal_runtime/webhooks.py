"""Verify fal's webhook deliveries, then read them as typed events.

fal signs `"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256_hex(raw_body)}"` with **Ed25519** (not HMAC) and publishes
its public keys as a JWKS. A delivery is genuine when any published key verifies the signature, its timestamp is
within `tolerance` seconds of now, and the same signature has not been seen before (a replay). Framework-neutral:
give it the request headers and the raw body, exactly as received.

    verifier = WebhookVerifier()
    event = verifier.verify_and_parse(request.headers, await request.body(), output=flux.Output)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import BaseModel

from fal_runtime._core import base_url
from fal_runtime.errors import WebhookVerificationError as WebhookVerificationError  # importable from here too

JWKS_PATH = "/.well-known/jwks.json"  # on fal's REST host: https://rest.fal.ai/.well-known/jwks.json
MAX_JWKS_AGE = 24 * 3600.0
TOLERANCE = 300.0
REFRESH_COOLDOWN = 30.0  # seconds between fetch attempts caused by unknown signatures or failed fetches
FETCH_DEADLINE = 10.0  # seconds for a whole JWKS fetch: connecting, the reply's headers and all of its body
MAX_JWKS_BYTES = 256 * 1024  # fal's JWKS is well under a kilobyte: a reply this large is not one
_MAX_TIMESTAMP_DIGITS = 12  # unix seconds until the year 33658; more is not a timestamp, and overflows a float
_HEADERS = ("x-fal-webhook-request-id", "x-fal-webhook-user-id", "x-fal-webhook-timestamp", "x-fal-webhook-signature")

OutputT = TypeVar("OutputT", bound=BaseModel)
Jwks = Mapping[str, Any]


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
    (and this process) at most one fetch per cooldown. A failed fetch counts too (else a JWKS host that is down
    would be asked once per forged delivery), and only one fetch is ever in flight: concurrent deliveries wait for
    it and share its result. fal retries a rejected delivery, so a genuine one signed with a brand-new key, or
    refused while the keys could not be fetched, is accepted on a later attempt.

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
        fetch_deadline: float = FETCH_DEADLINE,
        max_jwks_bytes: int = MAX_JWKS_BYTES,
    ) -> None:
        """`jwks_url` defaults to the JWKS on fal's REST host (FAL_REST_HOST, then rest.fal.ai), as the clients'
        uploads do, so an app pointed at the local server trusts the local server's keys. `fetch_jwks` /
        `fetch_jwks_async` replace the HTTP fetch; `verify` is httpx's TLS option for the default fetch, which gives
        up after `fetch_deadline` seconds or `max_jwks_bytes` bytes (a hostile or broken host could otherwise hold
        it, and the deliveries waiting for it, for minutes, or fill memory). A delivery waiting for another's fetch
        gives up after `fetch_deadline` too."""
        self.jwks_url = jwks_url or base_url(os.environ.get("FAL_REST_HOST") or "rest.fal.ai") + JWKS_PATH
        self.max_age = min(max_age, MAX_JWKS_AGE)
        self.tolerance = tolerance
        self.refresh_cooldown = refresh_cooldown
        self.fetch_deadline = fetch_deadline
        self.max_jwks_bytes = max_jwks_bytes
        self._fetch = fetch_jwks or (lambda url: _fetch_jwks(url, verify, fetch_deadline, max_jwks_bytes))
        self._fetch_async = fetch_jwks_async or (
            lambda url: _fetch_jwks_async(url, verify, fetch_deadline, max_jwks_bytes)
        )
        self._clock = clock
        self._keys: list[VerifyKey] = []
        self._fetched_at: float | None = None  # the last fetch that gave keys
        self._attempted_at: float | None = None  # the last fetch, whatever came of it: the cooldown runs from here
        self._failure: str | None = None  # why the last fetch gave no keys, while it is the last one
        self._attempts = 0  # fetches begun, so a caller can tell that one settled while it was deciding
        self._inflight: Future[None] | None = None  # done when the fetch in flight has settled
        self._seen: dict[str, int] = {}  # signature → its delivery's timestamp, while the timestamp is acceptable
        self._forgotten = float("-inf")  # the newest timestamp dropped from `_seen`: older ones cannot be checked
        self._lock = threading.Lock()

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Check one delivery; returns its request id, or raises `WebhookVerificationError` saying why."""
        delivery = self._read(headers, body)
        begun = self._begin(delivery)
        if begun is not None:
            attempt, mine = begun
            if mine:
                outcome: list[VerifyKey] | str = "the key fetch was interrupted"
                try:
                    outcome = _keys(self._fetch(self.jwks_url), self.jwks_url)
                except Exception as exc:
                    outcome = self._reason(exc)
                finally:
                    self._settle(attempt, delivery, outcome)
            else:
                wait([attempt], timeout=self.fetch_deadline)  # a fetch past its deadline is given up on, not waited for
        return self._accept(delivery)

    async def verify_async(self, headers: Mapping[str, str], body: bytes) -> str:
        """`verify`, awaiting the key fetch instead of blocking on it."""
        delivery = self._read(headers, body)
        begun = self._begin(delivery)
        if begun is not None:
            attempt, mine = begun
            if mine:
                outcome: list[VerifyKey] | str = "the key fetch was interrupted"
                try:
                    async with asyncio.timeout(self.fetch_deadline):
                        outcome = _keys(await self._fetch_async(self.jwks_url), self.jwks_url)
                except TimeoutError:
                    outcome = f"cannot fetch fal's webhook keys from {self.jwks_url}: no reply within {self.fetch_deadline:g} s"
                except Exception as exc:
                    outcome = self._reason(exc)
                finally:
                    self._settle(attempt, delivery, outcome)
            else:
                # asyncio.wait neither raises when it times out nor cancels the shared fetch when this waiter is cancelled.
                await asyncio.wait([asyncio.wrap_future(attempt)], timeout=self.fetch_deadline)
        return self._accept(delivery)

    def parse(self, body: bytes, output: type[OutputT]) -> WebhookEvent[OutputT]:
        """The delivery as a typed event; call after `verify`. A payload that does not match `output` raises
        pydantic's ValidationError, as a result that does not match does in the clients."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
            raise WebhookVerificationError("the body is not JSON") from None
        if (
            not isinstance(data, dict)
            or data.get("status") not in ("OK", "ERROR")
            or not isinstance(data.get("request_id"), str)
        ):
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

    def verify_and_parse(
        self, headers: Mapping[str, str], body: bytes, *, output: type[OutputT]
    ) -> WebhookEvent[OutputT]:
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
        # Strictly ASCII digits: int() also takes "+1", "1_0", " 1 " and other scripts' digits, and 400 digits
        # overflow the float arithmetic below.
        if not (isinstance(stamp, str) and stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_TIMESTAMP_DIGITS):
            raise WebhookVerificationError("malformed timestamp header: expected unix seconds")
        try:
            signature = bytes.fromhex(signature_hex)
            message = f"{request_id}\n{user_id}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        except (TypeError, ValueError):  # UnicodeEncodeError (a lone surrogate) is a ValueError
            raise WebhookVerificationError("malformed signature, request id or user id header") from None
        if len(signature) != 64:
            raise WebhookVerificationError("malformed signature header: an Ed25519 signature is 64 bytes")
        timestamp, now = int(stamp), self._clock()
        self._check_time(timestamp, now)
        return _Delivery(request_id, message, signature, timestamp, now)

    def _check_time(self, timestamp: int, now: float) -> None:
        """The one test of a timestamp's freshness, shared by the first look and the replay check, so the seen-set
        remembers a delivery for exactly as long as it is accepted."""
        if abs(now - timestamp) > self.tolerance:
            raise WebhookVerificationError(
                f"timestamp is {now - timestamp:+.0f} s from now (allowed: ±{self.tolerance:.0f} s)"
            )

    def _signed(self, delivery: _Delivery) -> bool:
        with self._lock:
            keys = list(self._keys) if self._fresh(delivery.now) else []
        return any(_verifies(key, delivery.message, delivery.signature) for key in keys)

    def _fresh(self, now: float) -> bool:
        """Whether keys were fetched at most `max_age` ago (call with the lock held)."""
        return self._fetched_at is not None and now - self._fetched_at <= self.max_age

    def _begin(self, delivery: _Delivery) -> tuple[Future[None], bool] | None:
        """The fetch this delivery must wait for before it can be decided: one already in flight (False), or a new
        one for the caller to make (True); None when the cached keys, or the cooldown, decide it.

        Keys are needed when none are cached or they are too old, unless the last attempt failed within the
        cooldown; and when no cached key verifies the signature, unless any attempt was made within the cooldown."""
        if self._signed(delivery):
            return None
        now = delivery.now
        with self._lock:
            fresh, attempted_at, failed, inflight = (
                self._fresh(now),
                self._attempted_at,
                self._failure is not None,
                self._inflight,
            )
            attempts = self._attempts
        if inflight is not None:
            return inflight, False
        if attempted_at is not None and now - attempted_at < self.refresh_cooldown and (fresh or failed):
            return None
        with self._lock:
            if self._inflight is not None:
                return self._inflight, False
            if self._attempts != attempts:  # an attempt settled meanwhile: decide with its outcome
                return None
            attempt: Future[None] = Future()
            attempt.set_running_or_notify_cancel()  # so that nothing can cancel it under the waiters
            self._inflight, self._attempted_at, self._attempts = attempt, now, attempts + 1
            return attempt, True

    def _settle(self, attempt: Future[None], delivery: _Delivery, outcome: list[VerifyKey] | str) -> None:
        """Record a fetch's outcome (keys, or why there are none) and release the deliveries waiting for it."""
        with self._lock:
            if isinstance(outcome, str):
                self._failure = outcome
            else:
                self._keys, self._fetched_at, self._failure = outcome, delivery.now, None
            self._inflight = None
        attempt.set_result(None)

    def _reason(self, exc: Exception) -> str:
        return str(exc) if isinstance(exc, WebhookVerificationError) else str(_unreachable(self.jwks_url, exc))

    def _accept(self, delivery: _Delivery) -> str:
        if not self._signed(delivery):
            with self._lock:
                fresh, failure, fetching = self._fresh(delivery.now), self._failure, self._inflight is not None
            if not fresh and fetching:  # a waiter that gave up on a fetch past its deadline
                failure = f"fal's webhook keys are still being fetched from {self.jwks_url}"
            raise WebhookVerificationError(
                (failure if not fresh else None) or "signature does not verify against any of fal's published keys"
            )
        with self._lock:
            now = self._clock()  # now, not when the delivery arrived: waiting for keys may have taken a while
            self._check_time(delivery.timestamp, now)
            for expired in [s for s, stamp in self._seen.items() if now - stamp > self.tolerance]:
                self._forgotten = max(self._forgotten, self._seen.pop(expired))
            if delivery.timestamp <= self._forgotten:  # only if the clock stepped back: its replay cannot be ruled out
                raise WebhookVerificationError("this delivery is older than the replays still remembered")
            seen = delivery.signature.hex()  # the bytes, not the header: `AB..` and `ab..` are one signature
            if seen in self._seen:
                raise WebhookVerificationError("this delivery was already accepted (a replay)")
            self._seen[seen] = delivery.timestamp
        return delivery.request_id


def _verifies(key: VerifyKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def _keys(jwks: object, url: str) -> list[VerifyKey]:
    """The Ed25519 keys of a JWKS; entries of other kinds are skipped, a document that is not a JWKS is an error."""
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(entries, list | tuple):
        raise WebhookVerificationError(f"fal's webhook keys from {url} are not a JWKS (no list of keys)")
    keys = []
    for entry in entries:
        if (
            isinstance(entry, Mapping)
            and entry.get("kty") == "OKP"
            and entry.get("crv") == "Ed25519"
            and isinstance(entry.get("x"), str)
        ):
            try:
                raw = base64.urlsafe_b64decode(entry["x"] + "=" * (-len(entry["x"]) % 4))
                keys.append(VerifyKey(raw))
            except (binascii.Error, ValueError):
                continue
    return keys


def _fetch_jwks(url: str, verify: Any, deadline: float, limit: int) -> Jwks:
    """The async fetch, run to completion on a private event loop in a worker thread: httpx's blocking timeouts
    bound each read, not the whole fetch (a host sending a byte a second held it for minutes); asyncio's do."""
    with ThreadPoolExecutor(1, thread_name_prefix="fal-jwks") as worker:
        return worker.submit(lambda: asyncio.run(_fetch_jwks_async(url, verify, deadline, limit))).result()


async def _fetch_jwks_async(url: str, verify: Any, deadline: float, limit: int) -> Jwks:
    """GET the JWKS within `deadline` seconds overall, reading at most `limit` bytes of it."""
    import httpx

    body = bytearray()
    try:
        async with (
            asyncio.timeout(deadline),
            httpx.AsyncClient(timeout=deadline, verify=verify) as http,
            http.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response,
        ):
            response.raise_for_status()
            if int(response.headers.get("content-length") or 0) > limit:
                raise _too_large(url, limit)
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise _too_large(url, limit)
    except TimeoutError:
        raise WebhookVerificationError(
            f"cannot fetch fal's webhook keys from {url}: no complete reply within {deadline:g} s"
        ) from None
    except (httpx.HTTPError, ValueError) as exc:
        raise _unreachable(url, exc) from None
    return _jwks_of(bytes(body), url)


def _jwks_of(body: bytes, url: str) -> Jwks:
    try:
        data: Jwks = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        raise WebhookVerificationError(f"fal's webhook keys from {url} are not JSON") from None
    return data


def _too_large(url: str, limit: int) -> WebhookVerificationError:
    return WebhookVerificationError(f"cannot fetch fal's webhook keys from {url}: the reply is over {limit} bytes")


def _unreachable(url: str, exc: Exception) -> WebhookVerificationError:
    import httpx

    reason = f"HTTP {exc.response.status_code}" if isinstance(exc, httpx.HTTPStatusError) else type(exc).__name__
    return WebhookVerificationError(f"cannot fetch fal's webhook keys from {url}: {reason}")
