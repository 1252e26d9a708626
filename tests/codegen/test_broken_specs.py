"""A corpus of broken specs: each must fail with one message naming its file and JSON pointer, writing nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codegen.__main__ import main

BROKEN = Path(__file__).parent / "broken"

# case → (file that is at fault, relative to the case's specs root; JSON pointer)
EXPECTED = {
    "bad_yaml": ("fal-ai/broken/bad_yaml.yaml", ""),
    "not_a_mapping": ("fal-ai/broken/not_a_mapping.yaml", ""),
    "duplicate_key": ("fal-ai/broken/duplicate_key.yaml", ""),
    "dangling_ref": ("fal-ai/broken/dangling_ref.yaml", "/components/schemas/TestInput/properties/size/$ref"),
    "no_input_schema": ("fal-ai/broken/no_input_schema.yaml", "/paths/~1fal-ai~1broken~1no_input_schema/post/requestBody/content/application~1json/schema"),
    "no_output_schema": ("fal-ai/broken/no_output_schema.yaml", "/paths/~1fal-ai~1broken~1no_output_schema~1requests~1{request_id}/get/responses/200/content/application~1json/schema"),
    "unknown_type": ("fal-ai/broken/unknown_type.yaml", "/components/schemas/TestInput/properties/prompt/type"),
    "duplicate_endpoint_id": ("fal-ai/broken/duplicate_endpoint_id.yaml", "/info/x-fal-metadata/endpointId"),
    "enum_mixed_types": ("fal-ai/broken/enum_mixed_types.yaml", "/components/schemas/TestInput/properties/style/enum"),
    "description_not_string": ("fal-ai/broken/description_not_string.yaml", "/components/schemas/TestInput/properties/prompt/description"),
    "missing_endpoint_id": ("fal-ai/broken/missing_endpoint_id.yaml", "/info/x-fal-metadata/endpointId"),
    "endpoint_id_mismatch": ("fal-ai/broken/endpoint_id_mismatch.yaml", "/info/x-fal-metadata/endpointId"),
    "invalid_example": ("fal-ai/broken/invalid_example.yaml", "/components/schemas/TestInput/examples/0/n"),
    "minimum_above_maximum": ("fal-ai/broken/minimum_above_maximum.yaml", "/components/schemas/TestInput/properties/n"),
    "external_ref": ("fal-ai/broken/external_ref.yaml", "/components/schemas/TestInput/properties/size/$ref"),
    "unsupported_version": ("fal-ai/broken/unsupported_version.yaml", "/openapi"),
    "input_not_object": ("fal-ai/broken/input_not_object.yaml", "/components/schemas/TestInput/type"),
    "info_without_version": ("fal-ai/broken/info_without_version.yaml", "/info"),
    "required_not_a_list": ("fal-ai/broken/required_not_a_list.yaml", "/components/schemas/TestInput/required"),
    "module_name_collision": ("fal-ai/broken/a_b.yaml", "/info/x-fal-metadata/endpointId"),
    "input_ref_not_a_schema": ("fal-ai/broken/input_ref_not_a_schema.yaml", "/paths/~1fal-ai~1broken~1input_ref_not_a_schema/post/requestBody/content/application~1json/schema/$ref"),
    "pattern_trailing_backslash": ("fal-ai/broken/pattern_trailing_backslash.yaml", "/components/schemas/TestInput/properties/seed/pattern"),
    "pattern_ecma_only": ("fal-ai/broken/pattern_ecma_only.yaml", "/components/schemas/TestInput/properties/tags/patternProperties/^[^]+$"),
    "schema_too_deep": ("fal-ai/broken/schema_too_deep.json", "/components/schemas/TestInput/properties/n" + "/properties/inner" * 29 + "/properties"),  # 64 keys deep
    "too_deep_to_parse": ("fal-ai/broken/too_deep_to_parse.yaml", ""),
    "non_string_key": ("fal-ai/broken/non_string_key.yaml", "/paths/~1fal-ai~1broken~1non_string_key/post/responses/200"),
}  # fmt: skip


def test_corpus_is_complete() -> None:
    assert sorted(p.name for p in BROKEN.iterdir()) == sorted(EXPECTED)
    assert len(EXPECTED) >= 15


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_broken_spec_fails_with_one_located_message(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    specs = tmp_path / "specs"
    shutil.copytree(BROKEN / case, specs)
    out = tmp_path / "generated"
    out.mkdir()
    (out / "__init__.py").write_text("# the previous generation\n")
    before = _tree(out)

    code = main(["gen", "--specs", "specs", "--out", "generated", "--no-cache"])

    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    file, ptr = EXPECTED[case]
    assert errors == [errors[0]] and errors[0].startswith(f"error: specs/{file}#{ptr}: "), errors
    assert _tree(out) == before


@pytest.mark.slow
def test_cli_exit_code_and_message(tmp_path: Path) -> None:
    shutil.copytree(BROKEN / "dangling_ref", tmp_path / "specs")
    proc = subprocess.run(
        [sys.executable, "-m", "codegen", "gen", "--specs", "specs", "--out", "generated", "--no-cache"],
        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "specs/fal-ai/broken/dangling_ref.yaml#/components/schemas/TestInput/properties/size/$ref" in proc.stderr
    assert "generated/ left unchanged" in proc.stderr
    assert not (tmp_path / "generated").exists()


def test_check_finds_a_stale_an_orphan_and_a_non_black_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`codegen check` (make test's first step): current tree passes; each kind of fault is named."""
    from tests.codegen.conftest import mini_spec, write_specs

    specs = write_specs(tmp_path / "specs", [mini_spec("fal-ai/test/check", {"prompt": {"type": "string"}})])
    out, cache = tmp_path / "pkg", tmp_path / "cache"
    args = ["--specs", str(specs), "--out", str(out), "--cache", str(cache)]
    assert main(["gen", "-q", *args]) == 0
    assert main(["check", *args]) == 0
    module = out / "fal_ai" / "test" / "check.py"
    module.write_text(module.read_text() + "x=1\n")  # still a module, but not as black (or the generator) writes it
    (out / "orphan.py").write_text("")
    assert main(["check", *args]) == 1
    err = capsys.readouterr().err
    assert "orphan.py: no spec generates it" in err
    assert "fal_ai/test/check.py: differs from a fresh generation" in err
    assert "fal_ai/test/check.py: not as black would write it" in err
