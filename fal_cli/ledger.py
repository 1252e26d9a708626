"""The batch ledger: one SQLite file (stdlib sqlite3, WAL) recording every input row's state, so a batch stopped in
any way (Ctrl-C, a crash, SIGKILL, a full disk) resumes where it was, and the lock that keeps a second batch out of
the same directory.

A row is `pending` (never sent), `submitting` (its submit may have reached fal, but fal's answer is not recorded),
`submitted` (fal holds it: its request id is committed), `done` (its output is stored) or `failed` (its error is
stored). A row becomes `submitting` before its submit is sent, and `submitted` the moment fal's answer is parsed; a
row still `submitting` when a batch starts (the process died during the round trip, or the submit ended in a way
that does not say whether fal took it) is *ambiguous*: it is reported, with the request id when fal sent one, and
sent again only when the user asks (`--resubmit-ambiguous`). So no row is ever sent twice behind the user's back.

WAL: a commit is in the WAL file once `commit()` returns, so it survives the process being killed (SIGKILL
included). The `submitting` mark is also flushed to the disk (`synchronous=FULL`) before the submit is sent, so not
even an OS crash or power loss can send a row again; the other commits use `synchronous=NORMAL`, and an OS crash can
lose the last of them, which leaves those rows `submitting` (ambiguous) or `submitted` (watched again), never
`pending`.

A done row also records what fal billed for it: its units and, when the endpoint's price was known, their cost and
currency. A ledger of an older version gets these columns when it is opened; its rows keep none.

Every SQLite failure surfaces as `LedgerError` naming the file; `full` says the disk (or the database) is full.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple, ParamSpec, TypeVar

from fal_cli.secrets import scrub

State = Literal["pending", "submitting", "submitted", "done", "failed"]
FILE_NAME = "ledger.sqlite3"
LOCK_NAME = "batch.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    row INTEGER PRIMARY KEY,          -- the line number in the inputs file
    state TEXT NOT NULL,
    request_id TEXT,
    output TEXT,                      -- the output JSON of a done row
    error TEXT,                       -- the error of a failed row, or why a submitting row is ambiguous
    lost INTEGER NOT NULL DEFAULT 0,  -- failed while watching: fal may still hold its result
    files TEXT,                       -- JSON list of saved paths (--save)
    units REAL,                       -- what fal billed a done row (x-fal-billable-units), when it said
    cost REAL,                        -- units × the endpoint's unit price, when the price was known
    currency TEXT                     -- the price's currency
);
"""
_BILLING_COLUMNS = {"units": "REAL", "cost": "REAL", "currency": "TEXT"}  # added to a ledger of an older version
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
NO_ID = "recorded as submitted without a request id"

P = ParamSpec("P")
T = TypeVar("T")


class LedgerMismatch(Exception):
    """The ledger belongs to another endpoint or another inputs file."""


class LedgerError(Exception):
    """The ledger cannot be opened, read or written. `full`: the disk (or the database) is full; `corrupt`: the file
    is not a readable ledger (not a database, truncated, damaged); neither: it cannot be opened or written."""

    def __init__(self, message: str, *, full: bool, corrupt: bool = False) -> None:
        super().__init__(message)
        self.full, self.corrupt = full, corrupt


class DirectoryBusy(Exception):
    """Another batch holds the output directory's lock."""


class Row(NamedTuple):
    row: int
    state: State
    request_id: str | None


class Billed(NamedTuple):
    """What fal billed a row: its units, and their cost and currency when the endpoint's price was known."""

    units: float
    cost: float | None
    currency: str | None


class Ambiguous(NamedTuple):
    row: int
    request_id: str | None
    reason: str


def is_disk_full(exc: BaseException) -> bool:
    """A full disk (or quota, or SQLite's own page limit), as SQLite or the OS reports it."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def _guarded(method: Callable[P, T]) -> Callable[P, T]:
    """Run a ledger method, turning SQLite's errors into `LedgerError`."""

    def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            ledger = args[0]
            assert isinstance(ledger, Ledger)
            raise ledger.error(exc) from exc

    guarded.__name__, guarded.__doc__ = method.__name__, method.__doc__
    return guarded


