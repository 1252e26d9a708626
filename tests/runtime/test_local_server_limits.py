"""The local server's limits hold against hostile bodies: a chunked upload (no Content-Length) cannot slip past the
CDN's size cap, submit and run bodies are capped while they are read, and JSON nested deeper than any real input
answers a clear 422 instead of crashing the validator with a 500."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fal_runtime.local import LocalServer
from fal_runtime.local.app import MAX_BODY_BYTES, MAX_JSON_DEPTH
from fal_runtime.local.files import MAX_UPLOAD_BYTES

SPECS_DIR = Path(__file__).parent / "specs"
ECHO = "fal-ai/test/echo"
MIB = 1024 * 1024


@pytest.fixture
def http(local_server: LocalServer) -> Iterator[httpx.Client]:
    local_server.reset()
    with httpx.Client(
        base_url=local_server.url,
        verify=ssl.create_default_context(cafile=str(local_server.ca_file)),
        headers={"Authorization": "Key test-key"},
        timeout=60,
    ) as client:
        yield client


def chunks(total: int, size: int = MIB) -> Iterator[bytes]:
    """`total` bytes as a generator, so httpx sends them chunked, with no Content-Length."""
    block = b"\0" * size
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield block[:n]
        sent += n


def json_chunks(prefix: bytes, filler: int, suffix: bytes) -> Iterator[bytes]:
    yield prefix
    for part in chunks(filler):
        yield part.replace(b"\0", b"a")
    yield suffix


def test_chunked_upload_over_the_cap_is_refused(http: httpx.Client, local_server: LocalServer) -> None:
    token = http.post("/storage/auth/token", params={"storage_type": "fal-cdn-v3"}, json={}).json()
    reply = http.post(
        f"{token['base_url']}/files/upload",
        content=chunks(MAX_UPLOAD_BYTES + 1),
        headers={"Authorization": f"Bearer {token['token']}", "Content-Type": "application/octet-stream"},
    )
    assert "content-length" not in reply.request.headers
    assert reply.status_code == 413
    assert "too large" in reply.json()["detail"].lower()


def test_chunked_upload_under_the_cap_is_stored(http: httpx.Client, local_server: LocalServer) -> None:
    token = http.post("/storage/auth/token", params={"storage_type": "fal-cdn-v3"}, json={}).json()
    reply = http.post(
        f"{token['base_url']}/files/upload",
        content=chunks(3 * MIB + 5),
        headers={"Authorization": f"Bearer {token['token']}", "Content-Type": "application/octet-stream"},
    )
    assert reply.status_code == 200
    stored = local_server.stored_file(reply.json()["access_url"])
    assert stored is not None and len(stored) == 3 * MIB + 5


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 200_000])
def test_deeply_nested_submit_is_a_clear_422(http: httpx.Client, depth: int) -> None:
    body = b'{"prompt": "x", "image_size": ' + b"[" * depth + b"]" * depth + b"}"
    reply = http.post(f"/{ECHO}", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert detail[0]["loc"] == ["body"] and "nest" in detail[0]["msg"].lower()


def test_nesting_within_the_limit_is_validated_as_usual(http: httpx.Client) -> None:
    depth = MAX_JSON_DEPTH - 2
    body = b'{"prompt": "x", "image_size": ' + b"[" * depth + b"]" * depth + b"}"
    reply = http.post(f"/{ECHO}", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 422  # an ordinary schema error on image_size, not the nesting one
    assert "nest" not in json.dumps(reply.json()).lower()


def test_submit_body_over_the_cap_is_413(http: httpx.Client) -> None:
    body = json.dumps({"prompt": "a" * (MAX_BODY_BYTES + 1)}).encode()
    reply = http.post(f"/{ECHO}", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 413
    assert http.get("/_local/counters").json()["submits"] == {}


def test_chunked_submit_body_over_the_cap_is_413(http: httpx.Client) -> None:
    body = json_chunks(b'{"prompt": "', MAX_BODY_BYTES + 1, b'"}')
    reply = http.post(f"/{ECHO}", content=body, headers={"Content-Type": "application/json"})
    assert "content-length" not in reply.request.headers
    assert reply.status_code == 413
    assert http.get("/_local/counters").json()["submits"] == {}


def test_body_cap_is_configurable_and_covers_run(tmp_path: Path) -> None:
    with LocalServer(SPECS_DIR, max_body_bytes=4096) as server:
        verify = ssl.create_default_context(cafile=str(server.ca_file))
        with httpx.Client(base_url=server.url, verify=verify, headers={"Authorization": "Key k"}, timeout=10) as http:
            small = {"prompt": "a" * 1000}
            assert http.post(f"/{ECHO}", json=small).status_code == 200
            assert http.post(f"/run/{ECHO}", json=small).status_code == 200
            big = json.dumps({"prompt": "a" * 5000}).encode()
            assert http.post(f"/{ECHO}", content=big).status_code == 413
            assert http.post(f"/run/{ECHO}", content=big).status_code == 413
            chunked = json_chunks(b'{"prompt": "', 5000, b'"}')
            assert http.post(f"/run/{ECHO}/stream", content=chunked).status_code == 413
            assert server.counters()["runs"] == {ECHO: 1}
