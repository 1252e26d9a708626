"""The importer's newer sources, end to end through the generator: fal's TypeScript endpoint types (a spec from types
alone, or types applied to an older JSON Schema spec), fal's listing and gallery entries (metadata only), and what
the generated package and `CATALOGUE.md` then say."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from codegen.__main__ import main
from codegen.generation.pipeline import generate
from codegen.spectools import importer
from tests.codegen.conftest import ROOT, mini_spec

TYPES = ROOT / "tests" / "codegen" / "fixtures_ts" / "endpoints.ts"


def read(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def input_schema(doc: dict[str, Any]) -> dict[str, Any]:
    ref = doc["paths"][f"/{doc['info']['x-fal-metadata']['endpointId']}"]["post"]["requestBody"]["content"]
    schema: dict[str, Any] = doc["components"]["schemas"][ref["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    return schema


def load_package(out: Path, name: str) -> Any:
    sys.path.insert(0, str(out.parent))
    try:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(out.parent))


def test_an_endpoint_only_the_types_describe_gets_a_types_only_spec_and_says_so(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    outcomes = importer.import_sources([str(TYPES)], specs)
    assert {o.item.endpoint_id for o in outcomes} == {"fal-ai/demo", "fal-ai/demo/alias", "fal-ai/demo/empty"}
    doc = read(specs / "fal-ai/demo.yaml")
    assert doc["info"]["x-fal-types-only"] is True
    assert set(doc["info"]["x-fal-sources"]) == {"fal-js-types"}
    steps = input_schema(doc)["properties"]["num_inference_steps"]
    assert steps == {"description": "Steps.", "type": "number", "default": 28}, "a number stays a number, unbounded"
    generate(specs, tmp_path / "pkg_types")
    module = (tmp_path / "pkg_types" / "fal_ai" / "demo" / "__init__.py").read_text(encoding="utf-8")
    assert "fal's TypeScript types alone" in module and "`make sync` against fal replaces" in module
    assert "num_inference_steps: float = 28" in module
    package = load_package(tmp_path / "pkg_types", "pkg_types")
    assert package.ENDPOINTS.info("fal-ai/demo").types_only is True
    assert "| `fal-ai/demo` |" in (tmp_path / "pkg_types" / "CATALOGUE.md").read_text(encoding="utf-8")
    assert importer.import_sources([str(TYPES)], specs)[0].state == "unchanged", "a second import changes nothing"


def test_the_types_update_an_older_spec_field_by_field_and_the_import_reports_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "specs"
    older = mini_spec(
        "fal-ai/demo",
        {"num_inference_steps": {"type": "integer", "default": 28, "minimum": 1, "maximum": 50},
         "prompt": {"type": "string", "maxLength": 500}, "gone": {"type": "string"}},
        required=["prompt", "gone"],
    )  # fmt: skip
    older["info"]["x-fal-sources"] = {"fal-js-schemas": {"from": "fal's JSON Schemas", "date": "2026-05-12"}}
    (specs / "fal-ai").mkdir(parents=True)
    (specs / "fal-ai/demo.yaml").write_text(importer.dump(older), encoding="utf-8")
    assert main(["import", "--specs", str(specs), str(TYPES)]) == 0
    printed = capsys.readouterr().out
    assert "input gone: field removed" in printed and "input image_url: required field added (breaking)" in printed
    doc = read(specs / "fal-ai/demo.yaml")
    props = input_schema(doc)["properties"]
    assert props["num_inference_steps"] == {"type": "integer", "default": 28, "minimum": 1, "maximum": 50,
                                            "description": "Steps."}  # fmt: skip
    assert "gone" not in props and "image_url" in props
    assert "x-fal-types-only" not in doc["info"], "a JSON Schema updated by the types is not types-only"
    assert set(doc["info"]["x-fal-sources"]) == {"fal-js-schemas", "fal-js-types"}


def test_a_listing_and_gallery_entries_give_metadata_and_the_catalogue_its_gaps(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    for endpoint_id in ("fal-ai/kept", "fal-ai/old"):
        (specs / endpoint_id).parent.mkdir(parents=True, exist_ok=True)
        spec = mini_spec(endpoint_id, {"prompt": {"type": "string"}})
        spec["info"]["x-fal-sources"] = {"fal-openapi": {"from": "a document", "date": "2026-02-01"}}
        (specs / f"{endpoint_id}.yaml").write_text(importer.dump(spec), encoding="utf-8")
    listing = tmp_path / "listing.json"
    listing.write_text(json.dumps([
        {"endpoint_id": "fal-ai/kept", "category": "text-to-image", "display_name": "Kept [v2]", "status": "active"},
        {"endpoint_id": "fal-ai/new-one", "category": "image-to-video", "display_name": "New | One", "status": "active"},
    ]), encoding="utf-8")  # fmt: skip
    gallery = tmp_path / "gallery.json"
    gallery.write_text(json.dumps([
        {"id": "fal-ai/kept", "title": "Kept", "kind": "inference", "tags": ["fast", 3], "date": "2025-01-02T00:00:00Z",
         "group": {"key": "kept", "label": "Text to Image"}, "licenseType": "commercial", "thumbnailUrl": "x"},
    ]), encoding="utf-8")  # fmt: skip
    importer.import_sources([str(listing), str(gallery)], specs)
    meta = read(specs / "fal-ai/kept.yaml")["info"]["x-fal-metadata"]
    assert meta == {"category": "text-to-image", "date": "2025-01-02", "displayName": "Kept [v2]",
                    "endpointId": "fal-ai/kept", "group": {"key": "kept", "label": "Text to Image"},
                    "kind": "inference", "licenseType": "commercial", "tags": ["fast"]}  # fmt: skip
    assert not (specs / "fal-ai/new-one.yaml").exists(), "no spec is made from metadata alone"
    record = json.loads((specs / "LISTING.json").read_text(encoding="utf-8"))
    assert list(record["endpoints"]) == ["fal-ai/kept", "fal-ai/new-one"]
    generate(specs, tmp_path / "pkg_listing")
    package = load_package(tmp_path / "pkg_listing", "pkg_listing")
    kept, old = package.ENDPOINTS.info("fal-ai/kept"), package.ENDPOINTS.info("fal-ai/old")
    assert (kept.display_name, kept.kind, kept.tags, kept.unlisted) == ("Kept [v2]", "inference", ("fast",), "")
    assert old.unlisted == record["date"] or old.unlisted == "unknown"
    assert [i.endpoint_id for i in package.ENDPOINTS.infos(include_unlisted=False)] == ["fal-ai/kept"]
    catalogue = (tmp_path / "pkg_listing" / "CATALOGUE.md").read_text(encoding="utf-8")
    assert "described by no offline source (1)" in catalogue
    assert "| `fal-ai/new-one` | New \\| One | image-to-video |" in catalogue
    assert "Kept \\[v2\\]" in catalogue
