"""The local fal server for the command-line tests, and ways to run `fal-typed` against it: in-process through
click's `CliRunner` (fast) or as the real command in a subprocess (`python -m fal_cli`, marked slow).

The server serves only the three specs the tests call, so it starts in a fraction of the time the whole catalogue
takes; the command line still sees every generated endpoint (ids, `list`, `show` need no server).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fal_runtime.local import LocalServer

ROOT = Path(__file__).resolve().parents[2]
FLUX_I2I = "fal-ai/flux/dev/image-to-image"
SEEDEDIT = "fal-ai/bytedance/seededit/v3/edit-image"
SCHNELL = "fal-ai/flux/schnell"
SPECS = (
    "fal-ai/flux/dev/image-to-image.yaml",
    "fal-ai/bytedance/seededit/v3/edit-image.yaml",
    "fal-ai/flux/schnell.yaml",
)
KEY = "cli-test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    specs = tmp_path_factory.mktemp("specs")
    for name in SPECS:
        (specs / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "specs" / name, specs / name)
    with LocalServer(specs) as running:
        yield running


def environment(server: LocalServer) -> dict[str, str]:
    """The variables the runtime reads, pointing at the local server."""
    return {
        "FAL_KEY": KEY,
        "FAL_QUEUE_RUN_HOST": server.base,
        "FAL_RUN_HOST": server.run_host,
        "FAL_REST_HOST": server.base,
        "FAL_API_HOST": server.api_host,  # run and batch price what fal billed: never ask the real api.fal.ai
        "SSL_CERT_FILE": str(server.ca_file),
    }


@pytest.fixture
def fal(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    """The server, reset, with this process's environment pointing at it (for in-process runs)."""
    server.reset()
    for name, value in environment(server).items():
        monkeypatch.setenv(name, value)
    return server


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fal_cli", *args]


@pytest.fixture
def run_cli(fal: LocalServer) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real command in a subprocess, stdout and stderr piped (not a terminal)."""

    def run(*args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **environment(fal)}
        return subprocess.run(
            command(*args), check=False, capture_output=True, text=True, timeout=timeout, env=env, **kwargs
        )

    return run


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail the test if it does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
