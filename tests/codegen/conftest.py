"""Helpers for generator tests: write specs into a temporary tree, generate a package there, import it."""

from __future__ import annotations

import copy
import importlib
import itertools
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from codegen.generation.pipeline import generate

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "sources"  # fal's published documents, copied in with where each came from
_counter = itertools.count()


def mini_spec(endpoint_id: str, input_props: Mapping[str, Any], output_props: Mapping[str, Any] | None = None,
              *, required: list[str] | None = None, extra_schemas: Mapping[str, Any] | None = None,
              streams: bool = False) -> dict[str, Any]:  # fmt: skip
    """A minimal spec in fal's shape: the endpoint's queue paths pointing at `TestInput` / `TestOutput`."""
    output_props = output_props or {"ok": {"type": "boolean"}}
    schemas: dict[str, Any] = {
        "TestInput": {"type": "object", "properties": dict(input_props), "required": required or []},
        "TestOutput": {"type": "object", "properties": dict(output_props), "required": list(output_props)},
        **copy.deepcopy(dict(extra_schemas or {})),
    }
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/TestInput"}}}
    paths: dict[str, Any] = {
        f"/{endpoint_id}": {
            "post": {"requestBody": {"required": True, "content": ref}, "responses": {"200": {"description": "queued"}}}
        },
        f"/{endpoint_id}/requests/{{request_id}}": {
            "get": {
                "responses": {
                    "200": {
                        "description": "result",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TestOutput"}}},
                    }
                }
            }
        },
    }
    if streams:
        paths[f"/{endpoint_id}/stream"] = {
            "post": {"requestBody": {"content": ref}, "responses": {"200": {"description": "events"}}}
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Test {endpoint_id}", "version": "1", "x-fal-metadata": {"endpointId": endpoint_id}},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def write_specs(root: Path, specs: Mapping[str, dict[str, Any]] | list[dict[str, Any]]) -> Path:
    """Write specs at the place their endpoint id gives them; a mapping of relative path → spec writes them as is."""
    items = (
        specs.items()
        if isinstance(specs, Mapping)
        else ((s["info"]["x-fal-metadata"]["endpointId"] + ".json", s) for s in specs)
    )
    for rel, spec in items:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(spec if isinstance(spec, str) else json.dumps(spec, indent=1), encoding="utf-8")
    return root


def _builder(tmp_path: Path) -> Iterator[Any]:
    """Generate a package from specs into tmp_path and import it under a unique name."""
    added: list[str] = []

    def build(specs: Mapping[str, Any] | list[dict[str, Any]]) -> ModuleType:
        n = next(_counter)
        specs_root = write_specs(tmp_path / f"specs{n}", specs)
        name = f"gen_pkg_{n}"
        generate(specs_root, tmp_path / "pkgs" / name)
        path = str(tmp_path / "pkgs")
        if path not in sys.path:
            sys.path.insert(0, path)
            added.append(path)
        return importlib.import_module(name)

    yield build
    for path in added:
        sys.path.remove(path)
    for mod in [m for m in sys.modules if m.startswith("gen_pkg_")]:
        del sys.modules[mod]


@pytest.fixture
def build_package(tmp_path: Path) -> Iterator[Any]:
    yield from _builder(tmp_path)


@pytest.fixture(scope="module")
def build_package_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`build_package` for a module's tests that share one generated package."""
    yield from _builder(tmp_path_factory.mktemp("pkg"))
