"""A content-addressed cache of finished endpoint modules.

The key covers everything that decides a module's bytes: the endpoint's intermediate model, the reserved keyword
names, and a fingerprint of the generator itself (its source, templates, and the versions of
datamodel-code-generator and black). A hit is therefore byte-identical to regenerating, and a no-op `make gen`
skips the two expensive stages (model generation and black) entirely.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from codegen.generation.ir import EndpointIR, endpoint_fields, endpoint_from_json
from codegen.generation.operations import ApiIR, api_from_json, api_to_json

_HERE = Path(__file__).parent


def generating_files() -> list[Path]:
    """Every file whose content decides what a spec generates, derived rather than listed: the modules and templates
    of `codegen.generation`, `codegen/problems.py`, and each `fal_runtime` module they import (the queue document's
    paths, the option names that become reserved keywords, the models' base). The spec tooling (importer, differ,
    sync) only reads or writes specs: editing it must not throw away every cached module."""
    files = [*_HERE.glob("*.py"), *_HERE.glob("templates/*.jinja"), _HERE.parent / "problems.py"]
    runtime = _HERE.parent.parent / "fal_runtime"
    modules = {m for f in files if f.suffix == ".py" for m in _runtime_imports(f)}
    for module in sorted(modules):
        path = runtime.joinpath(*module.split(".")[1:])
        if path.with_suffix(".py").is_file():
            files.append(path.with_suffix(".py"))
    return sorted(files)


_IMPORTS = re.compile(
    r"^[ \t]*(?:from[ \t]+(fal_runtime[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)|import[ \t]+(fal_runtime[\w.]*))",
    re.M,
)


def _runtime_imports(path: Path) -> set[str]:
    """The `fal_runtime` modules a file imports (`from fal_runtime import queue_document` counts that module). Read
    with a pattern, not parsed: every run computes the fingerprint, and parsing 20 modules took a quarter second; a
    match in a string only adds a file to the fingerprint."""
    found: set[str] = set()
    for match in _IMPORTS.finditer(path.read_text(encoding="utf-8")):
        module, names, imported = match.groups()
        if imported:
            found.add(imported)
            continue
        found.add(module)
        for name in names.strip("()").replace("\n", ",").split(","):
            name = name.split("#")[0].strip().split(" as ")[0].strip()
            if name.isidentifier():
                found.add(f"{module}.{name}")
    return found


@functools.cache
def generator_fingerprint() -> str:
    digest = hashlib.sha256()
    root = _HERE.parent.parent
    for path in generating_files():
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in ("datamodel-code-generator", "black", "pydantic"):
        digest.update(f"{dist}=={metadata.version(dist)}\0".encode())
    return digest.hexdigest()


def endpoint_key(endpoint: EndpointIR, reserved: frozenset[str]) -> str:
    payload = {
        "generator": generator_fingerprint(),
        "endpoint": endpoint_fields(endpoint),
        "reserved": sorted(reserved),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def source_key(source: str) -> str:
    """Key of a small rendered file (package index, namespace package) by its unformatted source."""
    return hashlib.sha256(f"{generator_fingerprint()}\0{source}".encode()).hexdigest()


@dataclass(frozen=True)
class SpecRecord:
    """What a run records of one spec: its cache key, its module's path in the tree, its endpoint without schemas
    (`pipeline._stub_json`) and its warnings (without their file: the specs root may move)."""

    key: str
    module: str
    endpoint: dict[str, Any]
    warnings: list[dict[str, str]]


@dataclass(frozen=True)
class RunRecord:
    """The last run into an output directory: its stamp (generator, spec bytes, reserved names, listing), the tree it
    left (sizes and modification times) and each file's hash, the endpoint count, each spec's record, the namespace
    packages and the reserved names. A run with the same stamp over the same tree is a no-op; a run over the same
    tree with some specs changed loads and renders only those."""

    stamp: str
    tree: Any  # `tree.tree_stats` as JSON reads it back
    hashes: dict[str, str]
    count: int
    specs: dict[str, SpecRecord]
    namespaces: list[str]
    reserved: list[str]

    def to_json(self) -> str:
        return json.dumps({**{f.name: getattr(self, f.name) for f in fields(self)},
                           "specs": {rel: vars(s) for rel, s in self.specs.items()}})  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> RunRecord | None:
        """The record, or None when it is not one this generator wrote (then the run is cold)."""
        try:
            data = json.loads(text)
            return cls(**{**data, "specs": {rel: SpecRecord(**s) for rel, s in data["specs"].items()}})
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class ModuleCache:
    def __init__(self, root: Path | None) -> None:
        self.root = root

    def get(self, key: str, suffix: str = ".py") -> str | None:
        if self.root is None:
            return None
        try:
            return (self.root / f"{key}{suffix}").read_text(encoding="utf-8")
        except OSError:
            return None

    def put(self, key: str, content: str, suffix: str = ".py") -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(self.root / f"{key}{suffix}")

    # A validated spec's intermediate model, keyed by the spec file's bytes: a no-op run skips parsing and
    # validating every spec. Cross-spec checks (duplicate ids, module collisions) still run on every load.

    def get_endpoint(self, key: str) -> tuple[EndpointIR | ApiIR, list[dict[str, str]]] | None:
        text = self.get(key, ".json")
        if text is None:
            return None
        data = json.loads(text)
        if "api" in data:
            return api_from_json(data["api"]), data["warnings"]
        return endpoint_from_json(data["endpoint"]), data["warnings"]

    # The last run into an output directory: its stamp (generator + spec bytes), the tree it left (sizes and
    # modification times), the endpoint count and warnings. A run with the same stamp over the same tree is a no-op.

    def _run_key(self, out: Path) -> str:
        return "run-" + hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:32]

    def last_run(self, out: Path) -> RunRecord | None:
        text = self.get(self._run_key(out), ".json")
        return RunRecord.from_json(text) if text is not None else None

    def record_run(self, out: Path, run: RunRecord) -> None:
        self.put(self._run_key(out), run.to_json(), ".json")

    def put_endpoint(self, key: str, endpoint: EndpointIR | ApiIR, warnings: list[dict[str, str]]) -> None:
        if isinstance(endpoint, ApiIR):
            self.put(key, json.dumps({"api": api_to_json(endpoint), "warnings": warnings}), ".json")
        else:
            self.put(key, json.dumps({"endpoint": endpoint_fields(endpoint), "warnings": warnings}), ".json")


def spec_key(rel: str, content: bytes) -> str:
    return hashlib.sha256(f"{generator_fingerprint()}\0{rel}\0".encode() + content).hexdigest()
