"""The importer: fal's documents → canonical specs that regenerate, reimport to the same bytes, and report repairs."""

from __future__ import annotations

import copy
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from codegen.importer import import_sources
from codegen.pipeline import generate
from codegen.problems import SpecError
from tests.codegen.conftest import SHARED, mini_spec

DOCS = sorted((SHARED / "fal-openapi").glob("*.json"))
LISTING = sorted((SHARED / "fal-openapi" / "models-api").glob("*.json"))


# Second captures of an endpoint (`--owner` in the file name) share its id: one import run per capture owner.
BATCHES = sorted({p.stem.partition("--")[2] for p in DOCS})


@pytest.mark.parametrize("batch", [*(b or "first captures" for b in BATCHES), "model listing"])
def test_every_document_imports_generates_and_validates(batch: str, tmp_path: Path) -> None:
    if batch == "model listing":
        listing = tmp_path / "listing.json"
        listing.write_text(json.dumps({"models": [json.loads(p.read_text()) for p in LISTING], "has_more": False, "next_cursor": None}))
        sources = [str(listing)]
    else:
        owner = "" if batch == "first captures" else batch
        sources = [str(p) for p in DOCS if p.stem.partition("--")[2] == owner]
    specs = tmp_path / "specs"
    results = import_sources(sources, specs)
    assert len(results) == (len(LISTING) if batch == "model listing" else len(sources))
    assert all(changed for _, _, changed in results)
    again = import_sources(sources, specs)
    assert not any(changed for _, _, changed in again), "importing the same documents twice changes nothing"

    package = f"imported_{batch.replace(' ', '_')}"
    generate(specs, tmp_path / package, jobs=2)
    sys.path.insert(0, str(tmp_path))
    try:
        pkg = importlib.import_module(package)
        for item, target, _ in results:
            module = pkg.load(item.endpoint_id)
            schemas = item.spec["components"]["schemas"]
            ref = item.spec["paths"][f"/{item.endpoint_id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            props = schemas[ref.rsplit("/", 1)[1]]["properties"]
            example = {k: v["examples"][0] for k, v in props.items() if v.get("examples")}
            parsed, _ = module.endpoint.build_input(None, dict(example))
            assert module.endpoint.payload(parsed) == example
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith(package)]:
            del sys.modules[name]


def _fal_shaped(spec: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(spec)
    doc["openapi"] = "3.0.4"
    return doc


def test_repairs_are_made_and_reported_one_line_each(tmp_path: Path) -> None:
    doc = _fal_shaped(mini_spec("fal-ai/test/repairs", {
        "seed": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "steps": {"type": "integer", "default": "28"},
        "mode": {"type": "string", "default": 3.5, "enum": ["a"]},
        "size": {"allOf": [{"$ref": "#/components/schemas/Size"}], "description": "wrapped"},
        "lora": {"$ref": "#/components/schemas/LoraWeight", "description": "points nowhere"},
    }, extra_schemas={"Size": {"type": "object", "properties": {"w": {"type": "integer"}}}}))  # fmt: skip
    source = tmp_path / "doc.json"
    source.write_text(json.dumps(doc))
    [(item, target, _)] = import_sources([str(source)], tmp_path / "specs")
    lines = sorted(f"{r.pointer}: {r.message}" for r in item.repairs)
    props = "/components/schemas/TestInput/properties"
    assert lines == sorted([
        "/openapi: OpenAPI 3.0.4 document uses 3.1 features ($ref with siblings, type \"null\"): declared 3.1.0",
        f"{props}/steps/default: default '28' does not match type integer: read as 28",
        f"{props}/mode/default: default 3.5 does not match type string: read as '3.5'",
        f"{props}/size/allOf: single-element allOf wrapper: replaced by its $ref",
        f"{props}/lora/$ref: dangling $ref '#/components/schemas/LoraWeight': replaced by an unconstrained schema",
    ])  # fmt: skip
    fields = item.spec["components"]["schemas"]["TestInput"]["properties"]
    assert fields["steps"]["default"] == 28 and fields["size"]["$ref"] == "#/components/schemas/Size"
    assert "$ref" not in fields["lora"]
    generate(tmp_path / "specs", tmp_path / "out")  # the repaired spec generates


def test_unrepairable_document_fails_with_pointer_and_writes_nothing(tmp_path: Path) -> None:
    doc = _fal_shaped(mini_spec("fal-ai/test/broken", {"a": {"type": "string"}}))
    del doc["paths"]["/fal-ai/test/broken"]["post"]["requestBody"]
    source = tmp_path / "doc.json"
    source.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as info:
        import_sources([str(source)], tmp_path / "specs")
    assert info.value.problems[0].pointer == "/paths/~1fal-ai~1test~1broken/post/requestBody/content/application~1json/schema"
    assert not (tmp_path / "specs").exists()


def test_a_changed_document_gives_a_minimal_diff(tmp_path: Path) -> None:
    doc = _fal_shaped(mini_spec("fal-ai/test/drift", {"prompt": {"type": "string"}, "steps": {"type": "integer", "default": 28}}))
    source = tmp_path / "doc.json"
    source.write_text(json.dumps(doc))
    [(_, target, _)] = import_sources([str(source)], tmp_path / "specs")
    before = target.read_text().splitlines()
    doc["components"]["schemas"]["TestInput"]["properties"]["steps"]["default"] = 30
    source.write_text(json.dumps(doc))
    import_sources([str(source)], tmp_path / "specs")
    after = target.read_text().splitlines()
    assert len(before) == len(after)
    assert [(b, a) for b, a in zip(before, after) if b != a] == [("          default: 28", "          default: 30")]


def test_an_endpoint_id_is_fetched_from_fals_public_url(tmp_path: Path) -> None:
    """The network is not reachable here; the fetch is injected, and the URL it is asked for is what we check."""
    doc = json.loads((SHARED / "fal-openapi" / "fal-ai__flux__dev.json").read_text())
    asked: list[str] = []

    def fetch(url: str) -> Any:
        asked.append(url)
        return doc

    [(item, target, _)] = import_sources(["fal-ai/flux/dev"], tmp_path / "specs", fetch=fetch)
    assert asked == ["https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/flux/dev"]
    assert item.endpoint_id == "fal-ai/flux/dev" and target == tmp_path / "specs/fal-ai/flux/dev.yaml"


def test_an_unreachable_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot fetch"):
        import_sources(["http://127.0.0.1:9/openapi.json"], tmp_path / "specs")
