"""Byte-identical output whatever the hash seed, the spec order, the worker count or the cache; committed
generated/ equals a fresh generation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codegen.generation import ir, loader
from codegen.generation.cache import ModuleCache
from codegen.generation.pipeline import Loaded, generate, load_endpoints, load_listing, render_tree
from codegen.generation.tree import read_tree
from codegen.spectools.importer import is_curated
from tests.codegen.conftest import ROOT, SOURCES, write_specs

SPECS = ROOT / "specs"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fal's real documents, the curated seeds and every 40th spec of the catalogue: a wide variety of shapes."""
    root = tmp_path_factory.mktemp("corpus")
    taken: set[str] = set()
    for doc in sorted((SOURCES / "fal-openapi").glob("*__*.json")):
        if "--" not in doc.name:
            spec = json.loads(doc.read_text())
            taken.add(spec["info"]["x-fal-metadata"]["endpointId"])
            write_specs(root, {spec["info"]["x-fal-metadata"]["endpointId"] + ".json": spec})
    files = loader.find_spec_files(SPECS)
    picked = [p for p in files if is_curated(p.read_text(encoding="utf-8"))] + files[::40]
    for spec in sorted(set(picked)):
        if spec.relative_to(SPECS).with_suffix("").as_posix() in taken:
            continue
        target = root / spec.relative_to(SPECS)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(spec.read_bytes())
    return root


@pytest.fixture(scope="module")
def loaded(corpus: Path) -> Loaded:
    return load_endpoints(loader.find_spec_files(corpus), corpus)


@pytest.fixture(scope="module")
def endpoints(loaded: Loaded) -> list[ir.EndpointIR]:
    return loaded.endpoints


