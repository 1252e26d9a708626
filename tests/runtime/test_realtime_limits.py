"""Hostile or oversized realtime frames cost bounded memory and time, and `recv`'s timeout holds while one decodes.

The local server sends the frames itself (`/_local/realtime` `{"frame": ...}`: a frame sent before the answer to the
next input), over real TLS WebSockets. Memory is measured with tracemalloc (the server runs in this process, so its
copy of the frame counts too) and bounds are generous: what they catch is the gigabyte a 16 MiB frame of empty lists
used to cost, not a few megabytes either way.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import struct
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import msgpack  # type: ignore[import-untyped]
import pytest

from fal_runtime import AsyncClient, Client, errors
from fal_runtime._core import Core
from fal_runtime.local import LocalServer
from fal_runtime.realtime import (
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_OBJECTS,
    RealtimeConnectionClosed,
    count_msgpack_objects,
    decode,
    encode,
)

ECHO = "fal-ai/test/echo"
MiB = 1024 * 1024


@pytest.fixture
def server(fal_env: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    monkeypatch.setenv("FAL_REST_HOST", fal_env.base)
    fal_env.reset()
    _control(fal_env, "DELETE")
    yield fal_env
    fal_env.reset()
    _control(fal_env, "DELETE")


def _control(server: LocalServer, method: str, body: dict[str, Any] | None = None) -> Any:
    tls = ssl.create_default_context(cafile=str(server.ca_file))
    response = httpx.request(method, f"{server.url}/_local/realtime", json=body, verify=tls)
    response.raise_for_status()
    return response.json()


def _script_frame(server: LocalServer, head: bytes, repeat: bytes = b"", count: int = 0, *, text: bool = False) -> int:
    """The next input is first answered with `head + repeat * count`; returns the frame's size in bytes."""
    parts = {"head": base64.b64encode(head).decode(), "repeat": base64.b64encode(repeat).decode(), "count": count}
    _control(server, "POST", {"frame": {**parts, "text": text}})
    return len(head) + len(repeat) * count


def _sockets(server: LocalServer) -> int:
    return sum(1 for seen in _control(server, "GET") if seen["kind"] == "socket")


def _empty_lists(size: int) -> tuple[bytes, bytes, int]:
    """`{"junk": [[], [], ...]}` as msgpack, `size` bytes long: one object per byte."""
    head = b"\x81\xa4junk\xdd"
    count = size - len(head) - 4
    return head + struct.pack(">I", count), b"\x90", count


@dataclass
class Cost:
    seconds: float = 0.0
    peak_bytes: int = 0


@contextmanager
def measured() -> Iterator[Cost]:
    """Wall time and the peak of traced Python memory (both threads: the client's and the local server's)."""
    cost = Cost()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds = time.perf_counter() - started
        cost.peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def test_a_frame_of_many_small_objects_is_refused_cheaply_and_the_connection_stays_usable(server: LocalServer) -> None:
    """16 MiB of empty lists (once 1.2 GB and 5 s to decode) is refused within the 3 s `recv` timeout."""
    head, repeat, count = _empty_lists(MAX_MESSAGE_BYTES - 64)  # under the frame cap: the object budget refuses it
    _script_frame(server, head, repeat, count)
    with Client() as client, client.realtime(ECHO) as conn:
        conn.send({"prompt": "x"})
        started = time.perf_counter()
        with pytest.raises(errors.ProtocolError) as raised:
            conn.recv(timeout=3)
        elapsed = time.perf_counter() - started
        assert "max_message_objects" in str(raised.value) and str(MAX_MESSAGE_OBJECTS) in str(raised.value)
        assert conn.recv(timeout=10)["seed"] == 42  # the frame was skipped: the answer after it still arrives
    assert _sockets(server) == 1
    assert elapsed < 3.0
    frame = head + repeat * count
    with measured() as cost, pytest.raises(errors.ProtocolError, match="max_message_objects"):
        decode(frame, Core(key="test-key"))  # the same frame's memory, without the socket's buffers
    assert cost.peak_bytes < 32 * MiB, cost  # decoding it used to take 72 bytes per byte


async def test_a_json_text_frame_of_many_small_objects_is_refused_too(server: LocalServer) -> None:
    text = b'{"junk": [' + b"[]," * 5_000_000 + b"[]]}"  # about 15 MiB; decoding it used to take 400 MB
    _script_frame(server, text, text=True)
    async with AsyncClient() as client, client.realtime(ECHO) as conn:
        await conn.send({"prompt": "x"})
        started = time.perf_counter()
        with pytest.raises(errors.ProtocolError, match="max_message_objects"):
            await conn.recv(timeout=3)
        elapsed = time.perf_counter() - started
        assert (await conn.recv(timeout=10))["seed"] == 42
    assert elapsed < 3.0
    with measured() as cost, pytest.raises(errors.ProtocolError, match="max_message_objects"):
        decode(text.decode(), Core(key="test-key"))  # the same frame's memory, without the socket's
    assert cost.peak_bytes < 4 * len(text), cost


def test_a_frame_over_max_message_bytes_is_a_protocol_error_and_the_next_send_reconnects(server: LocalServer) -> None:
    head = b"\x81\xa5image\xc6" + struct.pack(">I", MAX_MESSAGE_BYTES)  # a 16 MiB bin: the frame is over 16 MiB
    _script_frame(server, head, b"\0", MAX_MESSAGE_BYTES)
    with Client() as client, client.realtime(ECHO) as conn:
        conn.send({"prompt": "x"})
        with measured() as cost, pytest.raises(errors.ProtocolError) as raised:
            conn.recv(timeout=10)
        assert "max_message_bytes" in str(raised.value) and "16 MiB" in str(raised.value)
        with pytest.raises(RealtimeConnectionClosed, match="not connected"):  # closed (1009): nothing to read
            conn.recv()
        conn.send({"prompt": "y"})  # reconnects, with a new token
        assert conn.recv(timeout=10)["seed"] == 42
    assert _sockets(server) == 2
    assert cost.seconds < 5.0, cost


