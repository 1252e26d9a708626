"""The intermediate model: what the generator learns about an endpoint beyond its schemas."""

from __future__ import annotations

from pathlib import Path

from codegen.generation import ir, loader
from codegen.problems import Problem
from tests.codegen.conftest import mini_spec, write_specs


def _build(tmp_path: Path, **kwargs: object) -> ir.EndpointIR:
    spec = mini_spec(
        "fal-ai/test/files",
        {
            "image_url": {"type": "string"},
            "image_urls": {"type": "array", "items": {"type": "string"}},
            "mask_url": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "reference": {"type": "string", "ui": {"field": "image"}},
            "prompt": {"type": "string"},
            "size_url": {"type": "integer"},
            "controlnets": {"type": "array", "items": {"$ref": "#/components/schemas/ControlNet"}},
            "previous": {"$ref": "#/components/schemas/File"},
        },
        {"image": {"$ref": "#/components/schemas/File"}, "seed": {"type": "integer"}},
        extra_schemas={
            "File": {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "content_type": {"type": "string"},
                    "preview_url": {"type": "string"},
                },
                "required": ["url"],
            },
            "ControlNet": {
                "type": "object",
                "properties": {"control_image_url": {"type": "string"}, "scale": {"type": "number"}},
            },
        },
        **kwargs,  # type: ignore[arg-type]
    )
    root = write_specs(tmp_path, [spec])
    problems: list[Problem] = []
    [path] = loader.find_spec_files(root)
    document = loader.load(path, problems)
    assert document is not None and not problems
    endpoint = ir.build(document, path.relative_to(root).as_posix(), problems)
    assert endpoint is not None
    return endpoint


def test_file_inputs_file_models_and_streaming(tmp_path: Path) -> None:
    endpoint = _build(tmp_path, streams=True)
    # Nested input-only models count; File is shared with the output, so its `preview_url` stays a plain string.
    assert endpoint.file_inputs == {
        "Input": ("image_url", "image_urls", "mask_url", "reference"),
        "ControlNet": ("control_image_url",),
    }
    assert endpoint.file_models == ("File",)
    assert endpoint.streams is True
    assert endpoint.module_parts == ("fal_ai", "test", "files")
    assert set(endpoint.schemas) == {"Input", "Output", "File", "ControlNet"}


def test_not_streaming_without_a_stream_path(tmp_path: Path) -> None:
    assert _build(tmp_path).streams is False
