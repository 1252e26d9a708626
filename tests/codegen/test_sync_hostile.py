"""`codegen sync` against a hostile or broken listing served on loopback: no entry may choose what generated code
imports, keep the walk going for ever, delete the catalogue, stop `make gen`, abort the sync for the others, or
smuggle invisible characters into the pull request's body.

The listing is a scripted HTTP server (`Listing`): each test gives it the entries and the pages fal never would."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from codegen.generation import loader
from codegen.generation.pipeline import generate
from codegen.problems import Level
from codegen.spectools import importer
from codegen.spectools.sync import Limits, Report, SyncLimitError, sync
from fal_runtime import Client, RetryPolicy
from tests.codegen.conftest import ROOT

BASE = ROOT / "specs" / "fal-ai" / "esrgan.yaml"
FAST = RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.02)
Page = Callable[[str | None], dict[str, Any]]  # cursor → the page's JSON


class Listing:
    """fal's model search as a test scripts it: `page(cursor)` answers `GET /v1/models`."""

    def __init__(self) -> None:
        self.page: Page = lambda cursor: {"models": [], "has_more": False}
        self.requests = 0
        listing = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listing.requests += 1
                cursor = parse_qs(urlsplit(self.path).query).get("cursor", [None])[0]
                body = json.dumps(listing.page(cursor)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.host = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def serve(self, entries: list[dict[str, Any]]) -> None:
        self.page = lambda cursor: {"models": entries, "has_more": False}

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def listing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listing]:
    served = Listing()
    monkeypatch.setenv("FAL_API_HOST", served.host)
    monkeypatch.delenv("FAL_KEY", raising=False)
    yield served
    served.close()


def document(endpoint_id: str) -> dict[str, Any]:
    """fal's document for `endpoint_id`: the esrgan spec, moved to that id."""
    doc: dict[str, Any] = yaml.safe_load(BASE.read_text(encoding="utf-8"))
    doc["info"]["x-fal-metadata"]["endpointId"] = endpoint_id
    doc["paths"] = {k.replace("/fal-ai/esrgan", f"/{endpoint_id}"): v for k, v in doc["paths"].items()}
    return doc


