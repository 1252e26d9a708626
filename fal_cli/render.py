"""What the commands print: rich tables on a terminal, plain `name: value` lines when piped (greppable, no box
drawing, no colour codes)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.table import Table

from fal_cli.fields import Field
from fal_cli.outputs import output_json
from fal_cli.secrets import scrub
from fal_runtime import Completed, InProgress, Queued, Status
from fal_runtime.registry import EndpointInfo

_CELL_MAX = 200  # a summary shows the start of long values; --json has them whole


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _short(value: Any) -> str:
    text = scrub(value if isinstance(value, str) else json.dumps(value))
    return text if len(text) <= _CELL_MAX else text[: _CELL_MAX - 1] + "…"


def summary(console: Console, output: BaseModel) -> None:
    """The output's top-level fields; on a terminal as a table, else one `name: value` line each."""
    data = output_json(output)
    if not console.is_terminal:
        for name, value in data.items():
            print(f"{name}: {_short(value)}", file=console.file)
        return
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")
    for name, value in data.items():
        table.add_row(name, _short(value))
    console.print(table)


def saved(console: Console, paths: Sequence[Path]) -> None:
    for path in paths:
        print(f"saved {path}", file=console.file)


def field_table(title: str, fields: Sequence[Field], console: Console) -> None:
    """`show`: one row per field with its type, required/default, bounds and description."""
    if not console.is_terminal:
        print(f"{title}:", file=console.file)
        for f in fields:
            facts = "; ".join([f.type_label, f.default_label, *f.bounds])
            print(f"  {f.name}: {facts}. {f.description}".rstrip(), file=console.file)
        return
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=True)
    table.add_column("name", no_wrap=True)
    for column, width in (("type", 20), ("required/default", 16), ("bounds", 14)):
        table.add_column(column, overflow="fold", max_width=width)
    table.add_column("description", ratio=1)
    for f in fields:
        table.add_row(f.name, f.type_label, f.default_label, ", ".join(f.bounds), f.description)
    console.print(table)


def endpoint_list(infos: Sequence[EndpointInfo], console: Console) -> None:
    """`list`: id, category and display name; tab-separated when piped."""
    if not console.is_terminal:
        for info in infos:
            deprecated = "\tdeprecated" if info.deprecated else ""
            print(f"{info.endpoint_id}\t{info.category}\t{info.display_name}{deprecated}", file=console.file)
        return
    table = Table(show_lines=False)
    for column in ("endpoint", "category", "name"):
        table.add_column(column)
    for info in infos:
        name = info.display_name + (" [dim](deprecated)[/]" if info.deprecated else "")
        table.add_row(info.endpoint_id, info.category, name)
    console.print(table)
    console.print(f"{len(infos)} endpoints", style="dim")


def status_text(status: Status) -> str:
    """One line for a status, in fal's words."""
    if isinstance(status, Queued):
        where = f" (position {status.position})" if status.position is not None else ""
        return f"IN_QUEUE{where}"
    if isinstance(status, InProgress):
        return "IN_PROGRESS"
    assert isinstance(status, Completed)
    return f"COMPLETED with error: {scrub(status.error)}" if status.error else "COMPLETED"
