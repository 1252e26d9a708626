"""codegen.spectools.fieldmerge: fal's TypeScript types over an older JSON Schema spec, field by field."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from codegen.generation import loader
from codegen.spectools import catalogue
from codegen.spectools.fieldmerge import _branches, _deref, _kind, apply_types
from codegen.spectools.tstypes import TypeCatalogue, parse_types, read_types
from fal_runtime.queue_document import input_schema_path, output_schema_path
from tests.codegen.conftest import ROOT, SOURCES, mini_spec

EID = "fal-ai/demo"
C = "#/components/schemas/"

TYPES = """
export type ImageSize = {
  /**
   * Width. Default value: `512`
   */
  width?: number;
  /**
   * Height, now required.
   */
  height: number;
  /**
   * New in the types.
   */
  ratio?: number;
};
export type LoraWeight = {
  /**
   * The path.
   */
  path: string;
};
export type DemoInput = {
  /**
   * Steps. Default value: `28`
   */
  steps?: number;
  /**
   * The   prompt,
   * reflowed.
   */
  prompt: string;
  /**
   * Format. Default value: `"webp"`
   */
  format?: "png" | "jpeg" | "webp";
  /**
   * The size. Default value: `square`
   */
  image_size?: ImageSize | "square" | "wide";
  /**
   * Seed. Default value: `7`
   */
  seed?: number;
  /**
   * Was a string.
   */
  strength?: number;
  /**
   * LoRAs.
   */
  loras?: Array<LoraWeight>;
  /**
   * Anything.
   */
  extra?: unknown;
  /**
   * The input image.
   */
  image_url: string | Blob | File;
};
export type DemoOutput = {
  /**
   * The images.
   */
  images: Array<ImageSize>;
};
export type OtherInput = DemoInput;
export type EndpointTypeMap = {
  "fal-ai/demo": { input: DemoInput; output: DemoOutput; };
  "fal-ai/other": { input: OtherInput; output: DemoOutput; };
};
"""


def old_doc(endpoint_id: str = EID) -> dict[str, Any]:
    """The older JSON Schema spec: integer bounds, titles, nullability, an old name for the size model."""
    size = {
        "title": "ImageSize",
        "type": "object",
        "properties": {
            "width": {"title": "Width", "type": "integer", "default": 512, "exclusiveMinimum": 0, "maximum": 4096},
            "height": {"title": "Height", "type": "integer", "default": 512, "maximum": 4096},
            "old_only": {"type": "string"},
        },
        "x-fal-order-properties": ["width", "height", "old_only"],
    }
    inputs = {
        "prompt": {"title": "Prompt", "description": "The prompt,\n   reflowed.", "type": "string", "maxLength": 500,
                   "examples": ["a cat"]},
        "steps": {"title": "Steps", "description": "Steps.", "type": "integer", "default": 4, "minimum": 1, "maximum": 12},
        "format": {"title": "Format", "description": "Old text.", "type": "string", "enum": ["png", "jpeg"], "default": "png"},
        "image_size": {"title": "Image Size", "default": "square", "anyOf": [
            {"$ref": f"{C}ImageSizeType2"}, {"type": "string", "enum": ["square", "wide"]}, {"type": "null"}]},
        "seed": {"title": "Seed", "description": "Seed.", "anyOf": [{"type": "integer"}, {"type": "null"}]},
        "strength": {"title": "Strength", "description": "Was a string.", "type": "string", "format": "uri"},
        "gone": {"title": "Gone", "type": "boolean", "$comment": "not in the types any more"},
        "extra": {"title": "Extra", "type": "object", "additionalProperties": {"type": "number"}},
        "image_url": {"title": "Image Url", "type": "string", "description": "The input image."},
    }  # fmt: skip
    doc = mini_spec(
        endpoint_id,
        inputs,
        {"images": {"type": "array", "items": {"$ref": f"{C}ImageSizeType2"}, "description": "The images."}},
        required=["prompt", "gone"],
        extra_schemas={"ImageSizeType2": size, "LoraWeight": {"type": "object", "properties": {"x": {}}}},
    )
    doc["info"] = {"title": "t", "version": "1", "x-fal-metadata": {"endpointId": endpoint_id}}
    doc["components"]["schemas"]["TestInput"]["x-fal-order-properties"] = list(inputs)
    return doc


@functools.cache
def types() -> TypeCatalogue:
    return parse_types(TYPES)


def types_doc(endpoint_id: str = EID) -> dict[str, Any]:
    return catalogue.document_from_schemas(endpoint_id, types().entry(endpoint_id))


@functools.cache
def merged() -> tuple[dict[str, Any], list[str]]:
    return apply_types(old_doc(), types_doc())


def field(name: str, model: str = "TestInput") -> Any:
    return merged()[0]["components"]["schemas"][model]["properties"][name]


def test_inputs_are_not_modified() -> None:
    old, new = old_doc(), types_doc()
    apply_types(old, new)
    assert old == old_doc()
    assert new == types_doc()


def test_fields_added_and_removed_and_the_order_follows() -> None:
    schema = merged()[0]["components"]["schemas"]["TestInput"]
    assert "gone" not in schema["properties"]
    assert list(schema["properties"])[-1] == "loras"  # old fields keep their order; new ones come after
    assert schema["x-fal-order-properties"] == [*[n for n in old_doc()["components"]["schemas"]["TestInput"][
        "x-fal-order-properties"] if n != "gone"], "loras"]  # fmt: skip
    notes = merged()[1]
    assert "input.gone: removed" in notes
    assert "input.loras: added" in notes


def test_an_added_field_brings_its_models_under_free_names() -> None:
    doc = merged()[0]
    loras = field("loras")
    assert loras == {"type": "array", "items": {"$ref": f"{C}LoraWeight2"}, "description": "LoRAs."}
    assert doc["components"]["schemas"]["LoraWeight2"]["properties"]["path"]["type"] == "string"
    assert doc["components"]["schemas"]["LoraWeight"] == {"type": "object", "properties": {"x": {}}}  # untouched
    assert "components: added LoraWeight2 (the types' LoraWeight)" in merged()[1]


def unshared(doc: dict[str, Any]) -> dict[str, Any]:
    """The types document as if each nested type were declared for this endpoint alone."""
    for schema in doc["components"]["schemas"].values():
        schema.pop("x-fal-types-shared", None)
    return doc


def test_required_ness_is_the_types() -> None:
    doc, notes = apply_types(old_doc(), unshared(types_doc()))
    assert doc["components"]["schemas"]["TestInput"]["required"] == ["prompt", "image_url"]
    assert doc["components"]["schemas"]["ImageSizeType2"]["required"] == ["height"]
    assert "input.image_url: now required" in notes
    assert "input.image_size.height: now required" in notes


def test_a_shared_nested_type_only_adds_fields_and_relaxes() -> None:
    """`ImageSize` is declared once for two endpoints: what it lacks or newly requires is not this endpoint's."""
    doc, notes = merged()
    size = doc["components"]["schemas"]["ImageSizeType2"]
    assert list(size["properties"]) == ["width", "height", "old_only", "ratio"]
    assert "required" not in size
    assert "input.image_size: kept old_only: the types' shared ImageSize lacks them" in notes
    assert "input.image_size: kept height optional: the types' shared ImageSize requires them" in notes
    assert doc["components"]["schemas"]["TestInput"]["required"] == ["prompt", "image_url"]  # the root: all of it


