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
        "Field": "Field2",  # pydantic's Field is the module's: without a field holding it, a number
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


def test_a_class_takes_its_title_when_free_else_the_field_that_holds_it() -> None:
    """#22 item 2: fal's collision names (`ImageType2`, titled `Image`) never reach a module."""
    names = ["In", "Out", "Image", "ImageType2", "ImageSizeType2", "File", "FileType2"]
    titles = {"Image": "Image", "ImageType2": "Image", "ImageSizeType2": "ImageSize", "File": "File",
              "FileType2": "File"}  # fmt: skip
    holders = {
        "ImageSizeType2": naming.Holder("In", "image_size", item=False, order=0),
        "Image": naming.Holder("In", "reference", item=False, order=1),
        "ImageType2": naming.Holder("Out", "images", item=True, order=2),
        "File": naming.Holder("Out", "video", item=False, order=3),
        "FileType2": naming.Holder("Out", "glb", item=False, order=4, shared=True),
    }
    result = naming.class_names(names, {"In": "Input", "Out": "Output"}, titles=titles, holders=holders)
    assert result == {
        "In": "Input",
        "Out": "Output",
        "Image": "Image",  # titled as it is named: claims its title first
        "ImageType2": "OutputImage",  # its title is taken: the field that holds it, singular for a list's items
        "ImageSizeType2": "ImageSize",  # its title is free
        "File": "File",
        "FileType2": "OutputFile",  # held by several fields: the holder and its title
    }
    untitled = naming.class_names(["In", "ImageFileType2"], {"In": "Input"})
    assert untitled["ImageFileType2"] == "ImageFile"  # fal's collision suffix dropped
