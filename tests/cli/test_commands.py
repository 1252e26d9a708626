"""The commands in-process through click's CliRunner, against the local server: fast, unmarked."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fal_cli.app import cli
from fal_runtime.local import LocalServer
from tests.cli.conftest import FLUX_I2I, KEY, SCHNELL, SEEDEDIT


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def test_run_help_lists_every_field_with_type_bounds_default_and_description() -> None:
    result = invoke("run", FLUX_I2I, "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for expected in (
        "--image-url FILE", "file (path, URL or data URI); required",
        "--num-inference-steps INTEGER", "integer; >= 10; <= 50; default: 40", "The number of inference steps",
        "--strength FLOAT", ">= 0.01; <= 1.0; default: 0.95",
        "--enable-safety-checker / --no-enable-safety-checker", "boolean; default: true",
        "--output-format [jpeg|png]", "--acceleration [none|regular|high]", "--input-json", "--json", "--save",
    ):  # fmt: skip
        assert expected in text, expected


def test_invalid_input_exits_2_naming_the_field_and_submits_nothing(fal: LocalServer) -> None:
    result = invoke(
        "run", FLUX_I2I, "--image-url", "https://x.test/a.png", "--prompt", "p", "--num-inference-steps", "99"
    )
    assert result.exit_code == 2
    assert "--num-inference-steps (num_inference_steps)" in result.stderr
    assert "less than or equal to 50" in result.stderr
    assert fal.counters()["submits"] == {}
    assert fal.counters()["calls"] == {}


def test_unknown_endpoint_exits_2_with_a_suggestion(fal: LocalServer) -> None:
    result = invoke("run", "fal-ai/flux/dev/image-to-imag", "--prompt", "p")
    assert result.exit_code == 2
    assert f"did you mean {FLUX_I2I}" in result.stderr
    assert invoke("show", "fal-ai/flux/schnel").exit_code == 2


def test_list_filters_without_importing_any_endpoint_module() -> None:
    before = {m for m in sys.modules if m.startswith("generated.")}
    result = invoke("list", "seededit/v3", "--category", "image-to-image", "--all")
    assert result.exit_code == 0
    assert SEEDEDIT in result.stdout.split()
    assert all(line.split("\t")[1] == "image-to-image" for line in result.stdout.splitlines())
    # fal's newest listing no longer names SeedEdit v3: hidden unless --all, and marked when shown
    assert SEEDEDIT not in invoke("list", "seededit/v3").stdout.split()
    assert "unlisted since 2026-08" in result.stdout
    assert invoke("list", "flux text-to-image").stdout.count("\n") >= 20, "words match ids, names and categories"
    assert {m for m in sys.modules if m.startswith("generated.")} == before
    assert invoke("list", "--category", "no-such-category").exit_code == 2


def test_show_prints_input_and_output_fields() -> None:
    result = invoke("show", FLUX_I2I)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "Input:" and "Output:" in lines
    assert any(line.startswith("  num_inference_steps: integer; default: 40; >= 10; <= 50.") for line in lines)
    assert any(line.startswith("  images: list of Image (JSON); required.") for line in lines)


def test_run_json_prints_only_the_output_json(fal: LocalServer) -> None:
    result = invoke("run", SCHNELL, "--prompt", "a fox", "--num-inference-steps", "2", "--no-enable-safety-checker",
                    "--output-format", "png", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["images"][0]["url"].startswith("https://")
    ((endpoint, sent),) = fal.inputs()
    assert endpoint == SCHNELL
    assert sent == {"prompt": "a fox", "num_inference_steps": 2, "enable_safety_checker": False, "output_format": "png"}


def test_input_json_gives_the_input_and_options_override_it(fal: LocalServer, tmp_path: Path) -> None:
    source = tmp_path / "input.json"
    source.write_text(json.dumps({"prompt": "from file", "num_inference_steps": 3, "seed": 7}))
    result = invoke("run", SCHNELL, "--input-json", str(source), "--num-inference-steps", "5", "--json")
    assert result.exit_code == 0, result.stderr
    assert fal.inputs() == [(SCHNELL, {"prompt": "from file", "num_inference_steps": 5, "seed": 7})]
    from_stdin = invoke("submit", SCHNELL, "--input-json", "-", stdin='{"prompt": "piped"}')
    assert from_stdin.exit_code == 0 and from_stdin.stdout.strip()
    assert fal.inputs()[-1] == (SCHNELL, {"prompt": "piped"})


def test_a_local_file_input_is_uploaded_and_sent_as_a_url(fal: LocalServer, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    result = invoke("submit", FLUX_I2I, "--image-url", str(image), "--prompt", "p")
    assert result.exit_code == 0, result.stderr
    ((_, sent),) = fal.inputs()
    assert fal.stored_file(sent["image_url"]) == image.read_bytes()
    missing = invoke("submit", FLUX_I2I, "--image-url", str(tmp_path / "nope.png"), "--prompt", "p")
    assert missing.exit_code == 2 and "is not a file" in missing.stderr


def test_a_failed_request_is_one_line_on_stderr_and_exit_1_without_the_key(fal: LocalServer) -> None:
    fal.behave(SCHNELL, error=f"model crashed (key was {KEY})", times=1)
    result = invoke("run", SCHNELL, "--prompt", "p")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "model crashed" in errors[0]
    assert KEY not in result.stdout + result.stderr


def test_missing_key_exits_1_and_submits_nothing(fal: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY")
    result = invoke("submit", SCHNELL, "--prompt", "p")
    assert result.exit_code == 1
    assert "FAL_KEY" in result.stderr
    assert fal.counters()["submits"] == {}


def test_batch_validates_every_line_first_and_reports_line_numbers(fal: LocalServer, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"prompt": "a"}\n{"prompt": "b", "num_inference_steps": 99}\n[1]\n\n{"prompt": "c"}\n')
    result = invoke("batch", SCHNELL, str(inputs), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert f"{inputs}:2: invalid input: --num-inference-steps" in result.stderr
    assert f"{inputs}:3: not a JSON object" in result.stderr
    lines = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [(r["row"], r["status"]) for r in lines] == [(1, "done"), (2, "failed"), (3, "failed"), (5, "done")]
    assert fal.counters()["submits"] == {SCHNELL: 2}


def test_a_ledger_refuses_another_endpoint_or_another_inputs_file(fal: LocalServer, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in.jsonl", str(tmp_path / "out")
    inputs.write_text('{"prompt": "a"}\n')
    assert invoke("batch", SCHNELL, str(inputs), "--out", out).exit_code == 0
    other = invoke("batch", SEEDEDIT, str(inputs), "--out", out)
    assert other.exit_code == 2 and f"belongs to a batch of {SCHNELL}" in other.stderr
    inputs.write_text('{"prompt": "b"}\n')
    changed = invoke("batch", SCHNELL, str(inputs), "--out", out)
    assert changed.exit_code == 2 and "different inputs file" in changed.stderr
    assert fal.counters()["submits"] == {SCHNELL: 1}


def test_rate_limits_slow_the_batch_instead_of_failing_rows(fal: LocalServer, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(3)))
    fal.script(SCHNELL, "submit", "429", times=8, retry_after=0.01)  # more than the runtime's own 5 retries
    result = invoke("batch", SCHNELL, str(inputs), "--out", str(tmp_path / "out"), "--concurrency", "1")
    assert result.exit_code == 0, result.stderr
    assert fal.counters()["calls"][SCHNELL]["submit"] == 3 + 8
    assert fal.counters()["submits"] == {SCHNELL: 3}


def test_failed_rows_are_kept_unless_retry_failed(fal: LocalServer, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in.jsonl", str(tmp_path / "out")
    inputs.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    fal.behave(SCHNELL, error="boom", times=1)
    assert invoke("batch", SCHNELL, str(inputs), "--out", out, "--concurrency", "1").exit_code == 1
    assert invoke("batch", SCHNELL, str(inputs), "--out", out).exit_code == 1
    assert fal.counters()["submits"] == {SCHNELL: 2}
    assert invoke("batch", SCHNELL, str(inputs), "--out", out, "--retry-failed").exit_code == 0
    assert fal.counters()["submits"] == {SCHNELL: 3}


def test_the_runtime_never_imports_the_command_line_or_the_generator() -> None:
    runtime = Path(__file__).resolve().parents[2] / "fal_runtime"
    imported = set()
    for path in runtime.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.Constant) and node.value in ("fal_cli", "codegen"):  # import_module("...")
                imported.add(node.value)
    assert "fal_runtime" in imported and not imported & {"fal_cli", "codegen"}


def test_output_files_sharing_a_name_get_distinct_targets(tmp_path: Path) -> None:
    from fal_cli.outputs import output_files, targets
    from generated.fal_ai.flux.dev import image_to_image as flux

    output = flux.Output.model_validate({
        "images": [{"url": f"https://cdn.test/{i}/image.jpg", "width": 1, "height": 1} for i in range(3)],
        "timings": {}, "seed": 1, "has_nsfw_concepts": [False], "prompt": "p",
    })  # fmt: skip
    files = output_files(output)
    assert [f.url for f in files] == [f"https://cdn.test/{i}/image.jpg" for i in range(3)]
    assert [p.name for p in targets(files, tmp_path)] == ["image.jpg", "image-2.jpg", "image-3.jpg"]


def test_show_prints_the_endpoint_price_when_pricing_is_reachable(
    fal: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAL_API_HOST", fal.api_host)
    fal.set_prices({SCHNELL: (0.003, "megapixel")})
    result = invoke("show", SCHNELL)
    assert result.exit_code == 0
    assert "Price: $0.003 per megapixel" in result.stdout
    assert KEY not in result.stdout


def test_show_says_plainly_when_the_price_is_unavailable(fal: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_API_HOST", fal.api_host)
    monkeypatch.delenv("FAL_KEY")
    no_key = invoke("show", SCHNELL)
    assert no_key.exit_code == 0 and "Price: unavailable (set FAL_KEY" in no_key.stdout
    assert fal.counters()["calls"] == {}
    monkeypatch.setenv("FAL_KEY", KEY)
    monkeypatch.setenv("FAL_API_HOST", "127.0.0.1:9")  # nothing listens there
    offline = invoke("show", SCHNELL)
    assert offline.exit_code == 0 and "Price: unavailable (" in offline.stdout
    assert "Output" in offline.stdout


def test_batch_estimate_prints_the_price_of_every_row_and_submits_nothing(
    fal: LocalServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAL_API_HOST", fal.api_host)
    fal.set_prices({SCHNELL: (0.003, "image")})
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("\n".join(json.dumps({"prompt": f"p{i}"}) for i in range(12)) + "\n{}\n")
    result = invoke("batch", SCHNELL, str(inputs), "--estimate")
    assert result.exit_code == 0, result.output
    assert f"estimate: 12 rows of {SCHNELL} at $0.003 per image: $0.036 in all" in result.stdout
    assert f"{inputs}:13:" in result.stderr  # the invalid line is reported, not priced
    counters = fal.counters()
    assert counters["submits"] == {} and counters["runs"] == {}
    assert counters["calls"] == {"": {"pricing": 1, "estimate": 1}}  # nothing but the two pricing calls
    assert not (tmp_path / "out").exists()
    assert invoke("batch", SCHNELL, str(inputs)).exit_code == 2  # without --estimate, --out is required