def test_what_types_cannot_say_is_kept() -> None:
    prompt = field("prompt")
    assert prompt["maxLength"] == 500 and prompt["examples"] == ["a cat"] and prompt["title"] == "Prompt"
    assert field("steps")["type"] == "integer" and field("steps")["maximum"] == 12
    width = merged()[0]["components"]["schemas"]["ImageSizeType2"]["properties"]["width"]
    assert width == {"title": "Width", "type": "integer", "default": 512, "exclusiveMinimum": 0, "maximum": 4096,
                     "description": "Width."}  # fmt: skip
    assert "x-fal-file-input" not in field("image_url")  # fal-js marks every `*_url`: not a statement of fal's


def test_enum_default_and_description_are_the_types() -> None:
    assert field("format")["enum"] == ["png", "jpeg", "webp"]
    assert field("format")["default"] == "webp"
    assert field("format")["description"] == "Format."
    assert 'input.format: enum ["png", "jpeg"] → ["png", "jpeg", "webp"]' in merged()[1]
    assert "input.format: default 'png' → 'webp'" in merged()[1]


def test_a_description_that_differs_only_in_whitespace_is_kept() -> None:
    assert field("prompt")["description"] == "The prompt,\n   reflowed."
    assert "input.prompt: description updated" not in merged()[1]


def test_nullability_is_kept_and_the_default_applied() -> None:
    assert field("seed") == {"title": "Seed", "description": "Seed.", "default": 7,
                             "anyOf": [{"type": "integer"}, {"type": "null"}]}  # fmt: skip


