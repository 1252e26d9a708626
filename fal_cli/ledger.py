"""The batch ledger: one SQLite file (stdlib sqlite3, WAL) recording every input row's state, so a batch stopped in
any way (Ctrl-C, a crash, SIGKILL) resumes where it was.

A row is `pending` (never submitted), `submitted` (fal holds it: its request id is committed), `done` (its output is
stored) or `failed` (its error is stored). A request id is committed the moment the submit returns, before the batch
waits on it, so a resumed batch watches that request instead of submitting the row again.

WAL with `synchronous=NORMAL`: a commit is in the WAL file once `commit()` returns, so it survives the process being
killed (SIGKILL included); only an OS crash or power loss can lose the last commits, which then resubmits those rows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

State = Literal["pending", "submitted", "done", "failed"]
FILE_NAME = "ledger.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    row INTEGER PRIMARY KEY,          -- the line number in the inputs file
    state TEXT NOT NULL,
    request_id TEXT,
    output TEXT,                      -- the output JSON of a done row
    error TEXT,                       -- the error of a failed row
    lost INTEGER NOT NULL DEFAULT 0,  -- failed while watching: fal may still hold its result
    files TEXT                        -- JSON list of saved paths (--save)
);
"""


class LedgerMismatch(Exception):
    """The ledger belongs to another endpoint or another inputs file."""


class Row(NamedTuple):
    row: int
    state: State
    request_id: str | None


class Ledger:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: every write is its own commit
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def bind(self, endpoint_id: str, inputs_sha256: str) -> None:
        """Claim a new ledger for this endpoint and inputs file, or check that an existing one is theirs."""
        wanted = {"endpoint_id": endpoint_id, "inputs_sha256": inputs_sha256}
        found = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not found:
            with self._transaction():
                self._db.executemany("INSERT INTO meta VALUES (?, ?)", wanted.items())
            return
        if found.get("endpoint_id") != endpoint_id:
            raise LedgerMismatch(f"{self.path} belongs to a batch of {found.get('endpoint_id')}, not {endpoint_id}")
        if found.get("inputs_sha256") != inputs_sha256:
            raise LedgerMismatch(f"{self.path} belongs to a different inputs file (or this one changed)")

    def add(self, valid: Iterable[int], invalid: dict[int, str]) -> None:
        """Record rows seen for the first time: valid ones pending, invalid ones failed (never submitted)."""
        with self._transaction():
            self._db.executemany("INSERT OR IGNORE INTO rows (row, state) VALUES (?, 'pending')", ((r,) for r in valid))
            self._db.executemany(
                "INSERT OR IGNORE INTO rows (row, state, error) VALUES (?, 'failed', ?)", invalid.items()
            )

    def retry_failed(self, valid: Iterable[int]) -> None:
        """`--retry-failed`: a failed row whose request fal may still hold is watched again; any other valid failed
        row is submitted again."""
        with self._transaction():
            for row in valid:
                self._db.execute(
                    "UPDATE rows SET state = CASE WHEN lost THEN 'submitted' ELSE 'pending' END,"
                    " request_id = CASE WHEN lost THEN request_id END, error = NULL, lost = 0"
                    " WHERE row = ? AND state = 'failed'",
                    (row,),
                )

    def unfinished(self) -> list[Row]:
        """Rows still to do, submitted ones first (they are already paid for)."""
        cursor = self._db.execute(
            "SELECT row, state, request_id FROM rows WHERE state IN ('pending', 'submitted')"
            " ORDER BY state = 'pending', row"
        )
        return [Row(*r) for r in cursor]

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT state, COUNT(*) FROM rows GROUP BY state").fetchall())

    def submitted(self, row: int, request_id: str) -> None:
        self._db.execute("UPDATE rows SET state = 'submitted', request_id = ? WHERE row = ?", (request_id, row))

    def done(self, row: int, output: str, files: list[str] | None) -> None:
        saved = json.dumps(files) if files is not None else None
        self._db.execute(
            "UPDATE rows SET state = 'done', output = ?, files = ?, error = NULL WHERE row = ?", (output, saved, row)
        )

    def failed(self, row: int, error: str, *, lost: bool) -> None:
        self._db.execute("UPDATE rows SET state = 'failed', error = ?, lost = ? WHERE row = ?", (error, lost, row))

    def results(self) -> Iterator[dict[str, Any]]:
        """One result object per row, in row order: `row`, `request_id`, `status`, then `output` or `error`."""
        cursor = self._db.execute("SELECT row, state, request_id, output, error, files FROM rows ORDER BY row")
        for row, state, request_id, output, error, files in cursor:
            line: dict[str, Any] = {"row": row, "request_id": request_id, "status": state}
            if state == "done":
                line["output"] = json.loads(output)
                if files is not None:
                    line["files"] = json.loads(files)
            elif error is not None:
                line["error"] = error
            yield line

    def write_results(self, target: Path) -> None:
        """Rebuild `target` (results.jsonl) from the ledger: a temporary file beside it, flushed to disk, renamed
        over it; a crash at any point leaves the previous complete file or the new one, never a mix."""
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                for line in self.results():
                    handle.write(json.dumps(line, separators=(",", ":")) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _transaction(self) -> sqlite3.Connection:
        """A context manager committing the block as one transaction (autocommit mode needs an explicit BEGIN)."""
        self._db.execute("BEGIN")
        return self._db
