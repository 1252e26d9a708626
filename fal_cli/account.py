"""`fal-typed usage`, `requests` and `keys`: the account's side of fal's Platform API (`generated.platform`).

Each prints a table on a terminal and plain tab-separated lines when piped (no header; totals then go to stderr, so
stdout holds rows only), or with `--json` exactly fal's answer as the generated models dump it. Time windows are
`--since` and `--until`: a duration back from now (`30m`, `24h`, `7d`, `2w`), a date (`2026-12-01`, midnight UTC,
as fal reads it) or an ISO 8601 time (UTC when it names no offset). Amounts are fal's, in the currency fal names;
amounts in different currencies are never added.

A new key's secret is printed once, on stdout, by `keys create`, and nowhere else (not on stderr, which logs keep).
`keys delete` asks first when stdin is a terminal, unless `--yes`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any, Literal, TypeVar

import click
import pydantic
from pydantic import BaseModel

from fal_cli import billing, render
from fal_cli.options import describe_errors
from fal_cli.secrets import scrub
from fal_runtime import Client

MAX_ENDPOINT_IDS = 50  # fal's limit on endpoint ids (and request ids) in one query
T = TypeVar("T")
Status = Literal["success", "error", "user_error"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print exactly fal's answer as JSON on stdout.")
_RELATIVE = re.compile(r"(\d+)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class When(click.ParamType[datetime | str]):
    """`24h`, `7d`, `2026-12-01` or an ISO 8601 time: a UTC datetime, or a date string kept as fal's date form."""

    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime | str:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if relative := _RELATIVE.fullmatch(text):
            amount, unit = relative.groups()
            return datetime.now(UTC).replace(microsecond=0) - timedelta(**{_UNITS[unit]: int(amount)})
        try:
            if _DATE.fullmatch(text):
                date.fromisoformat(text)
                return text
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r}: expected a duration back from now (30m, 24h, 7d, 2w), a date (2026-12-01) or an "
                      "ISO 8601 time", param, ctx)  # fmt: skip
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _moment(when: datetime | str) -> datetime:
    return datetime.fromisoformat(when).replace(tzinfo=UTC) if isinstance(when, str) else when


def _window(since: datetime | str, until: datetime | str | None) -> None:
    if until is not None and _moment(until) <= _moment(since):
        raise click.UsageError(f"--until ({_shown(until)}) must come after --since ({_shown(since)})")


def _shown(when: datetime | str | None) -> str:
    if when is None:
        return "now"
    if isinstance(when, str):
        return when
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _since(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--since",
        type=When(),
        default=default,
        show_default=True,
        help="Start of the window: 30m, 24h, 7d, 2w back from now, a date or an ISO 8601 time.",
    )


_UNTIL = click.option("--until", type=When(), help="End of the window (exclusive), as --since; default: now.")


def _endpoint_ids(ids: Sequence[str]) -> list[str]:
    if len(ids) > MAX_ENDPOINT_IDS:
        raise click.UsageError(f"at most {MAX_ENDPOINT_IDS} endpoints at once (fal's limit), got {len(ids)}")
    return list(dict.fromkeys(ids))


def _call(function: Callable[..., T], /, **arguments: Any) -> T:
    """A generated Platform API call; an argument it refuses (nothing sent) is a usage error, exit 2."""
    try:
        return function(**arguments)
    except pydantic.ValidationError as exc:
        raise click.UsageError(describe_errors(exc)) from None


def _print_json(data: Any) -> None:
    click.echo(scrub(json.dumps(data, ensure_ascii=False)))


def _dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json")


def _note(text: str) -> None:
    click.echo(render.clean(text), err=True)


def _discount(percent: float | None) -> str:
    return f"{billing.quantity(percent)}%" if percent else ""


# -- usage ------------------------------------------------------------------------------------------------------------


