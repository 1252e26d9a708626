"""The whole catalogue in `generated/`: fidelity shown, not assumed.

Every example fal publishes for an endpoint's input or output (the schema's own `examples`, and each field's) must
validate against the generated `Input` / `Output` it belongs to. The few that do not are listed in `EXCEPTIONS` with
the reason; an example that starts failing, or an exception that starts passing, fails this test.
"""

from __future__ import annotations

import importlib
import json
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

import generated
from codegen.generation import loader
from codegen.generation.naming import RESERVED_MODULE_NAMES, module_parts
from tests.codegen.conftest import ROOT

SPECS = ROOT / "specs"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# (endpoint id, JSON pointer of the example) → why it does not validate against the generated model.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def _io_names(doc: dict[str, Any], endpoint_id: str) -> tuple[str, str]:
    def ref(node: Any) -> str:
        return str(node["$ref"]).rsplit("/", 1)[1]

    paths = doc["paths"]
    body = paths[f"/{endpoint_id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    result = paths[f"/{endpoint_id}/requests/{{request_id}}"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    return ref(body), ref(result)


def examples() -> Iterator[tuple[str, str, str, str | None, Any]]:
    """(endpoint id, "Input" | "Output", pointer, field wire name or None for a whole example, the example)."""
    for path in loader.find_endpoint_spec_files(SPECS):
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
        endpoint_id = doc["info"]["x-fal-metadata"]["endpointId"]
        schemas = doc["components"]["schemas"]
        for side, name in zip(("Input", "Output"), _io_names(doc, endpoint_id), strict=False):
            schema = schemas[name]
            base = f"/components/schemas/{name}"
            for i, example in enumerate(schema.get("examples") or []):
                yield endpoint_id, side, f"{base}/examples/{i}", None, example
            for field, prop in (schema.get("properties") or {}).items():
                for i, example in enumerate(prop.get("examples") or [] if isinstance(prop, dict) else []):
                    yield endpoint_id, side, f"{base}/properties/{field}/examples/{i}", field, example


def _field_adapter(model: type[pydantic.BaseModel], wire: str) -> pydantic.TypeAdapter[Any]:
    hints = typing.get_type_hints(model, include_extras=True)  # the module's names resolve its annotations
    for attr, info in model.model_fields.items():
        if (info.alias or attr) == wire:
            with warnings.catch_warnings():  # `Field(validate_default=...)` means nothing outside a model: fine here
                warnings.simplefilter("ignore", pydantic.warnings.UnsupportedFieldAttributeWarning)
                return pydantic.TypeAdapter(hints[attr])
    raise AssertionError(f"{model.__module__}.{model.__name__} has no field {wire!r}")


@pytest.mark.slow
def test_every_published_example_validates_against_its_generated_model() -> None:
    failures: dict[tuple[str, str], str] = {}
    checked = 0
    for endpoint_id, side, pointer, field, example in examples():
        model = getattr(generated.load(endpoint_id), side)
        try:
            if field is None:
                model.model_validate(example)
            else:
                _field_adapter(model, field).validate_python(example)
        except pydantic.ValidationError as exc:
            failures[(endpoint_id, pointer)] = str(exc).splitlines()[0]
        checked += 1
    assert checked > 5_000, f"only {checked} examples found: is the catalogue in specs/?"
    unexpected = {k: v for k, v in failures.items() if k not in EXCEPTIONS}
    assert not unexpected, f"{len(unexpected)} examples do not validate: {sorted(unexpected.items())[:20]}"
    assert set(EXCEPTIONS) <= set(failures), f"listed exceptions that now validate: {set(EXCEPTIONS) - set(failures)}"


@pytest.mark.slow
def test_every_endpoint_is_listed_with_its_metadata_without_importing_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys, generated\n"
        "infos = generated.ENDPOINTS.infos()\n"
        "loaded = [m for m in sys.modules if m.startswith('generated.')]\n"
        "print(len(infos), len(loaded), len([i for i in infos if i.category]), len(generated.ENDPOINTS.categories()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    count, loaded, with_category, categories = map(int, out.stdout.split())
    assert count == len(loader.find_endpoint_spec_files(SPECS)) > 1_200
    assert loaded == 0, "listing the endpoints imported endpoint modules"
    assert with_category == count and categories >= 10
    for info in generated.ENDPOINTS.infos():  # and every one imports by its module path
        assert info.endpoint_id == importlib.import_module(info.module).ENDPOINT_ID
    flux = generated.ENDPOINTS.info("fal-ai/flux/dev")
    assert flux[:5] == ("fal-ai/flux/dev", "generated.fal_ai.flux.dev", "text-to-image", "FLUX.1 [dev]", False)
    assert (flux.unlisted, flux.types_only, flux.streams, flux.source) == ("", False, True, "fal-js-types")
    schnell = generated.ENDPOINTS.info("fal-ai/flux/schnell")  # what fal's gallery adds
    assert schnell.kind == "inference" and schnell.display_name == "FLUX.1 [schnell]"


@pytest.mark.parametrize(
    ("endpoint_id", "module"),
    [
        ("fal-ai/flux/dev", "generated.fal_ai.flux.dev"),  # a prefix of the next one: a package with a module inside
        ("fal-ai/flux/dev/image-to-image", "generated.fal_ai.flux.dev.image_to_image"),
        ("fal-ai/flux-lora/stream", "generated.fal_ai.flux_lora.stream_"),  # `stream` is a function of its parent
        ("fal-ai/flux-pro/v1.1-ultra", "generated.fal_ai.flux_pro.v1_1_ultra"),  # dots and dashes
        ("fal-ai/sam-3/3d-objects", "generated.fal_ai.sam_3._3d_objects"),  # a leading digit
        ("bria/fibo-edit/colorize", "generated.bria.fibo_edit.colorize"),  # another owner
    ],
)
def test_module_names_are_readable_and_importable(endpoint_id: str, module: str) -> None:
    assert generated.ENDPOINTS.module_name(endpoint_id) == module
    loaded = generated.load(endpoint_id)
    assert loaded.__name__ == module and endpoint_id == loaded.ENDPOINT_ID


def test_module_names_for_capitals_underscores_and_reserved_words() -> None:
    assert module_parts("CassetteAI/music-generator") == ("cassetteai", "music_generator")
    assert module_parts("fal-ai/some_model/V2.1") == ("fal_ai", "some_model", "v2_1")
    assert module_parts("fal-ai/x/run") == ("fal_ai", "x", "run_")
    assert all(module_parts(f"o/{n}")[1] == n.lower() + "_" for n in RESERVED_MODULE_NAMES)


def test_a_deprecated_endpoint_warns_where_it_is_called(tmp_path: Path) -> None:
    import sys

    from codegen.generation.pipeline import generate
    from codegen.spectools.importer import dump

    doc = yaml.load((SPECS / "fal-ai/esrgan.yaml").read_text(encoding="utf-8"), Loader=_LOADER)
    doc["paths"]["/fal-ai/esrgan"]["post"]["deprecated"] = True
    (tmp_path / "specs/fal-ai").mkdir(parents=True)
    (tmp_path / "specs/fal-ai/esrgan.yaml").write_text(dump(doc), encoding="utf-8")
    generate(tmp_path / "specs", tmp_path / "deprecated_pkg")
    sys.path.insert(0, str(tmp_path))
    try:
        pkg = importlib.import_module("deprecated_pkg")
        assert pkg.ENDPOINTS.info("fal-ai/esrgan").deprecated
        module = pkg.load("fal-ai/esrgan")
        assert "deprecated" in (module.__doc__ or "")
        with (
            pytest.warns(DeprecationWarning, match="fal-ai/esrgan") as caught,
            pytest.raises(RuntimeError, match="no network"),
        ):
            module.run(image_url="https://example.com/a.png", client=_NoNetwork())
        assert caught[0].filename == __file__, "the warning points at the caller's line"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("deprecated_pkg")]:
            del sys.modules[name]


