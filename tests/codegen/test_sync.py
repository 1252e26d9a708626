"""`codegen sync` end to end, offline: the local server plays fal's model search over HTTPS, serving a specs folder
("fal's side"); sync walks it into another ("ours"). Faults come from the server's script: a 429 in the middle of the
walk, a malformed page; and from its documents: one that cannot be repaired."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from codegen.spectools import importer
from codegen.spectools.sync import Report, sync
from fal_runtime import Client, ProtocolError, RetryPolicy
from fal_runtime.local import LocalServer
from fal_runtime.platform import iter_models
from tests.codegen.conftest import ROOT

SPECS = ROOT / "specs"
PICKED = ("fal-ai/flux/schnell", "fal-ai/esrgan", "bria/fibo-edit/colorize", "fal-ai/post-processing/sharpen")
CURATED = "fal-ai/post-processing/sharpen"
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)


def read(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)


def write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(importer.dump(doc), encoding="utf-8")


def fal_side(root: Path, ids: tuple[str, ...] = PICKED) -> Path:
    for endpoint_id in ids:
        write(root / f"{endpoint_id}.yaml", read(SPECS / f"{endpoint_id}.yaml"))
    return root


def submit_op(doc: dict[str, Any]) -> dict[str, Any]:
    endpoint_id = doc["info"]["x-fal-metadata"]["endpointId"]
    op: dict[str, Any] = doc["paths"][f"/{endpoint_id}"]["post"]
    return op


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalServer, Path]]:
    """The server over a copy of four real specs (one curated), and the environment pointing sync at it."""
    theirs = fal_side(tmp_path / "fal")
    with LocalServer(theirs) as server:
        monkeypatch.setenv("FAL_API_HOST", server.api_host)
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        monkeypatch.delenv("FAL_KEY", raising=False)
        yield server, theirs


def run_sync(ours: Path, **kwargs: Any) -> Report:
    with Client(retry=FAST) as client:
        return sync(ours, client=client, **kwargs)


def test_a_first_sync_adds_every_endpoint_and_a_second_changes_nothing(
    served: tuple[LocalServer, Path], tmp_path: Path
) -> None:
    ours = tmp_path / "ours"
    report = run_sync(ours)
    assert report.listed == 4
    assert sorted(o.item.endpoint_id for o in report.added) == sorted(PICKED)
    spec = read(ours / "fal-ai/flux/schnell.yaml")
    assert set(spec["info"]["x-fal-sources"]) == {"fal-model-search"}
    assert spec["info"]["x-fal-metadata"]["endpointId"] == "fal-ai/flux/schnell"
    listing = json.loads((ours / "LISTING.json").read_text(encoding="utf-8"))  # the catalogue's record of the walk
    assert sorted(listing["endpoints"]) == sorted(PICKED) and listing["date"]
    stamps = {p: p.stat().st_mtime_ns for p in ours.rglob("*.yaml")}

    again = run_sync(ours)
    assert (again.added, again.changed, again.unchanged) == ([], [], 4)
    assert {p: p.stat().st_mtime_ns for p in ours.rglob("*.yaml")} == stamps, "a sync with nothing new writes nothing"


def test_paged_walk_with_a_429_imports_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = fal_side(tmp_path / "fal")
    with LocalServer(theirs) as server:
        monkeypatch.setenv("FAL_API_HOST", server.api_host)
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        server.script(op="models", fault="429", nth=2, retry_after=0.1)
        with Client(retry=FAST) as client:
            walked = [e.endpoint_id for e in iter_models(client=client, limit=1)]
    assert sorted(walked) == sorted(PICKED) and len(walked) == len(set(walked))


def test_a_malformed_page_fails_the_sync_and_writes_nothing(served: tuple[LocalServer, Path], tmp_path: Path) -> None:
    server, _ = served
    server.reset()
    server.script(op="models", fault="body", nth=1, body='{"models": "not a list"}')
    ours = tmp_path / "ours"
    with pytest.raises(ProtocolError):
        run_sync(ours)
    assert not ours.exists() or not list(ours.rglob("*.yaml"))


def test_an_unrepairable_document_is_skipped_and_the_rest_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = fal_side(tmp_path / "fal")
    broken = read(theirs / "fal-ai/esrgan.yaml")
    submit_op(broken)["requestBody"]["content"]["application/json"]["schema"]["$ref"] = "#/components/schemas/Missing"
    write(theirs / "fal-ai/esrgan.yaml", broken)
    ours = tmp_path / "ours"
    with LocalServer(theirs) as server:
        monkeypatch.setenv("FAL_API_HOST", server.api_host)
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        report = run_sync(ours)
    assert [eid for eid, _ in report.skipped] == ["fal-ai/esrgan"]
    assert "missing schema" in report.skipped[0][1][0].message
    assert not (ours / "fal-ai/esrgan.yaml").exists()
    assert len(report.added) == 3
    assert "## Skipped (1)" in report.render() and "`fal-ai/esrgan`" in report.render()


def test_changes_are_reported_with_breaking_marks_and_curated_specs_kept(
    served: tuple[LocalServer, Path], tmp_path: Path, snapshot: Any
) -> None:
    _server, theirs = served
    ours = tmp_path / "ours"
    run_sync(ours)
    # Ours: the curated seed as committed (a maintainer's spec); theirs changes two endpoints.
    write(ours / f"{CURATED}.yaml", read(SPECS / f"{CURATED}.yaml"))
    curated_before = (ours / f"{CURATED}.yaml").read_text(encoding="utf-8")
    schnell = read(theirs / "fal-ai/flux/schnell.yaml")
    schnell["components"]["schemas"]["FluxSchnellInput"]["required"].append("num_images")
    write(theirs / "fal-ai/flux/schnell.yaml", schnell)
    sharpen = read(theirs / f"{CURATED}.yaml")
    sharpen["components"]["schemas"]["PostProcessingSharpenInput"]["properties"].pop("cas_amount")
    write(theirs / f"{CURATED}.yaml", sharpen)
    with LocalServer(theirs) as changed_server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAL_API_HOST", changed_server.api_host)
        mp.setenv("SSL_CERT_FILE", str(changed_server.ca_file))
        report = run_sync(ours)
    assert [o.item.endpoint_id for o, _ in report.changed] == ["fal-ai/flux/schnell"]
    ((_, changes),) = report.changed
    assert any(c.field == "num_images" and c.breaking for c in changes)
    assert report.breaking
    assert [o.item.endpoint_id for o in report.curated] == [CURATED]
    assert (ours / f"{CURATED}.yaml").read_text(encoding="utf-8") == curated_before, (
        "a curated spec is never overwritten"
    )
    text = report.render()
    assert "**breaking**" in text and "Curated specs where fal's data differs" in text and "cas_amount" in text
    assert (
        "num_images" in read(ours / "fal-ai/flux/schnell.yaml")["components"]["schemas"]["FluxSchnellInput"]["required"]
    )
    assert text == snapshot  # the report a sync pull request carries, read as a reviewer would


def test_absent_endpoints_are_reported_and_pruned_only_when_asked(
    served: tuple[LocalServer, Path], tmp_path: Path
) -> None:
    ours = tmp_path / "ours"
    run_sync(ours)
    write(ours / "fal-ai/gone.yaml", read(ours / "fal-ai/esrgan.yaml"))
    write(ours / "fal-ai/gone-curated.yaml", read(SPECS / f"{CURATED}.yaml"))
    report = run_sync(ours)
    assert report.absent == ["fal-ai/gone", "fal-ai/gone-curated"] and report.pruned == []
    assert (ours / "fal-ai/gone.yaml").exists()
    pruned = run_sync(ours, prune=True)
    assert pruned.pruned == ["fal-ai/gone"], "curated specs are never pruned"
    assert not (ours / "fal-ai/gone.yaml").exists() and (ours / "fal-ai/gone-curated.yaml").exists()


def test_dry_run_writes_nothing_and_filters_narrow_the_walk(served: tuple[LocalServer, Path], tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    report = run_sync(ours, dry_run=True)
    assert len(report.added) == 4 and not ours.exists()
    assert "dry run" in report.render()
    one = run_sync(ours, endpoint_ids=["fal-ai/esrgan"])
    assert [o.item.endpoint_id for o in one.added] == ["fal-ai/esrgan"] and one.listed == 1
    assert [p.relative_to(ours).as_posix() for p in ours.rglob("*.yaml")] == ["fal-ai/esrgan.yaml"]
    category = read(SPECS / "fal-ai/flux/schnell.yaml")["info"]["x-fal-metadata"]["category"]
    by_category = run_sync(ours, category=category, dry_run=True)
    assert by_category.listed >= 1
    assert all(o.item.spec["info"]["x-fal-metadata"]["category"] == category for o in by_category.added)


def test_a_deprecated_endpoint_is_reported_and_its_module_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = fal_side(tmp_path / "fal", ("fal-ai/esrgan",))
    doc = read(theirs / "fal-ai/esrgan.yaml")
    submit_op(doc)["deprecated"] = True
    write(theirs / "fal-ai/esrgan.yaml", doc)
    ours = tmp_path / "ours"
    with LocalServer(theirs) as server:
        monkeypatch.setenv("FAL_API_HOST", server.api_host)
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        report = run_sync(ours)
    assert report.deprecated == ["fal-ai/esrgan"]
    assert submit_op(read(ours / "fal-ai/esrgan.yaml")).get("deprecated") is True
    assert "## Deprecated by fal (1)" in report.render()


@pytest.mark.slow
def test_the_command_prints_the_report(served: tuple[LocalServer, Path], tmp_path: Path) -> None:
    server, _ = served
    ours = tmp_path / "ours"
    env = {**os.environ, "FAL_API_HOST": server.api_host, "SSL_CERT_FILE": str(server.ca_file)}
    out = subprocess.run(
        [sys.executable, "-m", "codegen", "sync", "--specs", str(ours), "--report", str(tmp_path / "report.md")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# fal catalogue sync") and "4 added" in out.stdout
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == out.stdout
    server.script(op="models", fault="body", nth=None, times=5, body="not json")
    failed = subprocess.run(
        [sys.executable, "-m", "codegen", "sync", "--specs", str(tmp_path / "other")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert failed.returncode == 1 and "nothing written" in failed.stderr
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
def test_a_walk_of_more_than_1000_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = read(SPECS / "fal-ai/esrgan.yaml")
    theirs = tmp_path / "fal"
    for i in range(1_050):
        endpoint_id = f"synth/esrgan-{i:04d}"
        doc = copy.deepcopy(base)
        doc["info"]["x-fal-metadata"]["endpointId"] = endpoint_id
        doc["paths"] = {k.replace("/fal-ai/esrgan", f"/{endpoint_id}"): v for k, v in doc["paths"].items()}
        write(theirs / f"{endpoint_id}.yaml", doc)
    ours = tmp_path / "ours"
    with LocalServer(theirs) as server:
        monkeypatch.setenv("FAL_API_HOST", server.api_host)
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        server.script(op="models", fault="429", nth=7, retry_after=0.1)
        report = run_sync(ours)
    assert report.listed == 1_050 and len(report.added) == 1_050 and not report.skipped
    assert len(list(ours.rglob("*.yaml"))) == 1_050
