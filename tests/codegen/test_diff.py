"""`codegen diff`: crafted changes and fal's real drift pairs, snapshotted as the Markdown a PR would show."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codegen.spectools import diff
from tests.codegen.conftest import ROOT, SOURCES, mini_spec, write_specs

BASE = mini_spec(
    "fal-ai/test/edit",
    {
        "prompt": {"type": "string", "maxLength": 800},
        "image_urls": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "style": {"type": "string", "enum": ["any", "realistic"], "default": "any"},
        "steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 28},
        "old_name": {"type": "number"},
    },
    {
        "images": {"type": "array", "items": {"type": "string"}},
        "kind": {"type": "string", "enum": ["png", "jpeg"]},
        "seed": {"type": "integer"},
    },
    required=["prompt"],
)


def _compare(old: list[dict[str, Any]], new: list[dict[str, Any]], tmp: Path) -> str:
    before = diff.endpoints_in_tree(write_specs(tmp / "old", old))
    after = diff.endpoints_in_tree(write_specs(tmp / "new", new))
    return diff.render(diff.compare(before, after), "base")


def _edit(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    schemas = spec["components"]["schemas"]
    for path, value in changes.items():
        side, field, *key = path.split("__")
        props = schemas["TestInput" if side == "in" else "TestOutput"]["properties"]
        if value is None and not key:
            del props[field]
        elif not key:
            props[field] = value
        else:
            props[field][key[0]] = value
    return spec


CASES = {
    "new_required_input": lambda: _add_required(_edit(in__mask_url={"type": "string"}), "mask_url"),
    "new_optional_input": lambda: _edit(in__mask_url={"type": "string"}),
    "new_output_field": lambda: _edit(out__timings={"type": "object", "additionalProperties": {"type": "number"}}),
    "removed_output_field": lambda: _edit(out__seed=None),
    "input_enum_value_removed": lambda: _edit(in__style__enum=["any"]),
    "output_enum_value_added": lambda: _edit(out__kind__enum=["png", "jpeg", "webp"]),
    "input_bound_tightened_and_loosened": lambda: _edit(in__steps__maximum=30, in__image_urls__maxItems=6),
    "default_changed": lambda: _edit(in__steps__default=40),
    "renamed_looking": lambda: _edit(in__old_name=None, in__new_name={"type": "number"}),
    "input_type_widened": lambda: _edit(
        in__steps={"anyOf": [{"type": "integer"}, {"type": "null"}], "minimum": 1, "maximum": 50, "default": 28}
    ),
}


def _add_required(spec: dict[str, Any], name: str) -> dict[str, Any]:
    spec["components"]["schemas"]["TestInput"]["required"].append(name)
    return spec


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_change(case: str, tmp_path: Path, snapshot: Any) -> None:
    assert _compare([BASE], [CASES[case]()], tmp_path) == snapshot


def test_endpoints_added_and_removed(tmp_path: Path, snapshot: Any) -> None:
    other = mini_spec("fal-ai/test/other", {"a": {"type": "string"}})
    assert _compare([BASE], [other], tmp_path) == snapshot


DRIFT = sorted(p for p in (SOURCES / "fal-openapi").glob("*--*.json"))


@pytest.mark.parametrize("second", DRIFT, ids=[p.stem for p in DRIFT])
def test_real_drift_pair(second: Path, tmp_path: Path, snapshot: Any) -> None:
    first = second.with_name(second.name.split("--")[0] + ".json")
    assert _compare([json.loads(first.read_text())], [json.loads(second.read_text())], tmp_path) == snapshot


@pytest.mark.slow
def test_cli_compares_with_a_git_ref_and_fails_on_breaking(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    write_specs(tmp_path / "specs", [BASE])
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    write_specs(tmp_path / "specs", [_edit(out__seed=None)])
    cmd = [sys.executable, "-m", "codegen", "diff", "main", "--specs", "specs"]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "**breaking**: output `seed`: field removed" in ok.stdout
    failing = subprocess.run([*cmd, "--fail-on-breaking"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert failing.returncode == 1


@pytest.mark.slow
def test_cli_reads_specs_under_a_path_with_a_space_and_non_ascii(tmp_path: Path) -> None:
    """git's listing is NUL-separated: a space split one path in two, and git quoted the non-ASCII one."""
    specs = tmp_path / "fal specs ü"

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    write_specs(specs, {"fal-ai/test/edit.json": BASE, "fal-ai/test/read me é.md": "not a spec\n"})
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    write_specs(specs, [_edit(out__seed=None)])
    cmd = [sys.executable, "-m", "codegen", "diff", "main", "--specs", specs.name]
    proc = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "**breaking**: output `seed`: field removed" in proc.stdout
    assert "endpoint added" not in proc.stdout


def test_a_broken_spec_in_the_tree_fails_the_diff_naming_it(tmp_path: Path) -> None:
    """A spec the generator would refuse must not drop silently out of the diff (it would read as "removed")."""
    from codegen.problems import InvalidSpecError

    broken = copy.deepcopy(BASE)
    broken["paths"]["/fal-ai/test/edit"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"] = (
        "#/components/schemas/Missing"
    )
    tree = write_specs(tmp_path / "new", [broken])
    with pytest.raises(InvalidSpecError) as raised:
        diff.endpoints_in_tree(tree)
    assert "fal-ai/test/edit.json#/paths/" in str(raised.value)


def test_a_broken_spec_at_the_base_ref_is_only_reported(tmp_path: Path) -> None:
    broken = copy.deepcopy(BASE)
    del broken["components"]["schemas"]["TestInput"]
    skipped: list[str] = []
    found = diff.endpoints_in_tree(write_specs(tmp_path / "old", [broken]), skipped=skipped)
    assert found == {} and len(skipped) == 1 and "fal-ai/test/edit.json#" in skipped[0]
