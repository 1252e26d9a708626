"""The loader on hostile or unusual specs: it reports the spec's fault with file and pointer, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from codegen.generation import loader
from codegen.problems import Problem
from tests.codegen.conftest import ROOT, SOURCES, mini_spec, write_specs


def _load(tmp_path: Path, spec: dict[str, Any] | str, name: str = "fal-ai/test/x.json") -> tuple[bool, list[Problem]]:
    root = write_specs(tmp_path / "specs", {name: spec})
    problems: list[Problem] = []
    return loader.load(root / name, problems) is not None, problems


def test_a_pattern_only_pydantic_compiles_still_checks_examples(tmp_path: Path) -> None:
    """`\\p{L}` is valid for pydantic's Rust engine but not Python's `re`, which checks examples: no re.error."""
    spec = mini_spec("fal-ai/test/x", {"name": {"type": "string", "pattern": r"^\p{L}+$"}})
    spec["components"]["schemas"]["TestInput"]["examples"] = [{"name": "abc"}]
    ok, problems = _load(tmp_path, spec)
    assert ok and problems == []


def test_a_pattern_pydantic_refuses_is_located(tmp_path: Path) -> None:
    spec = mini_spec("fal-ai/test/x", {"a": {"type": "string", "pattern": "(?<=x)y"}})
    ok, problems = _load(tmp_path, spec)
    assert not ok and [p.pointer for p in problems] == ["/components/schemas/TestInput/properties/a/pattern"]


def test_yaml_values_json_cannot_hold_are_located(tmp_path: Path) -> None:
    """A YAML date or unquoted `200:` key reached jsonschema-rs, which raised a bare ValueError."""
    spec = mini_spec("fal-ai/test/x", {"a": {"type": "string"}})
    spec["info"]["version"] = "VERSION"
    text = yaml.safe_dump(spec, sort_keys=False).replace("'VERSION'", "2024-01-01").replace("VERSION", "2024-01-01")
    ok, problems = _load(tmp_path, text, "fal-ai/test/x.yaml")
    assert not ok and [p.pointer for p in problems] == ["/info/version"]


def _depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


@pytest.mark.slow
def test_the_depth_limit_leaves_room_above_every_real_spec() -> None:
    """fal's endpoint documents nest about 12 levels, its Platform API document 21; the limit must never reject a
    real one, with room to spare."""
    files = loader.find_spec_files(ROOT / "specs") + sorted((SOURCES / "fal-openapi").rglob("*.json"))
    docs = [loader.parse(p, []) for p in files]
    depths = [_depth(d.doc) for d in docs if d is not None]
    assert depths and max(depths) * 3 <= loader.MAX_DEPTH, max(depths)


def test_a_schema_just_within_the_limit_loads_and_generates(tmp_path: Path) -> None:
    """Below the limit every later stage (intermediate model, datamodel-code-generator, templates) copes."""
    from codegen.generation.pipeline import generate

    schema: dict[str, Any] = {"type": "string"}
    for _ in range(loader.MAX_DEPTH - 8):  # the queue path, components/schemas/TestInput/properties/deep take 8
        schema = {"type": "array", "items": schema}
    spec = mini_spec("fal-ai/test/x", {"deep": schema})
    ok, problems = _load(tmp_path, spec)
    assert ok, problems
    generate(tmp_path / "specs", tmp_path / "out")
    assert (tmp_path / "out" / "fal_ai" / "test" / "x.py").is_file()