class _NoNetwork:
    """A client that refuses to send: the warning must come before any request."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("no network in this test")


@pytest.mark.slow
def test_the_catalogue_covers_fals_newest_listing_with_its_names_and_categories() -> None:
    """#20's aims on the committed catalogue: of fal's newest listing (specs/LISTING.json), every endpoint an offline
    source describes is generated (≥ 93 %), with fal's display name and category (≥ 98 %); every spec names its
    sources. (That fields, required-ness and enums agree with fal's August types within 1 % is held by
    test_fieldmerge; that every module loads, by the tests above.)"""
    listing = json.loads((SPECS / "LISTING.json").read_text(encoding="utf-8"))["endpoints"]
    infos = {i.endpoint_id: i for i in generated.ENDPOINTS.infos()}
    listed = [e for e in listing if e in infos]
    assert len(listed) >= 0.93 * len(listing), (len(listed), len(listing))
    named = [e for e in listed if infos[e].display_name and infos[e].category == listing[e]["category"]]
    assert len(named) >= 0.98 * len(listed), sorted(set(listed) - set(named))[:20]
    unlisted = [i.endpoint_id for i in infos.values() if i.unlisted]
    assert sorted(unlisted) == sorted(set(infos) - set(listing))
    for path in loader.find_endpoint_spec_files(SPECS):
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
        assert doc["info"].get("x-fal-sources"), f"{path} names no source"
