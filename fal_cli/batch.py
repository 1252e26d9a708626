"""`fal-typed batch`: many inputs of one endpoint, at bounded concurrency, resumable through the ledger.

Every line is validated before anything is submitted; bad lines become failed rows. Rows then run on `concurrency`
worker tasks sharing one `AsyncClient`: submit, commit the request id, wait for the result, store it. A 429 that
outlived the runtime's own retries pauses every submit (the `RateGate`) instead of failing the row.

The one unavoidable gap: between fal answering a submit and the ledger committing its request id, the request exists
at fal but not in the ledger. Nothing awaits inside that gap (the response is parsed and the row updated in one
uninterrupted stretch of the event loop), so only a process killed in those microseconds loses the id: that row is
still `pending` when the batch resumes, is submitted again, and fal runs (and bills) it twice; the first request's
result is never fetched. results.jsonl still gets exactly one line for the row, from the second request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
from pydantic import BaseModel

from fal_cli.ledger import Ledger, Row
from fal_cli.options import describe_errors, with_local_files
from fal_cli.outputs import save_all_async
from fal_cli.progress import BatchProgress
from fal_cli.secrets import scrub
from fal_runtime import AsyncClient, Endpoint
from fal_runtime.errors import FalError, HTTPError, MissingCredentialsError, RateLimitError, RequestFailedError

MAX_PAUSE = 60.0


@dataclass
class Inputs:
    """The inputs file, read and validated: valid rows by line number, and the error of each bad line."""

    valid: dict[int, BaseModel]
    invalid: dict[int, str]
    sha256: str


def read_inputs(path: Path, model: type[BaseModel], file_fields: frozenset[str]) -> Inputs:
    """Parse and validate every non-blank line (line numbers are 1-based rows); nothing is sent."""
    raw = path.read_bytes()
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


class Runner:
    """Runs the unfinished rows of a ledger; every state change is committed before the next step."""

    def __init__(
        self,
        endpoint: Endpoint[Any, Any],
        ledger: Ledger,
        inputs: Inputs,
        progress: BatchProgress,
        files_dir: Path | None,
    ) -> None:
        self.endpoint, self.ledger, self.inputs, self.progress = endpoint, ledger, inputs, progress
        self.files_dir = files_dir
        self.gate = RateGate()

    async def run(self, work: list[Row], concurrency: int) -> None:
        rows = iter(work)  # shared by the workers: each takes the next row when it is free
        async with AsyncClient(max_connections=concurrency + 8) as client:
            workers = [asyncio.create_task(self._worker(client, rows)) for _ in range(min(concurrency, len(work)))]
            try:
                await asyncio.gather(*workers)
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, client: AsyncClient, rows: Iterator[Row]) -> None:
        for row in rows:
            with self.progress.flying():
                request_id = row.request_id if row.state == "submitted" else await self._submit(client, row.row)
                if request_id is not None:
                    await self._finish(client, row.row, request_id)

    async def _submit(self, client: AsyncClient, row: int) -> str | None:
        """Submit one row and commit its request id; None when the submit failed (the row is then failed)."""
        while True:
            await self.gate.wait()
            try:
                handle = await self.endpoint.submit_async(self.inputs.valid[row], client=client)
            except RateLimitError as exc:
                self.gate.slow_down(exc)
                continue
            except MissingCredentialsError:
                raise
            except FalError as exc:
                self._fail(row, exc, lost=False)
                return None
            self.ledger.submitted(row, handle.request_id)  # no await since the response: see the module docstring
            self.gate.ok()
            return str(handle.request_id)

    async def _finish(self, client: AsyncClient, row: int, request_id: str) -> None:
        """Wait for the result of a submitted row, save its files if asked, and commit the outcome."""
        handle = self.endpoint.handle_async(request_id, client=client)
        while True:
            try:
                output = await handle.result()
                files = await self._save(client, row, output)
            except RateLimitError as exc:
                self.gate.slow_down(exc)
                await self.gate.wait()
                continue
            except RequestFailedError as exc:
                return self._fail(row, exc, lost=False)
            except HTTPError as exc:  # 404: fal no longer knows the request; anything else may pass
                return self._fail(row, exc, lost=exc.status_code != 404)
            except FalError as exc:
                return self._fail(row, exc, lost=True)
            except pydantic.ValidationError as exc:
                return self._fail(row, exc, lost=False)
            self.ledger.done(row, output.model_dump_json(by_alias=True), files)
            self.progress.succeeded()
            return None

    async def _save(self, client: AsyncClient, row: int, output: BaseModel) -> list[str] | None:
        if self.files_dir is None:
            return None
        paths = await save_all_async(output, self.files_dir / str(row), client)
        return [str(p) for p in paths]

    def _fail(self, row: int, exc: Exception, *, lost: bool) -> None:
        message = scrub(" ".join(str(exc).split())) or type(exc).__name__
        self.ledger.failed(row, message, lost=lost)
        self.progress.failed_one()


def run_batch(module: ModuleType, ledger: Ledger, inputs: Inputs, *, concurrency: int, save: bool,
              out_dir: Path, progress: BatchProgress) -> None:  # fmt: skip
    """Run every unfinished row; results.jsonl is rebuilt from the ledger however this ends."""
    runner = Runner(module.endpoint, ledger, inputs, progress, out_dir / "files" if save else None)
    try:
        work = ledger.unfinished()
        if work:
            asyncio.run(runner.run(work, concurrency))
    finally:
        ledger.write_results(out_dir / "results.jsonl")