def test_max_message_bytes_can_be_raised_for_larger_answers(server: LocalServer) -> None:
    head = b"\x81\xa5image\xc6" + struct.pack(">I", MAX_MESSAGE_BYTES)
    _script_frame(server, head, b"\0", MAX_MESSAGE_BYTES)
    with Client() as client, client.realtime(ECHO, max_message_bytes=32 * MiB) as conn:
        conn.send({"prompt": "x"})
        answer = conn.recv(timeout=10)
        assert answer["image"] == bytes(MAX_MESSAGE_BYTES)


def test_a_large_realistic_answer_passes_quickly(server: LocalServer) -> None:
    """A data-URI image answer of 12 MiB (fal's `sync_mode` style), under the frame cap and a handful of objects."""
    url = "data:image/png;base64," + "iVBORw0KGgo" * (12 * MiB // 11)
    frame = encode({"images": [{"url": url, "width": 2048, "height": 2048}], "seed": 7})
    _script_frame(server, frame)
    with Client() as client, client.realtime(ECHO) as conn:
        conn.send({"prompt": "x"})
        with measured() as cost:
            answer = conn.recv(timeout=10)
        assert answer["images"][0]["url"] == url and answer["seed"] == 7
        assert conn.recv(timeout=10)["seed"] == 42
    assert cost.seconds < 3.0, cost


def test_recv_timeout_holds_while_a_large_frame_decodes_and_the_answer_is_not_lost(server: LocalServer) -> None:
    """With the object budget lifted, a frame that takes seconds to decode: `recv` gives up at its deadline, and the
    next `recv` gets that frame's answer once decoded, then the next one."""
    head, repeat, count = _empty_lists(6_000_000)  # ~2 s to decode here: see the async twin
    _script_frame(server, head, repeat, count)
    with Client() as client, client.realtime(ECHO, max_message_objects=None) as conn:
        conn.send({"prompt": "x"})
        started = time.perf_counter()
        with pytest.raises(errors.APITimeoutError, match=r"within 0\.3 s"):
            conn.recv(timeout=0.3)
        assert time.perf_counter() - started < 0.3 + 1.0
        assert len(conn.recv(timeout=60)["junk"]) == count
        assert conn.recv(timeout=10)["seed"] == 42
    assert _sockets(server) == 1


async def test_recv_timeout_holds_while_a_large_frame_decodes_async(server: LocalServer) -> None:
    # 6 million objects take ~2 s to decode here; the timeout must not wait for them (a margin for a loaded machine)
    head, repeat, count = _empty_lists(6_000_000)
    _script_frame(server, head, repeat, count)
    async with AsyncClient() as client, client.realtime(ECHO, max_message_objects=None) as conn:
        await conn.send({"prompt": "x"})
        started = time.perf_counter()
        with pytest.raises(errors.APITimeoutError):
            await conn.recv(timeout=0.3)
        assert time.perf_counter() - started < 0.3 + 1.0
        with pytest.raises(TimeoutError):  # a caller's own deadline cancels `recv`: the decode goes on all the same
            await asyncio.wait_for(conn.recv(timeout=60), 0.1)
        assert len((await conn.recv(timeout=60))["junk"]) == count
        assert (await conn.recv(timeout=10))["seed"] == 42


# The decoder's limits, without a socket.


def test_decode_limits_objects_not_bytes() -> None:
    core = Core(key="test-key")
    assert decode(encode({"blob": bytes(5 * MiB), "text": "x" * MiB}), core) == {
        "blob": bytes(5 * MiB),
        "text": "x" * MiB,
    }
    many = encode({"n": list(range(1000))})
    assert decode(many, core, max_objects=1003) == {"n": list(range(1000))}  # the map, its key, the list, 1000 ints
    with pytest.raises(errors.ProtocolError, match=r"more than 1002 objects \(max_message_objects\)"):
        decode(many, core, max_objects=1002)
    with pytest.raises(errors.ProtocolError, match="max_message_objects"):
        decode('{"n": [' + ",".join(["1"] * 1000) + "]}", core, max_objects=500)
    assert decode('{"s": "' + "," * 1000 + '"}', core, max_objects=10) == {"s": "," * 1000}  # commas in a string
    with pytest.raises(errors.ProtocolError):  # nesting deeper than msgpack's stack: not a crash
        decode(b"\x91" * 5000 + b"\x90", core)


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, "x" * 40, None, True, b"b" * 300, {"k": [-5, 300, -300, 70000, 2**40, -(2**40)]}]},
        {
            "t": msgpack.Timestamp(5),
            "e": msgpack.ExtType(3, b"x" * 17),
            "f": [msgpack.ExtType(1, b"y" * n) for n in (1, 2, 4, 8, 16, 300, 70000)],
        },
        {"s": "s" * 70000, "b": b"b" * 70000, "u": "é" * 300, "n": list(range(-70000, 70000, 37))},
    ],
)
def test_the_object_count_matches_what_is_decoded(value: Any) -> None:
    def objects(v: Any) -> int:
        if isinstance(v, dict):
            return 1 + sum(1 + objects(x) for x in v.values())
        if isinstance(v, list):
            return 1 + sum(objects(x) for x in v)
        return 1

    frame = encode(value)
    assert count_msgpack_objects(frame, 10**9) == objects(msgpack.unpackb(frame, raw=False, strict_map_key=False))
