"""One local fal server for the end-to-end tests, serving the committed specs, and clients pointed at it."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fal_runtime import AsyncClient, Client
from fal_runtime.local import LocalServer

ROOT = Path(__file__).resolve().parents[2]


def connects(caplog: pytest.LogCaptureFixture) -> int:
    """TCP connections httpcore opened while `caplog` listened at DEBUG on the `httpcore` logger."""
    return sum(
        1
        for r in caplog.records
        if r.name == "httpcore.connection" and r.getMessage().startswith("connect_tcp.started")
    )


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    with LocalServer(ROOT / "specs") as running:
        yield running


def client_settings(server: LocalServer, **extra: Any) -> dict[str, Any]:
    """Client arguments that send every host's requests (queue, run, storage) to `server`, trusting its CA, and
    poll fast when a test forces polling."""
    ctx = ssl.create_default_context(cafile=server.certificates.ca_file)
    return dict(
        queue_host=server.base, run_host=server.run_host, rest_host=server.base, verify=ctx, poll_interval=0.02, **extra
    )


@pytest.fixture
def client_options() -> dict[str, Any]:
    """Extra arguments for the `client` and `async_client` fixtures; a module overrides this fixture to tune them."""
    return {}


@pytest.fixture
def client(server: LocalServer, client_options: dict[str, Any]) -> Iterator[Client]:
    """A client of the shared server, whose script and counters start empty."""
    server.reset()
    with Client("test-key", **client_settings(server, **client_options)) as c:
        yield c


@pytest.fixture
async def async_client(server: LocalServer, client_options: dict[str, Any]) -> AsyncIterator[AsyncClient]:
    """The async twin of `client`."""
    server.reset()
    async with AsyncClient("test-key", **client_settings(server, **client_options)) as c:
        yield c


@pytest.fixture
def fresh_default_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's default client made anew within the test (so it reads the test's SSL_CERT_FILE), and closed
    after it: an earlier test's default client trusts another server's CA."""
    from fal_runtime import _client

    monkeypatch.setattr(_client, "_default", None)
    yield
    if _client._default is not None:
        _client._default.close()
