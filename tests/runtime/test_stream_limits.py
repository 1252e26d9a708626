"""Event streams against a hostile server: a line that never ends must neither outlive `client_timeout` nor fill
memory. A scripted HTTP server (`tiny_http.TinyServer`) answers submit, status, result and cancel normally and streams
one endless `data: aaaa…` line; it stops by itself after at most `_SERVER_SECONDS`, so no test can hang.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
from pydantic import BaseModel
from tiny_http import Answer, Body, TinyServer

from fal_runtime import AsyncClient, Client, RetryPolicy, errors
from fal_runtime._sse import MAX_EVENT, MAX_LINE, SSEDecoder

KEY = "stream-limits-test-key"
ENDPOINT_ID = "fal-ai/test"
_SERVER_SECONDS = 10.0  # the longest any streamed body lasts
_FLOOD_BYTES = 96 << 20  # how much a fast endless line sends at most
_READ_AT_MOST = 24 << 20  # what a client that stops at the line cap may have let the server write (socket buffers)


class Output(BaseModel):
    images: list[str]


class _Server(TinyServer):
    """A tiny fal queue: `stream_body` is what the status stream and `/stream` send."""

    def __init__(self) -> None:
        super().__init__()
        self.stream_body: Callable[[], Body] = lambda: b""
        self.route = self._queue

    def _queue(self, method: str, path: str, auth: str) -> Answer:
        base = f"/{ENDPOINT_ID}/requests/r1"
        sse = {"content-type": "text/event-stream"}
        if method == "POST" and path == f"/{ENDPOINT_ID}":
            return 200, {}, json.dumps({"request_id": "r1", "status": "IN_QUEUE"}).encode()
        if path in (f"{base}/status/stream", f"/{ENDPOINT_ID}/stream"):
            return 200, sse, self.stream_body()
        if path == f"{base}/status":
            return 200, {}, json.dumps({"status": "COMPLETED"}).encode()
        if path == f"{base}/cancel":
            return 202, {}, json.dumps({"status": "CANCELLATION_REQUESTED"}).encode()
        if path == base:
            return 200, {}, json.dumps({"images": ["https://cdn/x.png"]}).encode()
        return 404, {}, b'{"detail": "Not Found"}'


def endless_line(chunk: int, every: float, limit: int = _FLOOD_BYTES) -> Callable[[], Iterator[bytes]]:
    """`data: ` and then `chunk` bytes of `a` every `every` seconds, never a newline, for a bounded time."""

    def body() -> Iterator[bytes]:
        yield b"data: "
        end, sent = time.monotonic() + _SERVER_SECONDS, 0
        while time.monotonic() < end and sent < limit:
            yield b"a" * chunk
            sent += chunk
            if every:
                time.sleep(every)

    return body


@pytest.fixture
def server() -> Iterator[_Server]:
    with _Server() as s:
        yield s


def _client(server: _Server) -> Client:
    return Client(KEY, queue_host=server.url, run_host=server.url, retry=RetryPolicy(max_retries=0), poll_interval=0.05)


def _aclient(server: _Server) -> AsyncClient:
    return AsyncClient(
        KEY, queue_host=server.url, run_host=server.url, retry=RetryPolicy(max_retries=0), poll_interval=0.05
    )


# client_timeout while a line trickles in (1 KiB every 20 ms: under the line cap for the server's whole 10 s).


def test_client_timeout_holds_during_an_endless_status_line(server: _Server) -> None:
    server.stream_body = endless_line(1024, 0.02)
    started = time.monotonic()
    with _client(server) as c, pytest.raises(errors.ClientTimeoutError) as caught:
        c.subscribe(ENDPOINT_ID, {"prompt": "p"}, output=Output, client_timeout=2)
    assert time.monotonic() - started < 4.5
    assert caught.value.cancelled and server.calls[-1].startswith("PUT")


async def test_async_client_timeout_holds_during_an_endless_status_line(server: _Server) -> None:
    server.stream_body = endless_line(1024, 0.02)
    started = time.monotonic()
    async with _aclient(server) as c:
        with pytest.raises(errors.ClientTimeoutError) as caught:
            await c.subscribe(ENDPOINT_ID, {"prompt": "p"}, output=Output, client_timeout=2)
    assert time.monotonic() - started < 4.5
    assert caught.value.cancelled and server.calls[-1].startswith("PUT")


# A line over the cap, sent as fast as the server can: given up at the cap, not read to the end.


def test_overlong_status_line_falls_back_to_polling_early(server: _Server) -> None:
    server.stream_body = endless_line(64 << 10, 0)
    with _client(server) as c:
        assert c.subscribe(ENDPOINT_ID, {"prompt": "p"}, output=Output).images == ["https://cdn/x.png"]
    assert server.sent < _READ_AT_MOST, server.sent
    assert f"GET /{ENDPOINT_ID}/requests/r1/status" in server.calls  # polled instead


async def test_async_overlong_status_line_falls_back_to_polling_early(server: _Server) -> None:
    server.stream_body = endless_line(64 << 10, 0)
    async with _aclient(server) as c:
        assert (await c.subscribe(ENDPOINT_ID, {"prompt": "p"}, output=Output)).images == ["https://cdn/x.png"]
    assert server.sent < _READ_AT_MOST, server.sent
    assert f"GET /{ENDPOINT_ID}/requests/r1/status" in server.calls


def test_overlong_stream_line_is_a_protocol_error(server: _Server) -> None:
    server.stream_body = endless_line(64 << 10, 0)
    with _client(server) as c, pytest.raises(errors.ProtocolError, match="line longer than"):
        list(c.stream(ENDPOINT_ID, {"prompt": "p"}))
    assert server.sent < _READ_AT_MOST, server.sent


async def test_async_overlong_stream_line_is_a_protocol_error(server: _Server) -> None:
    server.stream_body = endless_line(64 << 10, 0)
    async with _aclient(server) as c:
        with pytest.raises(errors.ProtocolError, match="line longer than"):
            [e async for e in c.stream(ENDPOINT_ID, {"prompt": "p"})]
    assert server.sent < _READ_AT_MOST, server.sent


# An event made of many lines, each under the line cap, is capped as a whole.


def test_overlong_event_is_a_protocol_error() -> None:
    decoder = SSEDecoder()
    line = "data: " + "a" * (MAX_LINE - 16)
    with pytest.raises(errors.ProtocolError, match="event larger than"):
        for _ in range(MAX_EVENT // len(line) + 2):
            decoder.feed(line)


def test_lines_split_on_every_terminator_across_chunks() -> None:
    """The line splitter that replaced httpx's: CRLF, CR and LF, a CRLF cut between chunks, and a last open line."""
    from fal_runtime._sse import LineDecoder

    decoder = LineDecoder()
    chunks = [b"a\r", b"\nb\rc\n\n", b"d\xc3", b"\xa9\r", b"\r\ne"]
    assert [line for chunk in chunks for line in decoder.feed(chunk)] + decoder.flush() == [
        "a", "b", "c", "", "d\u00e9", "", "e"
    ]  # fmt: skip
