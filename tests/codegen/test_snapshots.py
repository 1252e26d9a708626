"""The curated seed specs' generated files are snapshotted: a change to generated code shows up as a reviewed diff.

The seeds cover the generator's shapes (files in and out, nested models, enums, renamed fields, prefixes); the rest
of the catalogue is guarded by `codegen check` (generated/ equals a fresh generation) and the catalogue tests, so a
sync that adds endpoints does not touch these snapshots.
"""

from __future__ import annotations

from typing import Any

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from codegen.generation import loader
from codegen.generation.pipeline import load_endpoints, render_tree
from codegen.generation.tree import TYPED_MARKER, read_tree
from codegen.spectools.importer import is_curated
from tests.codegen.conftest import ROOT

SPECS = ROOT / "specs"
SEEDS = [p for p in loader.find_spec_files(SPECS) if is_curated(p.read_text(encoding="utf-8"))]
ENDPOINTS = load_endpoints(SEEDS, SPECS).endpoints
RENDERED = render_tree(ENDPOINTS)


class PythonSnapshot(SingleFileSnapshotExtension):
    """One reviewable `.py` file per generated file, named after its path (`fal_ai__flux__dev.py`)."""

    _write_mode = WriteMode.TEXT
    file_extension = "py"

    @classmethod
    def get_snapshot_name(cls, *, test_location: Any, index: Any = 0) -> str:
        return str(index)


def test_every_seed_module_is_committed_as_rendered() -> None:
    """A module's text does not depend on the other endpoints: each seed's is in generated/ exactly as rendered
    alone (at its place in the whole catalogue, which may make it a package's `__init__.py`)."""
    committed = read_tree(ROOT / "generated") or {}
    for endpoint in ENDPOINTS:
        path = "/".join(endpoint.module_parts)
        alone = RENDERED.get(f"{path}.py") or RENDERED[f"{path}/__init__.py"]
        assert alone == (committed.get(f"{path}.py") or committed[f"{path}/__init__.py"]), endpoint.endpoint_id


@pytest.mark.parametrize("path", [p for p in sorted(RENDERED) if p != TYPED_MARKER])  # the marker is empty
def test_generated_file_snapshot(path: str, snapshot: object) -> None:
    assert RENDERED[path] == snapshot.use_extension(PythonSnapshot)(name=path.removesuffix(".py").replace("/", "__"))  # type: ignore[attr-defined]
