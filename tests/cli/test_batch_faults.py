"""`fal-typed batch` under faults (issue #21): a second batch on the same directory, submits that may have reached
fal, a full disk, bad inputs and ledgers, a key echoed in an output, and fal unreachable.

Everything speaks real HTTP to the local server; a mock stands in only for what no server can produce (a full disk,
an unreadable file while running as root). Tests that run the real command in subprocesses are marked slow.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fal_cli.app import cli
from fal_cli.ledger import Ledger
from fal_runtime import AsyncClient, RetryPolicy
from fal_runtime.local import LocalServer
from tests.cli.conftest import SCHNELL, command, environment, wait_for

EXIT_STORAGE, EXIT_UNREACHABLE = 3, 4


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def rows_file(tmp_path: Path, rows: int) -> Path:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(rows)))
    return inputs


def results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def statuses(out: Path) -> list[str]:
    return [line["status"] for line in results(out)]


def submits(fal: LocalServer, duplicates: int = 0) -> int:
    """Jobs fal created for the batch; `duplicates` of them repeat an input (only ever sent when asked)."""
    counters = fal.counters()
    assert counters["duplicate_submits"] == duplicates
    return int(counters["submits"].get(SCHNELL, 0))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("Error:", "batch stopped:"))]


def without_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AsyncClient makes one attempt per call (the runtime's own retries would only slow the test)."""
    real_init = AsyncClient.__init__

    def one_attempt_each(self: AsyncClient, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **{**kwargs, "retry": RetryPolicy(max_retries=0)})

    monkeypatch.setattr(AsyncClient, "__init__", one_attempt_each)


