"""What requests cost (`run`'s billed line, `batch`'s units and cost per row and total) and the account commands
(`usage`, `requests`, `keys`), in-process through click's CliRunner against a local server that answers fal's
whole Platform API (its specs folder holds `_platform/v1.yaml`). Each test gets a fresh server, so the history,
usage and keys it reads are its own."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fal_cli.app import cli
from fal_runtime.local import LocalServer
from generated.platform.keys import CreateApiKeyResponse, ListApiKeysKey
from generated.platform.models import GetBillingEventsBillingEvent, GetUsageResponse, ListRequestsByEndpointItem
from tests.cli.conftest import FLUX_I2I, KEY, ROOT, SCHNELL, command, environment

PRICE: dict[str, Any] = {"unit_price": 0.003, "unit": "megapixels", "currency": "USD", "billable_units": 2.5}


@pytest.fixture(scope="session")
def platform_specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    specs = tmp_path_factory.mktemp("platform-specs")
    for endpoint_id in (SCHNELL, FLUX_I2I):
        (specs / endpoint_id).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "specs" / f"{endpoint_id}.yaml", specs / f"{endpoint_id}.yaml")
    (specs / "_platform").mkdir()
    shutil.copy(ROOT / "specs" / "_platform" / "v1.yaml", specs / "_platform" / "v1.yaml")
    return specs


@pytest.fixture
def fal(platform_specs: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """A fresh server answering the Platform API, SCHNELL priced at $0.003 per megapixel and billed 2.5 of them; this
    process's environment points at it (FAL_API_HOST included)."""
    with LocalServer(platform_specs, prices={SCHNELL: PRICE}) as server:
        for name, value in environment(server).items():
            monkeypatch.setenv(name, value)
        yield server


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def run(prompt: str = "a fox", *more: str) -> Result:
    result = invoke("run", SCHNELL, "--prompt", prompt, *more)
    assert result.exit_code == 0, result.stderr
    return result


def pricing_calls(server: LocalServer) -> int:
    calls: int = server.counters()["calls"].get("", {}).get("pricing", 0)
    return calls


def results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def write_inputs(path: Path, *prompts: str) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


# -- run ---------------------------------------------------------------------------------------------------------------


def test_run_prints_what_fal_billed_on_stderr_after_the_output(fal: LocalServer) -> None:
    plain = run()
    assert plain.stderr.splitlines()[-1] == "billed: 2.5 megapixels × $0.003 = $0.0075"
    assert "billed" not in plain.stdout and plain.stdout.startswith("images: [")
    as_json = run("a fox", "--json")
    json.loads(as_json.stdout)  # stdout is the output JSON alone
    assert as_json.stderr.splitlines()[-1] == "billed: 2.5 megapixels × $0.003 = $0.0075"
    assert pricing_calls(fal) == 2


def test_result_prints_what_fal_billed_too(fal: LocalServer) -> None:
    submitted = invoke("submit", SCHNELL, "--prompt", "a fox")
    assert submitted.exit_code == 0, submitted.stderr
    request_id = submitted.stdout.split()[-1]
    fetched = invoke("result", SCHNELL, request_id, "--json")
    assert fetched.exit_code == 0, fetched.stderr
    json.loads(fetched.stdout)
    assert fetched.stderr.splitlines()[-1] == "billed: 2.5 megapixels × $0.003 = $0.0075"


def test_run_prices_in_the_currency_fal_names(fal: LocalServer) -> None:
    fal.set_prices({SCHNELL: {"unit_price": 0.5, "unit": "image", "currency": "JPY", "billable_units": 3}})
    assert run().stderr.splitlines()[-1] == "billed: 3 image × 0.50 JPY = 1.50 JPY"


