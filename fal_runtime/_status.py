"""Typed queue statuses: fal reports IN_QUEUE, IN_PROGRESS or COMPLETED (a failure is COMPLETED with an error)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fal_runtime.errors import ProtocolError

CancelOutcome = Literal["requested", "already_completed", "not_found"]
"""What a cancel achieved: fal accepted it (the runner is told to stop; it may still finish), the request had
already completed (its result stands), or fal does not know the request (wrong id, or its result expired)."""


@dataclass(frozen=True)
class LogEntry:
    """One line of the runner's output. `level` is fal's: STDERR, STDOUT, ERROR, INFO, WARN or DEBUG."""

    message: str
    level: str = "INFO"
    source: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class Queued:
    """Waiting for a runner; `position` is the number of requests ahead (None when fal did not say)."""

    position: int | None


@dataclass(frozen=True)
class InProgress:
    """A runner is working on it; `logs` holds the lines fal reported with this status (a moving window)."""

    logs: tuple[LogEntry, ...] = ()


@dataclass(frozen=True)
class Completed:
    """Done. fal has no FAILED state: a failure is COMPLETED with `error` set, and the result call raises it."""

    logs: tuple[LogEntry, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None


Status = Queued | InProgress | Completed


def parse_status(data: Any, *, redact: Callable[[str], str] = str) -> Status:
    """A status object of the status call or of one status-stream event. `redact` scrubs the key from the server's
    text: log messages, the error a request completed with, and whatever an error quotes (before cutting it short)."""
    if not isinstance(data, dict):
        raise ProtocolError(f"unexpected status from fal: {redact(str(data))[:200]}")
    state = data.get("status")
    logs = tuple(
        LogEntry(redact(str(e.get("message", ""))), str(e.get("level", "INFO")), _text(e.get("source"), redact),
                 _text(e.get("timestamp"), redact))
        for e in data.get("logs") or []
        if isinstance(e, dict)
    )  # fmt: skip
    if state == "IN_QUEUE":
        position = data.get("queue_position")
        return Queued(position if isinstance(position, int) else None)
    if state == "IN_PROGRESS":
        return InProgress(logs)
    if state == "COMPLETED":
        error, error_type = _text(data.get("error"), redact), _text(data.get("error_type"), redact)
        return Completed(logs, dict(data.get("metrics") or {}), error, error_type)
    raise ProtocolError(f"unknown queue status {redact(repr(state))[:200]}")


def _text(value: Any, redact: Callable[[str], str]) -> str | None:
    """A server's optional text with the key scrubbed (a runner's log or error may print its environment)."""
    return None if value is None else redact(value if isinstance(value, str) else str(value))


class LogWindow:
    """fal's logs are a moving window, not a growing list: remember what was seen by (timestamp, message)."""

    def __init__(self) -> None:
        self._seen: set[tuple[str | None, str]] = set()

    def new(self, logs: tuple[LogEntry, ...]) -> tuple[LogEntry, ...]:
        fresh = tuple(e for e in logs if (e.timestamp, e.message) not in self._seen)
        self._seen.update((e.timestamp, e.message) for e in fresh)
        return fresh