def test_nested_models_are_matched_by_path_not_name() -> None:
    doc, notes = apply_types(old_doc(), unshared(types_doc()))
    size = doc["components"]["schemas"]["ImageSizeType2"]
    assert list(size["properties"]) == ["width", "height", "ratio"]
    assert size["x-fal-order-properties"] == ["width", "height", "ratio"]
    assert "input.image_size.old_only: removed" in notes
    assert "ImageSize" not in merged()[0]["components"]["schemas"]  # the types' name is not imported
    assert field("image_size")["anyOf"][0] == {"$ref": f"{C}ImageSizeType2"}


def test_a_changed_kind_takes_the_types_schema() -> None:
    assert field("strength") == {"type": "number", "description": "Was a string."}
    assert any(n.startswith("input.strength: kind changed (string → number)") for n in merged()[1])


def test_unknown_in_the_types_says_nothing_of_the_kind() -> None:
    assert field("extra") == {"title": "Extra", "type": "object", "additionalProperties": {"type": "number"},
                              "description": "Anything."}  # fmt: skip


def test_a_default_beyond_a_kept_bound_is_not_applied() -> None:
    assert field("steps")["default"] == 4
    assert "input.steps: kept default 4: the types' 28 is above maximum 12" in merged()[1]


def test_a_default_of_the_wrong_kind_is_not_applied() -> None:
    old = old_doc()
    old["components"]["schemas"]["TestInput"]["properties"]["steps"] = {"type": "integer", "default": 4}
    new = types_doc()
    new["components"]["schemas"]["DemoInput"]["properties"]["steps"]["default"] = 2.5
    doc, notes = apply_types(old, new)
    assert doc["components"]["schemas"]["TestInput"]["properties"]["steps"]["default"] == 4
    assert "input.steps: kept default 4: the types' 2.5 is not an integer" in notes


def test_an_enum_that_breaks_a_kept_bound_is_not_applied() -> None:
    old = old_doc()
    old["components"]["schemas"]["TestInput"]["properties"]["format"].update(enum=["png"], maxLength=3)
    doc, notes = apply_types(old, types_doc())
    assert doc["components"]["schemas"]["TestInput"]["properties"]["format"]["enum"] == ["png"]
    assert doc["components"]["schemas"]["TestInput"]["properties"]["format"]["default"] == "png"
    assert (
        'input.format: kept enum ["png"]: of the types\' ["png", "jpeg", "webp"], \'jpeg\' is longer than maxLength 3'
        in notes
    )
    assert "input.format: kept default 'png': the types' 'webp' is not one of [\"png\"]" in notes


def test_an_enum_that_leaves_out_the_old_default_is_not_applied_when_types_state_none() -> None:
    new = types_doc()
    fmt = new["components"]["schemas"]["DemoInput"]["properties"]["format"]
    fmt["enum"] = ["jpeg", "webp"]
    del fmt["default"]
    doc, notes = apply_types(old_doc(), new)
    assert doc["components"]["schemas"]["TestInput"]["properties"]["format"]["enum"] == ["png", "jpeg"]
    assert (
        'input.format: kept enum ["png", "jpeg"]: of the types\' ["jpeg", "webp"], none is the default \'png\', and the types state no other'
        in notes
    )


def test_an_aliased_type_gives_no_descriptions_or_defaults() -> None:
    """`OtherInput = DemoInput`: the doc comments are DemoInput's, so fal-ai/other keeps its own."""
    doc, notes = apply_types(old_doc("fal-ai/other"), types_doc("fal-ai/other"))
    fmt = doc["components"]["schemas"]["TestInput"]["properties"]["format"]
    assert (fmt["default"], fmt["description"], fmt["enum"]) == ("png", "Old text.", ["png", "jpeg", "webp"])
    assert "input.format: kept default 'png': the types' 'webp' is DemoInput's (the types alias it)" in notes
    assert any(n.startswith("input: kept") and "descriptions: the types' are DemoInput's" in n for n in notes)


def test_models_no_longer_used_are_removed() -> None:
    old = old_doc()
    old["components"]["schemas"]["Unused"] = {"type": "object"}  # unused before: not ours to remove
    old["components"]["schemas"]["TestInput"]["properties"]["gone"] = {"$ref": f"{C}OnlyGone"}
    old["components"]["schemas"]["OnlyGone"] = {"type": "object", "properties": {}}
    doc, notes = apply_types(old, types_doc())
    assert "OnlyGone" not in doc["components"]["schemas"]
    assert "Unused" in doc["components"]["schemas"]
    assert "components: removed OnlyGone, no longer used" in notes


def test_idempotent_and_deterministic() -> None:
    once, notes = merged()
    twice, again = apply_types(once, types_doc())
    assert twice == once
    assert again == [n for n in notes if n.split(": ", 1)[1].startswith("kept")]  # what is still not applied
    assert again
    assert apply_types(old_doc(), types_doc()) == merged()


