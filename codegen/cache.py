"""A content-addressed cache of finished endpoint modules.

The key covers everything that decides a module's bytes: the endpoint's intermediate model, the reserved keyword
names, and a fingerprint of the generator itself (its source, templates, and the versions of
datamodel-code-generator and black). A hit is therefore byte-identical to regenerating, and a no-op `make gen`
skips the two expensive stages (model generation and black) entirely.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from codegen.ir import Endpoint


@functools.cache
def generator_fingerprint() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted([*here.glob("*.py"), *here.glob("templates/*.jinja")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in ("datamodel-code-generator", "black", "pydantic"):
        digest.update(f"{dist}=={metadata.version(dist)}\0".encode())
    return digest.hexdigest()


def endpoint_key(endpoint: Endpoint, reserved: frozenset[str]) -> str:
    payload = {
        "generator": generator_fingerprint(),
        "endpoint": dataclasses.asdict(endpoint),
        "reserved": sorted(reserved),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def source_key(source: str) -> str:
    """Key of a small rendered file (package index, namespace package) by its unformatted source."""
    return hashlib.sha256(f"{generator_fingerprint()}\0{source}".encode()).hexdigest()


class ModuleCache:
    def __init__(self, root: Path | None) -> None:
        self.root = root

    def get(self, key: str) -> str | None:
        if self.root is None:
            return None
        try:
            return (self.root / f"{key}.py").read_text(encoding="utf-8")
        except OSError:
            return None

    def put(self, key: str, content: str) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(self.root / f"{key}.py")
