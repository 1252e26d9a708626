"""Uploads over httpx.MockTransport, for what the local server cannot produce: a CDN on another host than fal's API
(where the key must never go), a token the CDN rejects, and a token about to expire. Everything else about uploads
is tested end to end in tests/e2e/test_file_inputs.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from fal_runtime import AsyncClient, Client, RetryPolicy, errors
from fal_runtime._core import Core, RequestSpec
from fal_runtime.inputs import Blob, sniff, to_blob

KEY = "test-key-id:test-key-secret-0123"
CDN = "https://v3.cdn.example"


class FakeStorage:
    """fal's REST host (tokens) and a CDN on a different host; records every request's host and Authorization."""

    def __init__(self, *, reject_first_upload: bool = False, lifetimes: list[float] | None = None) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (host, path, Authorization)
        self.tokens = 0
        self.reject_first_upload = reject_first_upload
        self.lifetimes = lifetimes or [3600.0]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        self.seen.append((request.url.host, request.url.path, auth))
        if request.url.path == "/storage/auth/token":
            lifetime = self.lifetimes[min(self.tokens, len(self.lifetimes) - 1)]
            self.tokens += 1
            expires = datetime.fromtimestamp(time.time() + lifetime, UTC).isoformat()
            body = {"token": f"t{self.tokens}", "token_type": "Bearer", "base_url": CDN, "expires_at": expires}
            return httpx.Response(200, json=body)
        if request.url.path == "/files/upload":
            if self.reject_first_upload and auth == "Bearer t1":
                return httpx.Response(401, json={"detail": "token expired"})
            return httpx.Response(200, json={"access_url": f"{CDN}/files/x/{request.headers['x-fal-file-name']}"})
        return httpx.Response(404)

    def keys_sent_to(self, host: str) -> list[str]:
        return [auth for h, _, auth in self.seen if h == host and auth.startswith("Key ")]


def _client(fake: FakeStorage, **extra: Any) -> Client:
    http = httpx.Client(transport=httpx.MockTransport(fake))
    return Client(KEY, http_client=http, retry=RetryPolicy(max_retries=0), **extra)


def test_the_key_goes_to_the_rest_host_only() -> None:
    fake = FakeStorage()
    with _client(fake) as client:
        url = client.upload(b"\x89PNG\r\n\x1a\n...")
    assert url == f"{CDN}/files/x/file.png"
    assert fake.keys_sent_to("rest.fal.ai") == [f"Key {KEY}"]
    assert fake.keys_sent_to("v3.cdn.example") == []
    assert [auth for host, _, auth in fake.seen if host == "v3.cdn.example"] == ["Bearer t1"]


async def test_the_key_goes_to_the_rest_host_only_async() -> None:
    fake = FakeStorage()
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    async with AsyncClient(KEY, http_client=http, retry=RetryPolicy(max_retries=0)) as client:
        await client.upload(b"abc")
    assert fake.keys_sent_to("v3.cdn.example") == [] and len(fake.keys_sent_to("rest.fal.ai")) == 1


@pytest.mark.parametrize(
    ("url", "gets_key"),
    [
        ("https://queue.fal.run/fal-ai/flux/requests/1/status", True),
        ("https://rest.fal.ai/storage/auth/token", True),
        ("https://other.fal.ai/x", True),  # fal's own domain
        ("https://evil.example/fal.run/x", False),
        ("https://fal.run.evil.example/x", False),
        ("http://queue.fal.run/x", False),  # not over plain HTTP either
    ],
)
def test_which_urls_get_the_key(url: str, gets_key: bool) -> None:
    headers = Core(key=KEY, environ={}).headers(RequestSpec("GET", url))
    assert ("Authorization" in headers) is gets_key
    assert "Authorization" not in Core(key=KEY, environ={}).headers(RequestSpec("GET", url, credentials=False))


def test_a_rejected_token_is_renewed_once() -> None:
    fake = FakeStorage(reject_first_upload=True)
    with _client(fake) as client:
        assert client.upload(b"abc").startswith(CDN)
    assert fake.tokens == 2
    assert [auth for _, path, auth in fake.seen if path == "/files/upload"] == ["Bearer t1", "Bearer t2"]


@pytest.mark.parametrize(("lifetime", "tokens"), [(3600.0, 1), (30.0, 2)])
def test_a_token_is_cached_until_near_its_expiry(lifetime: float, tokens: int) -> None:
    fake = FakeStorage(lifetimes=[lifetime])
    with _client(fake) as client:
        client.upload(b"one")
        client.upload(b"two")
    assert fake.tokens == tokens  # a token with under a minute left is not used for a new upload


def test_an_upload_error_is_typed_and_names_no_key() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"detail": f"bad key {KEY}"})

    with Client(KEY, http_client=httpx.Client(transport=httpx.MockTransport(broken))) as client:
        with pytest.raises(errors.AuthenticationError) as caught:
            client.upload(b"abc")
    assert "test-key-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("head", "content_type"),
    [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"RIFF\0\0\0\0WEBPVP8", "image/webp"),
        (b"\0\0\0\x18ftypmp42", "video/mp4"),
        (b"plain", "application/octet-stream"),
    ],
)
def test_content_type_of_bytes(head: bytes, content_type: str) -> None:
    assert sniff(head) == content_type
    blob: Blob = to_blob(head)
    assert blob.content_type == content_type and blob.size == len(head) and blob.read() == head


def test_a_named_file_object_keeps_its_name_and_position(tmp_path: Any) -> None:
    path = tmp_path / "clip.webp"
    path.write_bytes(b"skip" + b"RIFF\0\0\0\0WEBP")
    with path.open("rb") as handle:
        handle.read(4)  # a caller that already read a header: the rest is the file
        blob = to_blob(handle)
        read: Callable[[int, int], bytes] = blob.read_range
        assert (blob.file_name, blob.size, read(0, 4), blob.content_type) == ("clip.webp", 12, b"RIFF", "image/webp")
