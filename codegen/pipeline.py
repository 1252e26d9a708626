"""The generator's stages, end to end: load + validate → intermediate model → models + templates → black → write.

Nothing is written unless every spec is good, and then the whole output tree replaces the old one in one swap.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path

from codegen import ir, loader, render
from codegen.cache import ModuleCache, endpoint_key, source_key, spec_key
from codegen.models import generate_models
from codegen.problems import InvalidSpecError, Level, Problem

# Names a generated endpoint module defines; a child endpoint's module may not take one (importing it would
# replace the parent's attribute).
_MODULE_NAMES = frozenset(
    {"ENDPOINT_ID", "endpoint", "submit", "subscribe", "run", "stream", "submit_async", "subscribe_async",
     "run_async", "stream_async"}
)  # fmt: skip
_PACKAGE_NAMES = frozenset({"ENDPOINTS", "load"})
_MIN_PER_WORKER = 4  # below this, forking a worker costs more than it saves
TYPED_MARKER = "py.typed"


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


def is_generated(name: str) -> bool:
    """Whether a file name is one the generator writes (anything else in the tree, like `__pycache__`, is not)."""
    return name.endswith(".py") or name == TYPED_MARKER


def read_tree(root: Path) -> dict[str, str] | None:
    if not root.is_dir():
        return None
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if is_generated(p.name) and "__pycache__" not in p.parts and p.is_file()
    }


def write_tree(root: Path, files: dict[str, str]) -> bool:
    """Replace `root` with exactly `files`; returns False (touching nothing) when it already holds them.

    The new tree is written beside the old one and swapped in with renames, so a failure while writing leaves
    the old tree as it was. Files that did not change are hard-linked from the old tree rather than rewritten.
    """
    current = {rel: content_hash(text) for rel, text in (read_tree(root) or {}).items()}
    wanted = {rel: content_hash(text) for rel, text in files.items()}
    if current == wanted:
        return False
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    old = root.with_name(f".{root.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, content in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if current.get(rel) == wanted[rel] and _linked(root / rel, target):
                continue
            target.write_text(content, encoding="utf-8")
        if root.exists():
            root.rename(old)
        tmp.rename(root)
    except BaseException:
        if old.exists() and not root.exists():
            old.rename(root)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return True


def _linked(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: write instead
        return False
    return True


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


def update_tree(root: Path, files: dict[str, str], hashes: dict[str, str], current: dict[str, str]) -> bool:
    """Bring a tree whose content hashes are `current` to `files`: write the files that differ (each to a temporary
    beside it, then renamed), delete the ones that went away. Every spec was validated before this, so nothing here
    depends on input; an interruption leaves whole files, and the next run's stamp check repairs the rest."""
    stale = [rel for rel in files if current.get(rel) != hashes[rel]]
    gone = [rel for rel in current if rel not in files]
    for rel in stale:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(files[rel], encoding="utf-8")
        tmp.replace(target)
    for rel in gone:
        (root / rel).unlink(missing_ok=True)
        for parent in (root / rel).parents:
            if parent == root or any(parent.iterdir()):
                break
            parent.rmdir()
    return bool(stale or gone)


def run_stamp(specs_root: Path, spec_files: Sequence[Path]) -> str:
    """What decides the output: the generator and every spec's path and bytes."""
    keys = [spec_key(p.relative_to(specs_root).as_posix(), p.read_bytes()) for p in spec_files]
    return source_key("\n".join(keys))


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tree_stats(root: Path) -> dict[str, list[int]]:
    """Each generated file's size and modification time: any edit, addition or removal changes this."""
    stats: dict[str, list[int]] = {}
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            if is_generated(name):
                path = os.path.join(directory, name)
                info = os.stat(path)
                stats[os.path.relpath(path, root).replace(os.sep, "/")] = [info.st_size, info.st_mtime_ns]
    return dict(sorted(stats.items()))
