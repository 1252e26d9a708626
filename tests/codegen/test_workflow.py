"""The GitHub workflows and the pre-commit hooks.

Both workflows are valid against GitHub's workflow schema (the copy check-jsonschema ships, so no network). The
scheduled sync does what the README says a sync pull request is; CI checks every pull request and every push to main,
and diffs the specs of a pull request that changes them; pre-commit runs ruff and `codegen check` on what changed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.codegen.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "sync.yml"
CI = ROOT / ".github" / "workflows" / "ci.yml"
PRE_COMMIT = ROOT / ".pre-commit-config.yaml"


def check(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


@pytest.mark.slow
@pytest.mark.parametrize("workflow", [WORKFLOW, CI], ids=lambda path: path.name)
def test_the_workflows_are_valid_for_github(workflow: Path) -> None:
    result = check(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("workflow", "job"), [(WORKFLOW, "sync"), (CI, "test")], ids=["sync.yml", "ci.yml"])
def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path, workflow: Path, job: str) -> None:
    broken = load(workflow)
    broken["jobs"][job]["runs-on"] = {"unexpected": ["shape"]}
    del broken["jobs"][job]["steps"]
    (tmp_path / workflow.name).write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert check(tmp_path / workflow.name).returncode != 0


def test_the_workflow_syncs_regenerates_and_proposes_a_pull_request() -> None:
    doc = load(WORKFLOW)
    assert "schedule" in doc[True] and "workflow_dispatch" in doc[True]  # YAML 1.1 reads `on` as True
    steps = doc["jobs"]["sync"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "make sync" in runs and "make gen" in runs and "--fail-on-breaking" in runs and "codegen check" in runs
    assert any(str(step.get("uses", "")).startswith("peter-evans/create-pull-request@") for step in steps)
    assert doc["jobs"]["sync"]["steps"][-1]["if"] == "steps.diff.outputs.breaking == '1'"


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def makefile_recipe(target: str) -> str:
    """The commands of one target in the Makefile."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.MULTILINE)
    assert match, f"no `{target}` target in the Makefile"
    return match.group(1)


def test_ci_lints_and_tests_pull_requests_and_tests_main() -> None:
    doc = load(CI)
    on = doc[True]  # YAML 1.1 reads `on` as True
    assert "pull_request" in on and (on["pull_request"] or {}).get("paths") is None  # every pull request
    assert on["push"]["branches"] == ["main"]
    assert doc["permissions"] == {"contents": "read"}  # least privilege; only the diff job may comment
    jobs = doc["jobs"]
    assert "if" not in jobs["test"] and "make test" in runs(jobs["test"])  # pull requests and pushes to main alike
    assert jobs["lint"]["if"] == "github.event_name == 'pull_request'" and "make lint-check" in runs(jobs["lint"])
    lint = makefile_recipe("lint-check")
    assert "ruff check ." in lint and "ruff format --check ." in lint and "codegen check" in lint
    assert "--fix" not in lint
    for name, job in jobs.items():
        granted = job.get("permissions", {})
        assert "write" not in {granted.get("contents"), granted.get("actions"), granted.get("id-token")}, name
        if name != "spec-diff":
            assert "permissions" not in job, name


