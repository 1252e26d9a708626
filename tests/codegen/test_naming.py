"""Names users read: module paths from endpoint ids, class names from fal's schema names."""

from __future__ import annotations

import pytest

from codegen.generation import naming


@pytest.mark.parametrize(
    ("endpoint_id", "parts"),
    [
        ("fal-ai/flux/dev", ("fal_ai", "flux", "dev")),
        ("fal-ai/flux-pro/v1.1-ultra", ("fal_ai", "flux_pro", "v1_1_ultra")),
        ("bytedance/seedance-2.0/fast/image-to-video", ("bytedance", "seedance_2_0", "fast", "image_to_video")),
        ("fal-ai/3d-model/class", ("fal_ai", "_3d_model", "class_")),
        ("fal-ai/match/import", ("fal_ai", "match_", "import_")),
        ("Owner/Mixed.Case", ("owner", "mixed_case")),
    ],
)
def test_module_parts(endpoint_id: str, parts: tuple[str, ...]) -> None:
    assert naming.module_parts(endpoint_id) == parts
    assert all(p.isidentifier() for p in parts)


def test_qualified_schema_names_become_readable() -> None:
    names = [
        "FluxDevInput",
        "FluxDevOutput",
        "fal__toolkit__image__image__Image",
        "registry__image__fast_sdxl__models__Image",
        "ImageSize",
        "Field",
    ]
    result = naming.class_names(names, {"FluxDevInput": "Input", "FluxDevOutput": "Output"})
    assert result == {
        "FluxDevInput": "Input",
        "FluxDevOutput": "Output",
        "ImageSize": "ImageSize",
        "Field": "FieldModel",  # would shadow pydantic's Field
        "fal__toolkit__image__image__Image": "Image",
        "registry__image__fast_sdxl__models__Image": "FastSdxlImage",
    }


def test_class_names_do_not_depend_on_order() -> None:
    names = ["a__Image", "b__Image", "Image", "c__x__Image"]
    assert naming.class_names(names, {}) == naming.class_names(list(reversed(names)), {})
    assert naming.class_names(names, {})["Image"] == "Image"
    assert len(set(naming.class_names(names, {}).values())) == 4


def test_the_functions_a_module_defines_are_named_once() -> None:
    """`style.MODULE_FUNCTIONS` is what the templates write: every call function (and realtime's pair) is reserved as a
    module name and may not be a child module's."""
    from codegen.generation import pipeline, render, style

    defined = {op.name for op in (*render._SYNC, render._STREAM, *render._ASYNC, render._STREAM_ASYNC)}
    assert defined | {"realtime", "realtime_async"} == set(style.MODULE_FUNCTIONS)
    assert set(style.MODULE_FUNCTIONS) <= naming.RESERVED_MODULE_NAMES
    assert set(style.MODULE_FUNCTIONS) <= pipeline._MODULE_NAMES
    assert naming.module_segment("realtime") == "realtime_"
