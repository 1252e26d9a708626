"""The package as a user installs it: a built wheel, installed into a fresh directory, type-checks a user's code.

mypy treats an installed package without a `py.typed` marker as untyped (every call `Any`), so this is what proves
the typed signatures reach users, not just this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

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
    source, wheels, target, app = tmp_path / "source", tmp_path / "wheels", tmp_path / "site", tmp_path / "app"
    # A copy of the checkout as it is, so setuptools' build/ and egg-info neither come from nor go to the checkout.
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "build", "*.egg-info", "__pycache__", ".*_cache"),
    )
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], check=True, capture_output=True)
    [wheel] = wheels.glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    app.mkdir()
    (app / "app.py").write_text(USER_CODE)
    env = dict(os.environ, PYTHONPATH=str(target))  # the wheel's copy, not this checkout's sources
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"), "app.py"],
                            cwd=app, env=env, capture_output=True, text=True)  # fmt: skip
    report = result.stdout
    assert "py.typed" not in report and "import-untyped" not in report, report
    assert "Returning Any" not in report, report  # the output model's fields are typed
    errors = [line for line in report.splitlines() if ": error:" in line]
    assert len(errors) == 1 and 'app.py:11: error: No overload variant of "subscribe"' in errors[0], report
