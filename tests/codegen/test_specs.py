"""The committed specs themselves: provenance recorded for every one; the curated ones (the seeds, checked fact by
fact) also valid by openapi-spec-validator, with valid examples. The whole catalogue is validated by the generator's
own validator in `codegen check`, and its examples against the generated models (test_catalogue.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from codegen.generation import loader
from codegen.spectools.importer import is_curated
from tests.codegen.conftest import ROOT

SPECS = ROOT / "specs"
FILES = loader.find_endpoint_spec_files(SPECS)
CURATED = [p for p in FILES if is_curated(p.read_text(encoding="utf-8"))]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def test_the_seeds_are_curated() -> None:
    assert len(CURATED) >= 14


# A day, or a month where the copy that holds fal's data is dated no closer (fal's newest listing: `2026-08`).
_DATE = re.compile(r"\d{4}-\d{2}(-\d{2})?")


@pytest.mark.slow
def test_every_imported_spec_records_its_sources_with_their_dates() -> None:
    undated: list[str] = []
    for path in FILES:
        if path in CURATED:
            continue
        sources = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)["info"]["x-fal-sources"]
        if not sources or not all(
            isinstance(v, dict) and v.get("from") and _DATE.fullmatch(str(v.get("date", ""))) for v in sources.values()
        ):
            undated.append(path.relative_to(SPECS).as_posix())
    assert not undated, f"specs without a dated source: {undated[:10]}"


@pytest.mark.parametrize("path", CURATED, ids=[p.relative_to(SPECS).as_posix() for p in CURATED])
def test_spec_is_valid_openapi_31_with_valid_examples(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # openapi-spec-validator, the reference validator (the generator uses a faster equivalent)
    registry: Registry[object] = Registry().with_resource("urn:spec", Resource(doc, specification=DRAFT202012))
    checked = 0
    for name, schema in doc["components"]["schemas"].items():
        for example in schema.get("examples", []):
            Draft202012Validator({"$ref": f"urn:spec#/components/schemas/{name}"}, registry=registry).validate(example)
            checked += 1
    assert checked >= 2  # the page's example input and output at least


@pytest.mark.parametrize("path", CURATED, ids=[p.relative_to(SPECS).as_posix() for p in CURATED])
def test_spec_records_where_its_facts_come_from(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    sources = doc["info"]["x-fal-sources"]
    assert "page" in sources
    cited: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for entry in node.get("x-fal-resolved", []):
                assert set(entry) == {"fact", "source", "note"} and entry["note"]
                cited.add(entry["source"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert cited <= set(sources), (
        f"x-fal-resolved cites sources not listed in info.x-fal-sources: {cited - set(sources)}"
    )
    assert cited or "x-fal-unresolved" in doc["info"], "a spec resolves at least one fact or says what nothing settles"