class Ledger:
    def __init__(self, directory: Path) -> None:
        """Open (or create) the ledger in `directory`; `LedgerError` when it is not a readable ledger."""
        self.path = directory / FILE_NAME
        self._db: sqlite3.Connection | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: every write is its own commit
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            problems = [str(p) for (p,) in self._db.execute("PRAGMA quick_check(3)")]  # a truncated file reads fine
        except (sqlite3.Error, OSError) as exc:  # until a page it lost is needed: check every page once, now
            error = self.error(exc)
            self.close()
            raise error from exc
        if problems != ["ok"]:
            self.close()
            raise LedgerError(f"{self.path}: not a readable batch ledger ({'; '.join(problems)})", full=False,
                              corrupt=True)  # fmt: skip
        self._check_schema()

    def error(self, exc: BaseException) -> LedgerError:
        """`exc` as a one-line `LedgerError` naming the file."""
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if is_disk_full(exc):
            return LedgerError(f"{self.path}: {detail}", full=True)
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            return LedgerError(f"{self.path}: not a readable batch ledger ({detail})", full=False, corrupt=True)
        return LedgerError(f"{self.path}: {detail}", full=False)

    def _check_schema(self) -> None:
        columns = {c[1] for c in self.db.execute("PRAGMA table_info(rows)")}
        wanted = {"row", "state", "request_id", "output", "error", "lost", "files"}
        if not wanted <= columns:
            self.close()
            raise LedgerError(f"{self.path}: not a batch ledger (its rows table lacks {sorted(wanted - columns)})",
                              full=False, corrupt=True)  # fmt: skip
        try:
            for name, kind in _BILLING_COLUMNS.items():  # a ledger of a version that recorded no billing: add them
                if name not in columns:
                    self.db.execute(f"ALTER TABLE rows ADD COLUMN {name} {kind}")
        except sqlite3.Error as exc:
            error = self.error(exc)
            self.close()
            raise error from exc

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise LedgerError(f"{self.path}: the ledger is closed", full=False)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    @_guarded
    def bind(self, endpoint_id: str, inputs_sha256: str) -> None:
        """Claim a new ledger for this endpoint and inputs file, or check that an existing one is theirs."""
        wanted = {"endpoint_id": endpoint_id, "inputs_sha256": inputs_sha256}
        found = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if not found:
            with self._transaction():
                self.db.executemany("INSERT INTO meta VALUES (?, ?)", wanted.items())
            return
        if found.get("endpoint_id") != endpoint_id:
            raise LedgerMismatch(f"{self.path} belongs to a batch of {found.get('endpoint_id')}, not {endpoint_id}")
        if found.get("inputs_sha256") != inputs_sha256:
            raise LedgerMismatch(f"{self.path} belongs to a different inputs file (or this one changed)")

    @_guarded
    def add(self, valid: Iterable[int], invalid: dict[int, str]) -> None:
        """Record rows seen for the first time: valid ones pending, invalid ones failed (never submitted)."""
        with self._transaction():
            self.db.executemany("INSERT OR IGNORE INTO rows (row, state) VALUES (?, 'pending')", ((r,) for r in valid))
            self.db.executemany(
                "INSERT OR IGNORE INTO rows (row, state, error) VALUES (?, 'failed', ?)", invalid.items()
            )

    @_guarded
    def repair(self) -> None:
        """A row recorded as submitted without a request id (a ledger from an older version, or edited) cannot be
        watched: it is ambiguous."""
        self.db.execute(
            "UPDATE rows SET state = 'submitting', error = ? WHERE state = 'submitted' AND request_id IS NULL", (NO_ID,)
        )

    @_guarded
    def retry_failed(self, valid: Iterable[int]) -> None:
        """`--retry-failed`: a failed row whose request fal may still hold is watched again; any other valid failed
        row is submitted again."""
        with self._transaction():
            for row in valid:
                self.db.execute(
                    "UPDATE rows SET state = CASE WHEN lost AND request_id IS NOT NULL THEN 'submitted' ELSE 'pending'"
                    " END, request_id = CASE WHEN lost THEN request_id END, error = NULL, lost = 0"
                    " WHERE row = ? AND state = 'failed'",
                    (row,),
                )

    @_guarded
    def resubmit_ambiguous(self) -> int:
        """`--resubmit-ambiguous`: every ambiguous row is pending again (the user accepts it may run twice)."""
        cursor = self.db.execute(
            "UPDATE rows SET state = 'pending', request_id = NULL, error = NULL WHERE state = 'submitting'"
        )
        return cursor.rowcount

    @_guarded
    def ambiguous(self) -> list[Ambiguous]:
        """The rows whose submit may have reached fal without its answer being recorded, in row order."""
        cursor = self.db.execute("SELECT row, request_id, error FROM rows WHERE state = 'submitting' ORDER BY row")
        return [Ambiguous(row, request_id, error or "the batch stopped during its submit") for row, request_id, error
                in cursor]  # fmt: skip

    @_guarded
    def unfinished(self) -> list[Row]:
        """Rows still to do, submitted ones first (they are already paid for); ambiguous rows are not among them."""
        cursor = self.db.execute(
            "SELECT row, state, request_id FROM rows WHERE state = 'pending'"
            " OR (state = 'submitted' AND request_id IS NOT NULL) ORDER BY state = 'pending', row"
        )
        return [Row(*r) for r in cursor]

    @_guarded
    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT state, COUNT(*) FROM rows GROUP BY state").fetchall())

    @_guarded
    def submitting(self, rows: Iterable[int]) -> None:
        """Mark rows as being sent, in one commit flushed to the disk (one fsync for them all) before this returns:
        none of them is ever sent again unasked."""
        self.db.execute("PRAGMA synchronous=FULL")
        try:
            with self._transaction():
                self.db.executemany(
                    "UPDATE rows SET state = 'submitting', request_id = NULL WHERE row = ?", ((r,) for r in rows)
                )
        finally:
            self.db.execute("PRAGMA synchronous=NORMAL")

    @_guarded
    def not_sent(self, row: int) -> None:
        """A submit that provably never reached fal (nothing was sent, or fal refused it with a 429): pending again."""
        self.db.execute("UPDATE rows SET state = 'pending' WHERE row = ? AND state = 'submitting'", (row,))

    @_guarded
    def unsure(self, row: int, request_id: str | None, reason: str) -> None:
        """A submit that may have reached fal, though fal's answer gave no usable request id: ambiguous."""
        self.db.execute(
            "UPDATE rows SET state = 'submitting', request_id = ?, error = ? WHERE row = ?", (request_id, reason, row)
        )

    @_guarded
    def submitted(self, row: int, request_id: str) -> None:
        self.db.execute(
            "UPDATE rows SET state = 'submitted', request_id = ?, error = NULL WHERE row = ?", (request_id, row)
        )

    @_guarded
    def done(self, row: int, output: str, files: list[str] | None, billed: Billed | None = None) -> None:
        saved = json.dumps(files) if files is not None else None
        units, cost, currency = billed if billed is not None else (None, None, None)
        self.db.execute(
            "UPDATE rows SET state = 'done', output = ?, files = ?, error = NULL, units = ?, cost = ?, currency = ?"
            " WHERE row = ?",
            (output, saved, units, cost, currency, row),
        )

    @_guarded
    def priced(self, costs: list[tuple[int, float]], currency: str) -> None:
        """The cost of done rows recorded with their units before the endpoint's price was known."""
        self.db.executemany(
            "UPDATE rows SET cost = ?, currency = ? WHERE row = ? AND state = 'done'",
            [(amount, currency, row) for row, amount in costs],
        )

    @_guarded
    def billed(self) -> list[Billed]:
        """What the done rows were billed, for those fal sent units with (an older ledger's rows have none)."""
        cursor = self.db.execute("SELECT units, cost, currency FROM rows WHERE state = 'done' AND units IS NOT NULL")
        return [Billed(*r) for r in cursor]

    @_guarded
    def failed(self, row: int, error: str, *, lost: bool) -> None:
        self.db.execute("UPDATE rows SET state = 'failed', error = ?, lost = ? WHERE row = ?", (error, lost, row))

    def results(self) -> Iterator[dict[str, Any]]:
        """One result object per row, in row order: `row`, `request_id`, `status` (an ambiguous row's is
        `ambiguous`), then `output` (and `files`, and what fal billed when it said: `billable_units`, then `cost` and
        `currency` when the price was known) or `error`. The key is scrubbed from outputs, whoever wrote them."""
        cursor = self.db.execute(
            "SELECT row, state, request_id, output, error, files, units, cost, currency FROM rows ORDER BY row"
        )
        for row, state, request_id, output, error, files, units, cost, currency in cursor:
            status = "ambiguous" if state == "submitting" else state
            line: dict[str, Any] = {"row": row, "request_id": request_id, "status": status}
            if state == "done":
                line["output"] = json.loads(scrub(output))
                if files is not None:
                    line["files"] = json.loads(files)
                if units is not None:
                    line["billable_units"] = units
                    if cost is not None and currency is not None:
                        line["cost"], line["currency"] = cost, currency
            elif error is not None:
                line["error"] = scrub(error)
            yield line

    @_guarded
    def write_results(self, target: Path) -> None:
        """Rebuild `target` (results.jsonl) from the ledger: a temporary file beside it, flushed to disk, renamed
        over it; a crash at any point leaves the previous complete file or the new one, never a mix. The file's own
        failures (a full disk) raise `OSError`; the ledger's, `LedgerError`."""
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
        self.db.execute("BEGIN")
        return self.db


