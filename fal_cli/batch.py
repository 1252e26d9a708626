"""`fal-typed batch`: many inputs of one endpoint, at bounded concurrency, resumable through the ledger.

Every line is validated before anything is submitted; bad lines become failed rows. Rows then run on `concurrency`
worker tasks sharing one `AsyncClient`: upload the row's local files, mark the row `submitting` (flushed to the disk),
submit, commit the request id, wait for the result, store it (the key scrubbed) with what fal billed for it (its
`billable_units`, priced at the endpoint's unit price, looked up once per run while the rows run; see `billing`). A
429 that outlived the runtime's own retries pauses every submit (the `RateGate`) instead of failing the row.

The window: between the moment a submit may leave this machine and the moment fal's answer is parsed and its request
id committed, the request may exist at fal but not in the ledger. That window is the whole submit round trip: the
network both ways plus fal's time to accept, usually tens to hundreds of milliseconds, but up to the client's read
timeout (120 s) when fal is slow to answer. A row caught in it (the process killed or interrupted, a read timeout or
a reset after sending, a 5xx from fal itself, an unreadable 2xx, a full disk while committing the id) stays
`submitting`: it is reported as ambiguous, with the request id when fal sent one, and is sent again only with
`--resubmit-ambiguous`. Nothing is ever sent twice unasked; the price is that such a row waits for the user's word.

The batch stops early, with rows left for a later run of the same command, when the ledger cannot be written (disk
full: no new submits, the rows in flight finish, the request ids not recorded are printed; `EXIT_STORAGE`) or when
fal is unreachable (`CONNECTION_FAILURES` connection failures in a row, each one a request that provably never left
this machine; `EXIT_UNREACHABLE`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ParamSpec

import pydantic
from pydantic import BaseModel

from fal_cli.billing import PriceLookup, cost, lookup_price_async
from fal_cli.ledger import Billed, Ledger, LedgerError, Row, is_disk_full
from fal_cli.options import describe_errors, with_local_files
from fal_cli.outputs import save_all_async
from fal_cli.progress import BatchProgress
from fal_cli.secrets import scrub
from fal_runtime import AsyncClient, Endpoint
from fal_runtime.errors import (
    FalError,
    HTTPError,
    MissingCredentialsError,
    ProtocolError,
    RateLimitError,
    RequestFailedError,
    TransportError,
)

MAX_PAUSE = 60.0
CONNECTION_FAILURES = 5  # connection failures in a row (nothing sent, no success between them) that stop a batch
ROW_CONNECTION_TRIES = 3  # connection failures of one row before it is left for a later run
CONNECTION_PAUSE = 0.5  # seconds before a row whose connection failed is tried again (doubling)

P = ParamSpec("P")

EXIT_STORAGE = 3  # the ledger or results.jsonl could not be written (disk full, I/O error)
EXIT_UNREACHABLE = 4  # fal could not be reached: stopped, rows left for a later run


class InputsError(Exception):
    """The inputs file cannot be read."""


@dataclass
class Inputs:
    """The inputs file, read and validated: valid rows by line number, and the error of each bad line."""

    valid: dict[int, BaseModel]
    invalid: dict[int, str]
    sha256: str


def read_inputs(path: Path, model: type[BaseModel], file_fields: frozenset[str]) -> Inputs:
    """Parse and validate every non-blank line (line numbers are 1-based rows); nothing is sent."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputsError(f"cannot read {path}: {exc.strerror or exc}") from None
    valid: dict[int, BaseModel] = {}
    invalid: dict[int, str] = {}
    for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise TypeError(f"expected a JSON object, got {type(data).__name__}")
            valid[number] = model.model_validate(with_local_files(data, file_fields))
        except pydantic.ValidationError as exc:
            invalid[number] = f"invalid input: {describe_errors(exc)}"
        except RecursionError:
            invalid[number] = "not a JSON object: nested too deeply"
        except (ValueError, TypeError) as exc:
            invalid[number] = f"not a JSON object: {exc}"
    return Inputs(valid, invalid, hashlib.sha256(raw).hexdigest())


class RateGate:
    """Shared back-pressure for 429s: every submit waits while the gate is closed. It closes for the Retry-After
    the error carries, or else for a backoff that doubles per consecutive 429 (capped) and resets on success."""

    def __init__(self, base: float = 1.0) -> None:
        self._base = base
        self._backoff = base
        self._until = 0.0

    async def wait(self) -> None:
        while (left := self._until - time.monotonic()) > 0:
            await asyncio.sleep(left)

    def slow_down(self, exc: RateLimitError) -> None:
        asked = exc.retry_after  # fal's Retry-After, in seconds, when it sent one
        pause = asked if asked is not None and asked > 0 else self._backoff
        self._backoff = min(self._backoff * 2, MAX_PAUSE)
        self._until = max(self._until, time.monotonic() + min(pause, MAX_PAUSE))

    def ok(self) -> None:
        self._backoff = self._base


