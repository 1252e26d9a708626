"""codegen.spectools.tstypes: fal's TypeScript endpoint types → JSON Schema, every form the real file uses, and nothing made up."""

from __future__ import annotations

import functools
import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest

from codegen.generation import loader
from codegen.spectools import catalogue
from codegen.spectools.tstypes import TypeCatalogue, parse_types, read_types
from tests.codegen.conftest import SOURCES

FIXTURE = Path(__file__).parent / "fixtures_ts" / "endpoints.ts"
REAL = SOURCES / "fal-sources" / "fal-js-endpoints-381105e.ts.gz"


@functools.cache
def demo() -> dict[str, Any]:
    return read_types(FIXTURE).entry("fal-ai/demo")


def prop(name: str) -> Any:
    return demo()["input"]["properties"][name]


def test_endpoint_ids_in_file_order() -> None:
    assert read_types(FIXTURE).endpoint_ids() == ["fal-ai/demo", "fal-ai/demo/alias", "fal-ai/demo/empty"]


def test_entry_has_the_snapshot_shape() -> None:
    entry = demo()
    assert set(entry) == {"input", "output", "inputName", "outputName"}
    assert (entry["inputName"], entry["outputName"]) == ("DemoInput", "DemoOutput")
    assert catalogue.is_snapshot({"fal-ai/demo": entry})
    for side in ("input", "output"):
        assert entry[side]["type"] == "object"
        assert entry[side]["x-fal-types-only"] is True


def test_properties_keep_the_file_order_and_required_follows_question_marks() -> None:
    schema = demo()["input"]
    assert list(schema["properties"])[:4] == ["aspect_ratio", "rank", "offset", "image_size"]
    assert list(schema["properties"])[-2:] == ["bare", "undocumented"]
    assert schema["required"] == ["image_url", "prompt-text", "json_input"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("aspect_ratio", {"type": "string", "enum": ["16:9", "1:1", "9:16"]}),  # multi-line, leading `|`
        ("rank", {"type": "number", "enum": [8, 16, 32]}),
        ("offset", {"type": "number", "enum": [-1, 0, 2.5]}),
        ("resolution", {"type": "string", "enum": ["720p"]}),  # one literal, no union
        ("image_url", {"type": "string", "x-fal-file-input": True}),
        ("num_inference_steps", {"type": "number"}),  # never integer, never bounds
        ("enabled", {"type": "boolean"}),
        ("extra", {}),  # unknown
        ("json_input", {}),  # void
        ("timestamps", {"type": "array", "items": {}}),  # Array<void>
        ("points", {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}),
        ("bitrate", {"anyOf": [{"type": "string"}, {"type": "number"}]}),
        ("guidance_scale", {"type": "number"}),  # `number | number` collapses
        ("scale", {"anyOf": [{}, {"type": "number"}]}),  # `unknown | number` keeps what it says
        ("ratio", {"anyOf": [{"type": "string", "enum": ["21:9", "16:9"]}, {"type": "string"}]}),
        ("undocumented", {"type": "string"}),
    ],
)
def test_type_forms(name: str, expected: dict[str, Any]) -> None:
    got = {k: v for k, v in prop(name).items() if k not in ("description", "default")}
    assert got == expected


def test_named_type_beside_string_literals_is_fals_anyof_shape() -> None:
    assert prop("image_size")["anyOf"] == [
        {"$ref": "#/$defs/ImageSize"},
        {"type": "string", "enum": ["square_hd", "landscape_4_3"]},
    ]


def test_file_union_inside_a_larger_union_and_an_array() -> None:
    file_input = {"type": "string", "x-fal-file-input": True}
    assert prop("fill_image_url")["anyOf"] == [{"type": "array", "items": file_input}, file_input]


