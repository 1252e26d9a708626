"""The local server's spec index (`fal_runtime.local.specs.SpecIndex`): specs are parsed on first use, not at start.

Parsing the whole catalogue with PyYAML takes seconds; these tests pin down that building the index, starting a
server and routing a request parse nothing more than they need, and that the lazy index still serves exactly what a
full parse would (broken specs skipped and reported once, the last of duplicate ids winning, ids read correctly).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fal_runtime.local import LocalServer
from fal_runtime.local import specs as specs_module
from fal_runtime.local.specs import DEFAULT_SPECS_DIR, SpecIndex, load_specs, scan_endpoint_id

DEV = "fal-ai/flux/dev"
SCHNELL = "fal-ai/flux/schnell"
PRO = "fal-ai/flux-pro/v1.1"
KONTEXT = "fal-ai/flux-pro/kontext"
BROKEN = "fal-ai/broken/spec"
WRONG = "fal-ai/wrong/id"

BROKEN_YAML = f"""openapi: 3.1.0
info:
  x-fal-metadata:
    endpointId: {BROKEN}
paths: [unclosed
"""


def _real(endpoint_id: str) -> str:
    return (DEFAULT_SPECS_DIR / f"{endpoint_id}.yaml").read_text(encoding="utf-8")


def _with_id_line(text: str, endpoint_id: str, replacement: str) -> str:
    line = f"    endpointId: {endpoint_id}\n"
    assert line in text, f"the real spec of {endpoint_id} changed layout"
    return text.replace(line, replacement, 1)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path `specs._parsed` is asked for, in order, with its cache empty so each counts."""
    calls: list[Path] = []
    original = specs_module._parsed

    def counting(path: Path, loader: Any) -> Any:
        calls.append(path)
        return original(path, loader)

    monkeypatch.setattr(specs_module, "_PARSED", {})
    monkeypatch.setattr(specs_module, "_parsed", counting)
    return calls


@pytest.fixture
def specs_dir(tmp_path: Path) -> Path:
    """A few real specs in the ways a catalogue may hold them, one broken and one whose scanned id is not its own."""
    root = tmp_path / "specs"
    for sub in ("a", "b", "c", "d", "e", "f"):
        (root / sub).mkdir(parents=True)
    (root / "a" / "dev.yaml").write_text(_real(DEV), encoding="utf-8")
    schnell = _with_id_line(_real(SCHNELL), SCHNELL, f'    endpointId: "{SCHNELL}"  # quoted\n')
    (root / "b" / "schnell.yaml").write_text(schnell, encoding="utf-8")
    # A duplicate key: the scan reads the first endpointId, YAML keeps the last, so the file is really PRO's.
    pro = _with_id_line(_real(PRO), PRO, f"    endpointId: '{WRONG}'\n    endpointId: '{PRO}'\n")
    (root / "c" / "pro.yaml").write_text(pro, encoding="utf-8")
    (root / "d" / "broken.yaml").write_text(BROKEN_YAML, encoding="utf-8")
    kontext = yaml.safe_load(_real(KONTEXT))
    (root / "e" / "kontext.json").write_text(json.dumps(kontext), encoding="utf-8")  # read whole: json is fast
    (root / "f" / "flow.yml").write_text(yaml.safe_dump(yaml.safe_load(_real(SCHNELL)), default_flow_style=True))
    return root


def test_building_the_index_parses_no_scannable_yaml(specs_dir: Path, parses: list[Path]) -> None:
    index = load_specs(specs_dir)
    assert isinstance(index, SpecIndex)
    # Only the JSON spec and the flow-style one (the scan does not read flow style) are parsed up front.
    assert sorted(p.name for p in parses) == ["flow.yml", "kontext.json"]


def test_a_lookup_parses_that_spec_only_once(specs_dir: Path, parses: list[Path]) -> None:
    index = load_specs(specs_dir)
    parses.clear()
    assert index[DEV].id == DEV
    assert parses == [specs_dir / "a" / "dev.yaml"]
    assert index.get(DEV) is index[DEV] and DEV in index
    assert index.get("fal-ai/not/served") is None and "fal-ai/not/served" not in index
    assert parses == [specs_dir / "a" / "dev.yaml"]


def test_quoted_ids_are_found_unquoted(specs_dir: Path, parses: list[Path]) -> None:
    index = load_specs(specs_dir)
    parses.clear()
    # b/schnell.yaml (quoted) sorts before f/flow.yml (same id, parsed up front): the last in path order wins.
    assert index[SCHNELL].id == SCHNELL
    assert parses == []
    assert scan_endpoint_id("info:\n  x-fal-metadata:\n    endpointId: 'it''s/x'\n") == "it's/x"
    assert scan_endpoint_id(f'info:\n  x-fal-metadata:\n    endpointId: "{DEV}"\n') == DEV


def test_a_broken_spec_is_reported_once_and_absent(
    specs_dir: Path, parses: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    index = load_specs(specs_dir)
    assert capsys.readouterr().err == ""
    assert index.get(BROKEN) is None
    with pytest.raises(KeyError):
        index[BROKEN]
    assert BROKEN not in index
    err = capsys.readouterr().err  # PyYAML's messages span lines
    assert err.startswith(f"fal_runtime.local: skipping {specs_dir / 'd' / 'broken.yaml'}: ")
    assert err.count("fal_runtime.local: skipping") == 1
    assert sorted(index) == sorted([DEV, SCHNELL, PRO, KONTEXT]) and len(index) == 4
    assert capsys.readouterr().err == ""  # not reported again by the full parse


def test_a_misscanned_spec_is_served_under_its_real_id(specs_dir: Path, parses: list[Path]) -> None:
    index = load_specs(specs_dir)
    assert WRONG not in index
    assert index[PRO].id == PRO
    with pytest.raises(KeyError):
        index[WRONG]


def test_the_lazy_index_serves_what_a_full_parse_does(specs_dir: Path) -> None:
    (specs_dir / "z").mkdir()
    # Sorts after a/dev.yaml with the same id but is broken: a/dev.yaml is still served, as by an eager load.
    (specs_dir / "z" / "dev.yaml").write_text(BROKEN_YAML.replace(BROKEN, DEV), encoding="utf-8")
    lazy = load_specs(specs_dir)
    assert lazy[DEV].document == yaml.safe_load(_real(DEV))
    assert lazy[SCHNELL].document == yaml.safe_load(_real(SCHNELL))  # f/flow.yml: the last one
    eager = load_specs(specs_dir)
    assert dict(eager) == dict(lazy)  # iterating first, then looking up
    assert len(eager) == 4


def test_concurrent_lookups_parse_once(specs_dir: Path, parses: list[Path]) -> None:
    index = load_specs(specs_dir)
    parses.clear()
    barrier = threading.Barrier(8)
    found: list[str] = []

    def look() -> None:
        barrier.wait()
        found.append(index[DEV].id)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == [DEV] * 8
    assert parses == [specs_dir / "a" / "dev.yaml"]


@pytest.fixture
def server(specs_dir: Path, parses: list[Path]) -> Iterator[LocalServer]:
    with LocalServer(specs_dir) as running:
        yield running


def test_starting_and_routing_parse_only_what_is_asked_for(
    server: LocalServer, specs_dir: Path, parses: list[Path]
) -> None:
    assert sorted(p.name for p in parses) == ["flow.yml", "kontext.json"]
    parses.clear()
    tls = ssl.create_default_context(cafile=str(server.ca_file))
    with httpx.Client(base_url=server.url, verify=tls, headers={"Authorization": "Key k"}, timeout=10) as client:
        assert client.post("/fal-ai/not/served", json={}).status_code == 404
        assert parses == []
        assert client.post(f"/{DEV}", json={}).status_code == 422  # no prompt: the input was checked
        assert parses == [specs_dir / "a" / "dev.yaml"]
        models = client.get("/v1/models").json()["models"]  # model search reads every spec
    assert sorted(m["endpoint_id"] for m in models) == sorted([DEV, SCHNELL, PRO, KONTEXT])


@pytest.mark.slow
def test_every_real_spec_is_scanned_to_its_parsed_id() -> None:
    """The scan reads the id of every spec of the catalogue, and reads it right (a spec the scan cannot read is still
    served, but parsed at every server's start: keep the catalogue scannable)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    wrong = {}
    paths = [
        p
        for p in sorted(DEFAULT_SPECS_DIR.rglob("*"))
        if p.suffix in (".yaml", ".yml") and not p.relative_to(DEFAULT_SPECS_DIR).parts[0].startswith("_")
    ]  # endpoint specs: not the Platform API's (`_platform/`), which has no endpoint id
    assert len(paths) > 1000
    for path in paths:
        text = path.read_text(encoding="utf-8")
        parsed = yaml.load(text, Loader=loader)["info"]["x-fal-metadata"]["endpointId"]
        scanned = scan_endpoint_id(text)
        if scanned != parsed:
            wrong[str(path)] = (scanned, parsed)
    assert wrong == {}
