"""`Client.api_request`, the documented way to send a request that is not an endpoint call, and `max_bytes` on the
runtime's request path (issue #20 item 5: a page of fal's model search is read up to a cap, in chunks, and the
connection closed past it). Over real HTTP to `tiny_http`, which can stream an endless body.

Also the exception tree (issue #22 item 4): every `FalError` subclass defined anywhere in `fal_runtime` lives in
`fal_runtime.errors` and is exported from `fal_runtime`, and the old import paths still work.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import pkgutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tiny_http import Answer, TinyServer

import fal_runtime
from fal_runtime import AsyncClient, Client, RetryPolicy, errors
from fal_runtime.platform import MAX_PAGE_BYTES, iter_models, iter_models_async, search_models, search_models_async

KEY = "api-request-key-id:api-request-secret-0123456789"
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)
MiB = 1024 * 1024


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> Iterator[TinyServer]:
    with TinyServer() as server:
        monkeypatch.setenv("FAL_API_HOST", server.url)
        for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
            monkeypatch.delenv(name, raising=False)
        yield server


@pytest.fixture
def client(tiny: TinyServer) -> Iterator[Client]:
    with Client(KEY, rest_host=tiny.url, retry=FAST) as c:
        yield c


def ok(body: Any = None) -> Answer:
    return 200, {}, json.dumps({"ok": True} if body is None else body).encode()


def sequence(*answers: Answer) -> Any:
    queue = list(answers)
    return lambda method, path, auth: queue.pop(0) if len(queue) > 1 else queue[0]


def endless(head: bytes = b'{"models": [') -> Iterator[bytes]:
    yield head
    while True:
        yield b'{"endpoint_id": "x/y"},' * 4096


# api_request.


def test_a_path_goes_to_the_platform_api_and_a_url_as_is(tiny: TinyServer, client: Client) -> None:
    tiny.route = lambda method, path, auth: ok()
    reply = client.api_request("GET", "/models", params={"endpoint_id": ["a", "b"], "q": "cat"})
    assert reply.ok and reply.json() == {"ok": True}
    reply = client.api_request("post", f"{tiny.url}/tokens/", json={"a": 1}, headers={"Accept": "application/json"})
    first, second = tiny.requests
    assert (first.method, first.path, first.query) == ("GET", "/v1/models", {"endpoint_id": ["a", "b"], "q": ["cat"]})
    assert (second.method, second.path, json.loads(second.body)) == ("POST", "/tokens/", {"a": 1})
    assert second.headers["accept"] == "application/json"
    assert first.headers["authorization"] == f"Key {KEY}" == second.headers["authorization"]
    with pytest.raises(ValueError, match="starting with '/'"):
        client.api_request("GET", "models")


def test_auth_required_optional_and_none(tiny: TinyServer, client: Client) -> None:
    tiny.route = lambda method, path, auth: ok()
    with Client(rest_host=tiny.url, retry=FAST) as keyless:
        with pytest.raises(errors.MissingCredentialsError):
            keyless.api_request("GET", "/models")
        assert tiny.requests == []  # refused before anything was sent
        keyless.api_request("GET", "/models", auth="optional")
    client.api_request("GET", "/models", auth="optional")
    client.api_request("GET", "/models", auth="none")
    assert ["authorization" in r.headers for r in tiny.requests] == [False, True, False]


def test_the_key_goes_only_to_fal_and_the_configured_hosts(tiny: TinyServer) -> None:
    tiny.route = lambda method, path, auth: ok()
    with Client(KEY, retry=FAST) as elsewhere:  # FAL_API_HOST points at a host this client was not configured with
        elsewhere.api_request("GET", "/models")
    assert "authorization" not in tiny.requests[0].headers


def test_reads_are_retried_and_writes_only_when_refused(tiny: TinyServer, client: Client) -> None:
    unavailable: Answer = (503, {}, b'{"detail": "unavailable"}')
    tiny.route = sequence(unavailable, ok())
    assert client.api_request("GET", "/models").ok
    assert len(tiny.requests) == 2
    tiny.route = sequence(unavailable, ok())
    with pytest.raises(errors.ServerError):
        client.api_request("POST", "/things", json={})
    assert len(tiny.requests) == 3  # a write that may have arrived is never sent twice
    tiny.route = sequence((429, {"retry-after": "0"}, b"{}"), ok())
    assert client.api_request("POST", "/things", json={}).ok  # 429: fal refused it, so it is sent again
    tiny.route = sequence(unavailable, ok())
    assert client.api_request("POST", "/things", json={}, headers={"Idempotency-Key": "k-1"}).ok
    assert tiny.requests[-1].headers["idempotency-key"] == tiny.requests[-2].headers["idempotency-key"] == "k-1"
    tiny.route = sequence(unavailable, ok())
    assert client.api_request("POST", "/estimate", json={}, idempotent=True).ok
    assert len(tiny.requests) == 9


def test_error_statuses_raise_the_mapped_error_unless_asked_not_to(tiny: TinyServer, client: Client) -> None:
    body = {"error": {"type": "validation_error", "message": "limit must be <= 100", "request_id": "req-7"}}
    tiny.route = lambda method, path, auth: (400, {}, json.dumps(body).encode())
    with pytest.raises(errors.HTTPError) as raised:
        client.api_request("GET", "/models")
    assert "limit must be <= 100" in str(raised.value) and raised.value.request_id == "req-7"
    reply = client.api_request("GET", "/models", raise_for_status=False)
    assert reply.status_code == 400 and reply.json() == body


# max_bytes.


def test_max_bytes_stops_an_endless_body_and_closes_the_connection(tiny: TinyServer, client: Client) -> None:
    tiny.route = lambda method, path, auth: (200, {}, endless())
    started = time.monotonic()
    with pytest.raises(errors.ProtocolError, match=r"over max_bytes \(1,048,576 bytes\)"):
        client.api_request("GET", "/models", max_bytes=MiB)
    assert time.monotonic() - started < 5
    assert len(tiny.requests) == 1  # not retried
    time.sleep(0.2)
    assert tiny.sent < 8 * MiB  # the server stopped writing: the connection was closed, not drained


def test_max_bytes_refuses_a_declared_length_before_reading(tiny: TinyServer, client: Client) -> None:
    tiny.route = lambda method, path, auth: (200, {}, b"x" * (MiB + 1))
    with pytest.raises(errors.ProtocolError, match="max_bytes"):
        client.api_request("GET", "/models", max_bytes=MiB)
    tiny.route = lambda method, path, auth: (200, {}, b"y" * MiB)
    assert len(client.api_request("GET", "/models", max_bytes=MiB).content) == MiB  # at the cap: fine
    with pytest.raises(ValueError, match="max_bytes"):
        client.api_request("GET", "/models", max_bytes=0)


def test_max_bytes_async(tiny: TinyServer) -> None:
    tiny.route = lambda method, path, auth: (200, {}, endless())

    async def main() -> None:
        async with AsyncClient(KEY, rest_host=tiny.url, retry=FAST) as aclient:
            with pytest.raises(errors.ProtocolError, match="max_bytes"):
                await aclient.api_request("GET", "/models", max_bytes=MiB)
            tiny.route = lambda method, path, auth: ok()
            assert (await aclient.api_request("GET", "/models", max_bytes=MiB)).json() == {"ok": True}

    asyncio.run(main())


# The model search's page cap.


def test_a_model_search_page_is_capped(tiny: TinyServer, client: Client) -> None:
    assert 64 * MiB == MAX_PAGE_BYTES
    tiny.route = lambda method, path, auth: (200, {}, endless())
    with pytest.raises(errors.ProtocolError, match=r"max_bytes \(2,097,152 bytes\)"):
        search_models(client=client, max_page_bytes=2 * MiB)
    with pytest.raises(errors.ProtocolError, match=r"max_bytes \(1,048,576 bytes\)"):
        list(iter_models(client=client, max_page_bytes=MiB))
    with pytest.raises(ValueError, match="max_page_bytes"):
        iter_models(client=client, max_page_bytes=0)
    assert len(tiny.requests) == 2


def test_the_default_cap_stops_an_endless_page(tiny: TinyServer, client: Client) -> None:
    tiny.route = lambda method, path, auth: (200, {}, endless())
    with pytest.raises(errors.ProtocolError, match=r"max_bytes \(67,108,864 bytes\)"):
        search_models(client=client)
    time.sleep(0.2)
    assert tiny.sent < MAX_PAGE_BYTES + 8 * MiB


def test_a_page_within_the_cap_is_read(tiny: TinyServer, client: Client) -> None:
    page = {"models": [{"endpoint_id": "a/b"}], "has_more": False}
    tiny.route = lambda method, path, auth: ok(page)
    assert [m.endpoint_id for m in iter_models(client=client, max_page_bytes=1024)] == ["a/b"]
    assert tiny.requests[0].path == "/v1/models"


def test_the_async_model_search_is_capped(tiny: TinyServer) -> None:
    tiny.route = lambda method, path, auth: (200, {}, endless())

    async def main() -> None:
        async with AsyncClient(KEY, rest_host=tiny.url, retry=FAST) as aclient:
            with pytest.raises(errors.ProtocolError, match="max_bytes"):
                await search_models_async(client=aclient, max_page_bytes=MiB)
            with pytest.raises(errors.ProtocolError, match="max_bytes"):
                [m async for m in iter_models_async(client=aclient, max_page_bytes=MiB)]

    asyncio.run(main())


# The exception tree.


def _runtime_modules() -> list[str]:
    names = ["fal_runtime"]
    for info in pkgutil.walk_packages(fal_runtime.__path__, "fal_runtime."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def test_every_fal_error_lives_in_errors_and_is_exported() -> None:
    found: dict[str, type[errors.FalError]] = {}
    for name in _runtime_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, errors.FalError)
                and value.__module__.startswith("fal_runtime")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
                assert value.__module__ == "fal_runtime.errors", f"{name}.{attr} is defined outside errors"
    defined = {cls for cls in vars(errors).values() if inspect.isclass(cls) and issubclass(cls, errors.FalError)}
    assert set(found.values()) == defined
    for cls in defined:
        assert cls.__name__ in fal_runtime.__all__, cls
        assert getattr(fal_runtime, cls.__name__) is cls
    assert len(defined) >= 22  # the 16 of the HTTP stack and the 6 moved here from files, webhooks, realtime, registry


def test_the_old_import_paths_still_work() -> None:
    from fal_runtime import files, realtime, registry, webhooks

    assert files.DownloadError is errors.DownloadError and files.OutputExistsError is errors.OutputExistsError
    assert webhooks.WebhookVerificationError is errors.WebhookVerificationError
    assert realtime.RealtimeError is errors.RealtimeError
    assert realtime.RealtimeConnectionClosed is errors.RealtimeConnectionClosed
    assert registry.UnknownEndpointError is errors.UnknownEndpointError
    assert issubclass(errors.OutputExistsError, FileExistsError) and issubclass(errors.UnknownEndpointError, KeyError)
    assert str(errors.UnknownEndpointError("no generated module for 'x/y'")) == "no generated module for 'x/y'"