@pytest.fixture(scope="module")
def reference(loaded: Loaded) -> dict[str, str]:
    """A cold, single-process render in this (randomly seeded) interpreter, with no cache: the Platform API's spec
    (`_platform/v1.yaml`, the first spec of the catalogue) included."""
    files = render_tree(loaded.endpoints, apis=loaded.apis)
    assert loaded.apis and not [p for p, text in files.items() if p.endswith(".py") and not text.strip()]
    return files


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> ModuleCache:
    return ModuleCache(tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
def test_workers_and_cache_give_identical_bytes(
    loaded: Loaded, reference: dict[str, str], warm_cache: ModuleCache
) -> None:
    apis = loaded.apis
    assert render_tree(loaded.endpoints, warm_cache, jobs=2, apis=apis) == reference  # cold, in two worker processes
    modules = [p for p in reference if p.endswith(".py")]  # every Python file; the empty py.typed is not cached
    assert warm_cache.root is not None and len(list(warm_cache.root.glob("*.py"))) == len(modules)  # one entry a file
    assert render_tree(loaded.endpoints, warm_cache, apis=apis) == reference  # every module served from the cache


@pytest.mark.slow
def test_hash_seed_does_not_change_output(corpus: Path, reference: dict[str, str], tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONHASHSEED="4242", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "codegen",
        "gen",
        "-q",
        "--no-cache",
        "-j",
        "2",
        "--specs",
        str(corpus),
        "--out",
        str(tmp_path / "out"),
    ]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    assert read_tree(tmp_path / "out") == reference


def test_spec_order_does_not_change_output(
    corpus: Path, loaded: Loaded, reference: dict[str, str], warm_cache: ModuleCache
) -> None:
    files = loader.find_spec_files(corpus)
    backward = load_endpoints(list(reversed(files)), corpus).endpoints
    assert backward == loaded.endpoints
    assert render_tree(list(reversed(backward)), warm_cache, apis=loaded.apis) == reference


def test_second_run_writes_nothing(corpus: Path, tmp_path: Path, warm_cache: ModuleCache) -> None:
    out = tmp_path / "out"
    assert generate(corpus, out, cache_dir=warm_cache.root)[1] is True
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.py")}
    assert generate(corpus, out, cache_dir=warm_cache.root)[1] is False
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.py")} == mtimes


@pytest.mark.slow
def test_committed_generated_is_current() -> None:
    """`codegen check` as a test. It shares the project's module cache, which `make test` has just filled by running
    `codegen check` first (a cache hit is byte-identical to rendering, as the tests above show); cold, it renders
    the whole catalogue (about two minutes)."""
    cache = ModuleCache(ROOT / ".cache" / "codegen")
    loaded = load_endpoints(loader.find_spec_files(SPECS), SPECS, cache)
    listing = load_listing(SPECS)[0]
    expected = render_tree(loaded.endpoints, cache, jobs=2, specs_root=SPECS, listing=listing, apis=loaded.apis)
    assert read_tree(ROOT / "generated") == expected, "generated/ is stale: run `make gen`"


def test_spec_cache_gives_the_same_endpoints_and_warnings(
    corpus: Path, endpoints: list[ir.EndpointIR], tmp_path: Path
) -> None:
    files = loader.find_spec_files(corpus)
    fresh = load_endpoints(files, corpus)
    cache = ModuleCache(tmp_path / "specs-cache")
    assert fresh.endpoints == endpoints
    assert load_endpoints(files, corpus, cache) == fresh  # fills the cache
    assert len(list((tmp_path / "specs-cache").glob("*.json"))) == len(endpoints) + len(fresh.apis)  # one a spec
    assert load_endpoints(files, corpus, cache) == fresh  # served from it


def test_cached_warnings_name_the_spec_where_it_is_now(corpus: Path, tmp_path: Path) -> None:
    """The caches are keyed by paths relative to the specs root: a copy of the specs (another checkout, a moved
    folder) served from them names its own files in warnings, as a fresh load does."""
    cache = ModuleCache(tmp_path / "cache")
    first, moved = tmp_path / "a" / "specs", tmp_path / "b" / "specs"
    shutil.copytree(corpus, first)
    shutil.copytree(corpus, moved)
    generate(first, tmp_path / "a" / "out", cache_dir=cache.root)
    fresh = load_endpoints(loader.find_spec_files(moved), moved).warnings
    cached = load_endpoints(loader.find_spec_files(moved), moved, cache).warnings
    assert fresh and [str(w) for w in cached] == [str(w) for w in fresh]
    result, _ = generate(moved, tmp_path / "a" / "out", cache_dir=cache.root)  # the same tree: every spec reused
    assert [str(w) for w in result.warnings] == [str(w) for w in fresh]


def test_the_run_stamp_notices_every_change(corpus: Path, tmp_path: Path, warm_cache: ModuleCache) -> None:
    """A no-op run stops at the stamp; a changed spec, an edited, removed or added module each regenerate."""
    specs, out = tmp_path / "specs", tmp_path / "out"
    shutil.copytree(corpus, specs)
    first, changed = generate(specs, out, cache_dir=warm_cache.root)
    assert changed and first.files
    noop, changed = generate(specs, out, cache_dir=warm_cache.root)
    assert not changed and noop.files == {} and noop.count == first.count  # stopped at the stamp
    assert [str(w) for w in noop.warnings] == [str(w) for w in first.warnings]  # still reported

    module = out / "fal_ai" / "flux" / "dev" / "image_to_image.py"
    for damage in (lambda: module.write_text(module.read_text() + "# edited\n"), module.unlink,
                   lambda: (out / "stray.py").write_text("")):  # fmt: skip
        damage()
        again, changed = generate(specs, out, cache_dir=warm_cache.root)
        assert changed and again.files == first.files and read_tree(out) == first.files

    spec = specs / "fal-ai" / "flux" / "dev" / "image-to-image.yaml"
    spec.write_text(spec.read_text().replace("Image to image version of FLUX.1 [dev]", "Edited description"))
    edited, changed = generate(specs, out, cache_dir=warm_cache.root)
    assert changed and "Edited description" in edited.files["fal_ai/flux/dev/image_to_image.py"]
    assert {p for p in edited.files if edited.files[p] != first.files[p]} == {"fal_ai/flux/dev/image_to_image.py"}
    assert read_tree(out) == edited.files  # rewritten in place: the tree was the last run's

    spec.unlink()  # a removed spec: its module goes, and any package it leaves empty
    removed, changed = generate(specs, out, cache_dir=warm_cache.root)
    assert changed and read_tree(out) == removed.files
    assert not (out / "fal_ai" / "flux" / "dev" / "image_to_image.py").exists()
    loaded = load_endpoints(loader.find_spec_files(specs), specs)
    assert removed.files == render_tree(loaded.endpoints, warm_cache, apis=loaded.apis)


def test_models_generated_in_batches_equal_one_endpoint_at_a_time(endpoints: list[ir.EndpointIR]) -> None:
    """Several endpoints in one datamodel-code-generator call (a modular document) give each exactly the models
    of a call of its own."""
    from codegen.generation.models import generate_models, generate_models_batch
    from codegen.generation.pipeline import _reserved_kwargs

    reserved = _reserved_kwargs()
    alone = [generate_models(e, reserved) for e in endpoints]
    batched = [m for i in range(0, len(endpoints), 8) for m in generate_models_batch(endpoints[i : i + 8], reserved)]
    assert batched == alone


def test_an_incremental_run_renders_only_what_changed(corpus: Path, tmp_path: Path, warm_cache: ModuleCache) -> None:
    """With the last run's tree in place, only changed specs are rendered: an edited spec, a new child endpoint (its
    parent's module moves into a package, unrendered) and a removed spec give the tree a cold run writes."""
    from codegen.generation.tree import TreeFiles

    specs, out = tmp_path / "specs", tmp_path / "out"
    shutil.copytree(corpus, specs)
    first, _ = generate(specs, out, cache_dir=warm_cache.root)
    warned = sorted({w.file for w in first.warnings})  # fal's documents whose examples contradict their schemas
    assert len(warned) > 1
    touched = Path(warned[-1])  # loaded again, its warnings must still come last
    document = json.loads(touched.read_text())
    document["info"]["x-touched"] = True
    touched.write_text(json.dumps(document))
    edited = specs / "fal-ai" / "flux" / "dev" / "image-to-image.yaml"
    edited.write_text(edited.read_text().replace("Image to image version of FLUX.1 [dev]", "Edited description"))
    parent = specs / "fal-ai" / "image-editing" / "color-correction.yaml"
    child = parent.with_suffix("") / "extra.yaml"
    child.parent.mkdir()
    child.write_text(
        parent.read_text().replace(
            "fal-ai/image-editing/color-correction", "fal-ai/image-editing/color-correction/extra"
        )
    )
    removed = next(p for p in loader.find_spec_files(specs) if p not in (edited, parent, child, touched))
    removed.unlink()

    result, changed = generate(specs, out, cache_dir=warm_cache.root)
    cold, _ = generate(specs, tmp_path / "cold", cache_dir=None, jobs=2)
    assert changed and read_tree(out) == dict(result.files) == cold.files
    assert [str(w) for w in result.warnings] == [str(w) for w in cold.warnings]  # the recorded ones in their place
    assert isinstance(result.files, TreeFiles)
    parts = "/".join(load_endpoints([touched], specs).endpoints[0].module_parts)
    (touched_module,) = {f"{parts}.py", f"{parts}/__init__.py"} & set(cold.files)
    assert set(result.files.rendered) == {
        "fal_ai/flux/dev/image_to_image.py",
        touched_module,
        "fal_ai/image_editing/color_correction/extra.py",
        "fal_ai/image_editing/color_correction/__init__.py",  # moved from color_correction.py, not rendered again
        "__init__.py",
        "CATALOGUE.md",  # like the package index, it lists every endpoint
        "py.typed",
    }
    assert generate(specs, out, cache_dir=warm_cache.root)[1] is False  # and the next run is a no-op again


@pytest.mark.slow
def test_every_file_is_what_black_would_write(reference: dict[str, str]) -> None:
    """The generator asks black only about statements it would change (`render.format_python`); the result must be
    exactly black's, for every shape in fal's documents and the seeds."""
    from codegen.generation.render import black_format

    unstable = [
        path for path, content in reference.items() if path.endswith(".py") and black_format(content) != content
    ]
    assert unstable == []


@pytest.mark.slow
def test_incremental_runs_equal_a_cold_run(corpus: Path, tmp_path: Path, warm_cache: ModuleCache) -> None:
    """After one spec changes, the in-place update from the cache is byte for byte what a cold run (no cache, new
    directory, two workers) writes."""
    specs, out = tmp_path / "specs", tmp_path / "out"
    shutil.copytree(corpus, specs)
    generate(specs, out, cache_dir=warm_cache.root)
    spec = specs / "fal-ai" / "image-editing" / "color-correction.yaml"
    spec.write_text(
        spec.read_text().replace(
            "description: The URL where the file can be downloaded from.",
            "description: Changed, the URL of the file.",
            1,
        )
    )
    _, changed = generate(specs, out, cache_dir=warm_cache.root)
    assert changed
    cold, changed = generate(specs, tmp_path / "cold", cache_dir=None, jobs=2)
    assert changed and "Changed, the URL of the file." in cold.files["fal_ai/image_editing/color_correction.py"]
    assert read_tree(out) == read_tree(tmp_path / "cold") == cold.files


def test_the_generator_fingerprint_covers_every_module_generation_uses() -> None:
    """The module cache is keyed by a fingerprint of `generating_files()`: a module they import that is missing from
    it could change the output while old cached modules are still served."""
    import ast

    from codegen.generation.cache import generating_files

    files = generating_files()
    covered = {
        p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__") for p in files
    }
    assert {"fal_runtime.queue_document", "fal_runtime._options", "codegen.problems"} <= covered
    for path in (p for p in files if p.suffix == ".py" and "fal_runtime" not in p.parts):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            used: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module in ("codegen", "codegen.generation"):
                used = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("codegen."):
                used = [node.module or ""]
            outside = [u for u in used if u not in covered]
            assert not outside, f"{path.relative_to(ROOT)} uses {outside}, outside the fingerprint"
