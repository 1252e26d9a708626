"""`make bench`: generation, import, runtime and CLI figures against their peers, printed as one table.

Whole-process times are noisy on a 2-core machine, so every figure is a median of several runs taken side by side
in this one run, and compared as a ratio. Writes bench/README.md (committed): a fixed introduction (`INTRO`), then
this run's table with its date and machine; each run replaces the file, so it keeps no history.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # codegen and fal_runtime

import cli_batch
import opc
import runtime

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "sources"  # fal's published documents, copied in with where each came from
PY = sys.executable
DCG_CLI = [
    str(Path(PY).with_name("datamodel-codegen")), "--input-file-type", "openapi",
    "--output-model-type", "pydantic_v2.BaseModel", "--target-python-version", "3.11", "--disable-timestamp",
    "--enum-field-as-literal", "all", "--use-annotated", "--field-constraints", "--use-field-description",
    "--use-standard-collections", "--use-union-operator", "--strict-nullable",
]  # fmt: skip
SAMPLE = 20  # specs of the 1,000-spec corpus each peer is run on


def timed(cmd: list[str], cwd: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def real_document_trees(tmp: Path) -> list[Path]:
    """fal's 36 documents as spec trees; second captures of an endpoint (`--owner`) go to a second tree."""
    trees = [tmp / "real", tmp / "real-drift"]
    for doc in sorted((SOURCES / "fal-openapi").glob("*__*.json")):
        endpoint_id = json.loads(doc.read_text())["info"]["x-fal-metadata"]["endpointId"]
        target = trees["--" in doc.name] / f"{endpoint_id}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(doc, target)
    return trees


def seed_tree(root: Path) -> Path:
    """The curated seed specs alone, as a spec tree."""
    from codegen.spectools.importer import is_curated

    for spec in sorted((ROOT / "specs").rglob("*.yaml")):
        if is_curated(spec.read_text(encoding="utf-8")):
            target = root / spec.relative_to(ROOT / "specs")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(spec, target)
    return root


def bench_generation(name: str, trees: list[Path], tmp: Path, runs: int) -> list[tuple[str, str, str, str, str]]:
    files = [f for t in trees for f in sorted(t.rglob("*")) if f.is_file()]
    n = len(files)
    gen = [PY, "-m", "codegen", "gen", "-q"]
    cold = sum(
        timed([*gen, "--no-cache", "--specs", str(t), "--out", str(tmp / f"out-{i}")], ROOT, runs)
        for i, t in enumerate(trees)
    )
    cache = tmp / "cache"
    for i, t in enumerate(trees):  # fill the cache, then time no-op runs
        subprocess.run(
            [*gen, "--cache", str(cache), "--specs", str(t), "--out", str(tmp / f"warm-{i}")], cwd=ROOT, check=True
        )
    warm = sum(
        timed([*gen, "--cache", str(cache), "--specs", str(t), "--out", str(tmp / f"warm-{i}")], ROOT, runs)
        for i, t in enumerate(trees)
    )
    cli = [timed([*DCG_CLI, "--input", str(f), "--output", str(tmp / "cli.py")], ROOT, 1) for f in files]
    cli_total = sum(cli)
    rows = []
    for label, ours in ((f"{name}: make gen, cold", cold), (f"{name}: make gen, no-op (cache)", warm)):
        rows.append((label, f"{ours:.2f} s ({ours / n * 1000:.0f} ms/endpoint)",
                     f"datamodel-codegen CLI per spec: {cli_total:.2f} s ({statistics.median(cli) * 1000:.0f} ms/spec)",
                     f"{cli_total / ours:.1f}× faster", "≥ 15× faster"))  # fmt: skip
    opc_total, accepted, rejected = opc.peer(files, tmp)
    took = f"{opc_total:.2f} s for the {accepted} of {n} specs it accepted" + (
        f" (rejected: {'; '.join(rejected)})" if rejected else ""
    )
    per_spec = (opc_total / accepted) / (cold / n) if accepted else float("nan")
    rows.append((f"{name}: make gen, cold, against openapi-python-client {opc.VERSION}", f"{cold:.2f} s",
                 f"openapi-python-client per spec: {took}", f"{per_spec:.1f}× faster per spec", "—"))  # fmt: skip
    return rows


