"""The importer: fal's documents → canonical specs that regenerate, reimport to the same bytes, and report repairs."""

from __future__ import annotations

import copy
import gzip
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codegen.generation.pipeline import generate
from codegen.problems import InvalidSpecError
from codegen.spectools.importer import import_sources
from tests.codegen.conftest import ROOT, SOURCES, mini_spec

DOCS = sorted((SOURCES / "fal-openapi").glob("*__*.json"))
LISTING = sorted((SOURCES / "fal-openapi" / "models-api").glob("*.json"))


# Second captures of an endpoint (`--owner` in the file name) share its id: one import run per capture owner.
BATCHES = sorted({p.stem.partition("--")[2] for p in DOCS})


@pytest.mark.parametrize("batch", [*(b or "first captures" for b in BATCHES), "model listing"])
def test_every_document_imports_generates_and_validates(batch: str, tmp_path: Path) -> None:
    if batch == "model listing":
        listing = tmp_path / "listing.json"
        listing.write_text(
            json.dumps({"models": [json.loads(p.read_text()) for p in LISTING], "has_more": False, "next_cursor": None})
        )
        sources = [str(listing)]
    else:
        owner = "" if batch == "first captures" else batch
        sources = [str(p) for p in DOCS if p.stem.partition("--")[2] == owner]
    specs = tmp_path / "specs"
    results = import_sources(sources, specs)
    assert len(results) == (len(LISTING) if batch == "model listing" else len(sources))
    assert all(o.changed for o in results)
    again = import_sources(sources, specs)
    assert not any(o.changed for o in again), "importing the same documents twice changes nothing"

    package = f"imported_{batch.replace(' ', '_')}"
    generate(specs, tmp_path / package, jobs=2)
    sys.path.insert(0, str(tmp_path))
    try:
        pkg = importlib.import_module(package)
        for outcome in results:
            item = outcome.item
            module = pkg.load(item.endpoint_id)
            schemas = item.spec["components"]["schemas"]
            ref = item.spec["paths"][f"/{item.endpoint_id}"]["post"]["requestBody"]["content"]["application/json"][
                "schema"
            ]["$ref"]
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
    [outcome] = import_sources([str(source)], tmp_path / "specs")
    item = outcome.item
    lines = sorted(f"{r.pointer}: {r.message}" for r in item.repairs)
    props = "/components/schemas/TestInput/properties"
    assert lines == sorted([
        "/openapi: OpenAPI 3.0.4 document uses 3.1 features ($ref with siblings, type \"null\"): declared 3.1.0",
        f"{props}/steps/default: default '28' does not match type integer: read as 28",
        f"{props}/mode/default: default 3.5 does not match type string: read as '3.5'",
        f"{props}/mode/default: default '3.5' does not validate: '3.5' is not one of ['a']: dropped",
        f"{props}/size/allOf: single-element allOf wrapper: replaced by its $ref",
        f"{props}/lora/$ref: dangling $ref '#/components/schemas/LoraWeight': replaced by an unconstrained schema",
    ])  # fmt: skip
    fields = item.spec["components"]["schemas"]["TestInput"]["properties"]
    assert fields["steps"]["default"] == 28 and fields["size"]["$ref"] == "#/components/schemas/Size"
    assert "$ref" not in fields["lora"] and "default" not in fields["mode"]
    generate(tmp_path / "specs", tmp_path / "out")  # the repaired spec generates


def test_unrepairable_document_fails_with_pointer_and_writes_nothing(tmp_path: Path) -> None:
    doc = _fal_shaped(mini_spec("fal-ai/test/broken", {"a": {"type": "string"}}))
    del doc["paths"]["/fal-ai/test/broken"]["post"]["requestBody"]
    source = tmp_path / "doc.json"
    source.write_text(json.dumps(doc))
    with pytest.raises(InvalidSpecError) as info:
        import_sources([str(source)], tmp_path / "specs")
    assert (
        info.value.problems[0].pointer
        == "/paths/~1fal-ai~1test~1broken/post/requestBody/content/application~1json/schema"
    )
    assert not (tmp_path / "specs").exists()


