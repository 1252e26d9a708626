"""Typed queue statuses: fal reports IN_QUEUE, IN_PROGRESS or COMPLETED (a failure is COMPLETED with an error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LogEntry:
    message: str
    level: str = "INFO"
    source: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class Queued:
    position: int | None


@dataclass(frozen=True)
class InProgress:
    logs: tuple[LogEntry, ...] = ()


@dataclass(frozen=True)
class Completed:
    logs: tuple[LogEntry, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None


Status = Queued | InProgress | Completed


def parse_status(data: dict[str, Any]) -> Status:
    state = data.get("status")
    logs = tuple(
        LogEntry(str(e.get("message", "")), str(e.get("level", "INFO")), e.get("source"), e.get("timestamp"))
        for e in data.get("logs") or []
        if isinstance(e, dict)
    )
    if state == "IN_QUEUE":
        position = data.get("queue_position")
        return Queued(position if isinstance(position, int) else None)
    if state == "IN_PROGRESS":
        return InProgress(logs)
    if state == "COMPLETED":
        return Completed(logs, dict(data.get("metrics") or {}), data.get("error"), data.get("error_type"))
    raise ValueError(f"unknown queue status {state!r}")


class LogWindow:
    """fal's logs are a moving window, not a growing list: remember what was seen by (timestamp, message)."""

    def __init__(self) -> None:
        self._seen: set[tuple[str | None, str]] = set()

    def new(self, logs: tuple[LogEntry, ...]) -> tuple[LogEntry, ...]:
        fresh = tuple(e for e in logs if (e.timestamp, e.message) not in self._seen)
        self._seen.update((e.timestamp, e.message) for e in fresh)
        return fresh