def entry(endpoint_id: str, doc: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    return {"endpoint_id": endpoint_id, "metadata": {"status": "active", **metadata},
            "openapi": doc if doc is not None else document(endpoint_id)}  # fmt: skip


def input_schema(doc: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = doc["components"]["schemas"]["EsrganInput"]
    return schema


def run_sync(specs: Path, **kwargs: Any) -> Report:
    with Client(retry=FAST) as client:
        return sync(specs, client=client, cache_dir=None, **kwargs)


def test_a_schema_cannot_choose_what_generated_code_imports(listing: Listing, tmp_path: Path) -> None:
    doc = document("evil/imports")
    schema = input_schema(doc)
    schema["customBasePath"] = "antigravity.geohash"
    schema["properties"]["image_url"]["customTypePath"] = "this.s"
    schema["properties"]["scale"]["customTypeImport"] = "os.system"
    listing.serve([entry("evil/imports", doc)])
    specs = tmp_path / "specs"
    report = run_sync(specs)
    assert [o.item.endpoint_id for o in report.added] == ["evil/imports"]
    written = (specs / "evil/imports.yaml").read_text(encoding="utf-8")
    assert "custom" not in written, "datamodel-code-generator's keywords never reach a spec"
    repairs = [r for o in report.added for r in o.item.repairs if "unknown schema keyword" in r.message]
    assert {r.pointer.rsplit("/", 1)[-1] for r in repairs} == {"customBasePath", "customTypePath", "customTypeImport"}
    generate(specs, tmp_path / "out")
    module = (tmp_path / "out" / "evil" / "imports.py").read_text(encoding="utf-8")
    assert "antigravity" not in module and "this" not in module.split("class Input")[0]


def test_the_loader_refuses_a_spec_that_names_an_import(tmp_path: Path) -> None:
    doc = document("evil/spec")
    input_schema(doc)["properties"]["scale"]["customTypePath"] = "this.s"
    path = tmp_path / "evil" / "spec.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(importer.dump(doc), encoding="utf-8")
    found: list[Any] = []
    assert loader.load(path, found) is None
    [problem] = [p for p in found if p.level is Level.ERROR]
    assert problem.pointer == "/components/schemas/EsrganInput/properties/scale/customTypePath"
    assert "unknown schema keyword" in problem.message


def test_only_the_generators_own_custom_paths_reach_datamodel_code_generator() -> None:
    from codegen.generation import ir
    from codegen.generation.models import generate_models

    doc = document("evil/ir")
    endpoint = ir.build(loader.SpecDocument(BASE, "x", doc), "evil/ir.yaml", [])
    assert endpoint is not None
    endpoint.schemas["Input"]["properties"]["scale"]["customTypePath"] = "this.s"  # as if the IR let it through
    with pytest.raises(AssertionError, match="is not the generator's own"):
        generate_models(endpoint, frozenset())


def test_a_listing_whose_pages_never_end_stops_the_sync_and_writes_nothing(listing: Listing, tmp_path: Path) -> None:
    listing.page = lambda cursor: {
        "models": [entry(f"loop/e{int(cursor or 0)}")],
        "has_more": True,
        "next_cursor": str(int(cursor or 0) + 1),  # a fresh cursor every time
    }
    specs = tmp_path / "specs"
    with pytest.raises(SyncLimitError, match="more than 25 pages"):
        run_sync(specs, limits=Limits(max_pages=25))
    assert listing.requests == 25 and not specs.exists()
    listing.page = lambda cursor: {"models": [entry(f"many/e{i}") for i in range(60)], "has_more": True,
                                   "next_cursor": f"c{int((cursor or 'c0')[1:]) + 1}"}  # fmt: skip
    with pytest.raises(SyncLimitError, match="more than 100 entries"):
        run_sync(specs, limits=Limits(max_entries=100))
    assert not specs.exists()


def test_prune_refuses_an_empty_or_sharply_smaller_listing(listing: Listing, tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    ids = [f"fal-ai/kept-{i:02d}" for i in range(30)]
    listing.serve([entry(e) for e in ids])
    run_sync(specs)
    listing.serve([])
    empty = run_sync(specs, prune=True)
    assert empty.pruned == [] and "nothing deleted" in empty.prune_refused
    assert len(list(specs.rglob("*.yaml"))) == 30 and "nothing deleted" in empty.render()
    listing.serve([entry(e) for e in ids[:5]])
    smaller = run_sync(specs, prune=True)
    assert smaller.pruned == [] and "25 of 30" in smaller.prune_refused
    forced = run_sync(specs, prune=True, force_prune=True)
    assert len(forced.pruned) == 25 and len(list(specs.rglob("*.yaml"))) == 5
    listing.serve([entry(e) for e in ids[:4]])
    assert run_sync(specs, prune=True).pruned == ["fal-ai/kept-04"], "a small prune needs no force"


def test_entries_that_would_stop_make_gen_are_skipped_with_the_generators_reason(
    listing: Listing, tmp_path: Path
) -> None:
    literal = document("fal-ai/literal")
    input_schema(literal)["properties"]["Literal"] = {"type": "string", "enum": ["a", "b", "c", "d", "e"]}
    chunk = document("fal-ai/chunk")
    chunk["components"]["schemas"]["OutputChunk"] = {"type": "object", "properties": {"n": {"type": "integer"}}}
    chunk["components"]["schemas"]["EsrganOutput"]["properties"]["chunk"] = {"$ref": "#/components/schemas/OutputChunk"}
    loop = document("fal-ai/self-ref")
    loop["components"]["schemas"]["Url"] = {"anyOf": [{"$ref": "#/components/schemas/Url"}, {"type": "string"}]}
    input_schema(loop)["properties"]["image_url"] = {"$ref": "#/components/schemas/Url"}
    listing.serve([entry("fal-ai/aura-sr")])
    specs = tmp_path / "specs"
    run_sync(specs)
    listing.serve([
        entry("fal-ai/aura-sr"), entry("Fal-AI/aura-sr"), entry("fal_ai/aura.sr"),
        entry("fal-ai/literal", literal), entry("fal-ai/chunk", chunk, stream_url="https://fal.run/fal-ai/chunk/stream"),
        entry("fal-ai/self-ref", loop),
    ])  # fmt: skip
    report = run_sync(specs)
    skipped = dict(report.skipped)
    assert set(skipped) == {"Fal-AI/aura-sr", "fal_ai/aura.sr"}
    assert all("maps to the module of" in problems[0].message for problems in skipped.values())
    assert sorted(o.item.endpoint_id for o in report.added) == ["fal-ai/chunk", "fal-ai/literal", "fal-ai/self-ref"]
    result, _ = generate(specs, tmp_path / "out")  # the catalogue still generates, with every added endpoint
    assert result.count == 4
    assert "Literal_: " in (tmp_path / "out" / "fal_ai" / "literal.py").read_text(encoding="utf-8")


def test_one_bad_entry_is_reported_and_the_others_imported(listing: Listing, tmp_path: Path) -> None:
    odd_names = document("fal-ai/odd-names")
    props = input_schema(odd_names)["properties"]
    props["a%41"] = {"type": "integer", "default": 1}
    props["line\nbreak"] = {"type": "integer", "default": 2}
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(300):
        deep = {"type": "array", "items": deep}
    nested = document("fal-ai/deep")
    input_schema(nested)["properties"]["deep"] = deep
    huge = document("fal-ai/huge-description")
    input_schema(huge)["properties"]["scale"]["description"] = "scale " * 30_000
    listing.serve([
        entry("fal-ai/odd-names", odd_names), entry("fal-ai/deep", nested), entry("fal-ai/" + "x" * 300),
        entry("fal-ai/huge-description", huge), entry("fal-ai/fine"),
    ])  # fmt: skip
    specs = tmp_path / "specs"
    report = run_sync(specs)
    skipped = dict(report.skipped)
    assert set(skipped) == {"fal-ai/deep", "fal-ai/" + "x" * 300}
    assert "nested deeper than 64 levels" in skipped["fal-ai/deep"][0].message
    assert sorted(o.item.endpoint_id for o in report.added) == ["fal-ai/fine", "fal-ai/huge-description",
                                                                "fal-ai/odd-names"]  # fmt: skip
    huge_spec = yaml.safe_load((specs / "fal-ai/huge-description.yaml").read_text(encoding="utf-8"))
    assert len(huge_spec["components"]["schemas"]["EsrganInput"]["properties"]["scale"]["description"]) == 10_000
    generate(specs, tmp_path / "out")


def test_the_report_carries_no_invisible_characters(listing: Listing, tmp_path: Path) -> None:
    hidden = copy.deepcopy(document("fal-ai/shown"))
    listing.serve([
        entry("fal-ai/shown", hidden, display_name="Safe\u202e txt.exe\x00", category="text\x1b]8;;x\x07-to-image"),
        entry("bad\u202eid/x\x00y"),
    ])  # fmt: skip
    text = run_sync(tmp_path / "specs").render()
    assert "Safe" in text and "bad" in text
    for invisible in ("\u202e", "\x00", "\x1b", "\x07"):
        assert invisible not in text