def never_sent(exc: BaseException) -> bool:
    """A failure of a request that provably never left this machine (the connection was never established)."""
    return isinstance(exc, TransportError) and not exc.request_sent


def maybe_created(exc: FalError) -> bool:
    """Whether a failed submit may have created a job at fal all the same: sent with no answer, a 5xx from fal
    itself (not from the ingress in front, which answers without a request id), or a 2xx this runtime could not read.
    A 4xx is fal refusing the work."""
    if isinstance(exc, TransportError):
        return exc.request_sent
    if isinstance(exc, HTTPError):
        return exc.status_code >= 500 and exc.request_id is not None
    return isinstance(exc, ProtocolError)


def one_line(exc: BaseException) -> str:
    return scrub(" ".join(str(exc).split())) or type(exc).__name__


@dataclass
class Outcome:
    """How a run ended, beyond the ledger: why it stopped early (and its exit code), and the request ids fal holds
    that the ledger does not (the disk filled up): (row, request id, recorded as submitted)."""

    stopped: str | None = None
    exit_code: int = 0
    unrecorded: list[tuple[int, str, bool]] = field(default_factory=list)
    left: int = 0  # rows whose connections kept failing, left pending for a later run

    def stop(self, reason: str, exit_code: int) -> None:
        if self.stopped is None:
            self.stopped, self.exit_code = reason, exit_code


