"""Runtime figures for `make bench`: subscribe latency against fal-client, and 1,000 concurrent async subscribes.

Both clients talk to the same local fal server, started as its own process so it does not share a GIL with the
client being measured. Each client is measured in a fresh process of its own (fal-client reads its hosts at import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
ARGS = {"prompt": "plush keychain", "image_url": "https://example.com/in.png"}
ENDPOINT = "fal-ai/gemini-flash-edit"

OURS = """
import json, statistics, sys, time
from generated.fal_ai import gemini_flash_edit as ep
args = json.loads(sys.argv[1]); times = []
for i in range(int(sys.argv[2]) + 1):
    t = time.perf_counter(); ep.subscribe(**args); times.append(time.perf_counter() - t)
print(statistics.median(times[1:]))
"""
FAL_CLIENT = """
import json, statistics, sys, time
import fal_client
args = json.loads(sys.argv[1]); times = []
for i in range(int(sys.argv[2]) + 1):
    t = time.perf_counter(); fal_client.subscribe("fal-ai/gemini-flash-edit", arguments=args); times.append(time.perf_counter() - t)
print(statistics.median(times[1:]))
"""
CONCURRENT = """
import asyncio, json, resource, sys, time
from fal_runtime import AsyncClient
from generated.fal_ai import gemini_flash_edit as ep
async def main(n):
    async with AsyncClient(max_connections=100) as client:
        t = time.perf_counter()
        results = await asyncio.gather(*(ep.subscribe_async(client=client, **json.loads(sys.argv[1])) for _ in range(n)), return_exceptions=True)
        wall = time.perf_counter() - t
    errors = [r for r in results if isinstance(r, BaseException)]
    print(json.dumps({"n": n, "errors": len(errors), "first_error": repr(errors[0]) if errors else None, "wall": wall,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
asyncio.run(main(int(sys.argv[2])))
"""


@contextmanager
def local_server() -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        ca = Path(tmp) / "ca.pem"
        proc = subprocess.Popen([sys.executable, "-m", "fal_runtime.local", "--port", "0", "--ca-file", str(ca)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            host = line.removeprefix("listening on https://")
            env = dict(
                os.environ, FAL_KEY="bench", FAL_QUEUE_RUN_HOST=host, FAL_RUN_HOST=f"{host}/run", SSL_CERT_FILE=str(ca)
            )
            httpx.post(f"https://{host}/_local/behave", json={"endpoint_id": ENDPOINT, "queue_seconds": 0.0, "run_seconds": 0.02},
                       verify=str(ca), headers={"Authorization": "Key bench"}).raise_for_status()  # fmt: skip
            yield env
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def _run(code: str, env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(ARGS), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return out.stdout.strip()


def rows(runs: int = 15, concurrent: int = 1000) -> list[tuple[str, str, str, str, str]]:
    with local_server() as env:
        ours = float(_run(OURS, env, str(runs)))
        peer = float(_run(FAL_CLIENT, env, str(runs)))
        load = json.loads(_run(CONCURRENT, env, str(concurrent)))
    return [
        ("subscribe latency, one fast request (local server)", f"{ours * 1000:.0f} ms", f"fal-client: {peer * 1000:.0f} ms", f"{ours / peer:.2f}×", "≤ 0.5×"),
        (f"{load['n']} concurrent async subscribes, one process", f"{load['errors']} errors, {load['wall']:.1f} s, peak RSS {load['rss_mb']:.0f} MB",
         "—", "—", "0 errors, RSS ≤ 200 MB"),
    ]  # fmt: skip


if __name__ == "__main__":
    for row in rows():
        print(" | ".join(row))
