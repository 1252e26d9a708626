"""One local fal server for the end-to-end tests, serving the committed specs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fal_runtime.local import LocalServer

ROOT = Path(__file__).resolve().parents[2]


def connects(caplog: pytest.LogCaptureFixture) -> int:
    """TCP connections httpcore opened while `caplog` listened at DEBUG on the `httpcore` logger."""
    return sum(1 for r in caplog.records if r.name == "httpcore.connection" and r.getMessage().startswith("connect_tcp.started"))


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    with LocalServer(ROOT / "specs") as running:
        yield running
