"""The typed description of an endpoint's models (`modelir`): what it holds of each field, and the model source
written from it, without reading any generated text back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from codegen.generation import formatting, loader
from codegen.generation.modelir import FieldIR, ModelsIR, render_models
from codegen.generation.models import Models, generate_models
from codegen.generation.pipeline import _reserved_kwargs, load_endpoints
from tests.codegen.conftest import mini_spec, write_specs

STYLES = ["photo", "anime", "sketch", "oil", "watercolor"]
IMAGE_SIZE = {
    "type": "object",
    "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}},
    "required": ["width", "height"],
}
SIZE_PRESETS = ["auto", "square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]


def models_of(tmp_path: Path, props: dict[str, Any], **kwargs: Any) -> Models:
    root = write_specs(tmp_path / "specs", [mini_spec("fal-ai/test/ir", props, **kwargs)])
    [endpoint] = load_endpoints(loader.find_spec_files(root), root).endpoints
    return generate_models(endpoint, _reserved_kwargs())


def field_of(described: ModelsIR, cls: str, attr: str) -> FieldIR:
    return next(f for f in described.model(cls).fields if f.attr == attr)


def test_each_field_is_described_once_with_its_facts(tmp_path: Path) -> None:
    models = models_of(
        tmp_path,
        {
            "prompt": {"type": "string", "description": "What to draw."},
            "steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 28},
            "style": {"enum": STYLES, "type": "string", "default": "photo"},
            "image_url": {"type": "string", "description": "The image to start from."},
            "model_config": {"type": "string"},
        },
        required=["prompt", "image_url"],
    )
    described = models.ir
    prompt = field_of(described, "Input", "prompt")
    assert (prompt.wire, prompt.annotation, prompt.default, prompt.description) == (
        "prompt",
        "str",
        None,
        "What to draw.",
    )
    steps = field_of(described, "Input", "steps")
    assert (steps.annotation, steps.metadata, steps.default) == ("int", "Field(ge=1, le=50)", "28")
    assert steps.bounds == ("ge=1", "le=50") and steps.annotated == "Annotated[int, Field(ge=1, le=50)]"
    style = field_of(described, "Input", "style")
    assert (style.annotation, style.enum_aliases, style.default) == ("Style", ("Style",), '"photo"')
    assert [(a.name, a.literal) for a in described.aliases] == [
        ("Style", 'Literal["photo", "anime", "sketch", "oil", "watercolor"]')
    ]
    image = field_of(described, "Input", "image_url")
    assert image.file_input and image.annotation == "FileInput" and not prompt.file_input
    renamed = field_of(described, "Input", "model_config_")  # pydantic's own name: the attribute moves, not the wire
    assert renamed.wire == "model_config" and 'alias="model_config"' in renamed.metadata
    # The call functions, their docs and the imports read the same description.
    assert [(p.kwarg, p.wire, p.annotation, p.default, p.bounds, p.file_input) for p in models.params][:4] == [
        ("prompt", "prompt", "str", None, (), False),
        ("steps", "steps", "int", "28", ("ge=1", "le=50"), False),
        ("style", "style", "Style", '"photo"', (), False),
        ("image_url", "image_url", "FileInput", None, (), True),
    ]
    assert models.file_attrs == {"Input": ("image_url",)}
    assert models.imports["typing"] >= {"Annotated", "Literal", "TypeAlias"}
    assert "ConfigDict" not in models.imports.get("pydantic", ())  # `arbitrary_types_allowed` is noise, left out


def test_an_object_default_is_the_model_it_stands_for_defined_first(tmp_path: Path) -> None:
    size = {"anyOf": [{"$ref": "#/components/schemas/ImageSize"}, {"enum": SIZE_PRESETS, "type": "string"}]}
    models = models_of(
        tmp_path,
        {"image_size": {**size, "default": {"width": 1024, "height": 768}}},
        extra_schemas={"ImageSize": IMAGE_SIZE},
    )
    image_size = field_of(models.ir, "Input", "image_size")
    assert image_size.default == "ImageSize(width=1024, height=768)" and image_size.builds == "ImageSize"
    assert image_size.annotation == "ImageSize | ImageSizePreset"  # named values beside the class they stand for
    assert models.classes.index("ImageSize") < models.classes.index("Input")
    assert models.params[0].default == "ImageSize(width=1024, height=768)"


def test_the_split_the_parser_left_before_naming_a_literal_stays(tmp_path: Path) -> None:
    """datamodel-code-generator splits `Annotated[` a line per element when the field, its `Literal` inline, is too
    long; the trailing comma it leaves keeps black from joining it once the `Literal` has a name."""
    size = {"anyOf": [{"$ref": "#/components/schemas/ImageSize"}, {"enum": SIZE_PRESETS, "type": "string"}]}
    models = models_of(tmp_path, {"resolution": {**size, "default": "auto"}}, extra_schemas={"ImageSize": IMAGE_SIZE})
    assert field_of(models.ir, "Input", "resolution").layout == "annotated"
    assert (
        "    resolution: Annotated[\n"
        "        ImageSize | Resolution,\n"
        "        Field(validate_default=True),\n"
        '    ] = "auto"\n'
    ) in models.source


@pytest.mark.parametrize("long", [False, True])
def test_the_models_source_is_blacks_own(tmp_path: Path, long: bool) -> None:
    text = "A long description that goes on " * (6 if long else 1)
    models = models_of(
        tmp_path,
        {
            "style": {"enum": STYLES * (6 if long else 1), "type": "string", "description": text},
            "seed": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2**31 - 1}, {"type": "null"}]},
            "tags": {"type": "array", "items": {"type": "string"}, "default": ["a", "b"], "description": text},
        },
    )
    assert render_models(models.ir) == models.source
    source = formatting.FUTURE + models.source
    assert formatting.black_format(source) == source