def test_a_changed_document_gives_a_minimal_diff(tmp_path: Path) -> None:
    doc = _fal_shaped(
        mini_spec("fal-ai/test/drift", {"prompt": {"type": "string"}, "steps": {"type": "integer", "default": 28}})
    )
    source = tmp_path / "doc.json"
    source.write_text(json.dumps(doc))
    [outcome] = import_sources([str(source)], tmp_path / "specs")
    target = outcome.target
    before = target.read_text().splitlines()
    doc["components"]["schemas"]["TestInput"]["properties"]["steps"]["default"] = 30
    source.write_text(json.dumps(doc))
    import_sources([str(source)], tmp_path / "specs")
    after = target.read_text().splitlines()
    assert len(before) == len(after)
    assert [(b, a) for b, a in zip(before, after, strict=False) if b != a] == [
        ("          default: 28", "          default: 30")
    ]


def test_an_endpoint_id_is_fetched_from_fals_public_url(tmp_path: Path) -> None:
    """The network is not reachable here; the fetch is injected, and the URL it is asked for is what we check."""
    doc = json.loads((SOURCES / "fal-openapi" / "fal-ai__flux__dev.json").read_text())
    asked: list[str] = []

    def fetch(url: str) -> Any:
        asked.append(url)
        return doc

    [outcome] = import_sources(["fal-ai/flux/dev"], tmp_path / "specs", fetch=fetch)
    item, target = outcome.item, outcome.target
    assert asked == ["https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/flux/dev"]
    assert item.endpoint_id == "fal-ai/flux/dev" and target == tmp_path / "specs/fal-ai/flux/dev.yaml"


def test_an_unreachable_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError, match="cannot fetch"):
        import_sources(["http://127.0.0.1:9/openapi.json"], tmp_path / "specs")


@pytest.mark.parametrize(
    "endpoint_id", ["fal-ai/../../escaped", "../.github/workflows/x", "/etc/fal/x", "fal-ai/./x", "a/b/.."]
)
def test_an_endpoint_id_that_leads_outside_specs_is_refused(endpoint_id: str, tmp_path: Path) -> None:
    doc = _fal_shaped(mini_spec("fal-ai/test/x", {"a": {"type": "string"}}))
    doc["info"]["x-fal-metadata"]["endpointId"] = endpoint_id
    source = tmp_path / "work" / "doc.json"
    source.parent.mkdir()
    source.write_text(json.dumps(doc))
    with pytest.raises(InvalidSpecError) as info:
        import_sources([str(source)], tmp_path / "work" / "specs")
    assert info.value.problems[0].pointer == "/info/x-fal-metadata/endpointId"
    assert sorted(p.name for p in tmp_path.rglob("*.yaml")) == [], "nothing written, inside specs/ or out of it"


