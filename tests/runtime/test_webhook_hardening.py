"""Webhook verification under attack: key-fetch floods, hostile JWKS hosts and arbitrary headers.

The JWKS comes over real HTTP from a small host in this file that can stall, dribble, flood or answer nonsense (the
local server's JWKS route cannot misbehave), or over HTTPS from the local server for the header fuzzing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fal_runtime.local.webhooks import Signer
from fal_runtime.webhooks import REFRESH_COOLDOWN, WebhookVerificationError, WebhookVerifier

BODY = json.dumps({"request_id": "req-1", "status": "OK", "payload": {"ok": True}}).encode()
CROWD = 50


class JwksHost:
    """A JWKS host on 127.0.0.1 that counts requests and answers as told: after `delay` seconds, with `status` and
    `body`, the body dribbled a byte per `dribble` seconds (for at most `dribble_for` seconds) or `flood` bytes of it
    streamed without a length."""

    def __init__(self) -> None:
        self.body: bytes = b'{"keys": []}'
        self.status = 200
        self.delay = 0.0
        self.dribble: float | None = None
        self.dribble_for = 4.0
        self.flood = 0
        self.requests = 0
        self.sent = 0
        self._lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with host._lock:
                    host.requests += 1
                time.sleep(host.delay)
                self.send_response(host.status)
                self.send_header("Content-Type", "application/json")
                if not (host.dribble or host.flood):
                    self.send_header("Content-Length", str(len(host.body)))
                self.end_headers()
                try:
                    if host.dribble:
                        until = time.monotonic() + host.dribble_for
                        for byte in (host.body * 1000)[:100_000]:
                            if time.monotonic() > until:
                                break
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(host.dribble)
                    elif host.flood:
                        chunk = b" " * 65536
                        self._write(b'{"keys": [')
                        while host.sent < host.flood:
                            self._write(chunk)
                    else:
                        self.wfile.write(host.body)
                except OSError:
                    pass  # the client hung up, as it should once it has had enough

            def _write(self, data: bytes) -> None:
                self.wfile.write(data)
                with host._lock:
                    host.sent += len(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def host() -> Iterator[JwksHost]:
    running = JwksHost()
    yield running
    running.close()


def crowd(verify: Callable[[int], str]) -> list[str | BaseException]:
    """`verify(i)` for CROWD deliveries at once, on as many threads: each one's request id or error."""
    start = threading.Barrier(CROWD)

    def one(i: int) -> str:
        start.wait()
        return verify(i)

    with ThreadPoolExecutor(CROWD) as pool:
        futures = [pool.submit(one, i) for i in range(CROWD)]
        return [future.exception() or future.result() for future in futures]


# 1. One key fetch at a time, and failed fetches count against the cooldown.


def test_cold_start_under_a_crowd_fetches_the_keys_once(host: JwksHost) -> None:
    signer = Signer()
    host.body, host.delay = json.dumps(signer.jwks()).encode(), 0.3
    verifier = WebhookVerifier(host.url)
    stamp = int(time.time())
    results = crowd(lambda i: verifier.verify(signer.headers(f"req-{i}", BODY, stamp), BODY))
    assert results == [f"req-{i}" for i in range(CROWD)]
    assert host.requests == 1


@pytest.mark.parametrize("body", [b'{"keys": null}', b"not json", b'{"keys": []}'])
def test_forged_crowd_on_a_cold_start_costs_one_fetch(host: JwksHost, body: bytes) -> None:
    host.body, host.delay = body, 0.3
    verifier = WebhookVerifier(host.url)
    forger, stamp = Signer(), int(time.time())
    results = crowd(lambda i: verifier.verify(forger.headers(f"forged-{i}", BODY, stamp), BODY))
    assert all(isinstance(r, WebhookVerificationError) for r in results), {type(r).__name__ for r in results}
    assert host.requests == 1


@pytest.mark.parametrize(("status", "body"), [(503, b"down"), (200, b'{"keys": null}'), (200, b'{"keys": 7}')])
def test_failed_fetches_count_against_the_cooldown(host: JwksHost, status: int, body: bytes) -> None:
    host.status, host.body = status, body
    now = [1_800_000_000.0]
    verifier = WebhookVerifier(host.url, clock=lambda: now[0])
    forger = Signer()
    for i in range(20):
        with pytest.raises(WebhookVerificationError):
            verifier.verify(forger.headers(f"forged-{i}", BODY, int(now[0])), BODY)
        now[0] += 1
    assert host.requests == 1
    now[0] += REFRESH_COOLDOWN  # the next attempt, once the cooldown is over
    with pytest.raises(WebhookVerificationError):
        verifier.verify(forger.headers("forged-late", BODY, int(now[0])), BODY)
    assert host.requests == 2


