"""The generator's stages, end to end: load + validate → intermediate model → models + templates → black → write.

Nothing is written unless every spec is good, and then the whole output tree replaces the old one in one swap.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from codegen import ir, loader, render
from codegen.cache import ModuleCache, endpoint_key, source_key, spec_key
from codegen.models import generate_models
from codegen.problems import Level, Problem, SpecError

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
    endpoints: list[ir.Endpoint]
    files: dict[str, str]  # relative posix path → content
    warnings: list[Problem] = field(default_factory=list)


def _reserved_kwargs() -> frozenset[str]:
    from fal_runtime._options import OPTION_NAMES

    return frozenset(OPTION_NAMES) | {"client", "arguments", "kwargs", "options"}


def load_endpoints(
    spec_files: Sequence[Path], specs_root: Path, cache: ModuleCache | None = None
) -> tuple[list[ir.Endpoint], list[Problem]]:
    """Stages 1-2 for every spec; raises SpecError listing every error found, in every file."""
    cache = cache or ModuleCache(None)
    problems: list[Problem] = []
    endpoints: list[ir.Endpoint] = []
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
                cache.put_endpoint(key, endpoint, [{"file": p.file, "pointer": p.pointer, "message": p.message} for p in found])
    problems.extend(_collisions(endpoints, specs_root))
    errors = [p for p in problems if p.level is Level.ERROR]
    if errors:
        raise SpecError(errors)
    endpoints.sort(key=lambda e: e.endpoint_id)
    return endpoints, [p for p in problems if p.level is Level.WARNING]


def _collisions(endpoints: list[ir.Endpoint], specs_root: Path) -> list[Problem]:
    from codegen.problems import display_path

    problems: list[Problem] = []
    id_ptr = "/info/x-fal-metadata/endpointId"
    by_id: dict[str, ir.Endpoint] = {}
    by_module: dict[tuple[str, ...], ir.Endpoint] = {}
    for e in sorted(endpoints, key=lambda e: e.spec_file):
        where = display_path(specs_root / e.spec_file)
        if e.endpoint_id in by_id:
            problems.append(Problem(where, id_ptr, f"duplicate endpoint id {e.endpoint_id!r}, also in {by_id[e.endpoint_id].spec_file}"))
            continue
        by_id[e.endpoint_id] = e
        if e.module_parts in by_module:
            other = by_module[e.module_parts]
            problems.append(Problem(where, id_ptr, f"endpoint id {e.endpoint_id!r} maps to module {e.module!r}, as {other.endpoint_id!r} does"))
            continue
        by_module[e.module_parts] = e
        if e.module_parts[0] in _PACKAGE_NAMES:
            problems.append(Problem(where, id_ptr, f"owner {e.module_parts[0]!r} would shadow generated.{e.module_parts[0]}"))
    for parts, e in by_module.items():
        parent = by_module.get(parts[:-1])
        if parent is not None and parts[-1] in _MODULE_NAMES:
            problems.append(Problem(display_path(specs_root / e.spec_file), id_ptr,
                                    f"module {parts[-1]!r} would shadow a name of endpoint module {parent.module!r}"))  # fmt: skip
    return problems


def _render_endpoint(endpoint: ir.Endpoint, reserved: frozenset[str]) -> str:
    return render.format_python(render.render_endpoint(endpoint, generate_models(endpoint, reserved)))


def _render_modules(endpoints: Sequence[ir.Endpoint], reserved: frozenset[str], cache: ModuleCache, jobs: int) -> list[str]:
    """Every endpoint module, from the cache or freshly rendered; cache misses spread over `jobs` processes."""
    keys = [endpoint_key(e, reserved) for e in endpoints]
    out = [cache.get(k) for k in keys]
    missing = [i for i, content in enumerate(out) if content is None]
    if len(missing) >= 2 * _MIN_PER_WORKER and jobs > 1:
        import black  # noqa: F401 - imported before forking so workers inherit it warm
        import datamodel_code_generator  # noqa: F401

        workers = min(jobs, len(missing) // _MIN_PER_WORKER)
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            rendered = list(pool.map(_render_endpoint, [endpoints[i] for i in missing], [reserved] * len(missing), chunksize=1))
    else:
        rendered = [_render_endpoint(endpoints[i], reserved) for i in missing]
    for i, content in zip(missing, rendered):
        out[i] = content
        cache.put(keys[i], content)
    return [c for c in out if c is not None]


def render_tree(endpoints: Sequence[ir.Endpoint], cache: ModuleCache | None = None, jobs: int = 1) -> dict[str, str]:
    """Stage 3-4: every file of the output package, formatted, keyed by relative path."""
    endpoints = sorted(endpoints, key=lambda e: e.endpoint_id)
    reserved = _reserved_kwargs()
    packages = {e.module_parts[:i] for e in endpoints for i in range(1, len(e.module_parts))}
    files: dict[str, str] = {}
    modules: list[tuple[str, str]] = []
    for e, content in zip(endpoints, _render_modules(endpoints, reserved, cache or ModuleCache(None), jobs)):
        path = "/".join(e.module_parts) + ("/__init__.py" if e.module_parts in packages else ".py")
        files[path] = content
        modules.append((e.endpoint_id, "." + e.module))
    endpoint_parts = {e.module_parts for e in endpoints}
    for parts in sorted(packages - endpoint_parts):
        files["/".join(parts) + "/__init__.py"] = _formatted(render.render_namespace("/".join(parts)), cache)
    files["__init__.py"] = _formatted(render.render_package(modules), cache)
    return dict(sorted(files.items()))


def _formatted(source: str, cache: ModuleCache | None) -> str:
    cache = cache or ModuleCache(None)
    key = source_key(source)
    content = cache.get(key)
    if content is None:
        content = render.format_python(source)
        cache.put(key, content)
    return content


def read_tree(root: Path) -> dict[str, str] | None:
    if not root.is_dir():
        return None
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def write_tree(root: Path, files: dict[str, str]) -> bool:
    """Replace `root` with exactly `files`; returns False (touching nothing) when it already holds them.

    The new tree is written beside the old one and swapped in with renames, so a failure while writing leaves
    the old tree as it was.
    """
    if read_tree(root) == files:
        return False
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    old = root.with_name(f".{root.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, content in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
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


def generate(specs_root: Path, out: Path, *, cache_dir: Path | None = None, jobs: int = 1) -> tuple[Result, bool]:
    cache = ModuleCache(cache_dir)
    endpoints, warnings = load_endpoints(loader.find_spec_files(specs_root), specs_root, cache)
    files = render_tree(endpoints, cache, jobs)
    changed = write_tree(out, files)
    return Result(endpoints, files, warnings), changed
