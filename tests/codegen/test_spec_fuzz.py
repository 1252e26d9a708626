"""Bounded fuzzing of spec documents: whatever a spec holds, stages 1-2 accept it or report located problems.

A mutated real spec (nodes replaced, deleted, inserted, nested deep, odd strings and non-string keys, as JSON or
YAML) must either load or raise InvalidSpecError whose problems each name the file and a JSON pointer — never a
traceback from deep inside the loader, which `make gen` would show instead of the spec's fault.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.generation import loader
from codegen.generation.pipeline import load_endpoints
from codegen.problems import InvalidSpecError
from codegen.spectools.importer import is_curated
from tests.codegen.conftest import ROOT, mini_spec

_SPECS = ROOT / "specs"


def _seed() -> tuple[str, dict[str, Any]]:
    """The first curated spec (a mini spec when there is none), kept with its endpoint's place in specs/."""
    for path in loader.find_spec_files(_SPECS):
        text = path.read_text(encoding="utf-8")
        if not is_curated(text):
            continue
        doc = yaml.safe_load(text)
        if isinstance(doc, dict):
            return path.relative_to(_SPECS).as_posix(), doc
    return "fal-ai/test/seed.json", mini_spec("fal-ai/test/seed", {"prompt": {"type": "string", "pattern": "^a"}})


SEED_REL, SEED = _seed()
_KEYWORDS = ["type", "pattern", "$ref", "required", "properties", "patternProperties", "items", "anyOf", "enum",
             "minimum", "maximum", "examples", "default", "nullable", "exclusiveMinimum", "description", "openapi",
             "components", "schemas", "x-fal-order-properties"]  # fmt: skip
_ODD = ["", "\\", "ab\\", "[^]", "(?<=a)b", r"\p{L}", "#/components/schemas/", "#/nope", "~1", "/", "\x00", "é",
        "$ref", "null", "3.0.4", "3.1.0", "object", "string", "integer", "a" * 300]  # fmt: skip
_texts = st.one_of(st.sampled_from(_ODD + _KEYWORDS), st.text(max_size=12))
_keys = st.one_of(_texts, st.integers(-3, 300), st.booleans())  # YAML keeps non-string keys
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), _texts)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
                       max_leaves=12)  # fmt: skip


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if len(path) > 100:  # inside an earlier "nest" mutation: deep enough, and walking on would exhaust the stack
        return found
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*path, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_paths(value, (*path, i)))
    return found


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(SEED)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["replace", "delete", "insert", "keyword", "nest"]))
        parent, last = (_get(doc, path[:-1]), path[-1]) if path else (None, None)
        if kind == "replace" and parent is not None:
            parent[last] = draw(_values)
        elif kind == "delete" and parent is not None:
            del parent[last]
        elif kind in ("insert", "keyword") and isinstance(target := _get(doc, path), dict):
            target[draw(_keys) if kind == "insert" else draw(st.sampled_from(_KEYWORDS))] = draw(_values)
        elif kind == "insert" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(_values))
        elif kind == "nest" and parent is not None:
            value = parent[last]
            for _ in range(draw(st.sampled_from([3, 63, 64, 65, 200, 1200]))):
                value = draw(
                    st.sampled_from([{"properties": {"a": value}}, [value], {"items": value}, {"anyOf": [value]}])
                )
            parent[last] = value
    return doc


def _dump(doc: Any, as_yaml: bool) -> str:
    if as_yaml:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    return json.dumps(doc, default=str)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(doc=_mutated(), as_yaml=st.booleans())
def test_mutated_spec_loads_or_reports_located_problems(doc: dict[str, Any], as_yaml: bool, tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    root = tmp_path_factory.mktemp("specs")
    path = root / (SEED_REL.rsplit(".", 1)[0] + (".yaml" if as_yaml else ".json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = _dump(doc, as_yaml)
    except (RecursionError, ValueError):  # too deep for the dumper itself: nothing to load
        return
    path.write_text(text, encoding="utf-8")
    try:
        load_endpoints([path], root)
    except InvalidSpecError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert Path(problem.file).name == path.name, problem
            assert problem.pointer == "" or problem.pointer.startswith("/"), problem


def test_the_seed_itself_loads(tmp_path: Path) -> None:
    """The fuzz starts from a valid document, so what it finds is the mutation's doing."""
    path = tmp_path / SEED_REL
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(SEED), encoding="utf-8")
    endpoints = load_endpoints([path], tmp_path).endpoints
    assert len(endpoints) == 1