def test_nested_types_become_defs_with_their_ts_name_as_title() -> None:
    defs = demo()["input"]["$defs"]
    assert sorted(defs) == ["Image", "ImageSize", "Node"]
    assert defs["Image"] == {
        "title": "Image",
        "type": "object",
        "properties": {
            "height": {"type": "number", "description": "The height of the image.", "default": 512},
            "url": {"type": "string", "description": "The URL of the image."},
        },
        "required": ["url"],
        "x-fal-types-shared": 3,  # declared once for three endpoints
    }
    assert prop("tree") == {"$ref": "#/$defs/Node", "description": "Tree."}
    assert defs["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}  # a type may name itself
    # `ImageFile = Image`: both names are one definition, under the name the alias chain ends at
    assert prop("images")["items"] == {"$ref": "#/$defs/Image"}
    output = demo()["output"]
    assert output["properties"]["file"]["$ref"] == "#/$defs/File"  # fal's File model, not a file input
    assert sorted(output["$defs"]) == ["File", "Image"]


@pytest.mark.parametrize(
    ("name", "description", "default"),
    [
        ("aspect_ratio", "The aspect ratio.\nSecond line of the description.", "16:9"),  # line breaks kept
        ("rank", "LoRA rank.", 16),
        ("offset", "Offsets.", -1),
        ("image_size", "The size.", "landscape_4_3"),  # unquoted: the bare text
        ("enabled", "Enabled.", True),
        ("prompt-text", 'Prompt. Default value: "png".', "a cat"),  # only the trailing one is the default
        ("guidance_scale", "Guidance.", 5),
        ("ratio", "Free or listed.", "16:9"),
        ("bare", None, 1),  # a comment of nothing but the default
    ],
)
def test_descriptions_and_defaults(name: str, description: str | None, default: Any) -> None:
    assert prop(name).get("description") == description
    assert prop(name)["default"] == default
    assert type(prop(name)["default"]) is type(default)


@pytest.mark.parametrize("name", ["strength", "name", "image_url", "undocumented"])
def test_a_default_that_does_not_fit_or_is_null_is_dropped(name: str) -> None:
    # `strength: number` says `auto`; `name` says `"null"`, fal's generator's rendering of a null default
    assert "default" not in prop(name)


def test_aliases_resolve_through_chains_and_say_so() -> None:
    types = read_types(FIXTURE)
    entry = types.entry("fal-ai/demo/alias")
    assert entry["inputName"] == "AliasInput"
    assert entry["input"]["title"] == "AliasInput"
    assert entry["input"]["x-fal-types-alias-of"] == "DemoInput"
    assert entry["input"]["properties"] == demo()["input"]["properties"]
    assert "x-fal-types-alias-of" not in demo()["input"]
    assert types.resolve("AliasInput") == "DemoInput"


def test_empty_record() -> None:
    schema = read_types(FIXTURE).entry("fal-ai/demo/empty")["input"]
    assert schema == {"title": "EmptyInput", "type": "object", "properties": {}, "x-fal-types-only": True}


def test_gzip_and_plain_files_read_alike(tmp_path: Path) -> None:
    packed = tmp_path / "endpoints.ts.gz"
    packed.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    assert read_types(packed).entry("fal-ai/demo") == demo()


def test_entries_are_fresh_copies() -> None:
    types = read_types(FIXTURE)
    types.entry("fal-ai/demo")["input"]["properties"].clear()
    assert types.entry("fal-ai/demo")["input"]["properties"]


def _types(body: str) -> TypeCatalogue:
    return parse_types(body + '\nexport type EndpointTypeMap = { "a/b": { input: AInput; output: AInput; }; };\n')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "export type AInput = { x: Map<string, number>; };",
            r"AInput\.x: cannot read TypeScript type `Map<string, number>`",
        ),
        ("export type AInput = { x: Missing; };", r"AInput\.x: type Missing is not declared"),
        ("export type AInput = { x: any; };", r"AInput\.x: cannot read TypeScript type `any`"),
        (
            "export type AInput = { x: [number, number]; };",
            r"AInput\.x: cannot read TypeScript type `\[number, number\]`",
        ),
        ("export type AInput = { x: true | false; };", r"AInput\.x: cannot read literal type `true`"),
        ("export type AInput = { x: Blob; };", r"AInput\.x: type Blob is not declared"),
        ("export type AInput = { x: Array<number, string>; };", r"AInput\.x: cannot read TypeScript type"),
        ("export type AInput = BInput;\nexport type BInput = AInput;", r"type alias cycle: AInput = BInput = AInput"),
        ("export type AInput = { x: string; ", r"not valid TypeScript"),
        ("export type AInput = { m(): void; };", r"AInput: cannot read member"),
        ("export interface AInput { x: string }", r"expected `export type X = \.\.\.`"),
    ],
)
def test_unreadable_forms_raise_naming_type_and_property(body: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _types(body).entry("a/b")


def test_map_must_name_declared_types() -> None:
    with pytest.raises(ValueError, match="refers to Nowhere"):
        parse_types('export type EndpointTypeMap = { "a/b": { input: Nowhere; output: Nowhere; }; };')


def test_a_file_without_the_map_is_refused() -> None:
    with pytest.raises(ValueError, match="EndpointTypeMap"):
        parse_types("export type A = { x: string; };")


# The real file: fal-js libs/client/src/types/endpoints.ts @381105e (2026-08-02).


@functools.cache
def real() -> TypeCatalogue:
    return read_types(REAL)


def test_real_file_parses_fast() -> None:
    start = time.perf_counter()
    types = read_types(REAL)
    elapsed = time.perf_counter() - start
    assert len(types.endpoint_ids()) == 1390
    assert elapsed < 2.0, f"parsing took {elapsed:.2f} s"


def _walk(node: Any) -> Any:
    """Every schema under `node` (the values of `properties` and `$defs`, never their names)."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key in ("properties", "$defs"):
                yield from _walk(list(value.values()))
            elif key not in ("default", "enum"):
                yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


_INVENTED = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
             "maxItems", "format", "pattern", "examples", "multipleOf"}  # fmt: skip


@pytest.mark.slow
def test_every_real_endpoint_converts_into_a_valid_document() -> None:
    types = real()
    problems: list[str] = []
    for endpoint_id in types.endpoint_ids():
        entry = types.entry(endpoint_id)
        for node in _walk([entry["input"], entry["output"]]):
            assert node.get("type") != "integer", endpoint_id
            assert not _INVENTED & set(node), (endpoint_id, node)
        doc = catalogue.document_from_schemas(endpoint_id, json.loads(json.dumps(entry)))
        spec = loader.SpecDocument(Path(f"{endpoint_id}.json"), endpoint_id, doc)
        problems += [f"{p.file}{p.pointer}: {p.message}" for p in loader.check_schemas(spec)]
        problems += [f"{p.file}{p.pointer}: {p.message}" for p in loader._openapi_errors(spec)]
    assert problems == []


@pytest.mark.slow
def test_real_file_forms() -> None:
    """Spot checks of forms the real file has: a split alias, the flux aliasing, a file union inside an array."""
    types = real()
    schnell = types.entry("fal-ai/flux/schnell")
    assert schnell["input"]["x-fal-types-alias-of"] == "FluxDevInput"
    assert schnell["input"]["properties"]["num_inference_steps"] == {
        "type": "number",
        "description": "The number of inference steps to perform.",
        "default": 28,  # dev's default, faithfully: the alias says so (codegen.spectools.fieldmerge keeps schnell's 4)
    }
    assert schnell["input"]["properties"]["image_size"]["default"] == "landscape_4_3"
    assert types.resolve("AmtInterpolationFrameInterpolationInput") == "AMTFrameInterpolationInput"  # over two lines
    fill = types.entry("fal-ai/flux-general")["input"]["$defs"]["ImageFillInput"]["properties"]["fill_image_url"]
    file_input = {"type": "string", "x-fal-file-input": True}
    assert fill["anyOf"] == [{"type": "array", "items": file_input}, file_input]