def test_keys_are_fetched_after_a_failed_attempt_once_the_cooldown_is_over(host: JwksHost) -> None:
    signer = Signer()
    host.status = 503
    now = [1_800_000_000.0]
    verifier = WebhookVerifier(host.url, clock=lambda: now[0])
    with pytest.raises(WebhookVerificationError, match="cannot fetch"):
        verifier.verify(signer.headers("req-1", BODY, int(now[0])), BODY)
    host.status, host.body = 200, json.dumps(signer.jwks()).encode()  # fal's host is back
    with pytest.raises(WebhookVerificationError):  # within the cooldown: no new attempt, fal will retry
        verifier.verify(signer.headers("req-1", BODY, int(now[0])), BODY)
    now[0] += REFRESH_COOLDOWN
    assert verifier.verify(signer.headers("req-1", BODY, int(now[0])), BODY) == "req-1"
    assert host.requests == 2


async def test_async_cold_start_under_a_crowd_fetches_the_keys_once(host: JwksHost) -> None:
    signer = Signer()
    host.body, host.delay = json.dumps(signer.jwks()).encode(), 0.3
    verifier = WebhookVerifier(host.url)
    stamp = int(time.time())
    results = await asyncio.gather(
        *(verifier.verify_async(signer.headers(f"req-{i}", BODY, stamp), BODY) for i in range(CROWD))
    )
    assert results == [f"req-{i}" for i in range(CROWD)]
    assert host.requests == 1


@pytest.mark.parametrize("body", [b'{"keys": null}', b"[]"])
async def test_async_forged_crowd_costs_one_fetch(host: JwksHost, body: bytes) -> None:
    host.body, host.delay = body, 0.3
    verifier = WebhookVerifier(host.url)
    forger, stamp = Signer(), int(time.time())
    deliveries = (verifier.verify_async(forger.headers(f"forged-{i}", BODY, stamp), BODY) for i in range(CROWD))
    results = await asyncio.gather(*deliveries, return_exceptions=True)
    assert all(isinstance(r, WebhookVerificationError) for r in results), {type(r).__name__ for r in results}
    assert host.requests == 1
    for i in range(5):  # and no more while the cooldown lasts
        with pytest.raises(WebhookVerificationError):
            await verifier.verify_async(forger.headers(f"again-{i}", BODY, stamp), BODY)
    assert host.requests == 1


async def test_async_host_down_costs_one_fetch_per_cooldown(host: JwksHost) -> None:
    host.status = 503
    now = [1_800_000_000.0]
    verifier = WebhookVerifier(host.url, clock=lambda: now[0])
    forger = Signer()
    for i in range(10):
        with pytest.raises(WebhookVerificationError, match="cannot fetch"):
            await verifier.verify_async(forger.headers(f"forged-{i}", BODY, int(now[0])), BODY)
    assert host.requests == 1


def test_sync_and_async_callers_share_one_fetch(host: JwksHost) -> None:
    """A thread's blocking `verify` and another thread's event loop wait for the same fetch."""
    signer = Signer()
    host.body, host.delay = json.dumps(signer.jwks()).encode(), 0.5
    verifier = WebhookVerifier(host.url)
    stamp = int(time.time())

    def deliver(i: int) -> str:
        headers = signer.headers(f"req-{i}", BODY, stamp)
        if i % 2:
            return asyncio.run(verifier.verify_async(headers, BODY))
        return verifier.verify(headers, BODY)

    assert crowd(deliver) == [f"req-{i}" for i in range(CROWD)]
    assert host.requests == 1


# 2. Every failure is a WebhookVerificationError.


@pytest.mark.parametrize(
    "stamp", ["9" * 400, "-" + "9" * 400, "9" * 5000, "1e9", "+1800000000", "١٨٠٠٠٠٠٠٠٠", "nan", " "]
)
def test_absurd_timestamps_are_rejected(stamp: str) -> None:
    signer = Signer()
    verifier = WebhookVerifier(fetch_jwks=lambda url: signer.jwks())
    headers = {**signer.headers("req-1", BODY), "X-Fal-Webhook-Timestamp": stamp}
    with pytest.raises(WebhookVerificationError) as caught:
        verifier.verify(headers, BODY)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"keys": null}',
        b'{"keys": 7}',
        b'{"keys": "x"}',
        b"null",
        b"[]",
        b'"keys"',
        b"7",
        b'{"keys": [null, 7, {"x": 7}]}',
    ],
)
def test_malformed_jwks_is_rejected(host: JwksHost, body: bytes) -> None:
    host.body = body
    verifier = WebhookVerifier(host.url)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(Signer().headers("req-1", BODY), BODY)


@pytest.mark.parametrize("depth", [100_000])
async def test_deeply_nested_jwks_is_rejected(host: JwksHost, depth: int) -> None:
    host.body = b'{"keys": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier(host.url).verify(Signer().headers("req-1", BODY), BODY)
    with pytest.raises(WebhookVerificationError):
        await WebhookVerifier(host.url).verify_async(Signer().headers("req-1", BODY), BODY)


def test_deeply_nested_body_is_rejected_by_parse() -> None:
    from generated.fal_ai.gemini_flash_edit import Output

    with pytest.raises(WebhookVerificationError, match="JSON"):
        WebhookVerifier(fetch_jwks=lambda url: {"keys": []}).parse(b"[" * 100_000 + b"]" * 100_000, Output)


