"""`python -m fal_runtime.local --port N [--ca-file PATH] [--specs DIR]`: serve until interrupted.

Prints exactly one line, `listening on https://127.0.0.1:N`, once the server accepts connections, so a parent
process can wait for it. What keeps it from starting is one line on stderr and exit status 2, never a traceback:
the `local` extra not installed (`pip install 'fal-typed[local]'`), or no specs to serve (an installed wheel has no
`specs/` beside it: pass `--specs DIR`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from .server import LocalServer, MissingExtraError, default_specs_dir, require_extra

PROG = "python -m fal_runtime.local"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--ca-file", type=Path, help="where to write the CA certificate clients should trust")
    parser.add_argument("--specs", type=Path, default=None,
                        help="directory of endpoint specs (default: specs/ of the checkout this runs from)")  # fmt: skip
    parser.add_argument("--result-ttl", type=float, default=None,
                        help="seconds a completed request's result stays available (default 3600, as fal)")  # fmt: skip
    args = parser.parse_args(argv)

    try:
        require_extra()
    except MissingExtraError as exc:
        return _refuse(str(exc))
    specs = args.specs if args.specs is not None else default_specs_dir()
    problem = _no_specs(specs)
    if problem:
        return _refuse(
            f"{problem}: pass --specs DIR, a directory of fal endpoint specs (a fal-typed checkout's specs/)"
        )

    server = LocalServer(specs, args.port, args.ca_file, result_ttl=args.result_ttl)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server.start()
    print(f"CA: {server.ca_file}; {server.endpoints.spec_count} specs; FAL_RUN_HOST={server.run_host}", file=sys.stderr)
    print(f"listening on {server.url}", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _no_specs(specs: Path) -> str | None:
    """Why `specs` cannot be served (None when it holds at least one spec file)."""
    from .specs import SPEC_SUFFIXES

    if not specs.is_dir():
        return f"no specs directory at {specs}"
    if not any(p.suffix in SPEC_SUFFIXES and p.is_file() for p in specs.rglob("*")):
        return f"no endpoint specs (*.yaml, *.yml, *.json) under {specs}"
    return None


def _refuse(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
