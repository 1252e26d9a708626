"""One local fal server for the end-to-end tests, serving the committed specs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fal_runtime.local import LocalServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    with LocalServer(ROOT / "specs") as running:
        yield running
