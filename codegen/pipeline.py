"""The generator's stages, end to end: load + validate → intermediate model → models + templates → black → write
(the last in `tree`).

Nothing is written unless every spec is good, and then the whole output tree replaces the old one in one swap.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path

from codegen import ir, loader, render
from codegen.cache import ModuleCache, endpoint_key, source_key, spec_key
from codegen.models import generate_models
from codegen.problems import InvalidSpecError, Level, Problem
from codegen.tree import TYPED_MARKER, content_hash, tree_stats, update_tree, write_tree

# Names a generated endpoint module defines; a child endpoint's module may not take one (importing it would
# replace the parent's attribute).
_MODULE_NAMES = frozenset(
    {"ENDPOINT_ID", "endpoint", "submit", "subscribe", "run", "stream", "submit_async", "subscribe_async",
     "run_async", "stream_async"}
)  # fmt: skip
_PACKAGE_NAMES = frozenset({"ENDPOINTS", "load"})
_MIN_PER_WORKER = 4  # below this, forking a worker costs more than it saves


@dataclass
class Result:
    count: int  # endpoints generated
    files: dict[str, str]  # relative posix path → content; empty when the run stamp proved nothing changed
    warnings: list[Problem] = field(default_factory=list)


def _reserved_kwargs() -> frozenset[str]:
    from fal_runtime._options import OPTION_NAMES

    return frozenset(OPTION_NAMES) | {"client", "arguments", "kwargs", "options"}


def load_endpoints(
    spec_files: Sequence[Path], specs_root: Path, cache: ModuleCache | None = None
) -> tuple[list[ir.EndpointIR], list[Problem]]:
    """Stages 1-2 for every spec; raises InvalidSpecError listing every error found, in every file."""
    cache = cache or ModuleCache(None)
    problems: list[Problem] = []
    endpoints: list[ir.EndpointIR] = []
    for path in spec_files:
        rel = path.relative_to(specs_root).as_posix()
        key = spec_key(rel, path.read_bytes()) if cache.root is not None else ""
        hit = cache.get_endpoint(key) if key else None
        if hit is not None:
            endpoints.append(hit[0])
            problems.extend(Problem(w["file"], w["pointer"], w["message"], Level.WARNING) for w in hit[1])
            continue
        found: list[Problem] = []
        spec = loader.load(path, found)
        endpoint = ir.build(spec, rel, found) if spec is not None else None
        problems.extend(found)
        if endpoint is not None:
            endpoints.append(endpoint)
            if key and not any(p.level is Level.ERROR for p in found):
                cache.put_endpoint(
                    key, endpoint, [{"file": p.file, "pointer": p.pointer, "message": p.message} for p in found]
                )
    problems.extend(_collisions(endpoints, specs_root))
    errors = [p for p in problems if p.level is Level.ERROR]
    if errors:
        raise InvalidSpecError(errors)
    endpoints.sort(key=lambda e: e.endpoint_id)
    return endpoints, [p for p in problems if p.level is Level.WARNING]


def _collisions(endpoints: list[ir.EndpointIR], specs_root: Path) -> list[Problem]:
    from codegen.problems import display_path

    problems: list[Problem] = []
    id_ptr = "/info/x-fal-metadata/endpointId"
    by_id: dict[str, ir.EndpointIR] = {}
    by_module: dict[tuple[str, ...], ir.EndpointIR] = {}

    def where(e: ir.EndpointIR) -> str:  # only for a problem: resolving 1,000 paths costs a no-op run 0.3 s
        return display_path(specs_root / e.spec_file)

    for e in sorted(endpoints, key=lambda e: e.spec_file):
        if e.endpoint_id in by_id:
            problems.append(
                Problem(
                    where(e),
                    id_ptr,
                    f"duplicate endpoint id {e.endpoint_id!r}, also in {by_id[e.endpoint_id].spec_file}",
                )
            )
            continue
        by_id[e.endpoint_id] = e
        if e.module_parts in by_module:
            other = by_module[e.module_parts]
            problems.append(
                Problem(
                    where(e),
                    id_ptr,
                    f"endpoint id {e.endpoint_id!r} maps to module {e.module!r}, as {other.endpoint_id!r} does",
                )
            )
            continue
        by_module[e.module_parts] = e
        if e.module_parts[0] in _PACKAGE_NAMES:
            problems.append(
                Problem(where(e), id_ptr, f"owner {e.module_parts[0]!r} would shadow generated.{e.module_parts[0]}")
            )
    for parts, e in by_module.items():
        parent = by_module.get(parts[:-1])
        if parent is not None and parts[-1] in _MODULE_NAMES:
            problems.append(Problem(where(e), id_ptr,
                                    f"module {parts[-1]!r} would shadow a name of endpoint module {parent.module!r}"))  # fmt: skip
    return problems


def _render_endpoint(endpoint: ir.EndpointIR, reserved: frozenset[str]) -> str:
    rendered = render.render_endpoint(endpoint, generate_models(endpoint, reserved))
    return render.format_python(rendered.source, rendered.black_block)


def _render_modules(
    endpoints: Sequence[ir.EndpointIR], reserved: frozenset[str], cache: ModuleCache, jobs: int, warm: Workers | None
) -> list[str]:
    """Every endpoint module, from the cache or freshly rendered. Many cache misses spread over `jobs` processes
    (the `warm` ones when there are as many); a few go to `warm` when given, else are rendered here."""
    keys = [endpoint_key(e, reserved) for e in endpoints]
    out = [cache.get(k) for k in keys]
    missing = [i for i, content in enumerate(out) if content is None]
    todo = [(endpoints[i], reserved) for i in missing]
    wanted = min(jobs, len(missing) // _MIN_PER_WORKER)
    if wanted > 1 and (warm is None or warm.size < wanted):
        with workers(wanted) as own:
            rendered = own.pool.starmap(_render_endpoint, todo, chunksize=1)
    elif warm is not None and todo:
        rendered = warm.pool.starmap(_render_endpoint, todo, chunksize=1)
    else:
        rendered = [_render_endpoint(*job) for job in todo]
    for i, content in zip(missing, rendered, strict=False):
        out[i] = content
        cache.put(keys[i], content)
    return [c for c in out if c is not None]


def _warm() -> None:
    """Pay a worker's one-time costs (importing datamodel-code-generator and black, their first calls) while the
    parent is still loading specs."""
    from codegen.models import warm_up

    try:
        warm_up()
        render.black_format("x = 1\n")
    except Exception:
        pass  # the same error surfaces, with its traceback, when the worker renders its first module


@dataclass(frozen=True)
class Workers:
    pool: Pool
    size: int


@contextmanager
def workers(count: int) -> Iterator[Workers]:
    """`count` worker processes, started and warming up at once; stopped on exit, even if never used."""
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    pool = context.Pool(count, initializer=_warm)
    try:
        yield Workers(pool, count)
    finally:
        pool.terminate()
        pool.join()


def render_tree(
    endpoints: Sequence[ir.EndpointIR], cache: ModuleCache | None = None, jobs: int = 1, warm: Workers | None = None
) -> dict[str, str]:
    """Stage 3-4: every file of the output package, formatted, keyed by relative path."""
    endpoints = sorted(endpoints, key=lambda e: e.endpoint_id)
    reserved = _reserved_kwargs()
    packages = {e.module_parts[:i] for e in endpoints for i in range(1, len(e.module_parts))}
    files: dict[str, str] = {}
    for e, content in zip(
        endpoints, _render_modules(endpoints, reserved, cache or ModuleCache(None), jobs, warm), strict=False
    ):
        path = "/".join(e.module_parts) + ("/__init__.py" if e.module_parts in packages else ".py")
        files[path] = content
    endpoint_parts = {e.module_parts for e in endpoints}
    for parts in sorted(packages - endpoint_parts):
        files["/".join(parts) + "/__init__.py"] = _formatted(render.render_namespace("/".join(parts)), cache)
    files["__init__.py"] = _formatted(render.render_package(endpoints), cache)
    files[TYPED_MARKER] = ""  # PEP 561: an installed `generated` is typed for the user's type checker
    return dict(sorted(files.items()))


def _formatted(source: str, cache: ModuleCache | None) -> str:
    cache = cache or ModuleCache(None)
    key = source_key(source)
    content = cache.get(key)
    if content is None:
        content = render.format_python(source)
        cache.put(key, content)
    return content


def generate(specs_root: Path, out: Path, *, cache_dir: Path | None = None, jobs: int = 1) -> tuple[Result, bool]:
    """Generate `out` from the specs under `specs_root`; returns the result and whether `out` changed.

    With a cache, a run whose spec bytes, generator and output tree all match the last run's stamp stops after
    reading the specs: nothing else can change the output. When only the specs differ, the tree is known to be the
    last run's, so only the files that change are rewritten (each atomically) instead of swapping the whole tree.
    """
    cache = ModuleCache(cache_dir)
    last = cache.last_run(out) if cache.root is not None else None
    # Workers warm up while the specs are read and loaded: one for the usual few changed specs, or `jobs` when no
    # earlier run into `out` is on record (nearly every module will be a cache miss).
    with workers(1 if last is not None else max(1, jobs)) as warm:
        spec_files = loader.find_spec_files(specs_root)
        stamp = run_stamp(specs_root, spec_files) if cache.root is not None else None
        before = tree_stats(out) if last is not None else None
        if last is not None and before == last["tree"] and last["stamp"] == stamp:
            warnings = [Problem(w["file"], w["pointer"], w["message"], Level.WARNING) for w in last["warnings"]]
            return Result(last["count"], {}, warnings), False
        endpoints, warnings = load_endpoints(spec_files, specs_root, cache)
        files = render_tree(endpoints, cache, jobs, warm)
    hashes = {rel: content_hash(text) for rel, text in files.items()}
    if last is not None and before == last["tree"]:
        changed = update_tree(out, files, hashes, last["hashes"])
    else:
        changed = write_tree(out, files)
    if stamp is not None:
        cache.record_run(out, {
            "stamp": stamp, "tree": tree_stats(out), "hashes": hashes, "count": len(endpoints),
            "warnings": [{"file": w.file, "pointer": w.pointer, "message": w.message} for w in warnings],
        })  # fmt: skip
    return Result(len(endpoints), files, warnings), changed


def run_stamp(specs_root: Path, spec_files: Sequence[Path]) -> str:
    """What decides the output: the generator and every spec's path and bytes."""
    keys = [spec_key(p.relative_to(specs_root).as_posix(), p.read_bytes()) for p in spec_files]
    return source_key("\n".join(keys))