class Runner:
    """Runs the unfinished rows of a ledger; every state change is committed before the next step."""

    def __init__(
        self,
        endpoint: Endpoint[Any, Any],
        ledger: Ledger,
        inputs: Inputs,
        progress: BatchProgress,
        files_dir: Path | None,
        *,
        say: Callable[[str], None],
        inputs_name: str = "inputs",
    ) -> None:
        self.endpoint, self.ledger, self.inputs, self.progress = endpoint, ledger, inputs, progress
        self.files_dir = files_dir
        self.say, self.inputs_name = say, inputs_name
        self.gate = RateGate()
        self.outcome = Outcome()
        self.connection_failures = 0  # in a row, across every worker
        self._marks: list[tuple[int, asyncio.Future[bool]]] = []  # rows waiting for their `submitting` commit
        self._price: asyncio.Task[PriceLookup] | None = None  # the endpoint's price, looked up once per run
        self._price_noted = False
        self._unpriced: list[tuple[int, float]] = []  # (row, units) done before the price arrived: priced when it does

    async def run(self, work: list[Row], concurrency: int) -> None:
        rows = iter(work)  # shared by the workers: each takes the next row when it is free
        self._price = asyncio.create_task(lookup_price_async(self.endpoint.endpoint_id))  # while the rows run
        async with AsyncClient(max_connections=concurrency + 8) as client:
            workers = [asyncio.create_task(self._worker(client, rows)) for _ in range(min(concurrency, len(work)))]
            try:
                await asyncio.gather(*workers)
                await self._price_done_rows()
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                self._price.cancel()
                await asyncio.gather(self._price, return_exceptions=True)

    async def _worker(self, client: AsyncClient, rows: Iterator[Row]) -> None:
        for row in rows:
            if self.outcome.stopped is not None:  # no new row once stopping; the rest stay as they are
                return
            with self.progress.flying():
                request_id = row.request_id if row.state == "submitted" else await self._submit(client, row.row)
                if request_id is not None:
                    await self._finish(client, row.row, request_id, recorded=True)

    # The ledger: a write that fails stops the batch (no new submits) instead of raising.

    def _write(self, write: Callable[P, None], /, *args: P.args, **kwargs: P.kwargs) -> bool:
        try:
            write(*args, **kwargs)
        except LedgerError as exc:
            what = "the disk is full" if exc.full else "the ledger cannot be written"
            self.outcome.stop(f"{what} ({exc})", EXIT_STORAGE)
            return False
        return True

    async def _mark(self, row: int) -> bool:
        """Mark the row `submitting` before it is sent. The rows of every worker asking in the same turn of the
        event loop share one commit, so one fsync covers them (a burst of submits costs one flush, not one each)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._marks.append((row, future))
        if len(self._marks) == 1:
            asyncio.get_running_loop().call_soon(self._flush_marks)
        return await future

    def _flush_marks(self) -> None:
        marks = [(row, future) for row, future in self._marks if not future.done()]  # not a cancelled worker's
        self._marks = []
        if not marks:
            return
        ok = self._write(self.ledger.submitting, [row for row, _ in marks])
        for _, future in marks:
            if not future.done():  # cancelled since: its row stays marked (ambiguous), the safe side
                future.set_result(ok)

    # Connection failures: a run of them means fal is unreachable.

    def _connection_failed(self, exc: FalError) -> None:
        self.connection_failures += 1
        if self.connection_failures >= CONNECTION_FAILURES:
            self.outcome.stop(f"fal is unreachable ({self.connection_failures} connection failures in a row; last:"
                              f" {one_line(exc)})", EXIT_UNREACHABLE)  # fmt: skip

    def _reached(self) -> None:
        self.connection_failures = 0

    async def _submit(self, client: AsyncClient, row: int) -> str | None:
        """Upload the row's files, mark it submitting, submit it and commit its request id. None when it has no
        request id to watch: failed, ambiguous, or left pending (refused connections, a stop)."""
        data = self.inputs.valid.get(row)
        if data is None:  # checked before the run (`unknown_rows`); kept safe here
            self._fail(row, "not a valid line of the inputs file", lost=False)
            return None
        tries = 0
        uploaded = False
        while True:
            await self.gate.wait()
            if self.outcome.stopped is not None:
                return None
            marked = False  # from here on, until fal's answer is committed, the row is `submitting`
            try:
                if not uploaded:  # before the mark: a failed upload leaves nothing at fal to be unsure about
                    data = await self._upload(client, data)
                    uploaded = True
                if not await self._mark(row):
                    return None  # nothing was sent; the row stays pending
                marked = True
                handle = await self.endpoint.submit_async(data, client=client)
            except RateLimitError as exc:  # fal refused the work: nothing to be unsure about
                if marked:
                    self._write(self.ledger.not_sent, row)
                self.gate.slow_down(exc)
                continue
            except MissingCredentialsError:  # raised before anything is sent
                if marked:
                    self._write(self.ledger.not_sent, row)
                raise
            except FalError as exc:
                if never_sent(exc):
                    self._connection_failed(exc)
                    if marked and not self._write(self.ledger.not_sent, row):
                        return None
                    tries += 1
                    if self.outcome.stopped is not None:
                        return None
                    if tries >= ROW_CONNECTION_TRIES:
                        self.say(f"{self.inputs_name}:{row}: not sent, left for a later run: {one_line(exc)}")
                        self.outcome.left += 1
                        return None
                    await asyncio.sleep(CONNECTION_PAUSE * 2 ** (tries - 1))
                    continue
                self._reached()
                if marked and maybe_created(exc):
                    request_id = getattr(exc, "request_id", None)
                    reason = f"the submit may have reached fal: {one_line(exc)}"
                    if self._write(self.ledger.unsure, row, request_id, reason):
                        self.progress.ambiguous_one()
                    return None
                self._fail(row, one_line(exc), lost=False)
                return None
            self._reached()
            request_id = str(handle.request_id)
            self.gate.ok()
            if not self._write(self.ledger.submitted, row, request_id):
                # fal holds it, the ledger does not say so: watch it all the same and print its id at the end
                await self._finish(client, row, request_id, recorded=False)
                return None
            return request_id

    async def _upload(self, client: AsyncClient, data: BaseModel) -> BaseModel:
        pending = self.endpoint.pending_files(data)
        if not pending:
            return data
        uploaded: BaseModel = self.endpoint.with_urls(data, await client.upload_all(pending))
        return uploaded

    async def _finish(self, client: AsyncClient, row: int, request_id: str, *, recorded: bool) -> None:
        """Wait for the result of a submitted row, save its files if asked, and commit the outcome."""
        handle = self.endpoint.handle_async(request_id, client=client)
        tries = 0
        while True:
            try:
                output = await handle.result()
                files = await self._save(client, row, output)
            except RateLimitError as exc:
                self.gate.slow_down(exc)
                await self.gate.wait()
                continue
            except MissingCredentialsError:  # the row stays submitted: a run with the key watches it
                raise
            except RequestFailedError as exc:
                self._reached()
                return self._settle(row, request_id, recorded, error=exc, lost=False)
            except HTTPError as exc:  # 404: fal no longer knows the request; anything else may pass
                self._reached()
                return self._settle(row, request_id, recorded, error=exc, lost=exc.status_code != 404)
            except FalError as exc:
                if never_sent(exc):  # the row stays submitted: watched again now, or by a later run
                    self._connection_failed(exc)
                    tries += 1
                    if self.outcome.stopped is None and tries < ROW_CONNECTION_TRIES:
                        await asyncio.sleep(CONNECTION_PAUSE * 2 ** (tries - 1))
                        continue
                    if not recorded:
                        self.outcome.unrecorded.append((row, request_id, False))
                    return None
                return self._settle(row, request_id, recorded, error=exc, lost=True)
            except pydantic.ValidationError as exc:
                return self._settle(row, request_id, recorded, error=exc, lost=False)
            self._reached()
            text = scrub(output.model_dump_json(by_alias=True))  # a model may echo anything, the key included
            billed = self._billed(handle.billable_units)
            if recorded and self._write(self.ledger.done, row, text, files, billed):
                self.progress.succeeded()
                if billed is not None and billed.cost is None and not self._price_known():
                    self._unpriced.append((row, billed.units))
            else:
                self.outcome.unrecorded.append((row, request_id, recorded))
            return None

    def _price_known(self) -> bool:
        return self._price is not None and self._price.done() and not self._price.cancelled()

    def _billed(self, units: float | None) -> Billed | None:
        """What fal billed a row (None: it sent no units), priced if the endpoint's price has arrived; a row never
        waits for it (`_price_done_rows` prices the rows that ended before it)."""
        if units is None:
            return None
        if not self._price_known():
            return Billed(units, None, None)
        assert self._price is not None
        lookup = self._price.result()
        if lookup.price is None:
            self._note_unpriced(lookup)
            return Billed(units, None, None)
        return Billed(units, cost(units, lookup.price), lookup.price.currency)

    async def _price_done_rows(self) -> None:
        """Once the rows are done: the price (its lookup is bounded by its own timeouts) for the rows that ended
        before it arrived."""
        if not self._unpriced or self._price is None:
            return
        lookup = await self._price
        if lookup.price is None:
            self._note_unpriced(lookup)
            return
        costs = [(row, cost(units, lookup.price)) for row, units in self._unpriced]
        self._write(self.ledger.priced, costs, lookup.price.currency)

    def _note_unpriced(self, lookup: PriceLookup) -> None:
        if not self._price_noted:
            self._price_noted = True
            self.say(f"price of {self.endpoint.endpoint_id} unknown ({lookup.reason}): results.jsonl records the"
                     " billable units without a cost")  # fmt: skip

    def _settle(self, row: int, request_id: str, recorded: bool, *, error: Exception, lost: bool) -> None:
        """Commit a watched row's failure; one whose request id is not in the ledger is only printed at the end."""
        if recorded:
            self._fail(row, one_line(error), lost=lost)
        else:
            self.outcome.unrecorded.append((row, request_id, False))

    async def _save(self, client: AsyncClient, row: int, output: BaseModel) -> list[str] | None:
        if self.files_dir is None:
            return None
        paths = await save_all_async(output, self.files_dir / str(row), client)
        return [str(p) for p in paths]

    def _fail(self, row: int, message: str, *, lost: bool) -> None:
        """Commit a row's failure (scrubbed of the key)."""
        message = scrub(message)
        if self._write(self.ledger.failed, row, message, lost=lost):
            self.progress.failed_one()


