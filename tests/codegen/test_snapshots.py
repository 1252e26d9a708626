"""Every generated file is snapshotted: a change to generated code shows up as a reviewed diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from codegen import loader
from codegen.pipeline import TYPED_MARKER, load_endpoints, read_tree, render_tree
from tests.codegen.conftest import ROOT

SPECS = ROOT / "specs"
COMMITTED = sorted(read_tree(ROOT / "generated") or {})


class PythonSnapshot(SingleFileSnapshotExtension):
    """One reviewable `.py` file per generated file, named after its path (`fal_ai__flux__dev.py`)."""

    _write_mode = WriteMode.TEXT
    file_extension = "py"

    @classmethod
    def get_snapshot_name(cls, *, test_location: Any, index: Any = 0) -> str:
        return str(index)


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    endpoints, _ = load_endpoints(loader.find_spec_files(SPECS), SPECS)
    return render_tree(endpoints, jobs=2)


def test_every_rendered_file_is_committed(rendered: dict[str, str]) -> None:
    assert sorted(rendered) == COMMITTED


@pytest.mark.parametrize("path", [p for p in COMMITTED if p != TYPED_MARKER])  # the marker is empty
def test_generated_file_snapshot(path: str, rendered: dict[str, str], snapshot: object) -> None:
    assert rendered[path] == snapshot.use_extension(PythonSnapshot)(name=path.removesuffix(".py").replace("/", "__"))  # type: ignore[attr-defined]
