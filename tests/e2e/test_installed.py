"""The package as a user installs it: a built wheel, installed into a fresh directory, type-checks a user's code.

mypy treats an installed package without a `py.typed` marker as untyped (every call `Any`), so this is what proves
the typed signatures reach users, not just this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_packaging import ROOT, build_wheel, uv

USER_CODE = """
from generated.fal_ai.flux.dev import image_to_image as flux
from fal_runtime import Client


def first_url(client: Client) -> str:
    out = flux.subscribe(image_url="https://example.com/cat.png", prompt="a cat", strength=0.5, client=client)
    return out.images[0].url


flux.subscribe(image_url="https://example.com/cat.png", prompt="a cat", strength="strong")
"""


@pytest.mark.slow
def test_an_installed_wheel_is_typed_for_its_users(tmp_path: Path) -> None:
    target, app = tmp_path / "site", tmp_path / "app"
    wheel = build_wheel(tmp_path / "wheels")  # hatchling builds from the checkout and writes nothing into it
    subprocess.run([uv(), "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)  # fmt: skip
    app.mkdir()
    (app / "app.py").write_text(USER_CODE)
    # The wheel's copy, not this checkout's sources: PYTHONPATH comes before site-packages and the editable install's
    # path, and mypy skips the checkout (MYPYPATH unset; the .pth path is searched after PYTHONPATH).
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"} | {"PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"), "-v", "app.py"],
                            cwd=app, env=env, capture_output=True, text=True)  # fmt: skip
    report = result.stdout
    assert "py.typed" not in report and "import-untyped" not in report, report
    assert "Returning Any" not in report, report  # the output model's fields are typed
    errors = [line for line in report.splitlines() if ": error:" in line]
    assert len(errors) == 1 and 'app.py:11: error: No overload variant of "subscribe"' in errors[0], report
    assert str(ROOT / "generated") not in result.stderr  # mypy -v logs where each module was found
