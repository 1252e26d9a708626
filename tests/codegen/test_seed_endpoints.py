"""The committed `generated` package, seed endpoint by seed endpoint: it imports, the spec's own examples validate
and round-trip, and bad arguments raise a validation error before any network call. (The whole catalogue's examples
are checked in test_catalogue.py.)"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

import generated
from codegen.generation import loader
from tests.codegen.conftest import ROOT

SPECS = ROOT / "specs"
ALL_SPEC_FILES = loader.find_endpoint_spec_files(SPECS)
SEED_IDS = [
    "fal-ai/alpha-image-232/edit-image", "fal-ai/image-editing/background-change",
    "fal-ai/image-editing/face-enhancement", "fal-ai/image-editing/color-correction", "fal-ai/post-processing/sharpen",
    "fal-ai/image-editing/object-removal", "fal-ai/flux/dev/image-to-image", "fal-ai/recraft/v3/image-to-image",
    "fal-ai/luma-photon/modify", "fal-ai/bytedance/seededit/v3/edit-image", "fal-ai/flux-pro/kontext/max/multi",
    "fal-ai/flux-2/lora/edit", "fal-ai/qwen-image-2/edit", "fal-ai/gemini-flash-edit",
]  # fmt: skip
SPEC_FILES = [SPECS / f"{endpoint_id}.yaml" for endpoint_id in sorted(SEED_IDS)]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _spec(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # type: ignore[no-any-return]


def _io(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    endpoint_id = spec["info"]["x-fal-metadata"]["endpointId"]
    schemas = spec["components"]["schemas"]
    ref = spec["paths"][f"/{endpoint_id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    out = spec["paths"][f"/{endpoint_id}/requests/{{request_id}}"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]["$ref"]
    return schemas[ref.rsplit("/", 1)[1]], schemas[out.rsplit("/", 1)[1]]


@pytest.mark.slow
def test_every_seed_endpoint_has_a_spec_and_a_module() -> None:
    ids = sorted(_spec(p)["info"]["x-fal-metadata"]["endpointId"] for p in ALL_SPEC_FILES)
    assert sorted(SEED_IDS) == [i for i in ids if i in SEED_IDS]
    assert sorted(generated.ENDPOINTS) == ids


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point every host at a closed port: any network attempt would raise a transport error, not a validation error."""
    monkeypatch.setenv("FAL_KEY", "test-key")
    monkeypatch.setenv("FAL_QUEUE_RUN_HOST", "127.0.0.1:9")
    monkeypatch.setenv("FAL_RUN_HOST", "127.0.0.1:9")


def _invalid_variants(
    example: dict[str, Any], schema: dict[str, Any], schemas: dict[str, Any]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(kind, field, arguments) for each way the spec lets us break its own example."""
    props = schema.get("properties", {})
    for name in schema.get("required", []):
        broken = {k: v for k, v in example.items() if k != name}
        yield "missing required field", name, broken
    for name, prop in props.items():
        alts = [a for a in prop.get("anyOf", [prop]) if isinstance(a, dict)]
        for alt in alts:
            if "maximum" in alt and alt.get("type") in ("integer", "number"):
                yield "out-of-range number", name, {**example, name: alt["maximum"] + 1}
            if "minimum" in alt and alt.get("type") in ("integer", "number"):
                yield "out-of-range number", name, {**example, name: alt["minimum"] - 1}
            if "enum" in alt and all(isinstance(v, str) for v in alt["enum"]) and len(alts) == 1:
                yield "unknown enum value", name, {**example, name: "definitely-not-an-allowed-value"}
            if alt.get("type") == "array" and "maxItems" in alt and name in example and example[name]:
                yield (
                    "too many items",
                    name,
                    {**example, name: [copy.deepcopy(example[name][0])] * (alt["maxItems"] + 1)},
                )
            if alt.get("type") == "string" and "maxLength" in alt:
                yield "string too long", name, {**example, name: "x" * (alt["maxLength"] + 1)}
        if prop.get("type") == "string" or (
            name in example and isinstance(example[name], str) and not prop.get("anyOf")
        ):
            yield "wrong type", name, {**example, name: {"not": "a string"}}


KINDS_REQUIRED = {"missing required field", "out-of-range number", "unknown enum value", "too many items", "wrong type"}


@pytest.mark.parametrize(
    "spec_path", SPEC_FILES, ids=[p.relative_to(SPECS).with_suffix("").as_posix() for p in SPEC_FILES]
)
def test_endpoint_module(spec_path: Path, offline: None) -> None:
    spec = _spec(spec_path)
    endpoint_id = spec["info"]["x-fal-metadata"]["endpointId"]
    module = generated.load(endpoint_id)
    assert endpoint_id == module.ENDPOINT_ID
    input_schema, output_schema = _io(spec)

    assert input_schema.get("examples"), "the page's example input belongs in the spec"
    assert output_schema.get("examples"), "the page's example output belongs in the spec"
    for example in input_schema["examples"]:
        parsed, _ = module.endpoint.build_input(None, dict(example))
        assert module.endpoint.payload(parsed) == example  # sent exactly as the spec's example
    for example in output_schema["examples"]:
        assert (
            module.Output.model_validate(example).model_dump(mode="json", by_alias=True, exclude_unset=True) == example
        )

    example = input_schema["examples"][0]
    variants = list(_invalid_variants(example, input_schema, spec["components"]["schemas"]))
    assert variants
    for kind, field, arguments in variants:
        with pytest.raises(pydantic.ValidationError) as info:
            module.submit(**arguments)
        assert any(field in ".".join(map(str, e["loc"])) or e["type"] == "missing" for e in info.value.errors()), (
            kind,
            field,
        )


def test_every_kind_of_invalid_input_is_exercised() -> None:
    """The variants test_endpoint_module raises on cover every kind of bad argument the issue names."""
    kinds = set()
    for path in SPEC_FILES:
        spec = _spec(path)
        input_schema, _ = _io(spec)
        kinds |= {
            k for k, _, _ in _invalid_variants(input_schema["examples"][0], input_schema, spec["components"]["schemas"])
        }
    assert kinds >= KINDS_REQUIRED