@click.command()
@_since("24h")
@_UNTIL
@click.option("--endpoint", "endpoint_ids", multiple=True, metavar="ENDPOINT_ID",
              help="Only this endpoint (repeatable); default: every endpoint.")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), help="Only the N costliest lines (the total is of them all).")
@_JSON
def usage(since: datetime | str, until: datetime | str | None, endpoint_ids: tuple[str, ...], limit: int | None,
          as_json: bool) -> None:  # fmt: skip
    """What the account used and was billed, by endpoint, over a time window (default: the last 24 hours).

    One line per endpoint and unit price: quantity in fal's billing unit, unit price, discount, cost. The total is
    below the table (on stderr when piped); amounts in different currencies are not added together.
    """
    from generated.platform import get_usage

    _window(since, until)
    with Client() as client:
        answer = _call(get_usage, start=since, end=until, bound_to_timeframe="false", expand=["summary"],
                       endpoint_id=_endpoint_ids(endpoint_ids) or None, client=client)  # fmt: skip
    every = sorted(answer.summary or [], key=lambda line: (-line.cost_total, line.endpoint_id))
    lines = every[:limit] if limit is not None else every
    if as_json:
        _print_json(_dump(answer.model_copy(update={"summary": lines})))
        return
    if not lines:
        _note(f"no billed usage from {_shown(since)} to {_shown(until)}")
        return
    total = f"total: {billing.total_text((line.cost_total, line.currency) for line in every)}"
    if len(lines) < len(every):
        total += f" (all {len(every)} lines; {len(lines)} shown)"
    rows = [
        (line.endpoint_id, billing.quantity(line.quantity), render.unit(line.unit),
         render.money(line.unit_price, line.currency), _discount(line.percent_discount),
         render.money(line.cost_total, line.currency))
        for line in lines
    ]  # fmt: skip
    out = render.stdout()
    render.table(out, ("endpoint", "quantity", "unit", "unit price", "discount", "cost"), rows,
                 right=("quantity", "unit price", "discount", "cost"), caption=total,
                 title=f"Usage from {_shown(since)} to {_shown(until)}")  # fmt: skip
    if not out.is_terminal:
        _note(total)


# -- requests ---------------------------------------------------------------------------------------------------------


@click.command()
@click.argument("endpoint_ids", metavar="ENDPOINT_ID...", nargs=-1, required=True)
@_since("24h")
@_UNTIL
@click.option("--status", type=click.Choice(["success", "error", "user_error"]), help="Only requests that ended so.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most N requests.")
@_JSON
def requests(endpoint_ids: tuple[str, ...], since: datetime | str, until: datetime | str | None, status: Status | None,
             limit: int, as_json: bool) -> None:  # fmt: skip
    """The endpoints' recent requests, the latest first: status, when sent, duration and cost.

    The cost is fal's billing event of each request (in USD, as fal bills); empty while a request runs, when it was
    not billed (failed requests are not), or when fal has not billed it yet.
    """
    from generated.platform import iter_billing_events, iter_requests_by_endpoint

    _window(since, until)
    with Client() as client:
        found = _call(iter_requests_by_endpoint, endpoint_id=_endpoint_ids(endpoint_ids), start=since, end=until,
                      status=status, limit=min(limit, 100), client=client)  # fmt: skip
        items = list(islice(found, limit))
        ended = [str(item.request_id) for item in items if item.ended_at is not None]
        events = [
            event
            for chunk in _chunks(ended, MAX_ENDPOINT_IDS)  # billed at its end: on or after --since, maybe after --until
            for event in _call(iter_billing_events, request_id=chunk, start=since, client=client)
        ]
    if as_json:
        _print_json({"items": [_dump(i) for i in items], "billing_events": [_dump(e) for e in events]})
        return
    if not items:
        _note(f"no requests from {_shown(since)} to {_shown(until)}")
        return
    costs: dict[str, Decimal] = {}
    for event in events:
        costs[event.request_id] = costs.get(event.request_id, Decimal(0)) + billing.decimal(event.cost_total)
    several = len(set(endpoint_ids)) > 1
    rows = []
    for item in items:
        cost = costs.get(str(item.request_id))
        cells = [str(item.request_id), *([item.endpoint_id] if several else []), _outcome(item.status_code),
                 item.sent_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                 f"{item.duration:.2f} s" if item.duration is not None else "",
                 render.money(float(cost), "USD") if cost is not None else ""]  # fmt: skip
        rows.append(cells)
    columns = ["request id", *(["endpoint"] if several else []), "status", "sent (UTC)", "duration", "cost"]
    out = render.stdout()
    priced = [(float(c), "USD") for c in costs.values()]
    of = f"{len(items)} request{'' if len(items) == 1 else 's'}"
    total = f"total: {billing.total_text(priced)} for {len(priced)} billed of {of}" if priced else ""
    render.table(out, columns, rows, right=("duration", "cost"), caption=total or None)
    if total and not out.is_terminal:
        _note(total)