def free_port() -> int:
    """A port nothing listens on: a stopped server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# 1. One batch per output directory.


def test_a_second_batch_on_the_same_out_is_refused_at_once_naming_the_first(fal: LocalServer, tmp_path: Path) -> None:
    from fal_cli.ledger import DirectoryLock

    inputs, out = rows_file(tmp_path, 2), tmp_path / "out"
    with DirectoryLock(out):  # this process is "the first batch"
        refused = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert refused.exit_code == 2
    (line,) = error_lines(refused.stderr)
    assert f"pid {os.getpid()}, started " in line and str(out) in line
    assert submits(fal) == 0 and not (out / "ledger.sqlite3").exists()
    assert invoke("batch", SCHNELL, str(inputs), "--out", str(out)).exit_code == 0  # the lock went with its holder


@pytest.mark.slow
def test_two_processes_on_the_same_out_submit_every_row_once(fal: LocalServer, tmp_path: Path) -> None:
    rows, out = 20, tmp_path / "out"
    inputs = rows_file(tmp_path, rows)
    fal.behave(SCHNELL, queue_seconds=0.0, run_seconds=0.5)
    env = {**os.environ, **environment(fal)}
    args = command("batch", SCHNELL, str(inputs), "--out", str(out), "--concurrency", "4")
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: submits(fal) >= 1, what="the first batch submitting")
    started = time.monotonic()
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 2, second.stderr
    assert time.monotonic() - started < 10  # at once: it does not wait for the first
    (line,) = error_lines(second.stderr)
    assert f"pid {first.pid}, started " in line
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert submits(fal) == rows
    assert statuses(out) == ["done"] * rows


# 2. A row whose submit may have reached fal is never sent again unasked.


def test_a_submit_that_may_have_reached_fal_is_ambiguous_and_sent_again_only_when_asked(
    fal: LocalServer, tmp_path: Path
) -> None:
    inputs, out = rows_file(tmp_path, 3), str(tmp_path / "out")
    fal.script(SCHNELL, "submit", "500", phase="after", nth=2)  # fal created row 2's job, then answered 500
    first = invoke("batch", SCHNELL, str(inputs), "--out", out, "--concurrency", "1")
    assert first.exit_code == 1
    assert submits(fal) == 3
    lines = results(Path(out))
    assert [line["status"] for line in lines] == ["done", "ambiguous", "done"]
    request_id = lines[1]["request_id"]
    assert request_id  # the x-fal-request-id fal answered with
    (reported,) = [line for line in first.stderr.splitlines() if line.startswith(f"{inputs}:2: ambiguous")]
    assert request_id in reported and "--resubmit-ambiguous" in reported
    assert "batch: 2/3 done, 0 failed, 1 ambiguous" in first.stderr

    for flags in ([], ["--retry-failed"]):  # neither a resume nor --retry-failed sends it again
        again = invoke("batch", SCHNELL, str(inputs), "--out", out, *flags)
        assert again.exit_code == 1 and f"{inputs}:2: ambiguous" in again.stderr
        assert submits(fal) == 3
    asked = invoke("batch", SCHNELL, str(inputs), "--out", out, "--resubmit-ambiguous")
    assert asked.exit_code == 0, asked.stderr
    assert submits(fal, duplicates=1) == 4 and statuses(Path(out)) == ["done"] * 3


def test_a_submit_refused_before_fal_took_it_is_a_plain_failure(
    fal: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, out = rows_file(tmp_path, 2), str(tmp_path / "out")
    without_retries(monkeypatch)
    fal.script(SCHNELL, "submit", "ingress-502", times=2)  # the ingress answered: fal never saw the request
    first = invoke("batch", SCHNELL, str(inputs), "--out", out, "--concurrency", "1")
    assert first.exit_code == 1 and statuses(Path(out)) == ["failed", "failed"]
    assert submits(fal) == 0
    fal.reset()
    assert invoke("batch", SCHNELL, str(inputs), "--out", out, "--retry-failed").exit_code == 0
    assert submits(fal) == 2


@pytest.mark.slow
def test_a_batch_killed_during_a_submit_round_trip_never_sends_that_row_again_unasked(
    fal: LocalServer, tmp_path: Path
) -> None:
    inputs, out = rows_file(tmp_path, 3), tmp_path / "out"
    fal.script(SCHNELL, "submit", "stall", nth=2, stall_seconds=30)  # row 2's job exists; its answer is held
    env = {**os.environ, **environment(fal)}
    args = command("batch", SCHNELL, str(inputs), "--out", str(out), "--concurrency", "1")
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: submits(fal) == 2, what="fal taking row 2")
    time.sleep(0.2)  # the headers are on their way: the client is inside the round trip
    first.kill()
    first.wait(timeout=10)

    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 1, again.stderr
    assert f"{inputs}:2: ambiguous" in again.stderr
    assert submits(fal) == 3  # rows 1 and 3, and row 2 once
    assert statuses(out) == ["done", "ambiguous", "done"]
    asked = subprocess.run([*args, "--resubmit-ambiguous"], env=env, capture_output=True, text=True, timeout=60,
                           check=False)  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert fal.counters()["submits"] == {SCHNELL: 4} and statuses(out) == ["done"] * 3


class FullWhen:
    """A ledger connection whose statements matching `full` fail as SQLite fails on a full disk."""

    def __init__(self, db: sqlite3.Connection, full: Any) -> None:
        self._db, self._full = db, full

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if self._full(sql, params):
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def __enter__(self) -> FullWhen:
        self._db.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._db.__exit__(*exc)


def test_a_full_disk_while_recording_a_request_id_prints_it_and_never_sends_the_row_again(
    fal: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, out = rows_file(tmp_path, 3), str(tmp_path / "out")
    real_init = Ledger.__init__

    def recording_row_2_fails(self: Ledger, directory: Path) -> None:
        real_init(self, directory)
        full = lambda sql, params: "state = 'submitted'" in sql and params and params[-1] == 2  # noqa: E731
        self._db = FullWhen(self._db, full)  # type: ignore[assignment]

    monkeypatch.setattr(Ledger, "__init__", recording_row_2_fails)
    first = invoke("batch", SCHNELL, str(inputs), "--out", out, "--concurrency", "1")
    assert first.exit_code == EXIT_STORAGE
    assert "Traceback" not in first.stderr
    (stopped,) = error_lines(first.stderr)
    assert stopped.startswith("batch stopped: the disk is full") and "1 rows left" in stopped
    (printed,) = re.findall(rf"{re.escape(str(inputs))}:2: request id (\S+): not in the ledger", first.stderr)
    assert submits(fal) == 2  # row 3 was not sent once the disk was full
    assert invoke("status", SCHNELL, printed).stdout.startswith("COMPLETED")  # the printed id is fal's

    monkeypatch.setattr(Ledger, "__init__", real_init)
    again = invoke("batch", SCHNELL, str(inputs), "--out", out)
    assert again.exit_code == 1
    assert submits(fal) == 3  # row 3 now; row 2 is ambiguous, not sent again
    assert statuses(Path(out)) == ["done", "ambiguous", "done"]


# 3. A full disk stops the batch with one line and its own exit code.


def test_a_full_disk_stops_submitting_lets_rows_in_flight_finish_and_exits_3(
    fal: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, out = 40, tmp_path / "out"
    inputs = rows_file(tmp_path, rows)
    real_bind = Ledger.bind

    def bind_then_fill_up(self: Ledger, endpoint_id: str, inputs_sha256: str) -> None:
        real_bind(self, endpoint_id, inputs_sha256)
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        self._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own "database or disk is full"

    monkeypatch.setattr(Ledger, "bind", bind_then_fill_up)
    first = invoke("batch", SCHNELL, str(inputs), "--out", str(out), "--concurrency", "4")
    assert first.exit_code == EXIT_STORAGE
    assert "Traceback" not in first.stderr
    (stopped,) = error_lines(first.stderr)
    assert stopped.startswith("batch stopped: the disk is full") and "database or disk is full" in stopped
    assert "run the same command again" in stopped
    assert submits(fal) < rows  # it stopped submitting
    not_recorded = dict(re.findall(rf"{re.escape(str(inputs))}:(\d+): request id (\S+): not in the ledger",
                                   first.stderr))  # fmt: skip

    monkeypatch.setattr(Ledger, "bind", real_bind)
    again = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert again.exit_code == (1 if not_recorded else 0), again.stderr
    assert submits(fal) == rows  # nothing sent twice, nothing lost
    for line in results(out):
        assert line["status"] == ("ambiguous" if str(line["row"]) in not_recorded else "done")


def test_a_full_disk_while_writing_results_is_one_line_and_exit_3(
    fal: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, out = rows_file(tmp_path, 2), tmp_path / "out"

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", no_space)
    first = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert first.exit_code == EXIT_STORAGE
    (stopped,) = error_lines(first.stderr)
    assert stopped.startswith("batch stopped: the disk is full") and "results.jsonl" in stopped
    assert not list(out.glob(".results.jsonl.*"))  # no partial file left behind
    monkeypatch.setattr(os, "fsync", real_fsync)
    again = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert again.exit_code == 0 and submits(fal) == 2 and statuses(out) == ["done", "done"]


# 4. Bad inputs and ledgers: one line naming the row or the file.


def test_a_row_nested_too_deeply_fails_alone(fal: LocalServer, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out"
    deep = '{"prompt": ' + "[" * 50_000 + "]" * 50_000 + "}"
    inputs.write_text(f'{{"prompt": "a"}}\n{deep}\n{{"prompt": "c"}}\n')
    result = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert result.exit_code == 1
    assert f"{inputs}:2: not a JSON object: nested too deeply" in result.stderr
    assert statuses(out) == ["done", "failed", "done"] and submits(fal) == 2


def test_a_garbage_ledger_is_one_line_naming_it(fal: LocalServer, tmp_path: Path) -> None:
    inputs, out = rows_file(tmp_path, 2), tmp_path / "out"
    out.mkdir()
    (out / "ledger.sqlite3").write_bytes(b"not a ledger at all\n" * 200)
    result = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert result.exit_code == 2
    (line,) = error_lines(result.stderr)
    assert str(out / "ledger.sqlite3") in line and "not a readable batch ledger" in line
    assert len(result.stderr.strip().splitlines()) == 1 and submits(fal) == 0


def test_a_truncated_ledger_is_one_line_naming_it(fal: LocalServer, tmp_path: Path) -> None:
    rows, out = 60, tmp_path / "out"
    inputs = rows_file(tmp_path, rows)
    assert invoke("batch", SCHNELL, str(inputs), "--out", str(out)).exit_code == 0
    ledger = out / "ledger.sqlite3"
    data = ledger.read_bytes()
    assert len(data) >= 8 * 4096
    ledger.write_bytes(data[: len(data) // 2])
    result = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert result.exit_code == 2
    (line,) = error_lines(result.stderr)
    assert str(ledger) in line and "not a readable batch ledger" in line
    assert submits(fal) == rows


def test_a_ledger_row_missing_from_the_inputs_fails_alone(fal: LocalServer, tmp_path: Path) -> None:
    inputs, out = rows_file(tmp_path, 2), tmp_path / "out"
    ledger = Ledger(out)
    ledger.bind(SCHNELL, hashlib.sha256(inputs.read_bytes()).hexdigest())
    ledger.add([1, 2, 3], {})
    ledger.close()
    result = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith(f"{inputs}:3:")]
    assert "not a line of the inputs file" in line
    assert statuses(out) == ["done", "done", "failed"] and submits(fal) == 2


def test_a_submitted_row_without_a_request_id_is_ambiguous_not_stuck(fal: LocalServer, tmp_path: Path) -> None:
    inputs, out = rows_file(tmp_path, 2), tmp_path / "out"
    assert invoke("batch", SCHNELL, str(inputs), "--out", str(out)).exit_code == 0
    with sqlite3.connect(out / "ledger.sqlite3") as db:
        db.execute("UPDATE rows SET state = 'submitted', request_id = NULL, output = NULL WHERE row = 2")
    db.close()
    again = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert again.exit_code == 1
    assert f"{inputs}:2: ambiguous: recorded as submitted without a request id" in again.stderr
    assert statuses(out) == ["done", "ambiguous"] and submits(fal) == 2
    asked = invoke("batch", SCHNELL, str(inputs), "--out", str(out), "--resubmit-ambiguous")
    assert asked.exit_code == 0 and statuses(out) == ["done", "done"] and submits(fal, duplicates=1) == 3


def test_an_unreadable_inputs_file_is_one_line_naming_it(
    fal: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, out = rows_file(tmp_path, 2), tmp_path / "out"
    real_read = Path.read_bytes

    def denied(self: Path) -> bytes:  # the tests may run as root, whom a file mode does not stop
        if self == inputs:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    result = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert result.exit_code == 2
    (line,) = error_lines(result.stderr)
    assert str(inputs) in line and "Permission denied" in line
    assert len(result.stderr.strip().splitlines()) == 1 and submits(fal) == 0


# 5. A key echoed by a model is never stored.


def test_a_key_echoed_in_an_output_is_redacted_from_results_and_ledger(
    fal: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "/_local/cdn/files/"  # the local model puts it in every output URL: the model "echoes the key"
    monkeypatch.setenv("FAL_KEY", f"cli-test-id:{secret}")
    inputs, out = rows_file(tmp_path, 2), tmp_path / "out"
    result = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    text = (out / "results.jsonl").read_text()
    assert secret not in text and "[redacted]" in text
    with sqlite3.connect(out / "ledger.sqlite3") as db:
        stored = " ".join(output for (output,) in db.execute("SELECT output FROM rows"))
    db.close()
    assert secret not in stored and "[redacted]" in stored
    assert secret.encode() not in b"".join(p.read_bytes() for p in out.glob("ledger.sqlite3*"))


# 13. fal unreachable: stop after a run of connection failures, rows left pending.


def test_a_batch_against_a_stopped_server_stops_after_a_run_of_connection_failures(
    fal: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, out = 50, tmp_path / "out"
    inputs = rows_file(tmp_path, rows)
    for name in ("FAL_QUEUE_RUN_HOST", "FAL_REST_HOST"):
        monkeypatch.setenv(name, f"https://127.0.0.1:{free_port()}")
    attempts: list[str] = []
    real_init, real_submit = AsyncClient.__init__, AsyncClient.submit

    def one_attempt_each(self: AsyncClient, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **{**kwargs, "retry": RetryPolicy(max_retries=0)})  # the runtime's own retries off

    async def counted(self: AsyncClient, endpoint_id: str, *args: Any, **kwargs: Any) -> Any:
        attempts.append(endpoint_id)
        return await real_submit(self, endpoint_id, *args, **kwargs)

    monkeypatch.setattr(AsyncClient, "__init__", one_attempt_each)
    monkeypatch.setattr(AsyncClient, "submit", counted)
    started = time.monotonic()
    stopped = invoke("batch", SCHNELL, str(inputs), "--out", str(out), "--concurrency", "4")
    assert time.monotonic() - started < 10
    assert stopped.exit_code == EXIT_UNREACHABLE
    (line,) = error_lines(stopped.stderr)
    assert line.startswith("batch stopped: fal is unreachable (5 connection failures in a row")
    assert f"{rows} rows left" in line
    assert len(attempts) <= 5 + 4  # the run, plus the rows already in flight
    assert statuses(out) == ["pending"] * rows

    monkeypatch.setattr(AsyncClient, "__init__", real_init)
    monkeypatch.setattr(AsyncClient, "submit", real_submit)
    for name, value in environment(fal).items():
        monkeypatch.setenv(name, value)
    again = invoke("batch", SCHNELL, str(inputs), "--out", str(out), "--concurrency", "8")
    assert again.exit_code == 0 and submits(fal) == rows


@pytest.mark.slow
def test_a_real_batch_against_a_stopped_server_stops_with_the_runtime_default_retries(tmp_path: Path) -> None:
    rows, out = 50, tmp_path / "out"
    inputs = rows_file(tmp_path, rows)
    host = f"https://127.0.0.1:{free_port()}"
    env = {**os.environ, "FAL_KEY": "k:" + "s" * 16, "FAL_QUEUE_RUN_HOST": host, "FAL_REST_HOST": host}
    started = time.monotonic()
    done = subprocess.run(command("batch", SCHNELL, str(inputs), "--out", str(out)), env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    (line,) = error_lines(done.stderr)
    assert "fal is unreachable" in line and f"{rows} rows left" in line
    # The aim: a batch against a stopped server stops in ≤ 10 s. A refused connection costs ~1.2 s of the
    # runtime's retries (RetryPolicy.refused_retries), and five in a row stop the batch; the process starts in ~1 s.
    assert elapsed < 10, elapsed
    assert statuses(out) == ["pending"] * rows
