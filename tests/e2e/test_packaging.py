"""The package an app depends on, and the dev environment `make` builds from the lock.

- The wheel ships what apps import (`fal_runtime`, `generated`, `fal_cli`, with their `py.typed`), not the generator,
  and carries the README as its long description.
- `requirements/dev.lock` pins every dependency of the `dev` extra (Python 3.11 on Linux) within pyproject.toml's
  ranges, `make` installs .venv from it, and the environment running these tests is that lock.
- The checkout's editable install is a path a type checker follows: mypy run from a directory outside the checkout
  resolves `generated` and `fal_runtime` (setuptools' default editable install, an import hook, is invisible to it).
"""

from __future__ import annotations

import email
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "dev.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
SHIPPED = {"fal_runtime", "generated", "fal_cli"}
# The platform the lock is for: the dev environment, CI and GitHub's runners.
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


def uv() -> str:
    """The uv the lock pins (in .venv beside this interpreter), else one on PATH."""
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if found is None:
        pytest.fail("no uv beside the interpreter or on PATH: create .venv with `make venv`")
    return found


def build_wheel(out: Path) -> Path:
    """A wheel of the checkout as it is (hatchling writes nothing into the source tree)."""
    subprocess.run([uv(), "build", "-q", "--wheel", "--out-dir", str(out), str(ROOT)], check=True, capture_output=True)
    [wheel] = out.glob("*.whl")
    return wheel


