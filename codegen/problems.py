"""Spec problems as data: collected across every spec, then reported all at once.

A problem names the spec file and a JSON pointer into it, so a maintainer can jump straight to the fault.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


class Level(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


def pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 JSON pointer for a path of keys and indices."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    pointer: str
    message: str
    level: Level = Level.ERROR

    def __str__(self) -> str:
        where = f"{self.file}#{self.pointer}" if self.pointer else f"{self.file}#"
        return f"{self.level.value}: {where}: {self.message}"


class InvalidSpecError(Exception):
    """Raised when any spec has an error; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.pointer, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


def display_path(path: Path) -> str:
    """A path relative to the working directory when possible, for short readable messages."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