def unknown_rows(ledger: Ledger, inputs: Inputs) -> dict[int, str]:
    """Pending rows of the ledger that are no valid line of the inputs file now (the file is the same, but a line
    may no longer validate: a local file gone, the endpoint's models regenerated): each with its error."""
    found: dict[int, str] = {}
    for row in ledger.unfinished():
        if row.state == "pending" and row.row not in inputs.valid:
            found[row.row] = inputs.invalid.get(row.row, "in the ledger, but not a line of the inputs file")
    return found


def run_batch(module: ModuleType, ledger: Ledger, inputs: Inputs, *, concurrency: int, save: bool,
              out_dir: Path, progress: BatchProgress, inputs_name: str = "inputs") -> Outcome:  # fmt: skip
    """Run every unfinished row; results.jsonl is rebuilt from the ledger however this ends (unless the disk is
    full). The outcome says whether the run stopped early, and why."""
    runner = Runner(module.endpoint, ledger, inputs, progress, out_dir / "files" if save else None,
                    say=progress.note, inputs_name=inputs_name)  # fmt: skip
    try:
        work = ledger.unfinished()
        if work:
            asyncio.run(runner.run(work, concurrency))
    finally:
        try:
            ledger.write_results(out_dir / "results.jsonl")
        except LedgerError as exc:
            what = "the disk is full" if exc.full else "the ledger cannot be read"
            runner.outcome.stop(f"{what} ({exc})", EXIT_STORAGE)
        except OSError as exc:
            full = is_disk_full(exc)
            what = "the disk is full" if full else "results.jsonl cannot be written"
            runner.outcome.stop(f"{what} ({out_dir / 'results.jsonl'}: {exc.strerror or exc})", EXIT_STORAGE)
    return runner.outcome