def catalogue(tmp: Path, runs: int) -> list[tuple[str, str, str, str, str]]:
    """The real catalogue (every spec in specs/): cold, no-op and one-changed generation, the peers on an evenly
    spaced sample scaled to the whole (one datamodel-codegen CLI call is ~0.55 s: 1,300 of them would take the bench
    12 minutes), importing it, and a sync of all of it from the local server."""
    specs = tmp / "specs"
    shutil.copytree(ROOT / "specs", specs)
    from codegen.generation.loader import find_endpoint_spec_files

    files = find_endpoint_spec_files(specs)  # the Platform API's spec (`_platform/`) is not an endpoint's
    count = len(files)
    out, cache = tmp / "catalogue_pkg", tmp / "cache"

    def gen(cache_dir: Path) -> list[str]:
        return [PY, "-m", "codegen", "gen", "-q", "--specs", str(specs), "--out", str(out), "--cache", str(cache_dir)]

    # A checkout writes the generator's bytecode on its first run; PYTHONDONTWRITEBYTECODE, set on some machines,
    # would make every timed run compile codegen/ from source (~0.1 s of a 0.4 s no-op). Compile it once, as a
    # first run would.
    subprocess.run([PY, "-m", "compileall", "-q", "codegen"], cwd=ROOT, check=True, capture_output=True)

    colds = []
    for i in range(runs):  # each cold run starts from an empty cache and no output
        shutil.rmtree(out, ignore_errors=True)
        colds.append(timed(gen(tmp / f"cold-cache-{i}"), ROOT, 1))
        shutil.rmtree(tmp / f"cold-cache-{i}")
    cold = statistics.median(colds)
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(gen(cache), cwd=ROOT, check=True)
    noop = timed(gen(cache), ROOT, runs)
    ones = []
    for i in range(runs):  # a different spec each time, so every run has exactly one cache miss
        changed = files[(count // 2 + i * 7) % count]
        changed.write_text(
            changed.read_text()
            .replace("\ninfo:\n", f"\ninfo:\n  x-bench: {i}\n", 1)
            .replace("  description:", "  description: changed for the benchmark.", 1)
        )
        ones.append(timed(gen(cache), ROOT, 1))
    one = statistics.median(ones)

    sample = files[:: max(1, count // SAMPLE)]
    cli = [timed([*DCG_CLI, "--input", str(f), "--output", str(tmp / "cli.py")], ROOT, 1) for f in sample]
    cli_total = sum(cli) * count / len(sample)
    opc_total, accepted, _ = opc.peer(sample, tmp)
    opc_each = opc_total / accepted if accepted else float("nan")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # An installed wheel has its bytecode compiled at install time, as fal_client's has; compile ours the same way
    # (PYTHONDONTWRITEBYTECODE, set on some machines, would otherwise make every import compile from source).
    subprocess.run(
        [PY, "-m", "compileall", "-q", "generated", "fal_runtime"], cwd=ROOT, check=True, capture_output=True
    )

    def fresh(code: str) -> float:
        times = []
        for _ in range(runs * 3):
            t = time.perf_counter()
            subprocess.run([PY, "-c", code], cwd=ROOT, env=env, check=True)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    ours, peer = fresh("import generated; import generated.fal_ai.flux.dev.image_to_image"), fresh("import fal_client")
    one_module = fresh("import generated.fal_ai.flux.dev.image_to_image")
    platform_package = fresh("import generated.platform")
    platform_call = fresh("from generated.platform import get_usage")
    synced = sync_all(tmp, runs)
    scaled = f"scaled from {len(sample)} sampled specs"
    return [
        (f"catalogue ({count} specs): make gen, cold (2 processes)", f"{cold:.1f} s",
         f"datamodel-codegen CLI per spec: {cli_total:.0f} s ({scaled})", f"{cli_total / cold:.1f}× faster", "≤ 30 s, ≥ 30×"),
        (f"catalogue: make gen, cold, against openapi-python-client {opc.VERSION}", f"{cold:.1f} s",
         f"openapi-python-client per spec: {opc_each * count:.0f} s ({scaled}; {accepted} of {len(sample)} accepted)",
         f"{opc_each * count / cold:.1f}× faster", "—"),
        ("catalogue: make gen, no-op", f"{noop:.2f} s", f"datamodel-codegen CLI per spec: {cli_total:.0f} s",
         f"{cli_total / noop:.0f}× faster", "≤ 0.5 s"),
        ("catalogue: make gen, one spec changed", f"{one:.2f} s",
         f"one datamodel-codegen CLI call: {statistics.median(cli):.2f} s", f"{one / statistics.median(cli):.2f}×", "≤ 1 s"),
        (f"import generated ({count} endpoints) + one module", f"{ours * 1000:.0f} ms", f"import fal_client: {peer * 1000:.0f} ms", f"{ours / peer:.2f}×", "≤ 1.0×"),
        ("import generated.platform (fal's Platform API, 82 operations)", f"{platform_package * 1000:.0f} ms",
         f"one endpoint module: {one_module * 1000:.0f} ms", f"{platform_package / one_module:.2f}×", "≤ 1.0×"),
        ("from generated.platform import get_usage (its module's models)", f"{platform_call * 1000:.0f} ms",
         f"one endpoint module: {one_module * 1000:.0f} ms", f"{platform_call / one_module:.2f}×", "—"),
        (f"catalogue: make sync of all {count} from the local server (into an empty specs/)", f"{synced:.1f} s", "—", "—", "≤ 60 s"),
    ]  # fmt: skip


def sync_all(tmp: Path, runs: int) -> float:
    """`python -m codegen sync` of the whole catalogue, served by the local server's model search."""
    from fal_runtime.local import LocalServer

    times = []
    with LocalServer(ROOT / "specs") as server:
        env = dict(os.environ, FAL_API_HOST=server.api_host, SSL_CERT_FILE=str(server.ca_file))
        env.pop("FAL_KEY", None)
        for i in range(max(1, runs - 1)):
            target = tmp / f"synced-{i}"
            start = time.perf_counter()
            subprocess.run(
                [PY, "-m", "codegen", "sync", "--specs", str(target)],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def batch_rows(count: int) -> list[tuple[str, str, str, str, str]]:
    """`fal-typed batch` beside the same rows sent with `AsyncClient` directly (issue #13's aims)."""
    m = cli_batch.measure(rows=count, concurrency=200)
    return [
        (f"`fal-typed batch`, {count:,} rows at concurrency 200: rows/s (errors, duplicate submits)",
         f"{m['batch_rows_per_s']} ({m['batch_errors']}, {m['batch_duplicate_submits']})",
         f"{m['direct_rows_per_s']} AsyncClient ({m['direct_errors']})", f"{m['ledger_overhead_pct']:+.1f} % ledger",
         "0 errors; overhead <= 15 %"),
        ("`fal-typed batch`: peak RSS", f"{m['batch_peak_rss_mb']} MB", f"{m['direct_peak_rss_mb']} MB", "", "<= 200 MB"),
    ]  # fmt: skip


def main() -> None:
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        rows += catalogue(tmp / "catalogue", runs)
        rows += bench_generation("14 curated seed specs", [seed_tree(tmp / "seeds")], tmp / "seed", runs)
        trees = real_document_trees(tmp / "docs")
        count = sum(1 for t in trees for f in t.rglob("*") if f.is_file())
        rows += bench_generation(f"fal's 36 documents ({count} distinct specs)", trees, tmp / "docs", runs)
    rows += runtime.rows()
    rows += batch_rows(int(os.environ.get("BENCH_BATCH_ROWS", "10000")))
    print(table(rows))
    README.write_text(render_readme(rows, runs=runs, date=time.strftime("%Y-%m-%d"), machine=machine()))
    print(f"written: {README.relative_to(ROOT)}")


README = ROOT / "bench" / "README.md"
HEADER = ("figure", "ours", "peer", "ratio", "aim")

# The fixed part of bench/README.md. The table below it is each run's; this text changes only with the bench.
INTRO = """\
# Benchmarks

Written by `make bench` (`bench/run.py`, about 15 minutes; nothing else should run on the machine meanwhile). Each
run replaces this file: it holds one run's table, with its date and machine, and no history. Edit the introduction in
`bench/run.py`, not here.

## What each row measures

- **catalogue**: `python -m codegen gen` over a copy of `specs/` (every endpoint) into a scratch directory. *Cold*:
  empty cache and no output, so every spec is loaded and every module rendered, on every core. *No-op*: the same run
  again, nothing changed. *One spec changed*: a different spec edited before each run. The peers are the
  datamodel-code-generator CLI (models only) and openapi-python-client (a whole client, installed in its own venv
  under `.cache/bench-opc/`), each called once per spec. They cannot run once per spec of the whole catalogue inside
  the bench, so each runs on an evenly spaced sample of about 21 specs and its total is scaled to the catalogue (the
  row says so); *one spec changed* is set against one CLI call. The generator's bytecode is compiled first, as a
  checkout's first run leaves it.
- **import**: a fresh process importing `generated` and one endpoint module, against `import fal_client`, both with
  their bytecode compiled, as an installed wheel has it.
- **make sync**: `python -m codegen sync` of the whole catalogue from the local server's model search, into an empty
  `specs/`.
- **seed specs** and **fal's documents**: cold and no-op runs over the 14 curated seeds and over fal's 36 published
  documents (`sources/fal-openapi/`); here the peers run on every spec.
- **subscribe latency**: the median of 15 calls of one fast request, ours against fal-client, each client in a fresh
  process, against the local server running as a process of its own.
- **concurrent subscribes**: 1,000 `subscribe_async` calls at once from one process through one `AsyncClient` (100
  connections): errors, wall time, peak RSS.
- **`fal-typed batch`**: 10,000 JSON Lines rows at concurrency 200 against the local server (jobs that take no time),
  beside the same rows sent through `AsyncClient` directly (`bench/cli_batch.py`): rows/s, errors, duplicate
  submits and peak RSS; the difference is what the ledger costs.

Generation figures are medians of `BENCH_RUNS` runs (default 3), import times of three times as many, the sync of
`BENCH_RUNS - 1` (at least one); each figure is taken beside its peer in the same run. The machine's speed drifts (the
shared 2-core machine these figures come from varies by tens of percent within an hour), so compare ratios, whose two
sides are measured minutes apart, rather than seconds across runs. *aim* is the target each figure was set against.

## Where the time goes (as of 2026-12-02)

A cold run of the 1,297-spec catalogue on 2 workers, measured per stage: loading and validating the specs takes
~6.5 s (PyYAML's C parser alone composes a spec's nodes in ~5 ms); datamodel-code-generator costs ~30 ms for each of
the 1,151 distinct sets of models even in batches (~17 s on two cores; its built-in formatter is a fifth of that);
our polishing, templates and black ~20 ms an endpoint (~13 s). The 30 s aim for a cold run is out of reach while
datamodel-code-generator renders the models: the endpoints' own `Input` and `Output` classes (1,955 of the 2,129
distinct classes) carry most of its cost, so generating each shared class once (tried: stand-ins for them) saves
only ~18 %.

A no-op run reads and hashes every spec and stops at the run stamp. One changed spec costs that, plus loading and
rendering that spec in a worker that must first import datamodel-code-generator and make its first call (~0.85 s,
most of it building its configuration's pydantic models) and import black (~0.2 s). These overlap with reading the
specs, but no run that renders a module in a new process finishes in 1 s on this machine: that aim is out of reach
too.

Importing a module costs little beyond pydantic itself: httpx and the clients load on the first request, models
build their validators on first use (`defer_build`), and `generated.ENDPOINTS` imports a module only when it is
looked up. Subscribe learns of completion from fal's status stream instead of polling every 0.1 s as fal-client
does, and reads that stream on to its close, so one connection serves the whole call (and the next). `AsyncClient`
spreads its connections over pools of at most 25: httpcore's pool bookkeeping grows with the square of the pool's
size on every request (encode/httpcore#1035).
"""


def table(rows: list[tuple[str, ...]]) -> str:
    """The rows as a Markdown table under `HEADER`; a `|` inside a cell is escaped."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """What the figures depend on: cores, the processor where Linux names it, the OS and Python."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " (" + line.split(":", 1)[1].strip() + ")"
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores{model}, {platform.system()} {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def render_readme(rows: list[tuple[str, ...]], *, runs: int, date: str, machine: str, note: str = "") -> str:
    """bench/README.md: the fixed introduction, then this run's table, its date and machine (and `note`, if any)."""
    median = "one run" if runs == 1 else f"median of {runs} runs"
    about = f"`make bench` on {date}, {median} (`BENCH_RUNS={runs}`), on {machine}." + (f" {note}" if note else "")
    about = textwrap.fill(about, 120, break_long_words=False, break_on_hyphens=False)
    return f"{INTRO}\n## The table of {date}'s run\n\n{about}\n\n{table(rows)}\n"


if __name__ == "__main__":
    main()
