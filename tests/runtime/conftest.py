"""Fixtures for tests that need fal: the local fal-compatible HTTPS server, and the environment pointing at it.

`local_server` is one server for the whole session (started in a thread, on a free 127.0.0.1 port, serving the small
spec fixture in `tests/runtime/specs/`). Its script and counters are shared: a test that scripts faults or asserts on
counters calls `local_server.reset()` first. Nothing global is set by `local_server`; `fal_env` sets the environment
for one test only (monkeypatch).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fal_runtime.local import LocalServer

SPECS_DIR = Path(__file__).parent / "specs"


@pytest.fixture(scope="session")
def local_server() -> Iterator[LocalServer]:
    """The server: `.port`, `.base` ("127.0.0.1:PORT"), `.run_host`, `.ca_file`, `.url`, `.webhook_url`, plus
    `.script(...)`, `.behave(...)`, `.counters()`, `.webhooks()`, `.reset()`."""
    with LocalServer(SPECS_DIR) as server:
        yield server


@pytest.fixture
def fal_env(local_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    """FAL_KEY, FAL_QUEUE_RUN_HOST, FAL_RUN_HOST and SSL_CERT_FILE pointing at the local server, for this test.

    fal_client reads its hosts once, at import: if it is already imported, its URL constants are patched too (and
    restored after the test), so it behaves as if imported with this environment.
    """
    monkeypatch.setenv("FAL_KEY", "test-key")
    monkeypatch.setenv("FAL_QUEUE_RUN_HOST", local_server.base)
    monkeypatch.setenv("FAL_RUN_HOST", local_server.run_host)
    monkeypatch.setenv("SSL_CERT_FILE", str(local_server.ca_file))
    client_module = sys.modules.get("fal_client.client")
    if client_module is not None:
        monkeypatch.setattr(client_module, "QUEUE_URL_FORMAT", f"https://{local_server.base}/")
        monkeypatch.setattr(client_module, "RUN_URL_FORMAT", f"https://{local_server.run_host}/")
    return local_server
