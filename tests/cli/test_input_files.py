"""Files named on the command line that cannot be used (issue #21, item 12): one line naming the file, exit 2, nothing
sent, never a traceback.

Tests may run as root, which reads any file whatever its mode: the file is made unreadable with chmod 000 and, when
that does not stop this process, opening it is made to fail as the kernel would (EACCES). No server produces this
fault, so this is the one mock here; everything else talks to the local server.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fal_cli.app import cli
from fal_runtime.local import LocalServer
from tests.cli.conftest import FLUX_I2I, SCHNELL


def invoke(*args: str, stdin: bytes | str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`path` without read permission, for this process too."""
    path.chmod(0)
    try:
        with path.open("rb"):
            readable = True
    except PermissionError:
        readable = False
    if readable:  # root: deny it as the kernel would for anyone else
        real_open = pathlib.Path.open

        def open_(self: Path, *args: Any, **kwargs: Any) -> Any:
            if os.path.abspath(self) == os.path.abspath(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "open", open_)
    return path


def one_error_line(result: Result) -> str:
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def nothing_sent(server: LocalServer) -> bool:
    counters = server.counters()
    submits: int = counters["calls"].get(SCHNELL, {}).get("submit", 0)
    return counters["submits"] == {} and submits == 0


def test_an_unreadable_input_json_is_one_line_naming_it(fal: LocalServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    source = tmp_path / "input.json"
    source.write_text('{"prompt": "secret"}')
    unreadable(source, monkeypatch)
    result = invoke("run", SCHNELL, "--input-json", str(source))
    assert result.exit_code == 2
    assert one_error_line(result) == f"Error: cannot read --input-json {source}: permission denied"
    assert nothing_sent(fal)


def test_an_unreadable_local_file_input_is_one_line_naming_the_option_and_file(
    fal: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    unreadable(image, monkeypatch)
    result = invoke("submit", FLUX_I2I, "--image-url", str(image), "--prompt", "p")
    assert result.exit_code == 2
    assert one_error_line(result) == f"Error: cannot read --image-url {image}: permission denied"
    source = tmp_path / "input.json"
    source.write_text(json.dumps({"image_url": str(image), "prompt": "p"}))
    from_json = invoke("submit", FLUX_I2I, "--input-json", str(source))
    assert from_json.exit_code == 2
    assert one_error_line(from_json) == f"Error: cannot read --image-url {image}: permission denied"
    assert fal.counters()["submits"] == {} and fal.counters()["calls"] == {}  # not even an upload


def test_an_unreadable_batch_inputs_file_is_one_line_naming_it(fal: LocalServer, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"prompt": "a"}\n')
    unreadable(inputs, monkeypatch)
    for extra in (["--out", str(tmp_path / "out")], ["--estimate"]):
        result = invoke("batch", SCHNELL, str(inputs), *extra)
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert str(inputs) in error
    assert fal.counters()["submits"] == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8 text (byte 0xff at offset 0)"),
        (b'{"prompt": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 15)"),
        (b"{bad", "not valid JSON: Expecting property name enclosed in double quotes"),
        (b"", "not valid JSON: Expecting value"),
        (b"[" * 100_000, "the JSON nests too deeply"),
        (b'["a list"]', "expected a JSON object, got list"),
    ],
    ids=["utf16-bom", "latin1", "bad-json", "empty", "deep", "list"],
)
def test_a_bad_input_json_file_or_stdin_is_one_line_naming_it(
    fal: LocalServer, tmp_path: Path, content: bytes, message: str
) -> None:
    source = tmp_path / "input.json"
    source.write_bytes(content)
    result = invoke("run", SCHNELL, "--input-json", str(source))
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"Error: --input-json {source}: {message}")
    piped = invoke("submit", SCHNELL, "--input-json", "-", stdin=content)
    assert piped.exit_code == 2
    assert one_error_line(piped).startswith(f"Error: --input-json -: {message}")
    assert nothing_sent(fal)


def test_a_directory_or_a_missing_file_as_input_json(fal: LocalServer, tmp_path: Path) -> None:
    result = invoke("run", SCHNELL, "--input-json", str(tmp_path))
    assert result.exit_code == 2
    assert one_error_line(result) == f"Error: cannot read --input-json {tmp_path}: is a directory"
    missing = invoke("run", SCHNELL, "--input-json", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2
    assert one_error_line(missing) == f"Error: cannot read --input-json {tmp_path / 'nope.json'}: no such file"
    assert nothing_sent(fal)


def test_deeply_nested_json_in_an_option_is_a_usage_error(fal: LocalServer) -> None:
    result = invoke("run", SCHNELL, "--prompt", "p", "--image-size", "[" * 100_000)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "Invalid value for '--image-size': the JSON nests too deeply" in result.stderr
    assert nothing_sent(fal)


def test_stdin_as_input_json_still_works_with_unicode(fal: LocalServer) -> None:
    result = invoke("submit", SCHNELL, "--input-json", "-", stdin='{"prompt": "café 日本"}'.encode())
    assert result.exit_code == 0, result.output
    assert fal.inputs()[-1] == (SCHNELL, {"prompt": "café 日本"})
