"""The API key never reaches an exception or a log, even when a server echoes the `Authorization` header back.

A scripted HTTP server (`tiny_http.TinyServer`) echoes the header it received into error bodies, status values,
422 field errors and stream events: the header many times over, after a varying pad, so that for every cut the
runtime makes (messages are truncated) some echo straddles it. No trace of the key (no 8-character fragment of it) may appear in
`str`, `repr`, `args` or any attribute of the exception or of those it was raised from.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from tiny_http import Route, TinyServer

from fal_runtime import AsyncClient, Client, RetryPolicy, errors

KEY = "k3y1d-7f2a9c41:s3cr3t-b8e05d6f-91aa-4c2e-8d3f-0e6b5a7c9d12"  # id:secret, as FAL_KEY_ID:FAL_KEY_SECRET make
FRAGMENTS = {KEY[i : i + 8] for i in range(len(KEY) - 7)}
ENDPOINT_ID = "fal-ai/test"
BASE = f"/{ENDPOINT_ID}/requests/r1"
PERIOD = len(f"Key {KEY}") + 1  # one echo of the header and its separator
PADS = range(0, PERIOD, 5)


class Output(BaseModel):
    images: list[str]


@pytest.fixture(scope="module")
def server() -> Iterator[TinyServer]:
    with TinyServer() as s:
        yield s


def _client(server: TinyServer) -> Client:
    return Client(KEY, queue_host=server.url, run_host=server.url, retry=RetryPolicy(max_retries=0), poll_interval=0.01)


def echo(auth: str, pad: int) -> str:
    """The header, many times, after `pad` characters: some echo straddles any cut at 200 or 500 characters."""
    assert auth == f"Key {KEY}"  # the server really received the key
    return "x" * pad + " ".join([auth] * 20)


def traces(exc: BaseException) -> list[str]:
    """Every text an exception (and those it was raised from) shows: str, repr, args and public attributes."""
    texts, seen = [], []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        texts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        for name in dir(current):
            if not name.startswith("_"):
                value = getattr(current, name)
                if not callable(value):
                    texts.append(repr(value))
        current = current.__cause__ or current.__context__
    return texts


def assert_clean(exc: BaseException) -> None:
    for text in traces(exc):
        leaked = sorted(f for f in FRAGMENTS if f in text)
        assert not leaked, f"{type(exc).__name__} shows {leaked[:3]} in {text[:120]!r}..."


def submit_answers(
    status: int, body: Callable[[str, int], Any], headers: Callable[[str], dict[str, str]] | None, pad: int
) -> Route:
    """A route whose submit answers `status` with `body(authorization, pad)` (JSON unless bytes) and `headers`."""

    def route(method: str, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
        value = body(auth, pad)
        content = value if isinstance(value, bytes) else json.dumps(value).encode()
        return status, headers(auth) if headers else {}, content

    return route


# Error replies to submit: each mapped to an exception built from the server's text.


@pytest.mark.parametrize(
    ("status", "body", "headers", "raises"),
    [
        pytest.param(400, lambda a, p: echo(a, p).encode(), None, errors.HTTPError, id="text-error-body"),
        pytest.param(
            500,
            lambda a, p: {"detail": echo(a, p), "error_type": a},
            lambda a: {"x-fal-request-id": a, "x-fal-error-type": a},
            errors.ServerError,
            id="json-error-body-and-headers",
        ),
        pytest.param(
            422,
            lambda a, p: {"detail": [{"loc": ["body", echo(a, p)], "msg": echo(a, p), "type": a}] * 7},
            None,
            errors.UnprocessableEntityError,
            id="422-field-errors",
        ),
        pytest.param(200, lambda a, p: echo(a, p).encode(), None, errors.ProtocolError, id="2xx-not-json"),
        pytest.param(200, lambda a, p: {"echo": echo(a, p)}, None, errors.ProtocolError, id="2xx-no-request-id"),
        pytest.param(200, lambda a, p: {"request_id": a}, None, errors.ProtocolError, id="key-as-request-id"),
    ],
)
def test_submit_errors_never_show_the_key(
    server: TinyServer,
    status: int,
    body: Callable[[str, int], Any],
    headers: Callable[[str], dict[str, str]] | None,
    raises: type[Exception],
) -> None:
    with _client(server) as c:
        for pad in PADS:
            server.route = submit_answers(status, body, headers, pad)
            with pytest.raises(raises) as caught:
                c.submit(ENDPOINT_ID, {"prompt": "p"}, output=Output)
            assert_clean(caught.value)


# Status values, stream events and a failed result: text from a 2xx reply, or the stored outcome of the request.


def status_answers(status: Callable[[str, int], Any], pad: int) -> Route:
    def route(method: str, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
        if path == f"{BASE}/status":
            return 200, {}, json.dumps(status(auth, pad)).encode()
        return 404, {}, b'{"detail": "Not Found"}'

    return route


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(lambda a, p: {"status": echo(a, p)}, id="unknown-status-value"),
        pytest.param(lambda a, p: [echo(a, p)], id="status-not-an-object"),
    ],
)
def test_status_values_never_show_the_key(server: TinyServer, status: Callable[[str, int], Any]) -> None:
    with _client(server) as c:
        for pad in PADS:
            server.route = status_answers(status, pad)
            with pytest.raises(errors.ProtocolError) as caught:
                c.get_handle(ENDPOINT_ID, "r1", output=Output).status()
            assert_clean(caught.value)


async def test_async_status_values_never_show_the_key(server: TinyServer) -> None:
    async with AsyncClient(KEY, queue_host=server.url, retry=RetryPolicy(max_retries=0)) as c:
        for pad in PADS:
            server.route = status_answers(lambda a, p: {"status": echo(a, p)}, pad)
            with pytest.raises(errors.ProtocolError) as caught:
                await c.get_handle(ENDPOINT_ID, "r1", output=Output).status()
            assert_clean(caught.value)


def event_answers(event: Callable[[str, int], str], pad: int) -> Route:
    def route(method: str, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
        return 200, {"content-type": "text/event-stream"}, f"data: {event(auth, pad)}\n\n".encode()

    return route


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(lambda a, p: json.dumps(echo(a, p)), id="event-not-an-object"),
        pytest.param(lambda a, p: echo(a, p), id="event-not-json"),
    ],
)
def test_stream_events_never_show_the_key(server: TinyServer, event: Callable[[str, int], str]) -> None:
    with _client(server) as c:
        for pad in PADS:
            server.route = event_answers(event, pad)
            with pytest.raises(errors.ProtocolError) as caught:
                list(c.stream(ENDPOINT_ID, {"prompt": "p"}))
            assert_clean(caught.value)


def test_failed_result_never_shows_the_key(server: TinyServer) -> None:
    with _client(server) as c:
        for pad in PADS:

            def route(method: str, path: str, auth: str, pad: int = pad) -> tuple[int, dict[str, str], bytes]:
                if path == f"{BASE}/status":
                    return 200, {}, json.dumps({"status": "COMPLETED", "error": "failed"}).encode()
                if path == BASE:
                    return 500, {"x-fal-request-id": "r1"}, json.dumps({"detail": echo(auth, pad)}).encode()
                return 404, {}, b'{"detail": "Not Found"}'

            server.route = route
            with pytest.raises(errors.RequestFailedError) as caught:
                c.get_handle(ENDPOINT_ID, "r1", output=Output).result()
            assert_clean(caught.value)


# Logs: a retry logs the URL it retries, and the status URL is the server's.


def test_retry_logs_never_show_the_key(server: TinyServer, caplog: pytest.LogCaptureFixture) -> None:
    polls = []

    def route(method: str, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
        if method == "POST":
            status_url = f"{server.url}/echo/{auth[4:]}{BASE}/status"
            return 200, {}, json.dumps({"request_id": "r1", "status_url": status_url}).encode()
        if path.endswith(f"{BASE}/status"):
            polls.append(path)
            return (503, {}, b"{}") if len(polls) == 1 else (200, {}, b'{"status": "COMPLETED"}')
        if path == BASE:
            return 200, {}, b'{"images": []}'
        return 404, {}, b'{"detail": "Not Found"}'

    server.route = route
    caplog.set_level(logging.DEBUG, logger="fal_runtime")
    retry = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.002)
    with Client(KEY, queue_host=server.url, retry=retry, poll_interval=0.01) as c:
        assert c.subscribe(ENDPOINT_ID, {"prompt": "p"}, output=Output).images == []
    assert any("retry" in r.getMessage() for r in caplog.records)  # the retry was logged
    leaked = [f for f in FRAGMENTS if f in caplog.text]
    assert not leaked, caplog.text


@pytest.mark.parametrize("pad", [0, 37, 61])
def test_storage_token_errors_never_show_the_key(server: TinyServer, pad: int) -> None:
    """A storage token whose upload URL is unusable is quoted, redacted, in the error."""

    def route(method: str, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
        token = {"token": "t", "token_type": "Bearer", "base_url": "ftp://" + echo(auth, pad), "expires_at": 4102444800}
        return 200, {}, json.dumps(token).encode()

    server.route = route
    with Client(KEY, queue_host=server.url, rest_host=server.url, retry=RetryPolicy(max_retries=0)) as client:
        with pytest.raises(errors.ProtocolError) as caught:
            client.upload(b"some bytes")
    assert_clean(caught.value)
