"""The real `fal-typed` command in subprocesses: piped output, a pseudo-terminal, and a batch killed with SIGKILL."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fal_runtime.local import LocalServer
from tests.cli.conftest import FLUX_I2I, KEY, SCHNELL, command, environment, wait_for

pytestmark = pytest.mark.slow
Run = Callable[..., subprocess.CompletedProcess[str]]


def test_piped_json_is_only_json_and_saved_files_are_listed_on_stderr(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("run", FLUX_I2I, "--image-url", "https://x.test/a.png", "--prompt", "p", "--json",
                     "--save", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    saved = [Path(line.removeprefix("saved ")) for line in result.stderr.splitlines() if line.startswith("saved ")]
    assert len(saved) == len(output["images"]) >= 1 and all(p.is_file() for p in saved)
    assert "\x1b[" not in result.stdout + result.stderr  # no terminal codes when piped


def test_piped_run_prints_plain_progress_and_summary_lines(run_cli: Run) -> None:
    result = run_cli("run", SCHNELL, "--prompt", "p")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("images: [")
    assert "seed: " in result.stdout
    assert "log: step 1/3" in result.stderr and "completed in" in result.stderr


def test_submit_status_result_cancel(run_cli: Run, fal: LocalServer) -> None:
    submitted = run_cli("submit", SCHNELL, "--prompt", "p")
    assert submitted.returncode == 0, submitted.stderr
    request_id = submitted.stdout.strip()
    assert json.loads(run_cli("result", SCHNELL, request_id, "--json").stdout)["images"]
    assert run_cli("status", SCHNELL, request_id).stdout.startswith("COMPLETED")
    assert run_cli("cancel", SCHNELL, request_id).stdout.strip() == "already_completed"
    assert fal.counters()["submits"] == {SCHNELL: 1}


def read_terminal(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; its exit code and everything it drew."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=10), b"".join(chunks).decode("utf-8", "replace")


def test_a_terminal_gets_live_progress_logs_and_a_table(fal: LocalServer) -> None:
    fal.behave(SCHNELL, queue_seconds=0.3, run_seconds=0.6, times=1)
    env = {**os.environ, **environment(fal), "COLUMNS": "120", "TERM": "xterm"}
    code, drawn = read_terminal(command("run", SCHNELL, "--prompt", "p"), env)
    assert code == 0, drawn
    assert "queued" in drawn and "in progress" in drawn  # the live line, re-drawn as the status changes
    assert "step 2/3" in drawn and "completed in" in drawn
    assert "\x1b[" in drawn  # drawn with terminal codes, not plain lines
    assert "log: " not in drawn


def test_a_terminal_gets_a_batch_progress_bar(fal: LocalServer, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(6)))
    env = {**os.environ, **environment(fal), "COLUMNS": "120", "TERM": "xterm"}
    code, drawn = read_terminal(command("batch", SCHNELL, str(inputs), "--out", str(tmp_path / "out")), env)
    assert code == 0, drawn
    assert "6/6" in drawn and "failed" in drawn and "in flight" in drawn and "\x1b[" in drawn


def ledger_count(out: Path, state: str) -> int:
    path = out / "ledger.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=5) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM rows WHERE state = ?", (state,)).fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def test_a_batch_killed_with_sigkill_resumes_without_duplicates_or_lost_rows(fal: LocalServer, tmp_path: Path) -> None:
    rows, out = 12, tmp_path / "out"
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(rows)))
    fal.behave(SCHNELL, queue_seconds=0.0, run_seconds=2.0, times=6)  # the first jobs are slow: in flight when killed
    env = {**os.environ, **environment(fal)}
    args = command("batch", SCHNELL, str(inputs), "--out", str(out), "--concurrency", "4")
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: ledger_count(out, "submitted") >= 4, what="4 rows in flight")
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL
    assert ledger_count(out, "done") < rows  # it really was killed in the middle

    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    counters = fal.counters()
    assert counters["submits"] == {SCHNELL: rows}
    assert counters["duplicate_submits"] == 0
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["row"] for line in lines] == list(range(1, rows + 1))
    assert all(line["status"] == "done" and line["output"]["images"] for line in lines)
    assert len({line["request_id"] for line in lines}) == rows

    third = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert third.returncode == 0 and fal.counters()["submits"] == {SCHNELL: rows}  # finished rows are skipped


def test_ctrl_c_leaves_a_complete_results_file_and_the_batch_resumes(fal: LocalServer, tmp_path: Path) -> None:
    rows, out = 8, tmp_path / "out"
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(rows)))
    fal.behave(SCHNELL, queue_seconds=0.0, run_seconds=2.0, times=4)
    env = {**os.environ, **environment(fal)}
    args = command("batch", SCHNELL, str(inputs), "--out", str(out), "--concurrency", "2")
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: ledger_count(out, "submitted") >= 2, what="2 rows in flight")
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stderr
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["row"] for line in lines] == list(range(1, rows + 1))  # one line per row, finished or not
    assert {line["status"] for line in lines} - {"done"}  # it stopped before the end

    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert fal.counters()["submits"] == {SCHNELL: rows} and fal.counters()["duplicate_submits"] == 0
    assert all(json.loads(line)["status"] == "done" for line in (out / "results.jsonl").read_text().splitlines())


def test_importing_generated_loads_neither_click_nor_rich() -> None:
    probe = (
        "import sys, generated; generated.load('fal-ai/flux/schnell'); import fal_runtime.files; "
        "print(sorted(m for m in ('click', 'rich', 'fal_cli') if m in sys.modules))"
    )
    result = subprocess.run([*command()[:1], "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_batch_estimate_in_a_real_process_submits_nothing(
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    fal: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("FAL_API_HOST", fal.api_host)
    fal.set_prices({SCHNELL: (0.004, "image")})
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(f'{{"prompt": "p{i}"}}\n' for i in range(5)))
    done = run_cli("batch", SCHNELL, str(inputs), "--estimate")
    assert done.returncode == 0, done.stderr
    assert f"estimate: 5 rows of {SCHNELL} at $0.004 per image: $0.02 in all" in done.stdout
    assert fal.counters()["submits"] == {}
    assert KEY not in done.stdout + done.stderr
