"""The scheduled sync workflow: valid against GitHub's workflow schema (the copy check-jsonschema ships, so no
network), and it does what the README says a sync pull request is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.codegen.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "sync.yml"


def check(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_the_sync_workflow_is_valid_for_github() -> None:
    result = check(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    broken["jobs"]["sync"]["runs-on"] = {"unexpected": ["shape"]}
    del broken["jobs"]["sync"]["steps"]
    (tmp_path / "sync.yml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert check(tmp_path / "sync.yml").returncode != 0


def test_the_workflow_syncs_regenerates_and_proposes_a_pull_request() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert "schedule" in doc[True] and "workflow_dispatch" in doc[True]  # YAML 1.1 reads `on` as True
    steps = doc["jobs"]["sync"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "make sync" in runs and "make gen" in runs and "--fail-on-breaking" in runs and "codegen check" in runs
    assert any(str(step.get("uses", "")).startswith("peter-evans/create-pull-request@") for step in steps)
    assert doc["jobs"]["sync"]["steps"][-1]["if"] == "steps.diff.outputs.breaking == '1'"
