"""Field-level behaviour of generated models: clashing names, Literal enums, defaults, constraints, call signatures."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import pydantic
import pytest

from tests.codegen.conftest import mini_spec

CLASHING = ["json", "schema", "model_config", "from", "class", "copy", "client", "model_dump", "validate"]


def test_clashing_field_names_get_safe_attributes_and_round_trip(build_package: Any) -> None:
    spec = mini_spec("fal-ai/test/clash", {name: {"type": "string"} for name in CLASHING})
    mod = build_package([spec]).load("fal-ai/test/clash")
    wire = {name: f"value of {name}" for name in CLASHING}
    model = mod.Input.model_validate(wire)
    assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == wire
    assert isinstance(model.model_dump_json(), str)  # the pydantic methods still work
    # `client` collides with the call functions' own keyword: the field's keyword becomes `client_`
    source = inspect.getsource(mod)
    assert 'renamed={"client_": "client"}' in source
    assert "    client_: str | None = None,\n" in source


def test_literal_enums_accept_plain_strings_and_defaults_serialize_cleanly(build_package: Any) -> None:
    spec = mini_spec(
        "fal-ai/test/enums",
        {
            "aspect_ratio": {"enum": ["21:9", "16:9", "1:1"], "type": "string", "default": "16:9"},
            "style": {"enum": ["realistic_image/b_and_w", "any"], "type": "string", "default": "any"},
            "safety_tolerance": {"enum": ["1", "2", "3", "4", "5", "6"], "type": "string", "default": "2"},
            "count": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
        },
    )
    mod = build_package([spec]).load("fal-ai/test/enums")
    model = mod.Input(aspect_ratio="21:9", style="realistic_image/b_and_w", safety_tolerance="6")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dumped = mod.Input().model_dump(mode="json")
    assert dumped == {"aspect_ratio": "16:9", "style": "any", "safety_tolerance": "2", "count": 1}
    assert model.safety_tolerance == "6"
    with pytest.raises(pydantic.ValidationError):
        mod.Input(aspect_ratio="4:3")
    with pytest.raises(pydantic.ValidationError):
        mod.Input(count=5)
    with pytest.raises(pydantic.ValidationError):
        mod.Input(safety_tolerance=6)


def test_prefix_endpoint_ids_get_separate_modules(build_package: Any) -> None:
    pkg = build_package(
        [
            mini_spec("fal-ai/flux/dev", {"prompt": {"type": "string"}}),
            mini_spec("fal-ai/flux/dev/image-to-image", {"image_url": {"type": "string"}}),
        ]
    )
    parent = pkg.load("fal-ai/flux/dev")
    child = pkg.load("fal-ai/flux/dev/image-to-image")
    assert parent.ENDPOINT_ID == "fal-ai/flux/dev" and child.ENDPOINT_ID == "fal-ai/flux/dev/image-to-image"
    assert child.__name__ == parent.__name__ + ".image_to_image"
    assert "prompt" in parent.Input.model_fields and "image_url" in child.Input.model_fields


def test_package_index_is_lazy(build_package: Any) -> None:
    import sys

    pkg = build_package(
        [
            mini_spec("fal-ai/lazy/one", {"a": {"type": "string"}}),
            mini_spec("fal-ai/lazy/two", {"b": {"type": "string"}}),
        ]
    )
    assert sorted(pkg.ENDPOINTS) == ["fal-ai/lazy/one", "fal-ai/lazy/two"]
    assert not [m for m in sys.modules if m.startswith(pkg.__name__ + ".")]
    assert pkg.ENDPOINTS["fal-ai/lazy/two"].ENDPOINT_ID == "fal-ai/lazy/two"
    assert [m for m in sys.modules if m.startswith(pkg.__name__ + ".fal_ai.lazy.")] == [
        pkg.__name__ + ".fal_ai.lazy.two"
    ]
    with pytest.raises(KeyError, match="did you mean 'fal-ai/lazy/one'"):
        pkg.load("fal-ai/lazy/on")


def test_optional_constrained_field_stays_a_plain_type(build_package: Any) -> None:
    """fal's `anyOf: [{type: T, bounds}, {type: null}]` is `T | None` with the bounds, not a RootModel per field."""
    spec = mini_spec(
        "fal-ai/test/nullable",
        {
            "seed": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2147483647}, {"type": "null"}]},
            "negative_prompt": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "default": ""},
        },
    )
    mod = build_package([spec]).load("fal-ai/test/nullable")
    assert [c for c in mod.__all__ if c[0].isupper() and not c.isupper()] == ["Input", "Output"]
    assert mod.Input(seed=None, negative_prompt=None).model_dump() == {"seed": None, "negative_prompt": None}
    assert mod.Input(seed=7).seed == 7
    for bad in ({"seed": -1}, {"seed": 2**31}, {"negative_prompt": "too long"}):
        with pytest.raises(pydantic.ValidationError):
            mod.Input(**bad)