def test_run_shows_the_units_alone_when_the_price_is_unknown(fal: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fal.set_prices({SCHNELL: {"unit": "megapixels", "currency": "USD", "billable_units": 2.5}})  # no unit_price
    assert run().stderr.splitlines()[-1] == "billed: 2.5 units"
    fal.set_prices({}, replace=True)  # not listed: fal bills 1 unit
    assert run().stderr.splitlines()[-1] == "billed: 1 unit"
    fal.set_prices({SCHNELL: PRICE})
    monkeypatch.setenv("FAL_API_HOST", "127.0.0.1:9")  # pricing unreachable: the run still succeeds
    assert run().stderr.splitlines()[-1] == "billed: 2.5 units"


def test_run_prints_no_billed_line_when_fal_sends_no_units(fal: LocalServer) -> None:
    fal.set_prices({SCHNELL: {**PRICE, "billable_units": "n/a"}})  # an unreadable x-fal-billable-units: no units
    result = run()
    assert "billed" not in result.stdout + result.stderr
    assert pricing_calls(fal) == 0


# -- batch -------------------------------------------------------------------------------------------------------------


def test_batch_rows_carry_units_and_cost_and_the_summary_totals_them(fal: LocalServer, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"prompt": "a"}\n{"prompt": "b", "num_inference_steps": 99}\n{"prompt": "c"}\n')
    result = invoke("batch", SCHNELL, str(inputs), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1  # the invalid row
    rows = results(tmp_path / "out")
    for row in (rows[0], rows[2]):
        assert (row["status"], row["billable_units"], row["cost"], row["currency"]) == ("done", 2.5, 0.0075, "USD")
    assert not {"billable_units", "cost", "currency"} & set(rows[1])
    assert "cost: $0.015 (2 rows)" in result.stderr.splitlines()
    assert pricing_calls(fal) == 1  # once per batch, not per row


def test_batch_without_a_price_records_the_units_and_says_so_once(fal: LocalServer, tmp_path: Path) -> None:
    fal.set_prices({SCHNELL: {"unit": "megapixels", "currency": "USD", "billable_units": 2}})  # no unit_price
    inputs = write_inputs(tmp_path / "in.jsonl", "a", "b", "c")
    result = invoke("batch", SCHNELL, str(inputs), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert all(row["billable_units"] == 2 and "cost" not in row for row in results(tmp_path / "out"))
    notes = [line for line in result.stderr.splitlines() if line.startswith(f"price of {SCHNELL} unknown (")]
    assert len(notes) == 1 and notes[0].endswith("results.jsonl records the billable units without a cost")
    assert "cost: 3 rows billed 6 units at an unknown price" in result.stderr.splitlines()


def test_a_slow_price_holds_up_no_row(fal: LocalServer, tmp_path: Path) -> None:
    """The price is looked up while the rows run: a row that ends before it arrives is committed at once (its cost
    filled in when the price comes), so a slow or unreachable pricing API never stalls the batch's workers."""
    fal.script(None, "pricing", delay=4.0)
    inputs = write_inputs(tmp_path / "in.jsonl", *"abcdef")
    finished: list[Result] = []
    worker = threading.Thread(
        target=lambda: finished.append(
            invoke("batch", SCHNELL, str(inputs), "--out", str(tmp_path / "out"), "--concurrency", "1")
        )
    )
    worker.start()
    time.sleep(3.0)  # six rows of ~0.2 s each, one at a time, while the price is still on its way
    assert fal.counters()["submits"] == {SCHNELL: 6}
    worker.join(30)
    (result,) = finished
    assert result.exit_code == 0, result.stderr
    assert [(r["billable_units"], r["cost"], r["currency"]) for r in results(tmp_path / "out")] == [
        (2.5, 0.0075, "USD")
    ] * 6
    assert "cost: $0.045 (6 rows)" in result.stderr.splitlines()


OLD_SCHEMA = """
CREATE TABLE rows (
    row INTEGER PRIMARY KEY, state TEXT NOT NULL, request_id TEXT, output TEXT, error TEXT,
    lost INTEGER NOT NULL DEFAULT 0, files TEXT
);
INSERT INTO rows SELECT row, state, request_id, output, error, lost, files FROM rows_new;
DROP TABLE rows_new;
"""


def test_a_batch_resumed_from_an_older_ledger_keeps_its_rows_without_units(fal: LocalServer, tmp_path: Path) -> None:
    inputs, out = write_inputs(tmp_path / "in.jsonl", "a", "b"), tmp_path / "out"
    assert invoke("batch", SCHNELL, str(inputs), "--out", str(out)).exit_code == 0
    with sqlite3.connect(out / "ledger.sqlite3") as db:  # as a version that recorded no billing left it: row 2 to do
        db.execute("ALTER TABLE rows RENAME TO rows_new")
        db.executescript(OLD_SCHEMA)
        db.execute("UPDATE rows SET state = 'pending', request_id = NULL, output = NULL WHERE row = 2")
    resumed = invoke("batch", SCHNELL, str(inputs), "--out", str(out))
    assert resumed.exit_code == 0, resumed.stderr
    old, new = results(out)
    assert old["status"] == "done" and "billable_units" not in old and "cost" not in old
    assert (new["billable_units"], new["cost"], new["currency"]) == (2.5, 0.0075, "USD")
    assert "cost: $0.0075 (1 row)" in resumed.stderr.splitlines()
    assert fal.counters()["submits"] == {SCHNELL: 3}


def test_the_batch_total_never_adds_amounts_in_different_currencies(fal: LocalServer, tmp_path: Path) -> None:
    inputs, out = write_inputs(tmp_path / "in.jsonl", "a", "b"), tmp_path / "out"
    fal.behave(SCHNELL, error="boom", times=1)  # the first row fails, and is not billed
    assert invoke("batch", SCHNELL, str(inputs), "--out", str(out), "--concurrency", "1").exit_code == 1
    fal.set_prices({SCHNELL: {**PRICE, "currency": "EUR"}})
    again = invoke("batch", SCHNELL, str(inputs), "--out", str(out), "--retry-failed")
    assert again.exit_code == 0, again.stderr
    assert [row["currency"] for row in results(out)] == ["EUR", "USD"]
    assert "cost: 0.0075 EUR (1 row); $0.0075 (1 row); different currencies, not added together" in (
        again.stderr.splitlines()
    )


# -- usage -------------------------------------------------------------------------------------------------------------


def test_usage_prints_a_line_per_endpoint_when_piped_and_the_total_on_stderr(fal: LocalServer) -> None:
    run()
    run()
    result = invoke("usage")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{SCHNELL}\t5\tmegapixels\t$0.003\t-\t$0.015\n"
    assert result.stderr == "total: $0.015\n"


def test_usage_json_is_fals_answer_as_the_generated_model_dumps_it(fal: LocalServer) -> None:
    run()
    result = invoke("usage", "--json")
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert GetUsageResponse.model_validate(answer).model_dump(mode="json") == answer
    ((line,),) = [answer["summary"]]
    assert (line["endpoint_id"], line["quantity"], line["cost_total"], line["currency"]) == (
        SCHNELL,
        2.5,
        0.0075,
        "USD",
    )
    assert result.stderr == ""


def test_usage_windows_and_endpoint_filters(fal: LocalServer) -> None:
    run()
    today = datetime.now(UTC).date().isoformat()
    assert invoke("usage", "--since", today).stdout.startswith(SCHNELL)
    assert invoke("usage", "--since", "1h", "--endpoint", SCHNELL, "--endpoint", "fal-ai/other").stdout.startswith(
        SCHNELL
    )
    earlier = invoke("usage", "--since", "3d", "--until", "2d")
    assert earlier.exit_code == 0 and earlier.stdout == ""
    assert earlier.stderr.startswith("no billed usage from ")
    assert invoke("usage", "--endpoint", "fal-ai/other").stdout == ""


def test_usage_limit_keeps_the_costliest_lines_and_the_total_of_all(fal: LocalServer) -> None:
    run()
    fal.set_prices({FLUX_I2I: {**PRICE, "unit_price": 0.01, "billable_units": 1}})
    assert invoke("run", FLUX_I2I, "--image-url", "https://x.test/a.png", "--prompt", "p").exit_code == 0
    result = invoke("usage", "--limit", "1")
    assert result.stdout == f"{FLUX_I2I}\t1\tmegapixels\t$0.01\t-\t$0.01\n"
    assert result.stderr == "total: $0.0175 (all 2 lines; 1 shown)\n"
    (line,) = json.loads(invoke("usage", "--limit", "1", "--json").stdout)["summary"]
    assert line["endpoint_id"] == FLUX_I2I
    assert [row.split("\t")[0] for row in invoke("usage").stdout.splitlines()] == [FLUX_I2I, SCHNELL]


def test_usage_on_a_terminal_is_a_table_with_its_total(fal: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    run()
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws for a terminal
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    result = invoke("usage")
    assert result.exit_code == 0, result.stderr
    lines = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout).splitlines()  # styles (italic title, bold header)
    assert lines[0].startswith("Usage from ") and lines[0].rstrip().endswith(" to now")
    assert any(line.split() == ["endpoint", "quantity", "unit", "unit", "price", "discount", "cost"] for line in lines)
    assert any(line.split() == [SCHNELL, "2.5", "megapixels", "$0.003", "$0.0075"] for line in lines)
    assert lines[-1].strip() == "total: $0.0075"
    assert result.stderr == ""


def test_bad_windows_are_usage_errors_and_fals_errors_exit_1(fal: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = invoke("usage", "--since", "yesterday")
    assert bogus.exit_code == 2 and "expected a duration back from now" in bogus.stderr
    backwards = invoke("requests", SCHNELL, "--since", "1h", "--until", "2h")
    assert backwards.exit_code == 2 and "--until" in backwards.stderr and "must come after --since" in backwards.stderr
    too_many = invoke("usage", *[a for i in range(51) for a in ("--endpoint", f"e/{i}")])
    assert too_many.exit_code == 2 and "at most 50 endpoints" in too_many.stderr
    assert invoke("requests").exit_code == 2  # an endpoint is required
    assert fal.counters()["calls"] == {}
    monkeypatch.delenv("FAL_KEY")
    no_key = invoke("usage")
    assert no_key.exit_code == 1 and no_key.stderr.startswith("Error: ") and "FAL_KEY" in no_key.stderr


# -- requests ----------------------------------------------------------------------------------------------------------


def test_requests_lists_status_duration_and_cost_latest_first(fal: LocalServer) -> None:
    run("first")
    fal.behave(SCHNELL, error="model crashed", times=1)
    assert invoke("run", SCHNELL, "--prompt", "failing").exit_code == 1
    run("last")
    result = invoke("requests", SCHNELL)
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(row[1], row[4]) for row in rows] == [("success (200)", "$0.0075"), ("error (500)", "-"),
                                                 ("success (200)", "$0.0075")]  # fmt: skip
    assert all(len(row) == 5 and row[3].endswith(" s") and row[2].startswith("20") for row in rows)
    assert result.stderr == "total: $0.015 for 2 billed of 3 requests\n"
    errors = invoke("requests", SCHNELL, "--status", "error")
    assert [line.split("\t")[1] for line in errors.stdout.splitlines()] == ["error (500)"]
    latest = invoke("requests", SCHNELL, "--limit", "1")
    assert latest.stdout.splitlines() == [result.stdout.splitlines()[0]]


def test_requests_json_is_fals_items_and_billing_events(fal: LocalServer) -> None:
    run()
    result = invoke("requests", SCHNELL, "--json", "--limit", "5")
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    ((item,), (event,)) = answer["items"], answer["billing_events"]
    assert ListRequestsByEndpointItem.model_validate(item).model_dump(mode="json") == item
    assert GetBillingEventsBillingEvent.model_validate(event).model_dump(mode="json") == event
    assert event["request_id"] == item["request_id"] and event["cost_total"] == 0.0075


def test_requests_of_several_endpoints_name_each_ones_endpoint(fal: LocalServer) -> None:
    run()
    result = invoke("requests", SCHNELL, "fal-ai/other")
    assert result.exit_code == 0, result.stderr
    ((_, endpoint, status, *_),) = [line.split("\t") for line in result.stdout.splitlines()]
    assert (endpoint, status) == (SCHNELL, "success (200)")


# -- keys --------------------------------------------------------------------------------------------------------------


def test_keys_create_prints_the_secret_once_on_stdout_and_list_never_shows_it(fal: LocalServer) -> None:
    made = invoke("keys", "create", "ci pipeline")
    assert made.exit_code == 0, made.stderr
    key_id, key = made.stdout.rstrip("\n").split("\t")
    secret = key.removeprefix(f"{key_id}:")
    assert secret and secret != key
    assert secret not in made.stderr and "only this once" in made.stderr
    listed = invoke("keys")
    assert listed.stdout.splitlines()[0].split("\t")[:2] == [key_id, "ci pipeline"]
    as_json = invoke("keys", "list", "--json")
    (entry,) = json.loads(as_json.stdout)
    assert ListApiKeysKey.model_validate(entry).model_dump(mode="json") == entry
    assert secret not in listed.stdout + listed.stderr + as_json.stdout
    created = json.loads(invoke("keys", "create", "other", "--json").stdout)
    assert CreateApiKeyResponse.model_validate(created).model_dump(mode="json") == created
    assert created["key"] == f"{created['key_id']}:{created['key_secret']}"
    assert len(invoke("keys", "list", "--limit", "1").stdout.splitlines()) == 1
    assert KEY not in made.stdout + listed.stdout + as_json.stdout


def test_keys_delete_without_a_terminal_deletes_and_fals_errors_exit_1(fal: LocalServer) -> None:
    key_id = invoke("keys", "create", "old").stdout.split("\t")[0]
    deleted = invoke("keys", "delete", key_id)
    assert deleted.exit_code == 0 and deleted.stdout == f"deleted {key_id}\n"
    assert key_id not in invoke("keys").stdout
    assert invoke("keys").stderr == "no API keys\n"
    missing = invoke("keys", "delete", "no-such-key", "--json")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: HTTP 404") and len(missing.stderr.splitlines()) == 1
    other = invoke("keys", "create", "x").stdout.split("\t")[0]
    assert json.loads(invoke("keys", "delete", other, "--yes", "--json").stdout) == {"key_id": other, "deleted": True}
    empty = invoke("keys", "create", "")
    assert empty.exit_code == 2 and "alias" in empty.stderr


def answer_on_a_terminal(
    args: list[str], env: dict[str, str], answer: bytes | None, timeout: float = 60
) -> tuple[int, str]:
    """Run the real command with a pseudo-terminal as stdin, stdout and stderr; type `answer` once it asks."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    drawn = b""
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
            drawn += data
            if answer is not None and b"[y/N]" in drawn:
                os.write(leader, answer)
                answer = None
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=10), drawn.decode("utf-8", "replace")


@pytest.mark.slow
def test_keys_delete_asks_first_on_a_terminal_unless_yes(fal: LocalServer) -> None:
    env = {**os.environ, **environment(fal), "TERM": "xterm"}
    key_id = invoke("keys", "create", "prod").stdout.split("\t")[0]
    code, drawn = answer_on_a_terminal(command("keys", "delete", key_id), env, b"n\n")
    assert code == 1 and f"Delete API key {key_id}? Apps using it lose access at once [y/N]" in drawn
    assert key_id in invoke("keys").stdout  # kept
    code, drawn = answer_on_a_terminal(command("keys", "delete", key_id), env, b"y\n")
    assert code == 0 and f"deleted {key_id}" in drawn
    assert key_id not in invoke("keys").stdout
    other = invoke("keys", "create", "ci").stdout.split("\t")[0]
    code, drawn = answer_on_a_terminal(command("keys", "delete", other, "--yes"), env, None)
    assert code == 0 and "[y/N]" not in drawn and f"deleted {other}" in drawn
