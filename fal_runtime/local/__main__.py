"""`python -m fal_runtime.local --port N [--ca-file PATH] [--specs DIR]`: serve until interrupted.

Prints exactly one line, `listening on https://127.0.0.1:N`, once the server accepts connections, so a parent
process can wait for it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from .server import LocalServer
from .specs import DEFAULT_SPECS_DIR
from .store import RESULT_TTL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fal_runtime.local", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--ca-file", type=Path, help="where to write the CA certificate clients should trust")
    parser.add_argument("--specs", type=Path, default=DEFAULT_SPECS_DIR, help="directory of endpoint specs")
    parser.add_argument("--result-ttl", type=float, default=RESULT_TTL,
                        help=f"seconds a completed request's result stays available (default {RESULT_TTL:.0f}, as fal)")  # fmt: skip
    args = parser.parse_args(argv)

    server = LocalServer(args.specs, args.port, args.ca_file, result_ttl=args.result_ttl)

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


if __name__ == "__main__":
    sys.exit(main())
