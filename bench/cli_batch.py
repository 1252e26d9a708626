"""`fal-typed batch` against the same work done with `AsyncClient` directly: what the ledger costs.

Both run as separate processes against one LocalServer (in this process, jobs that take no time), on the same
10,000-row JSONL file at the same concurrency, so the difference is the command line's own work: validating every
line, the SQLite ledger (two commits per row), the progress counters and results.jsonl. Peak RSS is each child's
own (`os.wait4`), and so is the CPU time reported beside the wall time.

    .venv/bin/python bench/cli_batch.py [--rows N] [--concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = "fal-ai/flux/schnell"
SPEC = "fal-ai/flux/schnell.yaml"


def _child(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float, int, str]:
    """Run a child; its wall time (s), CPU time (s), peak RSS (MB), exit code and stdout."""
    started = time.perf_counter()
    with log.open("w") as err:
        process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        assert process.stdout is not None
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - started, cpu, usage.ru_maxrss / 1024, process.returncode, out


def measure(rows: int = 10000, concurrency: int = 200) -> dict[str, Any]:
    """Rows per second, peak RSS and errors of the batch command and of the direct client, and the overhead %."""
    from fal_runtime.local import LocalServer

    with tempfile.TemporaryDirectory(prefix="cli-batch-") as tmp:
        work = Path(tmp)
        (work / "specs" / SPEC).parent.mkdir(parents=True)
        shutil.copy(ROOT / "specs" / SPEC, work / "specs" / SPEC)
        inputs = work / "inputs.jsonl"
        inputs.write_text("".join(json.dumps({"prompt": f"bench row {i}"}) + "\n" for i in range(rows)))
        with LocalServer(work / "specs") as server:
            env = {**os.environ, "FAL_KEY": "bench-key", "FAL_QUEUE_RUN_HOST": server.base,
                   "FAL_RUN_HOST": server.run_host, "FAL_API_HOST": server.api_host,  # the batch prices its rows
                   "SSL_CERT_FILE": str(server.ca_file)}  # fmt: skip
            server.behave(queue_seconds=0.0, run_seconds=0.0)
            batch_args = [sys.executable, "-m", "fal_cli", "batch", ENDPOINT, str(inputs), "--out", str(work / "out"),
                          "--concurrency", str(concurrency)]  # fmt: skip
            batch_s, batch_cpu, batch_mb, batch_code, _ = _child(batch_args, env, work / "batch.log")
            results = (work / "out" / "results.jsonl").read_text().splitlines()
            failed = [json.loads(line) for line in results if json.loads(line)["status"] != "done"]
            batch_errors = len(failed) + (rows - len(results))
            first_error = failed[0].get("error") if failed else None
            if batch_code not in (0, 1):  # 1 is "some rows failed", counted above; anything else is the command's
                first_error = (work / "batch.log").read_text()[-500:]
            duplicates = server.counters()["duplicate_submits"]
            server.reset()
            server.behave(queue_seconds=0.0, run_seconds=0.0)
            direct_args = [sys.executable, __file__, "--direct", str(inputs), "--concurrency", str(concurrency)]
            direct_s, direct_cpu, direct_mb, direct_code, direct_out = _child(direct_args, env, work / "direct.log")
    direct_errors = json.loads(direct_out)["errors"] if direct_code == 0 else rows
    return {
        "rows": rows,
        "concurrency": concurrency,
        "batch_rows_per_s": round(rows / batch_s, 1),
        "batch_seconds": round(batch_s, 2),
        "batch_cpu_seconds": round(batch_cpu, 2),
        "batch_peak_rss_mb": round(batch_mb, 1),
        "batch_errors": batch_errors,
        "batch_first_error": first_error,
        "batch_duplicate_submits": duplicates,
        "direct_rows_per_s": round(rows / direct_s, 1),
        "direct_seconds": round(direct_s, 2),
        "direct_cpu_seconds": round(direct_cpu, 2),
        "direct_peak_rss_mb": round(direct_mb, 1),
        "direct_errors": direct_errors,
        "ledger_overhead_pct": round((batch_s / direct_s - 1) * 100, 1),
        # The same ratio in CPU seconds: less sensitive to other processes sharing the machine.
        "ledger_overhead_cpu_pct": round((batch_cpu / direct_cpu - 1) * 100, 1),
    }


async def _direct(inputs: Path, concurrency: int) -> int:
    """The same rows with `AsyncClient` alone: validate, submit, wait for the result; the number that failed."""
    import generated
    from fal_runtime import AsyncClient
    from fal_runtime.errors import FalError

    module = generated.load(ENDPOINT)
    rows = [module.Input.model_validate_json(line) for line in inputs.read_text().splitlines() if line.strip()]
    slots = asyncio.Semaphore(concurrency)
    errors = 0

    async def one(data: Any) -> None:
        nonlocal errors
        async with slots:
            try:
                handle = await module.endpoint.submit_async(data, client=client)
                await handle.result()
            except FalError:
                errors += 1

    async with AsyncClient(max_connections=concurrency + 8) as client:
        await asyncio.gather(*(one(data) for data in rows))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--direct", type=Path, help=argparse.SUPPRESS)  # the child process of the direct run
    args = parser.parse_args()
    if args.direct is not None:
        print(json.dumps({"errors": asyncio.run(_direct(args.direct, args.concurrency))}))
        return
    print(json.dumps(measure(args.rows, args.concurrency), indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
