"""Byte-identical output whatever the hash seed or spec order; committed generated/ equals a fresh generation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from codegen import loader
from codegen.pipeline import load_endpoints, read_tree, render_tree
from tests.codegen.conftest import ROOT, SHARED, write_specs

SPECS = ROOT / "specs"


def _real_specs(tmp_path: Path) -> Path:
    import json

    root = tmp_path / "real"
    for doc in sorted((SHARED / "fal-openapi").glob("*.json")):
        if "--" not in doc.name:
            spec = json.loads(doc.read_text())
            write_specs(root, {spec["info"]["x-fal-metadata"]["endpointId"] + ".json": spec})
    return root


def _generate(specs: Path, out: Path, seed: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "codegen", "gen", "-q", "--no-cache", "--specs", str(specs), "--out", str(out)], cwd=ROOT, env=env, check=True)  # fmt: skip
    tree = read_tree(out)
    assert tree
    return tree


def test_hash_seed_does_not_change_output(tmp_path: Path) -> None:
    specs = _real_specs(tmp_path)
    assert _generate(specs, tmp_path / "a", "1") == _generate(specs, tmp_path / "b", "4242")


def test_spec_order_does_not_change_output(tmp_path: Path) -> None:
    specs = _real_specs(tmp_path)
    files = loader.find_spec_files(specs)
    forward, _ = load_endpoints(files, specs)
    backward, _ = load_endpoints(list(reversed(files)), specs)
    assert render_tree(forward) == render_tree(backward)


def test_second_run_writes_nothing(tmp_path: Path) -> None:
    specs = _real_specs(tmp_path)
    out = tmp_path / "out"
    _generate(specs, out, "0")
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.py")}
    proc = subprocess.run([sys.executable, "-m", "codegen", "gen", "--no-cache", "--specs", str(specs), "--out", str(out)], cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    assert "already up to date" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.py")} == mtimes


def test_cache_hits_are_byte_identical(tmp_path: Path) -> None:
    from codegen.cache import ModuleCache

    specs = _real_specs(tmp_path)
    endpoints, _ = load_endpoints(loader.find_spec_files(specs), specs)
    cold = render_tree(endpoints)
    cache = ModuleCache(tmp_path / "cache")
    assert render_tree(endpoints, cache, jobs=2) == cold  # fills the cache, in two worker processes
    assert len(list((tmp_path / "cache").glob("*.py"))) == len(endpoints)
    assert render_tree(endpoints, cache) == cold  # served from it


def test_committed_generated_is_current() -> None:
    endpoints, _ = load_endpoints(loader.find_spec_files(SPECS), SPECS)
    assert read_tree(ROOT / "generated") == render_tree(endpoints), "generated/ is stale: run `make gen`"
