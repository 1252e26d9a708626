"""Webhook verification: unit cases with a real Ed25519 signer, and end to end from the local server's delivery."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fal_runtime.local import LocalServer
from fal_runtime.local.webhooks import Signer
from fal_runtime.webhooks import REFRESH_COOLDOWN, TOLERANCE, WebhookVerificationError, WebhookVerifier

NOW = 1_800_000_000
BODY = json.dumps(
    {"request_id": "req-1", "gateway_request_id": "req-1", "status": "OK", "payload": {"ok": True}}
).encode()


class Keys:
    """A JWKS endpoint stand-in that counts fetches and can rotate to another signer."""

    def __init__(self, signer: Signer) -> None:
        self.signer, self.fetches = signer, 0

    def __call__(self, url: str) -> dict[str, Any]:
        self.fetches += 1
        return self.signer.jwks()


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def keys(signer: Signer) -> Keys:
    return Keys(signer)


@pytest.fixture
def clock() -> list[float]:
    return [float(NOW)]


@pytest.fixture
def verifier(keys: Keys, clock: list[float]) -> WebhookVerifier:
    return WebhookVerifier(fetch_jwks=keys, clock=lambda: clock[0])


def test_genuine_delivery_verifies(verifier: WebhookVerifier, signer: Signer) -> None:
    assert verifier.verify(signer.headers("req-1", BODY, NOW), BODY) == "req-1"


def test_tampered_body_is_rejected(verifier: WebhookVerifier, signer: Signer) -> None:
    headers = signer.headers("req-1", BODY, NOW)
    with pytest.raises(WebhookVerificationError, match="signature"):
        verifier.verify(headers, BODY.replace(b"true", b"false"))


def test_wrong_key_is_rejected_after_one_refresh(verifier: WebhookVerifier, keys: Keys, clock: list[float]) -> None:
    verifier.verify(keys.signer.headers("req-0", BODY, NOW), BODY)  # keys cached
    clock[0] += REFRESH_COOLDOWN
    with pytest.raises(WebhookVerificationError, match="signature"):
        verifier.verify(Signer().headers("req-1", BODY, NOW), BODY)
    assert keys.fetches == 2  # the cache, then exactly one refresh


def test_forged_signatures_cost_one_fetch_per_cooldown(
    verifier: WebhookVerifier, keys: Keys, clock: list[float]
) -> None:
    verifier.verify(keys.signer.headers("req-0", BODY, NOW), BODY)
    forger = Signer()
    for i in range(20):
        clock[0] = NOW + REFRESH_COOLDOWN + i  # the first forgery may refresh; the next 19 fall in its cooldown
        with pytest.raises(WebhookVerificationError, match="signature"):
            verifier.verify(forger.headers(f"forged-{i}", BODY, int(clock[0])), BODY)
    assert keys.fetches == 2


@pytest.mark.parametrize("skew", [-301, 301])
def test_stale_and_future_timestamps_are_rejected(verifier: WebhookVerifier, signer: Signer, skew: int) -> None:
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        verifier.verify(signer.headers("req-1", BODY, NOW + skew), BODY)


@pytest.mark.parametrize(
    "header",
    ["X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id", "X-Fal-Webhook-Timestamp", "X-Fal-Webhook-Signature"],
)
def test_missing_header_is_rejected(verifier: WebhookVerifier, signer: Signer, header: str) -> None:
    headers = signer.headers("req-1", BODY, NOW)
    del headers[header]
    with pytest.raises(WebhookVerificationError, match="missing"):
        verifier.verify(headers, BODY)


@pytest.mark.parametrize(
    ("header", "value"), [("X-Fal-Webhook-Signature", "zz-not-hex"), ("X-Fal-Webhook-Timestamp", "yesterday")]
)
def test_malformed_header_is_rejected(verifier: WebhookVerifier, signer: Signer, header: str, value: str) -> None:
    headers = {**signer.headers("req-1", BODY, NOW), header: value}
    with pytest.raises(WebhookVerificationError, match="malformed"):
        verifier.verify(headers, BODY)


def test_replayed_delivery_is_rejected(verifier: WebhookVerifier, signer: Signer) -> None:
    headers = signer.headers("req-1", BODY, NOW)
    verifier.verify(headers, BODY)
    with pytest.raises(WebhookVerificationError, match="replay"):
        verifier.verify({k.lower(): v for k, v in headers.items()}, BODY)
    upper = {**headers, "X-Fal-Webhook-Signature": headers["X-Fal-Webhook-Signature"].upper()}
    with pytest.raises(WebhookVerificationError, match="replay"):  # the same signature, spelled differently
        verifier.verify(upper, BODY)


@pytest.mark.parametrize("stamp", [NOW, NOW + int(TOLERANCE)])  # signed in the past, or (clock skew) in the future
def test_replay_at_the_edge_of_the_window_is_rejected(
    verifier: WebhookVerifier, signer: Signer, clock: list[float], stamp: int
) -> None:
    """The last instant the timestamp check accepts a delivery, its replay is still remembered."""
    headers = signer.headers("req-1", BODY, stamp)
    verifier.verify(headers, BODY)
    clock[0] = stamp + TOLERANCE
    with pytest.raises(WebhookVerificationError, match="replay"):
        verifier.verify(headers, BODY)
    clock[0] = stamp + TOLERANCE + 1
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        verifier.verify(headers, BODY)


def test_replay_after_the_clock_steps_back_is_rejected(
    verifier: WebhookVerifier, signer: Signer, clock: list[float]
) -> None:
    """A wall clock stepping back (NTP) must not revive a delivery the seen-set has already forgotten."""
    headers = signer.headers("req-1", BODY, NOW)
    verifier.verify(headers, BODY)
    clock[0] = NOW + TOLERANCE + 1  # a later delivery forgets req-1's signature
    verifier.verify(signer.headers("req-2", BODY, int(clock[0])), BODY)
    clock[0] = NOW + TOLERANCE
    with pytest.raises(WebhookVerificationError):
        verifier.verify(headers, BODY)


def test_rotated_keys_are_fetched_once_and_then_cached(
    verifier: WebhookVerifier, keys: Keys, clock: list[float]
) -> None:
    verifier.verify(keys.signer.headers("req-1", BODY, NOW), BODY)
    keys.signer = Signer()  # fal rotates its key
    with pytest.raises(WebhookVerificationError, match="signature"):  # keys fetched just now: fal will retry
        verifier.verify(keys.signer.headers("req-2", BODY, NOW), BODY)
    clock[0] += REFRESH_COOLDOWN  # fal's retry of the delivery, after the cooldown
    verifier.verify(keys.signer.headers("req-2", BODY, int(clock[0])), BODY)
    verifier.verify(keys.signer.headers("req-3", BODY, int(clock[0])), BODY)
    assert keys.fetches == 2
    clock[0] += 24 * 3600 + 1  # the cache is at most a day old
    verifier.verify(keys.signer.headers("req-4", BODY, int(clock[0])), BODY)
    assert keys.fetches == 3


def test_body_parses_into_a_typed_event(verifier: WebhookVerifier, signer: Signer) -> None:
    from generated.fal_ai.gemini_flash_edit import Output

    payload = {"image": {"url": "https://example.com/o.png"}, "description": "done"}
    body = json.dumps({"request_id": "r", "gateway_request_id": "g", "status": "OK", "payload": payload}).encode()
    event = verifier.verify_and_parse(signer.headers("r", body, NOW), body, output=Output)
    assert event.status == "OK" and isinstance(event.output, Output) and event.output.description == "done"
    failed = json.dumps(
        {"request_id": "r2", "status": "ERROR", "error": "Invalid status code: 500", "payload": {"detail": "boom"}}
    ).encode()
    event = verifier.verify_and_parse(signer.headers("r2", failed, NOW), failed, output=Output)
    assert event.status == "ERROR" and event.output is None and event.payload == {"detail": "boom"}


@pytest.fixture(scope="module")
def project_server() -> Iterator[LocalServer]:
    with LocalServer(Path(__file__).resolve().parents[2] / "specs") as running:
        yield running


def test_local_server_delivery_verifies_end_to_end(project_server: LocalServer) -> None:
    from fal_runtime import Client
    from generated.fal_ai import gemini_flash_edit as ep

    ctx = ssl.create_default_context(cafile=project_server.certificates.ca_file)
    with Client("test-key", queue_host=project_server.base, run_host=project_server.run_host, verify=ctx) as client:
        handle = ep.submit(
            prompt="webhook me",
            image_url="https://example.com/in.png",
            webhook_url=project_server.webhook_url,
            client=client,
        )
    deadline = time.monotonic() + 10
    while (
        not (arrived := [w for w in project_server.webhooks() if handle.request_id in w["body"]])
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert arrived, "the webhook never arrived"
    delivery = arrived[0]
    verifier = WebhookVerifier(f"{project_server.url}/.well-known/jwks.json", verify=ctx)
    event = verifier.verify_and_parse(delivery["headers"], delivery["body"].encode(), output=ep.Output)
    assert event.request_id == handle.request_id and isinstance(event.output, ep.Output)
    with pytest.raises(WebhookVerificationError, match="replay"):
        verifier.verify(delivery["headers"], delivery["body"].encode())


async def test_async_verification_fetches_keys_without_blocking(project_server: LocalServer) -> None:
    """`verify_async` fetches the local server's JWKS over HTTPS with an awaited request, then decides as `verify`."""
    from generated.fal_ai import gemini_flash_edit as ep

    signer = project_server.signer
    payload = {"image": {"url": "https://example.com/o.png"}, "description": "async"}
    body = json.dumps({"request_id": "r-async", "status": "OK", "payload": payload}).encode()
    ctx = ssl.create_default_context(cafile=project_server.certificates.ca_file)

    def blocking(url: str) -> dict[str, Any]:
        raise AssertionError("verify_async used the blocking fetch")

    verifier = WebhookVerifier(f"{project_server.url}/.well-known/jwks.json", verify=ctx, fetch_jwks=blocking)
    event = await verifier.verify_and_parse_async(
        signer.headers("r-async", body, int(time.time())), body, output=ep.Output
    )
    assert event.request_id == "r-async" and event.output is not None and event.output.description == "async"
    with pytest.raises(WebhookVerificationError, match="signature"):
        await verifier.verify_async(Signer().headers("r-forged", body, int(time.time())), body)
