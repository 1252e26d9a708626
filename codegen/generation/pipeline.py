"""The generator's stages, end to end: load + validate → intermediate model → models + templates → black → write
(the last in `tree`).

Nothing is written unless every spec is good, and then the whole output tree replaces the old one in one swap.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, TypeVar

from codegen.generation import apirender, ir, loader, naming, operations, render
from codegen.generation.cache import ModuleCache, RunRecord, SpecRecord, endpoint_key, source_key, spec_key
from codegen.generation.listing import CATALOGUE_FILE, LISTING_FILE, Listing, read_listing, render_catalogue
from codegen.generation.models import Models, generate_api_models, generate_models, generate_models_batch
from codegen.generation.style import MODULE_FUNCTIONS
from codegen.generation.tree import TYPED_MARKER, TreeFiles, content_hash, tree_stats, update_tree, write_tree
from codegen.problems import InvalidSpecError, Level, Problem, display_path

# Names a generated endpoint module defines; a child endpoint's module may not take one (importing it would
# replace the parent's attribute).
_MODULE_NAMES = frozenset({"ENDPOINT_ID", "endpoint", *MODULE_FUNCTIONS})
_PACKAGE_NAMES = frozenset({"ENDPOINTS", "load", "platform"})  # `platform`: the Platform API's package
_MIN_PER_WORKER = 4  # below this, forking a worker costs more than it saves
_GROUPS_PER_FORK = 24  # a new worker's warm-up (~1 s) pays for itself from about this many endpoints to render
_BATCH = 8  # endpoint groups per datamodel-code-generator call (and per task of a worker)
_LOADS_PER_WORKER = 32  # a spec loads in ~15 ms: a handful is quicker here than in a worker
T = TypeVar("T")


@dataclass
class Result:
    count: int  # endpoints generated
    files: Mapping[str, str]  # relative posix path → content; empty when the run stamp proved nothing changed
    warnings: list[Problem] = field(default_factory=list)


def _reserved_kwargs() -> frozenset[str]:
    from fal_runtime._options import OPTION_NAMES

    return frozenset(OPTION_NAMES) | {"client", "arguments", "kwargs", "options"}


@dataclass(frozen=True)
class Loaded:
    """What loading the specs found: the endpoints (sorted by id), and each spec's warnings by its path relative to
    the specs root (`known` specs' included)."""

    endpoints: list[ir.EndpointIR]
    by_spec: dict[str, list[Problem]]
    apis: list[operations.ApiIR] = field(default_factory=list)  # the Platform API's spec (`specs/_platform/`)

    @property
    def warnings(self) -> list[Problem]:
        """Every warning, by file, as a cold run finds them."""
        return sorted((p for found in self.by_spec.values() for p in found), key=lambda p: p.file)


def load_endpoints(
    spec_files: Sequence[Path],
    specs_root: Path,
    cache: ModuleCache | None = None,
    jobs: int = 1,
    warm: Workers | None = None,
    known: Mapping[str, tuple[ir.EndpointIR, list[Problem]]] | None = None,
    keys: Sequence[str] | None = None,
) -> Loaded:
    """Stages 1-2 for every spec; raises InvalidSpecError listing every error found, in every file. Specs the cache
    does not hold are parsed and validated in `jobs` processes when there are many (parsing is ~15 ms a spec).
    `known` endpoints (by spec path, with their warnings) were validated by an earlier run and join only the
    cross-spec checks. `keys` are the specs' cache keys when the caller has read them already."""
    cache = cache or ModuleCache(None)
    rels = [path.relative_to(specs_root).as_posix() for path in spec_files]
    if keys is None:
        keys = [
            spec_key(rel, path.read_bytes()) if cache.root is not None else ""
            for rel, path in zip(rels, spec_files, strict=True)
        ]
    loaded: list[tuple[ir.EndpointIR | None, list[Problem]] | None] = []
    apis: list[operations.ApiIR] = []
    for key, path in zip(keys, spec_files, strict=True):
        hit = cache.get_endpoint(key) if key else None
        if hit is None:
            loaded.append(None)
        elif isinstance(hit[0], operations.ApiIR):  # fal's Platform API: no endpoint
            apis.append(hit[0])
            loaded.append((None, _warnings(hit[1], path)))
        else:
            loaded.append((hit[0], _warnings(hit[1], path)))
    missing = [i for i, item in enumerate(loaded) if item is None]
    calls = [(spec_files[i], rels[i]) for i in missing]
    fresh = _map(_load_spec, calls, jobs, warm, chunksize=8, per_worker=_LOADS_PER_WORKER, here_below=_LOADS_PER_WORKER)
    for i, (built, found) in zip(missing, fresh, strict=True):
        endpoint = built if isinstance(built, ir.EndpointIR) else None
        if isinstance(built, operations.ApiIR):
            apis.append(built)
        loaded[i] = (endpoint, found)
        if built is not None and keys[i] and not any(p.level is Level.ERROR for p in found):
            cache.put_endpoint(keys[i], built, [_warning_json(p) for p in found])
    by_spec = {rel: item for rel, item in zip(rels, loaded, strict=True) if item is not None}
    by_spec.update(known or {})
    problems = [p for _, found in by_spec.values() for p in found]
    endpoints = [endpoint for endpoint, _ in by_spec.values() if endpoint is not None]
    problems.extend(_collisions(endpoints, specs_root))
    errors = [p for p in problems if p.level is Level.ERROR]
    if errors:
        raise InvalidSpecError(errors)
    endpoints.sort(key=lambda e: e.endpoint_id)
    return Loaded(endpoints, {rel: found for rel, (_, found) in sorted(by_spec.items())}, apis)


def _load_spec(path: Path, rel: str) -> tuple[ir.EndpointIR | operations.ApiIR | None, list[Problem]]:
    found: list[Problem] = []
    spec = loader.load(path, found)
    if spec is not None and operations.is_api_spec(spec.doc):  # fal's Platform API
        return operations.build(spec, rel, found), found
    return (ir.build(spec, rel, found) if spec is not None else None), found


def _collisions(endpoints: list[ir.EndpointIR], specs_root: Path) -> list[Problem]:
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


def _render_groups(groups: Sequence[Sequence[ir.EndpointIR]], reserved: frozenset[str]) -> list[list[str] | str]:
    """The modules of each group of endpoints whose models are the same (`_models_key`): each group's models are
    generated once, and the groups' in one call of datamodel-code-generator. A group that cannot be generated gets
    the reason instead of its modules: one spec's failure is reported against that spec, never a traceback."""
    try:
        batch: list[Models] | None = generate_models_batch([g[0] for g in groups], reserved)
    except Exception:  # one of them fails alone too: find which below
        batch = None
    modules: list[list[str] | str] = []
    for i, group in enumerate(groups):
        try:
            models = batch[i] if batch is not None else generate_models(group[0], reserved)
            rendered = [render.render_endpoint(endpoint, models) for endpoint in group]
            modules.append([render.format_python(r.source, r.black_block) for r in rendered])
        except Exception as exc:
            modules.append(f"cannot generate its module: {type(exc).__name__}: {str(exc)[:300]}")
    return modules


def _models_key(endpoint: ir.EndpointIR) -> str:
    """What `generate_models` reads of an endpoint, as text in its own key order (which is the models' field
    order); one catalogue endpoint in nine shares its models with another (fal's variants of one app)."""
    fields = [endpoint.schemas, endpoint.file_inputs, endpoint.file_models, endpoint.streams]
    return json.dumps(fields, default=str)


def _render_modules(
    endpoints: Sequence[ir.EndpointIR],
    reserved: frozenset[str],
    cache: ModuleCache,
    jobs: int,
    warm: Workers | None,
    specs_root: Path | None = None,
) -> list[str]:
    """Every endpoint module, from the cache or freshly rendered (in `jobs` processes when there are many).
    Raises InvalidSpecError naming every spec whose module cannot be generated (after trying all of them)."""
    keys = [endpoint_key(e, reserved) for e in endpoints]
    out = [cache.get(k) for k in keys]
    groups: dict[str, list[int]] = {}
    for i, content in enumerate(out):
        if content is None:
            groups.setdefault(_models_key(endpoints[i]), []).append(i)
    todo = list(groups.values())
    size = max(1, min(_BATCH, len(todo) // (4 * jobs)))  # enough batches to keep every worker busy to the end
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    calls = [([[endpoints[i] for i in group] for group in batch], reserved) for batch in batches]
    per_worker = -(-_GROUPS_PER_FORK // size)  # batches
    rendered = [
        contents for batch in _map(_render_groups, calls, jobs, warm, per_worker=per_worker) for contents in batch
    ]
    failed: list[Problem] = []
    for group, contents in zip(todo, rendered, strict=True):
        if isinstance(contents, str):
            for i in group:
                spec = endpoints[i].spec_file
                failed.append(Problem(display_path(specs_root / spec) if specs_root else spec, "", contents))
            continue
        for i, content in zip(group, contents, strict=True):
            out[i] = content
            cache.put(keys[i], content)
    if failed:
        raise InvalidSpecError(sorted(failed, key=lambda p: p.file))
    return [c for c in out if c is not None]


def _map(
    function: Callable[..., T],
    calls: Sequence[tuple[Any, ...]],
    jobs: int,
    warm: Workers | None,
    chunksize: int = 1,
    per_worker: int = _MIN_PER_WORKER,
    here_below: int = 1,
) -> list[T]:
    """`function` over `calls`, in order: spread over `jobs` processes (the `warm` ones when there are as many) when
    each gets `per_worker` calls or more; else to `warm`'s one worker, unless fewer than `here_below` calls would
    finish here before it is ready."""
    wanted = min(jobs, len(calls) // per_worker)
    if wanted > 1 and (warm is None or warm.size < wanted):
        with workers(wanted) as own:
            return own.pool.starmap(function, calls, chunksize=chunksize)
    if warm is not None and calls and len(calls) >= here_below:
        return warm.pool.starmap(function, calls, chunksize=chunksize)
    return [function(*call) for call in calls]


def _warm() -> None:
    """Pay a worker's one-time costs (importing datamodel-code-generator and black, their first calls) while the
    parent is still loading specs."""
    from codegen.generation.models import warm_up

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
def workers(count: int, warm: bool = False) -> Iterator[Workers]:
    """`count` worker processes, started at once (and warming up, with `warm`); stopped on exit, even if never
    used. Without `warm` they take their first tasks at once (loading specs needs none of it) and warm up on the
    first module they render."""
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    pool = context.Pool(count, initializer=_warm if warm else None)
    try:
        yield Workers(pool, count)
    finally:
        pool.terminate()
        pool.join()


def render_tree(
    endpoints: Sequence[ir.EndpointIR],
    cache: ModuleCache | None = None,
    jobs: int = 1,
    warm: Workers | None = None,
    last: LastTree | None = None,
    specs_root: Path | None = None,
    listing: Listing | None = None,
    apis: Sequence[operations.ApiIR] = (),
) -> Mapping[str, str]:
    """Stage 3-4: every file of the output package, formatted, keyed by relative path. With `last`, the modules of
    its unchanged endpoints (and its namespace packages) are taken from the tree on disk instead of rendered.
    `specs_root` names the specs in the problems of modules that cannot be generated; `listing` is fal's newest
    listing (`specs/LISTING.json`), for the package index's unlisted marks and `CATALOGUE.md`."""
    listing = listing or Listing()
    endpoints = sorted(endpoints, key=lambda e: e.endpoint_id)
    reserved = _reserved_kwargs()
    packages = _packages(endpoints)
    paths = [module_path(e, packages) for e in endpoints]
    kept: set[str] = set()
    files: dict[str, str] = {}
    todo: list[int] = []
    for i, e in enumerate(endpoints):
        was = last.modules.get(e.endpoint_id) if last is not None else None
        if was == paths[i]:
            kept.add(was)
        elif was is not None and last is not None:  # `x.py` became `x/__init__.py` (or back): same text, moved
            files[paths[i]] = (last.root / was).read_text(encoding="utf-8")
        else:
            todo.append(i)
    rendered = _render_modules(
        [endpoints[i] for i in todo], reserved, cache or ModuleCache(None), jobs, warm, specs_root
    )
    files.update((paths[i], content) for i, content in zip(todo, rendered, strict=True))
    for path in namespace_paths(endpoints, packages):
        if last is not None and path in last.namespaces:
            kept.add(path)
        else:
            files[path] = _formatted(render.render_namespace(path.removesuffix("/__init__.py")), cache)
    files["__init__.py"] = _formatted(render.render_package(endpoints, listing.unlisted(endpoints)), cache)
    files[TYPED_MARKER] = ""  # PEP 561: an installed `generated` is typed for the user's type checker
    modules = {e.endpoint_id: path for e, path in zip(endpoints, paths, strict=True)}
    files[CATALOGUE_FILE] = render_catalogue(endpoints, listing, modules)
    for api in apis:
        files.update(_render_api(api, cache or ModuleCache(None), jobs, warm))
    if last is None:
        return dict(sorted(files.items()))
    return TreeFiles(last.root, files, kept)


def api_package(api: operations.ApiIR) -> str:
    """The package an API spec generates: `_platform/v1.yaml` → `platform`."""
    return naming.module_segment(api.spec_file.split("/")[0].lstrip("_"))


def _render_api(api: operations.ApiIR, cache: ModuleCache, jobs: int, warm: Workers | None) -> dict[str, str]:
    """An API spec's package: its `__init__.py` and a module per area, each from the cache or rendered."""
    package = api_package(api)
    files = {f"{package}/__init__.py": _formatted(apirender.render_api_package(api, package), cache)}
    keys = {m.name: source_key("api\0" + json.dumps([api.spec_file, api.base_url, dataclasses.asdict(m)], default=str))
            for m in api.modules}  # fmt: skip
    sources: dict[str, str] = {}
    for m in api.modules:
        if (cached := cache.get(keys[m.name])) is not None:
            sources[m.name] = cached
    todo = [m for m in api.modules if m.name not in sources]
    for module, content in zip(todo, _map(_render_api_module, [(api, m) for m in todo], jobs, warm), strict=True):
        cache.put(keys[module.name], content)
        sources[module.name] = content
    files.update((f"{package}/{m.name}.py", sources[m.name]) for m in api.modules)
    return files


def _render_api_module(api: operations.ApiIR, module: operations.ModuleIR) -> str:
    schemas, keyword_classes = apirender.module_schemas(module)
    models = generate_api_models(schemas, keyword_classes, apirender.RESERVED_KWARGS)
    source, blocks = apirender.render_api_module(api, module, models)
    return render.format_python(source, blocks)


def _packages(endpoints: Sequence[ir.EndpointIR]) -> set[tuple[str, ...]]:
    return {e.module_parts[:i] for e in endpoints for i in range(1, len(e.module_parts))}


def module_path(endpoint: ir.EndpointIR, packages: set[tuple[str, ...]]) -> str:
    """An endpoint module's file: `flux/dev.py`, or `flux/dev/__init__.py` when other endpoints live below it."""
    return "/".join(endpoint.module_parts) + ("/__init__.py" if endpoint.module_parts in packages else ".py")


def namespace_paths(endpoints: Sequence[ir.EndpointIR], packages: set[tuple[str, ...]]) -> list[str]:
    """The `__init__.py` of each package no endpoint owns (`fal_ai/`, `fal_ai/flux/` when no `fal-ai/flux`)."""
    owned = {e.module_parts for e in endpoints}
    return ["/".join(parts) + "/__init__.py" for parts in sorted(packages - owned)]


@dataclass(frozen=True)
class LastTree:
    """What a run may reuse of the tree the last run left (same generator, tree untouched since): the modules of
    endpoints whose spec is unchanged (endpoint id → relative path) and its namespace packages."""

    root: Path
    modules: dict[str, str]
    namespaces: frozenset[str]


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
    reading the specs: nothing else can change the output. When only some specs differ, the tree is known to be the
    last run's: only the changed specs are loaded and rendered (the others join the cross-spec checks as the last
    run recorded them), and only the files that change are rewritten (each atomically) instead of swapping the tree.
    """
    cache = ModuleCache(cache_dir)
    last = cache.last_run(out) if cache.root is not None else None
    # One worker warms up while the specs are read and the few changed ones loaded, or `jobs` workers load and render
    # when no earlier run into `out` is on record (every spec will be loaded, nearly every module rendered).
    with workers(1, warm=True) if last is not None else workers(max(1, jobs)) as warm:
        spec_files = loader.find_spec_files(specs_root)
        rels = [p.relative_to(specs_root).as_posix() for p in spec_files]
        keys = [spec_key(rel, p.read_bytes()) for rel, p in zip(rels, spec_files, strict=True)] if cache.root else []
        listing, listing_bytes = load_listing(specs_root)
        reserved = sorted(_reserved_kwargs())  # decides every module, as the generator and the spec do
        listed = source_key(listing_bytes.decode("utf-8", "replace"))
        stamp = source_key("\n".join([*keys, *reserved, listed])) if cache.root is not None else None
        before = tree_stats(out) if last is not None else None
        same_tree = last is not None and before == last.tree
        if last is not None and same_tree and last.stamp == stamp:
            recorded = last.specs
            warnings = [w for rel in sorted(recorded) for w in _warnings(recorded[rel].warnings, specs_root / rel)]
            return Result(last.count, {}, sorted(warnings, key=lambda p: p.file)), False
        unchanged = _unchanged_specs(last if same_tree else None, reserved, dict(zip(rels, keys, strict=False)))
        known = {
            rel: (ir.endpoint_from_json(r.endpoint), _warnings(r.warnings, specs_root / rel))
            for rel, r in unchanged.items()
        }
        to_load = [i for i, rel in enumerate(rels) if rel not in unchanged]
        loaded = load_endpoints(
            [spec_files[i] for i in to_load], specs_root, cache, jobs, warm, known,
            [keys[i] for i in to_load] if keys else None,
        )  # fmt: skip
        endpoints = loaded.endpoints
        reuse = None
        if last is not None and unchanged:
            modules = {e.endpoint_id: unchanged[rel].module for rel, (e, _) in known.items()}
            reuse = LastTree(out, modules, frozenset(last.namespaces))
        files = render_tree(endpoints, cache, jobs, warm, reuse, specs_root, listing, loaded.apis)
    kept = files.kept if isinstance(files, TreeFiles) else set()
    hashes = {rel: last.hashes[rel] if rel in kept and last else content_hash(files[rel]) for rel in files}
    if last is not None and same_tree:
        changed = update_tree(out, files, hashes, last.hashes)
    else:
        changed = write_tree(out, files)
    if stamp is not None:
        key_of = dict(zip(rels, keys, strict=True))
        cache.record_run(out, _run_record(stamp, out, hashes, loaded, key_of, reserved))
    return Result(len(endpoints), files, loaded.warnings), changed


def load_listing(specs_root: Path) -> tuple[Listing, bytes]:
    """fal's newest listing beside the specs; a broken one is a problem naming it, like a broken spec."""
    try:
        return read_listing(specs_root)
    except (ValueError, UnicodeDecodeError) as exc:
        path = display_path(specs_root / LISTING_FILE)
        raise InvalidSpecError([Problem(path, "", f"not fal's listing as `codegen import` writes it: {exc}")]) from None


def _unchanged_specs(last: RunRecord | None, reserved: list[str], keys: dict[str, str]) -> dict[str, SpecRecord]:
    """What the last run recorded of each spec whose key (path, bytes, generator) is the same now, in path order;
    nothing when there is no last run whose tree is still in place, or the reserved names changed since."""
    if last is None or last.reserved != reserved:
        return {}
    return {rel: last.specs[rel] for rel in sorted(keys) if rel in last.specs and last.specs[rel].key == keys[rel]}


def _run_record(
    stamp: str, out: Path, hashes: dict[str, str], loaded: Loaded, keys: dict[str, str], reserved: list[str]
) -> RunRecord:
    """What the next run reads of this one: the stamp and tree that make it a no-op, and for each spec its key,
    module, warnings and endpoint stub, which let it load and render only the specs that change."""
    packages = _packages(loaded.endpoints)
    specs = {
        e.spec_file: SpecRecord(keys[e.spec_file], module_path(e, packages), _stub_json(e),
                                [_warning_json(w) for w in loaded.by_spec.get(e.spec_file, [])])
        for e in loaded.endpoints
    }  # fmt: skip
    return RunRecord(stamp, tree_stats(out), hashes, len(loaded.endpoints), specs,
                     namespace_paths(loaded.endpoints, packages), reserved)  # fmt: skip


def _warnings(recorded: list[dict[str, str]], spec: Path) -> list[Problem]:
    """A spec's recorded warnings, naming it where it is now: the cache and the run record are keyed by the path
    relative to the specs root, which may have moved (or be another checkout's)."""
    if not recorded:
        return []
    where = display_path(spec)
    return [Problem(where, w["pointer"], w["message"], Level.WARNING) for w in recorded]


def _warning_json(problem: Problem) -> dict[str, str]:
    """A loader warning as recorded: every one concerns the spec it was found in, so its file is not kept."""
    return {"pointer": problem.pointer, "message": problem.message}


def _stub_json(endpoint: ir.EndpointIR) -> dict[str, Any]:
    """What a later run needs of an unchanged endpoint (cross-spec checks, the package index): all but its
    schemas and description."""
    return {**ir.endpoint_fields(endpoint), "schemas": {}, "file_inputs": {}, "description": ""}
