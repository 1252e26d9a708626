"""openapi-python-client as a second generation peer for `make bench`.

The issue asks for openapi-python-client "over the same specs where it can take them": unlike datamodel-codegen it
builds a whole client (models plus endpoint calls), as ours does. It may reject some specs, so each spec runs on its
own, only accepted specs are timed, and each rejection comes back as a reason line instead of failing the bench.

Its dependency pins clash with the project venv, so it lives in its own venv under .cache/ (gitignored), built on
first use and rebuilt only when VERSION changes.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

VERSION = "0.29.1"
VENV = Path(__file__).resolve().parents[1] / ".cache" / "bench-opc" / "venv"
_STAMP = VENV / "bench-opc-version"  # which VERSION the venv holds
_NOISE = ("Generating ", "Error(s) encountered", "Warning(s) encountered")  # its banners, not a reason


def _cli() -> Path:
    """The CLI in the isolated venv, creating the venv (or reinstalling after a VERSION bump) when needed."""
    if not _STAMP.is_file() or _STAMP.read_text() != VERSION:
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", f"openapi-python-client=={VERSION}"], check=True)
        _STAMP.write_text(VERSION)
    return VENV / "bin" / "openapi-python-client"


def _reason(output: str, code: int) -> str:
    """The first line of its output that says what went wrong, or the exit code when it says nothing."""
    lines = (line.strip() for line in output.splitlines())
    fallback = f"exit code {code}, no package written"
    return next((line for line in lines if line and not line.startswith(_NOISE)), fallback)


def peer(files: list[Path], tmp: Path) -> tuple[float, int, list[str]]:
    """Run openapi-python-client once per spec file; return (total seconds over the specs it accepted, number accepted, one short reason line per rejected spec).

    Its ruff post-hooks (lint fixes and `ruff format`) stay on because ours formats its output with black; the venv's
    bin/ goes first on PATH so the hooks find its pinned ruff rather than being skipped. `--meta none` writes the bare
    package, as ours does, so `__init__.py` in the output directory shows the package was written.
    """
    cli = _cli()
    env = dict(os.environ, PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    total, accepted, rejected = 0.0, 0, []
    for i, spec in enumerate(files):
        out = tmp / "opc" / str(i)  # fresh per spec: names repeat across endpoints, and leftovers would fake success
        cmd = [str(cli), "generate", "--path", str(spec), "--output-path", str(out), "--meta", "none", "--overwrite"]
        start = time.perf_counter()
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if run.returncode == 0 and (out / "__init__.py").is_file():
            total += elapsed
            accepted += 1
        else:
            rejected.append(f"{spec.name}: {_reason(run.stderr + run.stdout, run.returncode)}")
    return total, accepted, rejected
