"""`python -m codegen gen`: generate the `generated` package from `specs/`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from codegen.problems import SpecError, display_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codegen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("gen", help="generate the typed package from the specs")
    gen.add_argument("--specs", type=Path, default=Path("specs"), help="spec directory (default: specs)")
    gen.add_argument("--out", type=Path, default=Path("generated"), help="output package directory (default: generated)")
    gen.add_argument("--cache", type=Path, default=Path(".cache/codegen"), help="module cache (default: .cache/codegen)")
    gen.add_argument("--no-cache", action="store_true", help="regenerate every module from scratch")
    gen.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes for cold modules")
    gen.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    args = parser.parse_args(argv)

    from codegen.pipeline import generate

    start = time.perf_counter()
    try:
        cache = None if args.no_cache else args.cache
        result, changed = generate(args.specs, args.out, cache_dir=cache, jobs=max(1, args.jobs))
    except SpecError as exc:
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
        print(f"{len(result.endpoints)} endpoints → {display_path(args.out)}/ {state} ({took:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