def test_a_document_without_the_queue_paths_is_refused() -> None:
    old = old_doc()
    del old["paths"]
    with pytest.raises(ValueError, match="the old document has nothing at paths"):
        apply_types(old, types_doc())


# The real data: specs/ (fal's JSON Schemas, read only) against fal-js endpoints.ts @381105e.


def disagreements(doc: dict[str, Any], new: dict[str, Any], endpoint_id: str) -> dict[str, int]:
    """How many field names, required-ness and enums `doc` and `new` disagree on, and how many fields were compared
    (walked by property path as fieldmerge walks them)."""
    out = {"names": 0, "required": 0, "enum": 0, "fields": 0}
    seen: set[int] = set()

    def model(old: dict[str, Any], types: dict[str, Any]) -> None:
        if id(old) in seen:
            return
        seen.add(id(old))
        ours, theirs = old.get("properties") or {}, types.get("properties") or {}
        out["fields"] += len(set(ours) | set(theirs))
        out["names"] += len(set(ours) ^ set(theirs))
        required, wanted = set(old.get("required") or []), set(types.get("required") or [])
        for name in sorted(set(ours) & set(theirs)):
            out["required"] += (name in required) != (name in wanted)
            field(ours[name], theirs[name])

    def field(old: dict[str, Any], types: dict[str, Any]) -> None:
        free = list(_branches(old))
        for branch in _branches(types):
            kind = _kind(new, branch)
            match = next((b for b in free if _kind(doc, b) == kind), None) if kind != "any" else None
            if match is None:
                continue
            free.remove(match)
            if kind == "object":
                model(_deref(doc, match), _deref(new, branch))
            elif kind == "array" and isinstance(match.get("items"), dict) and isinstance(branch.get("items"), dict):
                field(match["items"], branch["items"])
            elif kind in ("string", "number", "boolean"):
                was = match["enum"] if "enum" in match else [match["const"]] if "const" in match else None
                out["enum"] += was != branch.get("enum")

    for path in (input_schema_path(endpoint_id), output_schema_path(endpoint_id)):
        ours: Any = doc
        theirs: Any = new
        for key in path:
            ours, theirs = ours[key], theirs[key]
        model(_deref(doc, ours), _deref(new, theirs))
    return out


@functools.cache
def real_pairs() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    types_file = read_types(SOURCES / "fal-sources" / "fal-js-endpoints-381105e.ts.gz")
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    pairs = []
    for endpoint_id in types_file.endpoint_ids():
        path = ROOT / "specs" / f"{endpoint_id}.yaml"
        if path.is_file():
            old = yaml.load(path.read_text(encoding="utf-8"), Loader=loader_class)
            pairs.append(
                (endpoint_id, old, catalogue.document_from_schemas(endpoint_id, types_file.entry(endpoint_id)))
            )
    return pairs


@pytest.mark.slow
def test_real_specs_merge_idempotently_into_valid_documents_that_agree_with_the_types() -> None:
    pairs = real_pairs()
    assert len(pairs) > 1100
    totals = {"names": 0, "required": 0, "enum": 0, "fields": 0}
    problems: list[str] = []
    for endpoint_id, old, new in pairs:
        before = copy.deepcopy(old)
        once, _ = apply_types(old, new)
        assert old == before
        assert apply_types(once, new)[0] == once, endpoint_id
        spec = loader.SpecDocument(Path(f"{endpoint_id}.yaml"), endpoint_id, once)
        problems += [f"{endpoint_id}{p.pointer}: {p.message}" for p in loader.check_schemas(spec)]
        problems += [f"{endpoint_id}{p.pointer}: {p.message}" for p in loader._openapi_errors(spec)]
        for key, count in disagreements(once, new, endpoint_id).items():
            totals[key] += count
    assert problems == []
    off = totals["names"] + totals["required"] + totals["enum"]
    assert off <= 0.01 * totals["fields"], totals


@pytest.mark.slow
def test_schnell_keeps_its_own_steps() -> None:
    """fal-js aliases FluxSchnellInput to FluxDevInput (dev: 28 steps); schnell's maximum is 12, its default 4."""
    _, old, new = next(p for p in real_pairs() if p[0] == "fal-ai/flux/schnell")
    doc, notes = apply_types(old, new)
    steps = doc["components"]["schemas"]["FluxSchnellInput"]["properties"]["num_inference_steps"]
    assert (steps["type"], steps["default"], steps["maximum"]) == ("integer", 4, 12)
    assert any(n.startswith("input.num_inference_steps: kept default 4") for n in notes)
