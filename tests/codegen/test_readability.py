"""Generated modules read like hand-written ones: one import block of what they use, named `Literal` aliases, no
pydantic noise, wrapped docstrings, and call functions documented per argument."""

from __future__ import annotations

import ast
import inspect
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.codegen.conftest import ROOT, mini_spec

MANY = ["square_hd", "square", "portrait_4_3", "landscape_16_9"]
LONG = "The CFG scale is a measure of how close you want the model to stick to your prompt when looking for a related image."


def _spec() -> dict[str, Any]:
    return mini_spec(
        "fal-ai/readable/endpoint",
        {
            "image_size": {
                "anyOf": [{"$ref": "#/components/schemas/ImageSize"}, {"enum": MANY, "type": "string"}],
                "default": "square_hd",
                "title": "Image Size",
            },
            "thumbnail_size": {"enum": MANY, "type": "string", "title": "Thumbnail Size"},
            "guidance_scale": {"type": "number", "minimum": 1, "maximum": 20, "default": 3.5, "description": LONG,
                               "title": "Guidance scale (CFG)"},
            "mode": {"enum": ["a", "b", "c"], "type": "string", "default": "a"},
            "image_url": {"type": "string", "description": "The image to edit.", "title": "Image URL"},
        },
        required=["image_url"],
        extra_schemas={"ImageSize": {"type": "object", "title": "ImageSize",
                                     "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}}}},
    )  # fmt: skip


@pytest.fixture(scope="module")
def module(build_package_once: Any) -> Any:
    return build_package_once([_spec()]).load("fal-ai/readable/endpoint")


def test_a_literal_of_many_values_is_named_once_and_few_stay_inline(module: Any) -> None:
    source = Path(module.__file__).read_text()
    tree = ast.parse(source)
    aliases = [n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
               and ast.unparse(n.annotation) == "TypeAlias"]  # fmt: skip
    # beside the ImageSize class, the named sizes are presets; the same values elsewhere reuse the alias
    assert aliases == ["ImageSizePreset"]
    assert source.count('"portrait_4_3"') == 1
    assert 'Literal["a", "b", "c"]' in source
    hints = module.Input.model_fields
    assert str(hints["thumbnail_size"].annotation).endswith(
        "['square_hd', 'square', 'portrait_4_3', 'landscape_16_9']]"
    )
    assert module.Input(image_url="https://example.com/u.png", thumbnail_size="square").thumbnail_size == "square"


def test_no_pydantic_noise_in_models(module: Any) -> None:
    source = Path(module.__file__).read_text()
    assert "title=" not in source
    assert "ConfigDict" not in source and "arbitrary_types_allowed" not in source


@pytest.mark.slow
def test_imports_are_one_block_at_the_top_and_all_used(module: Any) -> None:
    tree = ast.parse(Path(module.__file__).read_text())
    kinds = [isinstance(n, (ast.Import, ast.ImportFrom)) or _is_type_checking_block(n) for n in tree.body[1:]]
    assert kinds == sorted(kinds, reverse=True), "an import after other statements"
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed in this environment")
    found = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--select", "F401,E402,F811,I001",
                            module.__file__], capture_output=True, text=True)  # fmt: skip
    assert found.returncode == 0, found.stdout


def test_an_object_open_to_extra_keys_imports_only_what_it_uses(build_package: Any) -> None:
    # Properties beside `additionalProperties: {}`: the parser plans a `Dict` import the models never use
    document = {"type": "object", "properties": {"version": {"type": "string"}}, "additionalProperties": {}}
    module = build_package([mini_spec("fal-ai/readable/open", {"document": document})]).load("fal-ai/readable/open")
    assert module.Input(document={"version": "1", "paths": {}}).document.model_extra == {"paths": {}}
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed in this environment")
    found = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--select", "F401,I001", module.__file__],
                           capture_output=True, text=True)  # fmt: skip
    assert found.returncode == 0, found.stdout


def _is_type_checking_block(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"


def test_docstrings_fit_the_line(module: Any) -> None:
    lines = Path(module.__file__).read_text().splitlines()
    assert max(len(line) for line in lines if not line.startswith("#")) <= 88
    assert " ".join(inspect.getdoc(module.subscribe).split()).count(LONG) == 1  # type: ignore[union-attr]


def test_call_functions_document_every_argument(module: Any) -> None:
    for name in ("submit", "subscribe", "run", "submit_async", "subscribe_async", "run_async"):
        doc = " ".join((inspect.getdoc(getattr(module, name)) or "").split())
        for field in module.Input.model_fields:
            assert f" {field}: " in doc, (name, field)
        assert "guidance_scale: " + LONG + " Between 1.0 and 20.0. Defaults to `3.5`." in doc
        assert 'image_size: Defaults to `"square_hd"`.' in doc
        assert "image_url: The image to edit. A file: a URL" in doc and "Required." in doc
        assert "Returns:" in doc and "Raises: pydantic.ValidationError" in doc


@pytest.mark.slow
def test_every_generated_module_passes_ruffs_import_rules() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed in this environment")
    found = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--select", "F,E402,I001", str(ROOT / "generated")],
                           capture_output=True, text=True)  # fmt: skip
    assert found.returncode == 0, found.stdout[-3000:]


def test_a_schema_named_like_an_imported_name_is_renamed(build_package: Any) -> None:
    spec = mini_spec(
        "fal-ai/clash/names",
        {"target": {"$ref": "#/components/schemas/Endpoint"}, "mode": {"$ref": "#/components/schemas/Unpack"}},
        extra_schemas={
            "Endpoint": {"type": "object", "properties": {"url": {"type": "string"}}},
            "Unpack": {"type": "object", "properties": {"depth": {"type": "integer"}}},
        },
        required=["target"],
    )
    module = build_package([spec]).load("fal-ai/clash/names")
    source = Path(module.__file__).read_text()
    assert "from fal_runtime import Endpoint\n" in source and "from typing_extensions import Unpack\n" in source
    # The names are the module's own imports: each class is named from the field that holds it (naming.class_names)
    assert module.Input(target=module.InputTarget(url="u"), mode=module.InputMode(depth=1)).target.url == "u"


def test_an_import_that_would_shadow_a_module_name_gets_a_private_binding() -> None:
    from codegen.generation.imports import Imports

    imports = Imports(taken={"Endpoint", "Input"})
    assert imports.add("fal_runtime", ["Endpoint"]) == {"Endpoint": "_Endpoint"}
    assert imports.add("typing", ["Any", "overload"]) == {"Any": "Any", "overload": "overload"}
    imports.add_module("fal_runtime")
    assert imports.render() == (
        "from __future__ import annotations\n\n"
        "from typing import Any, overload\n\n"
        "import fal_runtime\n"
        "from fal_runtime import Endpoint as _Endpoint\n"
    )
