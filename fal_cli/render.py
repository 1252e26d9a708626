"""What the commands print: rich tables on a terminal, plain `name: value` lines when piped (greppable, no box
drawing, no colour codes).

Text that came from fal or the user (display names, field descriptions, output values, prices, statuses) is never
read as rich markup: it goes into tables as `Text`, so `FLUX.1 [dev]` and `[false]` print as written. And it is
`clean`ed first: a server can put terminal escape sequences (an OSC 8 link, a title change, a cursor move) or bidi
overrides into any string, and printing those verbatim would let it rewrite what the user sees.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fal_cli.fields import Field
from fal_cli.outputs import output_json
from fal_cli.secrets import scrub
from fal_runtime import Completed, InProgress, Queued, Status
from fal_runtime.registry import EndpointInfo

_CELL_MAX = 200  # a summary shows the start of long values; --json has them whole


# Terminal escape sequences, whole (a lone ESC stripped would leave "]8;;https://evil.test" behind): CSI, the string
# commands OSC/DCS/SOS/PM/APC up to their terminator (BEL or ST) or the end of the text, other two-byte escapes, and
# the same introducers in their 8-bit C1 forms.
_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]?"
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
)
# What is left to drop: C0 and C1 controls, DEL, and the bidi marks, embeddings, overrides and isolates that reorder
# what a terminal shows (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069). Line breaks become spaces.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SPACES = frozenset("\t\n\r\x0b\x0c\x85\u2028\u2029")


def clean(text: str) -> str:
    """`text` fit for a terminal: without escape sequences, control characters or bidi controls (line breaks and
    tabs become spaces), and with the API key scrubbed."""
    text = _ESCAPE.sub("", scrub(text))
    return _INVISIBLE.sub(lambda m: " " if m.group() in _SPACES else "", text)


def money(amount: float, currency: str) -> str:
    """An amount in the currency fal named: `$0.003` for USD, `0.003 JPY` for any other; at least two decimals
    and as many as the amount has (no `$0.00` for a price of a fraction of a cent)."""
    code = clean(currency)
    if not math.isfinite(amount):
        raise ValueError(f"not an amount: {amount!r}")
    text = format(Decimal(f"{amount + 0.0:.10g}"), "f")
    whole, _, decimals = text.partition(".")
    decimals = decimals.rstrip("0")
    text = f"{whole}.{decimals.ljust(2, '0')}"
    return f"${text}" if code == "USD" else f"{text} {code}"


def unit(text: str) -> str:
    """fal's billing unit as printed: one line, no escape sequences or bidi controls, at most 60 characters."""
    text = " ".join(clean(text).split())
    return text if len(text) <= 60 else text[:59] + "…"


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _short(value: Any) -> str:
    text = clean(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return text if len(text) <= _CELL_MAX else text[: _CELL_MAX - 1] + "…"


def summary(console: Console, output: BaseModel) -> None:
    """The output's top-level fields; on a terminal as a table, else one `name: value` line each."""
    data = output_json(output)
    if not console.is_terminal:
        for name, value in data.items():
            print(f"{clean(name)}: {_short(value)}", file=console.file)
        return
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")
    for name, value in data.items():
        table.add_row(Text(clean(name)), Text(_short(value)))
    console.print(table)


def saved(console: Console, paths: Sequence[Path]) -> None:
    for path in paths:
        print(f"saved {clean(str(path))}", file=console.file)


def field_table(title: str, fields: Sequence[Field], console: Console) -> None:
    """`show`: one row per field with its type, required/default, bounds and description."""
    if not console.is_terminal:
        print(f"{title}:", file=console.file)
        for f in fields:
            facts = "; ".join([f.type_label, f.default_label, *f.bounds])
            print(clean(f"  {f.name}: {facts}. {f.description}").rstrip(), file=console.file)
        return
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=True)
    table.add_column("name", no_wrap=True)
    for column, width in (("type", 20), ("required/default", 16), ("bounds", 14)):
        table.add_column(column, overflow="fold", max_width=width)
    table.add_column("description", ratio=1)
    for f in fields:
        cells = (f.name, f.type_label, f.default_label, ", ".join(f.bounds), f.description)
        table.add_row(*(Text(clean(cell)) for cell in cells))
    console.print(table)


def endpoint_list(infos: Sequence[EndpointInfo], console: Console) -> None:
    """`list`: id, category and display name; tab-separated when piped."""
    if not console.is_terminal:
        for info in infos:
            marks = ("\tdeprecated" if info.deprecated else "") + (
                f"\tunlisted since {info.unlisted}" if info.unlisted else ""
            )
            cells = "\t".join(clean(cell) for cell in (info.endpoint_id, info.category, info.display_name))
            print(f"{cells}{marks}", file=console.file)
        return
    table = Table(show_lines=False)
    for column in ("endpoint", "category", "name"):
        table.add_column(column)
    for info in infos:
        name = Text(clean(info.display_name))
        if info.deprecated:
            name.append(" (deprecated)", style="dim")
        if info.unlisted:
            name.append(f" (unlisted since {clean(info.unlisted)})", style="dim")
        table.add_row(Text(clean(info.endpoint_id)), Text(clean(info.category)), name)
    console.print(table)
    console.print(f"{len(infos)} endpoints", style="dim")


def table(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[str] = (),
    title: str | None = None,
    caption: str | None = None,
) -> None:
    """Rows of text from fal (each cell `clean`ed): a table on a terminal (`right`: the columns aligned right, such
    as amounts), else one tab-separated line per row, with no header, title or caption (`caption` is for a total
    the caller prints on stderr then)."""
    if not console.is_terminal:
        for cells in rows:
            print("\t".join(clean(cell) or "-" for cell in cells), file=console.file)
        return
    grid = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, caption=caption, caption_justify="right")
    for column in columns:
        grid.add_column(column, justify="right" if column in right else "left", overflow="fold")
    for cells in rows:
        grid.add_row(*(Text(clean(cell)) for cell in cells))
    console.print(grid)


def clean_status(status: Status) -> Status:
    """`status` with its log lines and error `clean`ed, for code that prints them as they come."""
    if isinstance(status, Queued):
        return status
    logs = tuple(dataclasses.replace(entry, message=clean(entry.message)) for entry in status.logs)
    if isinstance(status, InProgress):
        return dataclasses.replace(status, logs=logs)
    error = clean(status.error) if status.error is not None else None
    return dataclasses.replace(status, logs=logs, error=error)


def status_text(status: Status) -> str:
    """One line for a status, in fal's words."""
    if isinstance(status, Queued):
        where = f" (position {status.position})" if status.position is not None else ""
        return f"IN_QUEUE{where}"
    if isinstance(status, InProgress):
        return "IN_PROGRESS"
    assert isinstance(status, Completed)
    return f"COMPLETED with error: {clean(status.error)}" if status.error else "COMPLETED"