def test_a_failing_custom_fetch_is_a_verification_error() -> None:
    def broken(url: str) -> dict[str, Any]:
        raise RuntimeError("the key store is down")

    with pytest.raises(WebhookVerificationError, match="cannot fetch"):
        WebhookVerifier(fetch_jwks=broken).verify(Signer().headers("req-1", BODY), BODY)


# 3. The key fetch has a deadline and a size cap.


def test_a_dribbling_jwks_host_is_cut_off_at_the_deadline(host: JwksHost) -> None:
    host.body, host.dribble = json.dumps(Signer().jwks()).encode(), 0.05
    verifier = WebhookVerifier(host.url, fetch_deadline=0.5)
    started = time.monotonic()
    with pytest.raises(WebhookVerificationError, match="cannot fetch"):
        verifier.verify(Signer().headers("req-1", BODY), BODY)
    assert time.monotonic() - started < 2.0


async def test_a_dribbling_jwks_host_is_cut_off_at_the_deadline_async(host: JwksHost) -> None:
    host.body, host.dribble = json.dumps(Signer().jwks()).encode(), 0.05
    verifier = WebhookVerifier(host.url, fetch_deadline=0.5)
    started = time.monotonic()
    with pytest.raises(WebhookVerificationError, match="cannot fetch"):
        await verifier.verify_async(Signer().headers("req-1", BODY), BODY)
    assert time.monotonic() - started < 2.0


def test_a_stalling_jwks_host_is_cut_off_at_the_deadline(host: JwksHost) -> None:
    host.delay = 3.0
    verifier = WebhookVerifier(host.url, fetch_deadline=0.5)
    started = time.monotonic()
    with pytest.raises(WebhookVerificationError, match="cannot fetch"):
        verifier.verify(Signer().headers("req-1", BODY), BODY)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_flooding_jwks_host_is_cut_off_at_the_size_cap(host: JwksHost, use_async: bool) -> None:
    host.flood = 64 * 1024 * 1024
    verifier = WebhookVerifier(host.url, max_jwks_bytes=64 * 1024)
    headers = Signer().headers("req-1", BODY)
    with pytest.raises(WebhookVerificationError, match="bytes") as caught:
        if use_async:
            await verifier.verify_async(headers, BODY)
        else:
            verifier.verify(headers, BODY)
    assert len(str(caught.value)) < 300
    await asyncio.sleep(0.2)  # let the host notice the hang-up
    assert host.sent < 16 * 1024 * 1024, "the client read far past its cap"


def test_an_oversized_content_length_is_refused_unread(host: JwksHost) -> None:
    host.body = b'{"keys": []}' + b" " * 200_000
    verifier = WebhookVerifier(host.url, max_jwks_bytes=64 * 1024)
    with pytest.raises(WebhookVerificationError, match="bytes"):
        verifier.verify(Signer().headers("req-1", BODY), BODY)


# 5. Arbitrary headers only ever raise WebhookVerificationError.

FUZZ_NOW = 1_800_000_000


@pytest.fixture(scope="module")
def warm() -> Iterator[tuple[WebhookVerifier, JwksHost]]:
    """A verifier holding a key it fetched once from a JWKS host, which counts any fetch after that."""
    host, signer = JwksHost(), Signer()
    host.body = json.dumps(signer.jwks()).encode()
    verifier = WebhookVerifier(host.url, clock=lambda: float(FUZZ_NOW))
    assert verifier.verify(signer.headers("warm-up", BODY, FUZZ_NOW), BODY) == "warm-up"
    yield verifier, host
    host.close()


numbers = st.integers(min_value=-(10**600), max_value=10**600).map(str)
near = st.integers(min_value=FUZZ_NOW - 400, max_value=FUZZ_NOW + 400).map(str)
hexes = st.one_of(st.binary(max_size=80).map(bytes.hex), st.from_regex(r"[0-9a-fA-F ]{0,200}", fullmatch=True))
weird = st.sampled_from(
    ["", " ", "\x00", "\ud800", "é", "١٨٠٠٠٠٠٠٠٠", "9" * 5000, "0x1f", "1_800_000_000", "inf", "NaN"]
)
value = st.one_of(st.text(max_size=300), numbers, near, hexes, weird)
NAMES = ("X-Fal-Webhook-Request-Id", "x-fal-webhook-user-id", "X-FAL-WEBHOOK-TIMESTAMP", "X-Fal-Webhook-Signature")


@settings(max_examples=200, deadline=None)
@given(headers=st.fixed_dictionaries({}, optional=dict.fromkeys(NAMES, value)), body=st.binary(max_size=200))
def test_arbitrary_headers_only_raise_verification_errors(
    warm: tuple[WebhookVerifier, JwksHost], headers: dict[str, str], body: bytes
) -> None:
    verifier, host = warm
    try:
        verifier.verify(headers, body)
    except WebhookVerificationError as exc:
        assert len(str(exc)) < 500, "the error quotes the headers unbounded"
    else:
        pytest.fail("a forged delivery verified")
    assert host.requests == 1, "a forged delivery fetched keys within the cooldown"
