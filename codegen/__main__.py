"""`python -m codegen gen`: generate the `generated` package from `specs/`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from codegen.problems import InvalidSpecError, display_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codegen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("gen", help="generate the typed package from the specs")
    gen.add_argument("--specs", type=Path, default=Path("specs"), help="spec directory (default: specs)")
    gen.add_argument(
        "--out", type=Path, default=Path("generated"), help="output package directory (default: generated)"
    )
    gen.add_argument(
        "--cache", type=Path, default=Path(".cache/codegen"), help="module cache (default: .cache/codegen)"
    )
    gen.add_argument("--no-cache", action="store_true", help="regenerate every module from scratch")
    gen.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes for cold modules")
    gen.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    imp = sub.add_parser("import", help="import fal OpenAPI documents into specs/")
    imp.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="endpoint id, URL, OpenAPI JSON file or model listing file"
    )
    imp.add_argument("--specs", type=Path, default=Path("specs"), help="spec directory (default: specs)")
    dif = sub.add_parser("diff", help="Markdown summary of spec changes since a git ref, for a pull request")
    dif.add_argument("base", nargs="?", help="git ref to compare with (default: the merge base with main)")
    dif.add_argument("--specs", type=Path, default=Path("specs"), help="spec directory (default: specs)")
    dif.add_argument("--fail-on-breaking", action="store_true", help="exit 1 when a change breaks callers")
    syn = sub.add_parser("sync", help="update specs/ from fal's live model search and print a Markdown report")
    syn.add_argument("--specs", type=Path, default=Path("specs"), help="spec directory (default: specs)")
    syn.add_argument("--endpoint", action="append", metavar="ID", help="only this endpoint id (repeatable)")
    syn.add_argument("--category", help="only this fal category (text-to-image, ...)")
    syn.add_argument("--dry-run", action="store_true", help="write nothing; report what a sync would do")
    syn.add_argument("--prune", action="store_true", help="delete specs fal no longer lists (never curated ones)")
    syn.add_argument(
        "--force-prune", action="store_true", help="prune even when the listing is empty or sharply smaller"
    )
    syn.add_argument("--cache", type=Path, default=Path(".cache/codegen"), help="the generator's module cache")
    syn.add_argument("--report", type=Path, help="also write the report to this file")
    chk = sub.add_parser("check", help="specs valid, generated/ current, no spec without a module or the other way")
    chk.add_argument("--specs", type=Path, default=Path("specs"))
    chk.add_argument("--out", type=Path, default=Path("generated"))
    chk.add_argument("--cache", type=Path, default=Path(".cache/codegen"))
    args = parser.parse_args(argv)

    if args.command == "check":
        return _check(args.specs, args.out, args.cache)

    if args.command == "diff":
        return _diff(args.base, args.specs, args.fail_on_breaking)

    if args.command == "import":
        return _import(args.sources, args.specs)

    if args.command == "sync":
        return _sync(args)

    from codegen.generation.pipeline import generate

    start = time.perf_counter()
    try:
        cache = None if args.no_cache else args.cache
        result, changed = generate(args.specs, args.out, cache_dir=cache, jobs=max(1, args.jobs))
    except InvalidSpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = len(exc.problems)
        print(f"{n} error{'s' if n != 1 else ''}; {display_path(args.out)}/ left unchanged", file=sys.stderr)
        return 1
    if not args.quiet:
        for problem in result.warnings:
            print(problem, file=sys.stderr)
        state = "updated" if changed else "already up to date"
        took = time.perf_counter() - start
        print(f"{result.count} endpoints → {display_path(args.out)}/ {state} ({took:.2f} s)")
    return 0


def _check(specs: Path, out: Path, cache: Path) -> int:
    from codegen.generation import loader
    from codegen.generation.cache import ModuleCache
    from codegen.generation.pipeline import load_endpoints, load_listing, render_tree, workers
    from codegen.generation.render import black_format
    from codegen.generation.tree import read_tree

    jobs = os.cpu_count() or 1
    actual = read_tree(out) or {}
    with workers(jobs) as pool:
        try:
            loaded = load_endpoints(loader.find_spec_files(specs), specs, None, jobs, pool)
            endpoints = loaded.endpoints
            listing, _ = load_listing(specs)
            expected = render_tree(
                endpoints, ModuleCache(cache), jobs, pool, specs_root=specs, listing=listing, apis=loaded.apis
            )
        except InvalidSpecError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
        # black costs ~0.1 s a catalogue module: the same workers check every file, all cores busy.
        paths = sorted(p for p in actual if p.endswith(".py"))
        formatted = pool.pool.map(black_format, [actual[p] for p in paths], chunksize=32)
    faults = [f"{out}/{p}: no spec generates it (an orphan module)" for p in sorted(set(actual) - set(expected))]
    faults += [f"{out}/{p}: missing (a spec without its module)" for p in sorted(set(expected) - set(actual))]
    faults += [
        f"{out}/{p}: differs from a fresh generation"
        for p in sorted(set(expected) & set(actual))
        if expected[p] != actual[p]
    ]
    faults += [
        f"{out}/{p}: not as black would write it (a generator bug)"
        for p, text in zip(paths, formatted, strict=True)
        if text != actual[p]
    ]
    for fault in faults:
        print(fault, file=sys.stderr)
    if faults:
        print("generated/ is not current: run `make gen`", file=sys.stderr)
        return 1
    print(f"{len(endpoints)} specs valid; {display_path(out)}/ is current")
    return 0


def _diff(base: str | None, specs: Path, fail_on_breaking: bool) -> int:
    import tempfile

    from codegen.spectools import diff

    ref = base or diff.merge_base(specs)
    skipped: list[str] = []
    try:
        current = diff.endpoints_in_tree(specs)
    except InvalidSpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} error(s) in the specs; no diff", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        changes = diff.compare(diff.endpoints_at_ref(ref, specs, Path(tmp), skipped), current)
    for line in skipped:
        print(f"skipped at {ref}: {line}", file=sys.stderr)
    print(diff.render(changes, ref))
    return 1 if fail_on_breaking and any(c.breaking for c in changes) else 0


def _import(sources: list[str], specs: Path) -> int:
    from codegen.spectools.importer import import_sources

    try:
        outcomes = import_sources(sources, specs)
    except InvalidSpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} error(s); nothing written", file=sys.stderr)
        return 1
    for outcome in outcomes:
        for repair in outcome.item.repairs:
            print(f"repaired: {repair.file}#{repair.pointer}: {repair.message}", file=sys.stderr)
        where = display_path(outcome.target)
        if outcome.state == "curated":
            print(
                f"{outcome.item.endpoint_id} → {where} (curated: kept; fal's data differs in {len(outcome.changes)} place(s))"
            )
            for change in outcome.changes:
                mark = "breaking" if change.breaking else "compatible"
                print(f"    {change.side} {change.field}: {change.what} ({mark})")
        elif outcome.state == "skipped":
            print(f"{outcome.item.endpoint_id}: skipped: {outcome.reason}")
        else:
            print(f"{outcome.item.endpoint_id} → {where} ({outcome.state})")
            for change in outcome.changes:
                mark = "breaking" if change.breaking else "compatible"
                print(f"    {change.side} {change.field}: {change.what} ({mark})")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from codegen.spectools.sync import sync
    from fal_runtime import FalError

    try:
        report = sync(
            args.specs,
            endpoint_ids=args.endpoint,
            category=args.category,
            dry_run=args.dry_run,
            prune=args.prune or args.force_prune,
            force_prune=args.force_prune,
            cache_dir=args.cache,
        )
    except (FalError, ValueError, TypeError) as exc:  # the walk failed (or bad arguments): nothing was written
        print(f"sync failed, nothing written: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    text = report.render()
    if args.report is not None:
        args.report.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
