"""Live progress on stderr: a spinner with the queue position, elapsed time and the endpoint's logs for `run`, a
progress bar for `batch`. When stderr is not a terminal the same facts come as plain lines (no cursor movement),
so a log file or CI output stays readable; stdout is never touched here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from fal_cli.secrets import scrub
from fal_runtime import Completed, InProgress, LogEntry, Queued, RequestHandle, Status

PLAIN_INTERVAL = 2.0  # seconds between plain progress lines of a batch


class RunProgress:
    """Follows one request to completion. On a terminal a live line re-renders itself (so the elapsed time moves
    while fal is silent) and log lines scroll above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.state = "submitting"

    def __rich__(self) -> Text:
        return Text(f"⠿ {self.state} · {time.monotonic() - self.started:.1f} s", style="cyan")

    def watch(self, handle: RequestHandle[Any]) -> None:
        """Consume the handle's statuses until COMPLETED, showing each."""
        if self.console.is_terminal:
            with Live(self, console=self.console, transient=True, refresh_per_second=10):
                for status in handle.iter_status(logs=True):
                    self._show(status, plain=False)
        else:
            for status in handle.iter_status(logs=True):
                self._show(status, plain=True)
        elapsed = time.monotonic() - self.started
        self.console.print(f"completed in {elapsed:.1f} s", style="green" if self.console.is_terminal else None)

    def _show(self, status: Status, *, plain: bool) -> None:
        for entry in status.logs if isinstance(status, (InProgress, Completed)) else ():
            self._log(entry, plain=plain)
        state = _state(status)
        if plain and state != self.state and not isinstance(status, Completed):  # completion has its own line
            print(state, file=self.console.file, flush=True)
        self.state = state

    def _log(self, entry: LogEntry, *, plain: bool) -> None:
        if plain:
            print(f"log: {scrub(entry.message)}", file=self.console.file, flush=True)
        else:
            self.console.print(Text(f"  {scrub(entry.message)}", style="dim"))


def _state(status: Status) -> str:
    if isinstance(status, Queued):
        return "queued" + (f" (position {status.position})" if status.position is not None else "")
    if isinstance(status, InProgress):
        return "in progress"
    return "completed"


class BatchProgress:
    """Counts of a batch (done, failed, ambiguous, in flight) shown as a bar with ETA, or as a plain line every few
    seconds and once at the end."""

    def __init__(self, console: Console, total: int, done: int, failed: int, ambiguous: int = 0) -> None:
        self.console = console
        self.total, self.done, self.failed, self.inflight = total, done, failed, 0
        self.ambiguous = ambiguous
        self._bar: Progress | None = None
        self._task = TaskID(0)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Self:
        if self.console.is_terminal:
            self._bar = Progress(
                SpinnerColumn(), TextColumn("batch"), BarColumn(), MofNCompleteColumn(),
                TextColumn("· {task.fields[failed]} failed · {task.fields[inflight]} in flight ·"),
                TimeRemainingColumn(), TextColumn("left"),
                console=self.console, refresh_per_second=8,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(
                "batch", total=self.total, completed=self.settled, failed=self.failed, inflight=self.inflight
            )
        else:
            self._ticker = threading.Thread(target=self._tick, name="batch-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._bar is not None:
            self._bar.stop()
        if self._ticker is not None:
            self._ticker.join()
        print(self.line(), file=self.console.file, flush=True)

    @property
    def settled(self) -> int:
        return self.done + self.failed + self.ambiguous

    def line(self) -> str:
        ambiguous = f", {self.ambiguous} ambiguous" if self.ambiguous else ""
        return f"batch: {self.done}/{self.total} done, {self.failed} failed{ambiguous}, {self.inflight} in flight"

    def note(self, text: str) -> None:
        """One line on stderr (above the bar on a terminal), as is: no markup, no highlighting."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.console.file, flush=True)

    def _tick(self) -> None:
        while not self._stop.wait(PLAIN_INTERVAL):
            print(self.line(), file=self.console.file, flush=True)

    def _changed(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.settled, failed=self.failed, inflight=self.inflight)

    @contextmanager
    def flying(self) -> Iterator[None]:
        """Count one row as in flight for the duration of the block."""
        self.inflight += 1
        self._changed()
        try:
            yield
        finally:
            self.inflight -= 1
            self._changed()

    def succeeded(self) -> None:
        self.done += 1
        self._changed()

    def failed_one(self) -> None:
        self.failed += 1
        self._changed()

    def ambiguous_one(self) -> None:
        self.ambiguous += 1
        self._changed()