def test_ci_diffs_the_specs_of_a_pull_request_that_changes_them() -> None:
    job = load(CI)["jobs"]["spec-diff"]
    assert job["if"] == "github.event_name == 'pull_request'"
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = {step.get("id") or step.get("name") or step["uses"]: step for step in job["steps"]}
    checkout = next(step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0  # the base branch is there to diff against
    changes = steps["changes"]
    assert "-- specs/" in changes["run"] and "$GITHUB_OUTPUT" in changes["run"]
    [diff] = [step for step in job["steps"] if "codegen diff" in step.get("run", "")]
    assert diff["if"] == "steps.changes.outputs.specs == 'true'"
    assert diff["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert '-m codegen diff "origin/${BASE_REF}" > spec-diff.md' in diff["run"]
    assert 'cat spec-diff.md >> "$GITHUB_STEP_SUMMARY"' in diff["run"]
    comments = [step for step in job["steps"] if str(step.get("uses", "")).startswith("marocchino/sticky-pull-request-comment@")]  # fmt: skip
    posting = [step for step in comments if step["with"].get("path") == "spec-comment.md"]
    assert len(posting) == 1 and posting[0]["if"].startswith("steps.changes.outputs.specs == 'true'")
    assert "> spec-comment.md" in diff["run"]
    assert {step["with"]["header"] for step in comments} == {"spec-diff"}  # one comment, updated in place
    setup = [step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/setup-python@")]
    assert setup and all(step["if"] == "steps.changes.outputs.specs == 'true'" for step in setup)  # no venv otherwise


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t")
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_the_specs_change_step_tells_a_specs_change_from_any_other(tmp_path: Path) -> None:
    [step] = [step for step in load(CI)["jobs"]["spec-diff"]["steps"] if step.get("id") == "changes"]
    script = tmp_path / "changes.sh"
    script.write_text(step["run"], encoding="utf-8")
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "specs" / "a.yaml").write_text("a: 1\n")
    (repo / "README.md").write_text("readme\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")  # what actions/checkout fetches

    def outcome(base: str = "main") -> tuple[int, str]:
        output = tmp_path / "output"
        output.write_text("")
        env = dict(os.environ, GITHUB_OUTPUT=str(output), BASE_REF=base)
        shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)]  # GitHub's `run` shell
        result = subprocess.run(shell, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
        return result.returncode, output.read_text()

    (repo / "README.md").write_text("changed\n")
    git(repo, "commit", "-q", "-am", "docs only")
    assert outcome() == (0, "specs=false\n")
    (repo / "specs" / "a.yaml").write_text("a: 2\n")
    git(repo, "commit", "-q", "-am", "a spec")
    assert outcome() == (0, "specs=true\n")
    code, written = outcome("no-such-branch")
    assert code != 0 and written == ""  # a missing base fails the job rather than skipping the diff


CODEGEN_FILES = ["specs/fal-ai/flux/dev.yaml", "codegen/loader.py", "codegen/templates/endpoint.py.jinja", "generated/fal_ai/flux/dev/__init__.py"]  # fmt: skip
OTHER_FILES = ["tests/codegen/test_ir.py", "fal_runtime/_client.py", "README.md", "bench/specs/x.yaml", "x/specs/y.yaml"]  # fmt: skip


def hooks() -> dict[str, dict[str, Any]]:
    doc = load(PRE_COMMIT)
    [repo] = doc["repos"]
    assert repo["repo"] == "local"  # the venv's pinned tools, nothing fetched
    return {hook["id"]: hook for hook in repo["hooks"]}


def test_pre_commit_runs_ruff_and_codegen_check_with_the_venv() -> None:
    found = hooks()
    assert set(found) == {"ruff-check", "ruff-format", "codegen-check"}
    assert found["ruff-check"]["entry"].startswith(".venv/bin/python -m ruff check")
    assert found["ruff-format"]["entry"].startswith(".venv/bin/python -m ruff format")
    for hook in ("ruff-check", "ruff-format"):
        assert "--force-exclude" in found[hook]["entry"]  # pyproject's extend-exclude (generated/, ...) holds
        assert "python" in found[hook]["types_or"]
    codegen = found["codegen-check"]
    assert codegen["entry"] == ".venv/bin/python -m codegen check" and codegen["pass_filenames"] is False
    assert all(hook["language"] == "unsupported" for hook in found.values())
    pattern = re.compile(codegen["files"])
    assert all(pattern.search(path) for path in CODEGEN_FILES)
    assert not any(pattern.search(path) for path in OTHER_FILES)


@pytest.mark.slow
def test_pre_commit_accepts_the_config_and_rejects_a_broken_one(tmp_path: Path) -> None:
    validate = [sys.executable, "-m", "pre_commit", "validate-config"]
    good = subprocess.run([*validate, str(PRE_COMMIT)], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
    broken = load(PRE_COMMIT)
    del broken["repos"][0]["hooks"][2]["entry"]
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert subprocess.run([*validate, str(tmp_path / "broken.yaml")], capture_output=True, timeout=120).returncode != 0


@pytest.mark.slow
def test_pre_commit_checks_what_changed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "specs" / "owner").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / ".pre-commit-config.yaml").write_text(PRE_COMMIT.read_text(encoding="utf-8"), encoding="utf-8")
    (repo / ".venv").symlink_to(sys.prefix)  # the hooks' `.venv/bin/python` is this environment's
    (repo / "app.py").write_text("import os\nx = {  'a':1}\n")
    (repo / "specs" / "owner" / "new.yaml").write_text("openapi: 3.1.0\n")  # a spec lives at owner/alias
    git(repo, "add", ".")
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "cache"))

    def run(*files: str) -> tuple[int, dict[str, str], str]:
        command = [sys.executable, "-m", "pre_commit", "run", "--color", "never", "--files", *files]
        result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        verdicts = {}
        for line in result.stdout.splitlines():
            if match := re.match(r"^(ruff check --fix|ruff format|codegen check)[ .(]", line):
                verdicts[match.group(1)] = re.findall(r"(Passed|Failed|Skipped)$", line)[0]
        return result.returncode, verdicts, result.stdout

    code, verdicts, _ = run("app.py")
    assert code == 1 and verdicts == {"ruff check --fix": "Failed", "ruff format": "Failed", "codegen check": "Skipped"}
    assert (repo / "app.py").read_text() == 'x = {"a": 1}\n'  # fixed in place, for the commit to pick up
    code, verdicts, output = run("app.py", "specs/owner/new.yaml")
    assert verdicts == {"ruff check --fix": "Passed", "ruff format": "Passed", "codegen check": "Failed"}, output
    assert "specs/owner/new.yaml" in output  # codegen check ran on this tree's specs/ (no generated/ to match)