def snapshot_entry(input_name: str, props: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = {"type": "object", "title": input_name, "properties": props, "required": list(props)}
    if defs:
        schema["$defs"] = defs
    output = {"type": "object", "title": "Out", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    return {
        "category": "image",
        "input": schema,
        "output": output,
        "inputName": input_name,
        "outputName": input_name + "Out",
    }


def test_fals_json_schema_snapshot_imports_with_its_provenance(tmp_path: Path) -> None:
    lora = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    snapshot = {
        "fal-ai/test/one": snapshot_entry("OneInput", {"lora": {"$ref": "#/$defs/LoraInput"}}, {"LoraInput": lora}),
        # fal's own gap: a $ref to a definition no entry holds (repaired and reported, as in any document)
        "fal-ai/test/two": snapshot_entry(
            "TwoInput", {"loras": {"type": "array", "items": {"$ref": "#/$defs/Missing"}}}
        ),
    }
    folder = tmp_path / "snap"
    folder.mkdir()
    (folder / "schemas.json.gz").write_bytes(gzip.compress(json.dumps(snapshot).encode()))
    (folder / "SOURCES.json").write_text(
        json.dumps({"schemas.json.gz": {"from": "fal-js libs/schemas @abc", "date": "2026-05-12"}})
    )
    specs = tmp_path / "specs"
    outcomes = import_sources([str(folder / "schemas.json.gz")], specs)
    assert [o.item.endpoint_id for o in outcomes] == ["fal-ai/test/one", "fal-ai/test/two"]
    one, two = outcomes[0].item.spec, outcomes[1].item.spec
    assert one["components"]["schemas"]["LoraInput"] == lora
    assert one["components"]["schemas"]["OneInput"]["properties"]["lora"] == {"$ref": "#/components/schemas/LoraInput"}
    assert [r.message for r in outcomes[1].item.repairs] == [
        "dangling $ref '#/components/schemas/Missing': replaced by an unconstrained schema"
    ]
    assert two["info"]["x-fal-sources"] == {
        "fal-js-schemas": {
            "date": "2026-05-12",
            "from": "fal-js libs/schemas @abc; src/image/schemas.gen.ts: TwoInput / TwoInputOut",
        }
    }
    assert two["info"]["x-fal-metadata"] == {"category": "image", "endpointId": "fal-ai/test/two"}
    assert set(two["paths"]) == {
        f"/fal-ai/test/two{p}"
        for p in ("", "/requests/{request_id}", "/requests/{request_id}/cancel", "/requests/{request_id}/status")
    }
    generate(specs, tmp_path / "out")


def test_the_newest_source_supplies_the_schemas_and_older_ones_fill_metadata(tmp_path: Path) -> None:
    old = _fal_shaped(mini_spec("fal-ai/test/merge", {"old_field": {"type": "string"}}))
    old["info"]["x-fal-metadata"].update(displayName="Merge Model", category="text-to-image")
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "SOURCES.json").write_text(json.dumps({"old.json": {"from": "an old capture", "date": "2026-01-01"}}))
    snapshot = {"fal-ai/test/merge": snapshot_entry("MergeInput", {"new_field": {"type": "integer"}})}
    (tmp_path / "snap.json").write_text(json.dumps(snapshot))
    (tmp_path / "SOURCES.json").write_text(json.dumps({
        "old.json": {"from": "an old capture", "date": "2026-01-01"}, "snap.json": {"from": "the snapshot", "date": "2026-05-12"},
    }))  # fmt: skip
    [outcome] = import_sources([str(tmp_path / "old.json"), str(tmp_path / "snap.json")], tmp_path / "specs")
    spec = outcome.item.spec
    props = spec["components"]["schemas"]["MergeInput"]["properties"]
    assert list(props) == ["new_field"], "the schemas come from the newest source"
    assert spec["info"]["x-fal-metadata"] == {
        "category": "text-to-image",
        "displayName": "Merge Model",
        "endpointId": "fal-ai/test/merge",
    }
    assert set(spec["info"]["x-fal-sources"]) == {"fal-js-schemas", "fal-openapi"}


@pytest.mark.slow
def test_a_curated_spec_is_never_overwritten_and_its_differences_are_reported(tmp_path: Path) -> None:
    doc = _fal_shaped(mini_spec("fal-ai/test/curated", {"prompt": {"type": "string"}, "steps": {"type": "integer"}}))
    source = tmp_path / "doc.json"
    source.write_text(json.dumps(doc))
    specs = tmp_path / "specs"
    [first] = import_sources([str(source)], specs)
    curated = first.target.read_text().replace(
        "    TestInput:\n", "    TestInput:\n      x-fal-curated: checked by hand\n", 1
    )
    first.target.write_text(curated)
    doc["components"]["schemas"]["TestInput"]["required"] = ["steps"]
    source.write_text(json.dumps(doc))
    [again] = import_sources([str(source)], specs)
    assert again.state == "curated" and first.target.read_text() == curated
    assert [(c.field, c.breaking) for c in again.changes] == [("steps", True)]
    out = subprocess.run([sys.executable, "-m", "codegen", "import", str(source), "--specs", str(specs)],
                         cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    assert "curated: kept; fal's data differs in 1 place(s)" in out.stdout and "steps" in out.stdout