class DirectoryLock:
    """An exclusive OS lock on `DIR/batch.lock`, held while one batch uses `DIR`: a second batch on the same
    directory is refused at once (`DirectoryBusy`, naming the holder's pid and start time). The OS drops the lock
    when the process ends, however it ends (SIGKILL included), so a stale lock never blocks a resume. The file stays
    behind (removing it would race with a process opening it)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        directory.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(self._fd)
        except OSError as exc:
            holder = _holder(self._fd)
            self.release()
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise DirectoryBusy(f"{directory} is in use by another batch ({holder}); wait for it to end or stop it"
                                ) from None  # fmt: skip
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        record = json.dumps({"pid": os.getpid(), "started": started, "host": socket.gethostname()})
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, record.encode() + b"\n", 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


if sys.platform == "win32":  # pragma: no cover - the command line is tested on POSIX
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote in the file (given a moment to write it, when it has just locked)."""
    for _ in range(20):
        try:
            found = json.loads(os.pread(fd, 4096, 0) or b"null")
        except (OSError, ValueError):
            found = None
        if isinstance(found, dict):
            where = f" on {found['host']}" if found.get("host") and found["host"] != socket.gethostname() else ""
            return f"pid {found.get('pid', '?')}{where}, started {found.get('started', '?')}"
        time.sleep(0.025)
    return "pid unknown"