def lock_pins(text: str) -> dict[str, tuple[Version, int]]:
    """Each package the lock pins: its version and how many hashes follow the pin."""
    pins: dict[str, tuple[Version, int]] = {}
    current = ""
    for line in text.splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match["name"])
            pins[current] = (Version(match["version"]), 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        elif line and not line.startswith((" ", "#")):
            current = ""
    return pins


def dev_requirements() -> list[Requirement]:
    """The dev extra's requirements for the target platform, with this project's own extras expanded."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    found: list[Requirement] = []
    todo = [(Requirement(text), "dev") for text in optional["dev"]]
    todo += [(Requirement(text), "") for text in PYPROJECT["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({**TARGET, "extra": extra}):
            continue
        if canonicalize_name(requirement.name) == PROJECT:
            for name in sorted(requirement.extras - seen):
                seen.add(name)
                todo += [(Requirement(text), name) for text in optional[name]]
            continue
        found.append(requirement)
    return found


def disagreements(requirements: list[Requirement], pins: dict[str, tuple[Version, int]]) -> list[str]:
    """What `make lock` would fix: a requirement the lock lacks or pins outside its range, a pin without a hash."""
    problems = []
    for requirement in requirements:
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement}: not in the lock")
        elif not requirement.specifier.contains(pin[0], prereleases=True):
            problems.append(f"{requirement}: the lock pins {pin[0]}")
    problems += [f"{name}: pinned without a hash" for name, (_, hashes) in sorted(pins.items()) if hashes == 0]
    return problems


def test_the_lock_pins_every_dev_dependency_within_its_range() -> None:
    text = LOCK.read_text(encoding="utf-8")
    assert "make lock" in text.splitlines()[1], "the lock's header names the command that rewrites it"
    pins = lock_pins(text)
    problems = disagreements(dev_requirements(), pins)
    assert not problems, "pyproject.toml and requirements/dev.lock disagree (run `make lock`):\n" + "\n".join(problems)
    assert PROJECT not in pins, "the project itself is installed editable, not from the lock"
    assert {"pytest", "jinja2", "tree-sitter-typescript", "uv"} <= pins.keys()  # the extras expand (codegen, ...)


def test_the_lock_check_catches_a_stale_lock() -> None:
    pins = lock_pins(LOCK.read_text(encoding="utf-8"))
    requirements = dev_requirements()
    assert not disagreements(requirements, pins)
    del pins["ruff"]  # a dependency added to pyproject.toml without `make lock`
    pins["black"] = (Version("24.1.0"), 1)  # a pin moved in pyproject.toml without `make lock`
    pins["mypy"] = (pins["mypy"][0], 0)
    problems = disagreements(requirements, pins)
    assert any(p.startswith("ruff==") and "not in the lock" in p for p in problems), problems
    assert any(p.startswith("black==") and "pins 24.1.0" in p for p in problems), problems
    assert "mypy: pinned without a hash" in problems


def test_the_environment_running_the_tests_is_the_locked_one() -> None:
    wrong = []
    for name, (version, _) in lock_pins(LOCK.read_text(encoding="utf-8")).items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{name}: not installed (lock: {version})")
            continue
        if installed != version:
            wrong.append(f"{name}: {installed} installed, the lock pins {version}")
    assert not wrong, "this environment is not requirements/dev.lock (`make venv` syncs it):\n" + "\n".join(wrong)


def make_dry_run(tree: Path, target: str) -> str:
    result = subprocess.run(["make", "-n", target], cwd=tree, capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


@pytest.mark.slow
def test_make_installs_from_the_lock_and_reinstalls_when_it_changes(tmp_path: Path) -> None:
    for name in ("Makefile", "pyproject.toml", "requirements/dev.lock"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    fresh = make_dry_run(tmp_path, "test")  # a fresh clone: no .venv
    uv_pin = next(line.split()[0] for line in (ROOT / "requirements/dev.lock").read_text().splitlines() if line.startswith("uv=="))  # fmt: skip
    assert f"install -q {uv_pin}" in fresh, fresh  # the uv the lock pins
    assert "pip sync -q --compile-bytecode --python .venv/bin/python requirements/dev.lock" in fresh, fresh
    assert "--no-deps -e ." in fresh, fresh  # the checkout itself, nothing resolved
    assert ".[dev]" not in fresh, fresh
    assert fresh.index("pip sync") < fresh.index("-m pytest"), fresh

    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    for tool in ("python", "uv"):
        (venv / "bin" / tool).write_text("#!/bin/sh\n")
        (venv / "bin" / tool).chmod(0o755)
    installed = max(os.path.getmtime(tmp_path / name) for name in ("pyproject.toml", "requirements/dev.lock")) + 10
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (installed, installed))
    assert "pip sync" not in make_dry_run(tmp_path, "venv")  # up to date: nothing reinstalled
    os.utime(tmp_path / "requirements/dev.lock", (installed + 10, installed + 10))
    assert "pip sync" in make_dry_run(tmp_path, "venv")  # a new lock (`make lock`, a pull): .venv follows it


@pytest.mark.slow
def test_the_wheel_ships_what_apps_import_and_not_the_generator(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "wheels")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [dist_info] = {name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")}
        headers, _, description = archive.read(f"{dist_info}/METADATA").decode("utf-8").partition("\n\n")
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert {name.split("/")[0] for name in names} == SHIPPED | {dist_info}, sorted(names)[:20]
    assert not any(name.startswith(("codegen/", "tests/", "specs/", "bench/", "sources/")) for name in names)
    assert {"fal_runtime/py.typed", "generated/py.typed"} <= names  # typed for mypy and pyright once installed
    on_disk = {
        path.relative_to(ROOT).as_posix()
        for package in SHIPPED
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert on_disk <= names, sorted(on_disk - names)[:20]  # every module of the shipped packages

    metadata = email.message_from_string(headers)
    assert metadata["Name"] == "fal-typed"
    assert metadata["Description-Content-Type"] == "text/markdown"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert description.strip() == readme.strip()  # PyPI's page is the README
    assert "fal-typed = fal_cli.__main__:main" in entry_points
    base = {canonicalize_name(Requirement(text).name) for text in metadata.get_all("Requires-Dist", []) if "extra ==" not in text}  # fmt: skip
    assert base == {canonicalize_name(Requirement(text).name) for text in PYPROJECT["project"]["dependencies"]}


@pytest.mark.slow
def test_the_installed_wheel_imports_without_the_checkout(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "wheels")
    target = tmp_path / "site"
    subprocess.run([uv(), "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)  # fmt: skip
    # The editable install puts the checkout on sys.path (a .pth); take it off, so only the wheel's copy is found.
    code = f"""
import sys
sys.path[:] = [p for p in sys.path if p not in ({str(ROOT)!r}, '')]
import fal_runtime, fal_cli.__main__, fal_cli.app, generated
from generated.fal_ai.flux.dev import image_to_image
for module in (fal_runtime, fal_cli.__main__, generated, image_to_image):
    assert module.__file__.startswith({str(target)!r}), module.__file__
assert "codegen" not in sys.modules
try:
    import codegen
except ImportError:
    print("no codegen")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no codegen"


APP = """
from generated.fal_ai.flux.dev import image_to_image as flux
from fal_runtime import Client


def first_url(client: Client) -> str:
    return flux.subscribe(image_url="https://example.com/cat.png", prompt="a cat", client=client).images[0].url


flux.subscribe(image_url="https://example.com/cat.png", prompt="a cat", strength="strong")
"""


@pytest.mark.slow
def test_a_type_checker_outside_the_checkout_follows_the_editable_install(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(APP, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    where = subprocess.run(
        [sys.executable, "-c", "import codegen, fal_cli, fal_runtime, generated as g; print(g.__file__)"],
        cwd=app, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr  # the checkout is importable from anywhere, codegen included
    assert Path(where.stdout.strip()) == ROOT / "generated" / "__init__.py", where.stdout
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"), "app.py"]
    result = subprocess.run(command, cwd=app, env=env, capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    assert "import-not-found" not in report and "import-untyped" not in report, report
    assert "Returning Any" not in report, report
    errors = [line for line in report.splitlines() if ": error:" in line]
    assert len(errors) == 1 and 'app.py:10: error: No overload variant of "subscribe"' in errors[0], report