def _outcome(status_code: int | None) -> str:
    """fal's status of a request: running, or how it ended with its HTTP status (success 2xx, user_error 4xx,
    error 5xx)."""
    if status_code is None:
        return "running"
    kind = "success" if status_code < 400 else "user_error" if status_code < 500 else "error"
    return f"{kind} ({status_code})"


def _chunks(items: Sequence[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# -- keys -------------------------------------------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@click.pass_context
def keys(ctx: click.Context) -> None:
    """The account's API keys: list (the default), create, delete (needs an admin key)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_keys)


@keys.command(name="list")
@click.option("--limit", type=click.IntRange(min=1), help="At most N keys.")
@_JSON
def list_keys(limit: int | None = None, as_json: bool = False) -> None:
    """List the API keys: id, alias, when created (no secret: fal shows it only at creation)."""
    from generated.platform import iter_api_keys

    with Client() as client:
        found = list(islice(_call(iter_api_keys, client=client), limit))
    if as_json:
        _print_json([_dump(key) for key in found])
        return
    if not found:
        _note("no API keys")
        return
    render.table(render.stdout(), ("key id", "alias", "created"), [(k.key_id, k.alias, k.created_at) for k in found])


@keys.command(name="create")
@click.argument("alias")
@_JSON
def create_key(alias: str, as_json: bool) -> None:
    """Create an API key named ALIAS and print it: its secret is shown this once, and only on stdout."""
    from generated.platform import create_api_key

    with Client() as client:
        made = _call(create_api_key, alias=alias, client=client)
    if as_json:
        click.echo(json.dumps(_dump(made), ensure_ascii=False))  # not scrubbed: this is the new key, not FAL_KEY
    else:
        out = render.stdout()
        if out.is_terminal:  # plain lines, never wrapped: the key is copied from here
            print(f"created API key {render.clean(made.key_id)} ({render.clean(alias)})", file=out.file)
            print(f"key: {render.clean(made.key)}", file=out.file)
        else:
            print(f"{render.clean(made.key_id)}\t{render.clean(made.key)}", file=out.file)
    _note("store the key now: fal shows its secret only this once")


@keys.command(name="delete")
@click.argument("key_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"key_id": KEY_ID, "deleted": true} (fal answers nothing).'
)
def delete_key(key_id: str, yes: bool, as_json: bool) -> None:
    """Delete the API key KEY_ID: apps using it lose access at once (asks first on a terminal, unless --yes)."""
    from generated.platform import delete_api_key

    if not yes and _interactive():
        click.confirm(f"Delete API key {render.clean(key_id)}? Apps using it lose access at once", abort=True,
                      err=True)  # fmt: skip
    with Client() as client:
        _call(delete_api_key, key_id=key_id, client=client)
    if as_json:
        _print_json({"key_id": key_id, "deleted": True})
    else:
        click.echo(f"deleted {render.clean(key_id)}")


def _interactive() -> bool:
    return sys.stdin.isatty()


COMMANDS: tuple[click.Command, ...] = (usage, requests, keys)
