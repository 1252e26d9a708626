"""The `fal-typed` commands.

`run` and `submit` are groups whose subcommands are endpoint ids: click asks for the subcommand only once it has
read the id, so the endpoint's module is imported then, and its `Input` fields become that command's options (and
its `--help`). Nothing else imports an endpoint module: `list` reads the catalogue index only.

`run` and `batch` also say what fal billed (`billing`); `usage`, `requests` and `keys` read the account through fal's
Platform API (`account`).

Errors: bad usage and invalid input exit 2 (click's `UsageError`), and so does a file the command cannot read (one
line naming it); anything fal reports (`FalError`) is one line on stderr and exit 1. Messages come from the runtime,
which scrubs the API key from them; whatever the server wrote is `render.clean`ed before it is printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, cast

import click
from pydantic import BaseModel

from fal_cli import account, billing, endpoints, render
from fal_cli.batch import EXIT_STORAGE, EXIT_UNREACHABLE, Inputs, InputsError, read_inputs, run_batch, unknown_rows
from fal_cli.fields import fields_of
from fal_cli.ledger import DirectoryBusy, DirectoryLock, Ledger, LedgerError, LedgerMismatch
from fal_cli.options import (
    check_readable,
    given_fields,
    input_options,
    os_reason,
    read_input_json,
    validate_input,
    with_local_files,
)
from fal_cli.outputs import output_json, save_all
from fal_cli.progress import BatchProgress, RunProgress
from fal_cli.secrets import scrub
from fal_runtime import Client, RequestHandle, Status
from fal_runtime.errors import FalError, ProtocolError
from fal_runtime.platform import estimate_cost, get_pricing

EXIT_INTERRUPTED = 130


class Cli(click.Group):
    """The top-level group: turns fal's errors into one line on stderr and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FalError as exc:
            click.echo(f"Error: {render.clean(' '.join(str(exc).split())) or type(exc).__name__}", err=True)
            raise click.exceptions.Exit(1) from None
        except OSError as exc:
            if exc.filename is None:  # not about a file the user named
                raise
            click.echo(f"Error: {render.clean(str(exc.filename))}: {os_reason(exc)}", err=True)
            raise click.exceptions.Exit(2) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


class EndpointGroup(click.Group):
    """A group whose subcommands are endpoint ids, each built on demand from the endpoint's `Input`."""

    def __init__(self, *args: Any, build: Callable[[ModuleType], click.Command], **kwargs: Any) -> None:
        kwargs.setdefault("subcommand_metavar", "ENDPOINT_ID [--FIELD VALUE ...]")
        super().__init__(*args, **kwargs)
        self._build = build

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._build(endpoints.load(cmd_name))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return []  # over a thousand: `fal-typed list` shows them


def _file_fields(module: ModuleType) -> frozenset[str]:
    return frozenset(module.endpoint.files.get(module.Input, ()))


def _endpoint_command(module: ModuleType, action: Callable[..., None], extra: list[click.Parameter]) -> click.Command:
    """A command taking the endpoint's fields as options (plus `--input-json` and `extra`), validating them into
    `Input` before `action(module, data, **extra_values)` runs."""
    model: type[BaseModel] = module.Input
    files = _file_fields(module)

    @click.pass_context
    def callback(ctx: click.Context, /, input_json: str | None, **values: Any) -> None:
        data = with_local_files(read_input_json(input_json), files) if input_json else {}
        data.update(given_fields(ctx, model, files))
        check_readable(data, files)
        own = {p.name: values[p.name] for p in extra if p.name is not None}
        action(module, validate_input(model, data), **own)

    params: list[click.Parameter] = [
        *input_options(model, files),
        click.Option(["--input-json"], metavar="FILE|-", help="The whole input as a JSON object; options override it."),
        *extra,
    ]
    doc = "\n\n".join((module.__doc__ or "").strip().split("\n\n")[1:])  # without "Typed client for ..."
    return click.Command(module.ENDPOINT_ID, callback=callback, params=params, help=doc, no_args_is_help=False)


_JSON = click.Option(["--json", "as_json"], is_flag=True, help="Print exactly the output JSON on stdout.")
_SAVE = click.Option(
    ["--save"], type=click.Path(file_okay=False, path_type=Path), help="Download every output file here."
)


def _show_output(output: BaseModel, as_json: bool, save: Path | None, client: Client) -> None:
    """The output as JSON or a summary, then the saved paths (on stderr with --json, so stdout stays JSON)."""
    out = render.stdout()
    if as_json:
        click.echo(scrub(json.dumps(output_json(output))))
    else:
        render.summary(out, output)
    if save is not None:
        render.saved(render.stderr() if as_json else out, save_all(output, save, client))


def _run(module: ModuleType, data: BaseModel, as_json: bool, save: Path | None) -> None:
    with Client() as client:
        progress = RunProgress(render.stderr())  # its clock starts before the upload and submit
        handle = module.endpoint.submit(data, client=client)
        try:
            progress.watch(cast("RequestHandle[Any]", _CleanLogs(handle)))
        except KeyboardInterrupt:
            click.echo(f"interrupted; the request goes on: fal-typed result {module.ENDPOINT_ID} "
                       f"{render.clean(handle.request_id)}", err=True)  # fmt: skip
            raise
        _show_output(handle.result(), as_json, save, client)
    _billed(module.ENDPOINT_ID, handle.billable_units)


def _billed(endpoint_id: str, units: float | None) -> None:
    """What fal billed a request, after its output, on stderr (--json's stdout stays the output alone)."""
    if units is not None:
        click.echo(billing.billed_line(units, billing.lookup_price(endpoint_id).price), err=True)


class _CleanLogs:
    """A request handle as `RunProgress` watches it: each status's log lines and error `render.clean`ed first, so
    what a runner logs cannot drive the terminal (escape sequences, bidi overrides) when it is printed."""

    def __init__(self, handle: RequestHandle[Any]) -> None:
        self._handle = handle

    def iter_status(self, *, logs: bool = False) -> Iterator[Status]:
        return map(render.clean_status, self._handle.iter_status(logs=logs))


def _submit(module: ModuleType, data: BaseModel) -> None:
    with Client() as client:
        click.echo(render.clean(module.endpoint.submit(data, client=client).request_id))


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
def cli() -> None:
    """Call fal endpoints from the shell, typed from their specs.

    FAL_KEY holds the API key; FAL_QUEUE_RUN_HOST, FAL_RUN_HOST, FAL_REST_HOST, FAL_API_HOST (fal's Platform API:
    prices, usage, requests, keys) and SSL_CERT_FILE are read as the Python client reads them.
    """


@cli.group(cls=EndpointGroup, build=lambda m: _endpoint_command(m, _run, [_JSON, _SAVE]))
def run() -> None:
    """Submit a request, follow it (queue position, elapsed time, logs) and print its output.

    `fal-typed run ENDPOINT_ID --help` lists the endpoint's fields.
    """


@cli.group(cls=EndpointGroup, build=lambda m: _endpoint_command(m, _submit, []))
def submit() -> None:
    """Submit a request and print its request id (see `status`, `result`, `cancel`)."""


@cli.command()
@click.argument("endpoint_id")
@click.argument("request_id")
def status(endpoint_id: str, request_id: str) -> None:
    """Print a request's status: IN_QUEUE (position), IN_PROGRESS or COMPLETED."""
    module = endpoints.load(endpoint_id)
    with Client() as client:
        current = module.endpoint.handle(request_id, client=client).status(logs=True)
    click.echo(render.status_text(current))
    for entry in getattr(current, "logs", ()):
        click.echo(f"log: {render.clean(entry.message)}")


@cli.command(params=[_JSON, _SAVE])
@click.argument("endpoint_id")
@click.argument("request_id")
def result(endpoint_id: str, request_id: str, as_json: bool, save: Path | None) -> None:
    """Wait for a request and print its output, then what fal billed for it."""
    module = endpoints.load(endpoint_id)
    with Client() as client:
        handle = module.endpoint.handle(request_id, client=client)
        _show_output(handle.result(), as_json, save, client)
    _billed(module.ENDPOINT_ID, handle.billable_units)


@cli.command()
@click.argument("endpoint_id")
@click.argument("request_id")
def cancel(endpoint_id: str, request_id: str) -> None:
    """Ask fal to cancel a request: prints requested, already_completed or not_found."""
    module = endpoints.load(endpoint_id)
    with Client() as client:
        click.echo(render.clean(module.endpoint.handle(request_id, client=client).cancel()))


@cli.command(name="list")
@click.argument("query", required=False)
@click.option("--category", help="Only this one of fal's categories (text-to-image, image-to-video, ...).")
@click.option("--all", "show_all", is_flag=True, help="Also endpoints fal's newest listing no longer names.")
def list_(query: str | None, category: str | None, show_all: bool) -> None:
    """List endpoints whose id, display name or category contains every word of QUERY."""
    render.endpoint_list(endpoints.search(query, category, include_unlisted=show_all), render.stdout())


@cli.command()
@click.argument("endpoint_id")
def show(endpoint_id: str) -> None:
    """Show an endpoint's input and output fields."""
    module = endpoints.load(endpoint_id)
    out = render.stdout()
    render.field_table("Input", fields_of(module.Input, _file_fields(module)), out)
    render.field_table("Output", fields_of(module.Output), out)
    click.echo(f"Price: {_price_line(endpoint_id)}")


def _price_line(endpoint_id: str) -> str:
    """The endpoint's unit price from fal's pricing API, or why it is not known (never an error: `show` works
    offline and without a key)."""
    lookup = billing.lookup_price(endpoint_id)
    if lookup.price is None:
        return f"unavailable ({lookup.reason})" if lookup.unavailable else lookup.reason
    return f"{render.money(lookup.price.unit_price, lookup.price.currency)} per {render.unit(lookup.price.unit)}"


@cli.command()
@click.argument("endpoint_id")
@click.argument("inputs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory of the ledger, results.jsonl and saved files (required unless --estimate).")  # fmt: skip
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(min=1), help="Rows in flight.")
@click.option("--save", is_flag=True, help="Download every output file into OUT/files/ROW/.")
@click.option("--retry-failed", is_flag=True, help="Run failed rows again (a resumed batch otherwise keeps them).")
@click.option("--resubmit-ambiguous", is_flag=True,
              help="Send again the rows whose submit may already have reached fal (they may run, and be billed, "
                   "twice).")  # fmt: skip
@click.option("--estimate", is_flag=True, help="Print what the valid rows would cost (fal's estimate); submit nothing.")
def batch(endpoint_id: str, inputs: Path, out_dir: Path | None, concurrency: int, save: bool, retry_failed: bool,
          resubmit_ambiguous: bool, estimate: bool) -> None:  # fmt: skip
    """Run every line of INPUTS (JSON Lines, one input object per line); the same command resumes it.

    Exit 0 when every row succeeded; 1 when some failed or are ambiguous (their submit may have reached fal: sent
    again only with --resubmit-ambiguous); 2 on usage errors (another batch uses --out, an unreadable inputs file or
    ledger); 3 when the ledger or results.jsonl could not be written (disk full); 4 when fal was unreachable (the
    rows left are sent by the same command later). With --estimate: print the batch's price and exit 0.
    """
    module = endpoints.load(endpoint_id)
    try:
        read = read_inputs(inputs, module.Input, _file_fields(module))
    except InputsError as exc:
        _batch_error(str(exc), 2)
    if estimate:
        for row, error in read.invalid.items():
            click.echo(f"{inputs}:{row}: {error}", err=True)
        _estimate(module.ENDPOINT_ID, len(read.valid))
        return
    if out_dir is None:
        raise click.UsageError("Missing option '--out'.")
    try:
        lock = DirectoryLock(out_dir)
    except DirectoryBusy as exc:
        _batch_error(str(exc), 2)
    except OSError as exc:
        _batch_error(f"cannot use {out_dir}: {exc.strerror or exc}", 2)
    with lock:
        try:
            ledger = Ledger(out_dir)
        except LedgerError as exc:
            if exc.full:
                _batch_error(f"batch stopped: the disk is full ({exc})", EXIT_STORAGE)
            hint = "; move it away to start afresh (the rows it recorded as sent would be sent again)"
            _batch_error(f"{exc}{hint if exc.corrupt else ''}", 2)
        try:
            code = _run_ledger(module, ledger, read, inputs, out_dir, concurrency=concurrency, save=save,
                               retry_failed=retry_failed, resubmit_ambiguous=resubmit_ambiguous)  # fmt: skip
        except LedgerError as exc:
            _batch_error(f"batch stopped: {'the disk is full' if exc.full else 'the ledger failed'} ({exc})",
                         EXIT_STORAGE)  # fmt: skip
        finally:
            ledger.close()
    if code:
        raise click.exceptions.Exit(code)


for _command in account.COMMANDS:  # usage, requests, keys: fal's Platform API
    cli.add_command(_command)


def _batch_error(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {render.clean(message)}", err=True)
    raise click.exceptions.Exit(code)


def _run_ledger(module: ModuleType, ledger: Ledger, read: Inputs, inputs: Path, out_dir: Path, *, concurrency: int,
                save: bool, retry_failed: bool, resubmit_ambiguous: bool) -> int:  # fmt: skip
    """Run a locked batch on its open ledger; print what the user must know; the exit code."""
    try:
        ledger.bind(module.ENDPOINT_ID, read.sha256)
    except LedgerMismatch as exc:
        raise click.UsageError(f"{exc}; use another --out directory") from None
    for row, error in read.invalid.items():
        click.echo(f"{inputs}:{row}: {error}", err=True)
    ledger.add(read.valid, read.invalid)
    ledger.repair()
    if retry_failed:
        ledger.retry_failed(read.valid)
    if resubmit_ambiguous:
        ledger.resubmit_ambiguous()
    for row, error in unknown_rows(ledger, read).items():
        if row not in read.invalid:
            click.echo(f"{inputs}:{row}: {error}", err=True)
        ledger.failed(row, error, lost=False)
    counts = ledger.counts()
    total = sum(counts.values())
    with BatchProgress(render.stderr(), total, counts.get("done", 0), counts.get("failed", 0),
                       counts.get("submitting", 0)) as progress:  # fmt: skip
        outcome = run_batch(module, ledger, read, concurrency=concurrency, save=save, out_dir=out_dir,
                            progress=progress, inputs_name=str(inputs))  # fmt: skip
    for row, request_id, reason in ledger.ambiguous():
        status = f"`fal-typed status {module.ENDPOINT_ID} {request_id}`"
        where = f" (request id {request_id}: {status})" if request_id else ""
        click.echo(render.clean(f"{inputs}:{row}: ambiguous: {reason}{where}; not sent again unless"
                                " --resubmit-ambiguous"), err=True)  # fmt: skip
    for row, request_id, recorded in outcome.unrecorded:
        how = ("its output is not stored; the same command fetches it" if recorded else
               f"not in the ledger; its output: `fal-typed result {module.ENDPOINT_ID} {request_id}`")  # fmt: skip
        click.echo(render.clean(f"{inputs}:{row}: request id {request_id}: {how}"), err=True)
    counts = ledger.counts()
    results = out_dir / "results.jsonl"
    if results.exists():
        click.echo(f"results: {results}", err=True)
    _billed_summary(ledger)
    left = counts.get("pending", 0) + counts.get("submitted", 0)
    if outcome.stopped is not None:
        then = ("free some space, then run the same command again" if outcome.exit_code == EXIT_STORAGE else
                "run the same command again to resume")  # fmt: skip
        click.echo(render.clean(f"batch stopped: {outcome.stopped}; {left} rows left: {then}"), err=True)
        return outcome.exit_code
    if outcome.left:
        click.echo(f"batch: {outcome.left} rows not sent (connection failures): run the same command again", err=True)
        return EXIT_UNREACHABLE
    return 0 if counts.get("done", 0) == total else 1


def _billed_summary(ledger: Ledger) -> None:
    """What the batch's done rows cost in all, per currency (never added across currencies): `cost: $0.036 (12 rows)`,
    the rows whose price was unknown counted apart by their units; rows without units (an older ledger's) are left
    out, and nothing is printed when fal billed no row."""
    billed = ledger.billed()
    found = billing.totals((b.cost, b.currency) for b in billed if b.cost is not None and b.currency is not None)
    parts = [f"{render.money(float(total), currency)} ({_rows(count)})" for currency, (total, count) in found.items()]
    if len(found) > 1:
        parts.append(billing.NOT_ADDED)
    unpriced = [b.units for b in billed if b.cost is None or b.currency is None]
    if unpriced:
        units = billing.quantity(float(sum(map(billing.decimal, unpriced))))
        parts.append(f"{_rows(len(unpriced))} billed {units} units at an unknown price")
    if parts:
        click.echo(f"cost: {'; '.join(parts)}", err=True)


def _rows(count: int) -> str:
    return f"{count} row{'' if count == 1 else 's'}"


def _estimate(endpoint_id: str, rows: int) -> None:
    """The price of `rows` calls of the endpoint, from fal's estimate (`historical_api_price`, one call per row),
    with the unit price beside it. Nothing is submitted; fal's errors exit 1 as any other."""
    if rows == 0:
        click.echo("no valid rows: nothing to estimate")
        return
    with Client(timeout=30.0) as client:
        price = get_pricing([endpoint_id], client=client).price_of(endpoint_id)
        cost = estimate_cost({endpoint_id: rows}, client=client)
    if price is not None and price.currency != cost.currency:  # never a total in one currency beside a price in another
        raise ProtocolError(
            f"pricing estimate for {endpoint_id!r}: fal priced the endpoint in {price.currency} but estimated "
            f"{rows} rows in {cost.currency}; amounts in different currencies are not compared or added"
        )
    unit = (
        f" at {render.money(price.unit_price, price.currency)} per {render.unit(price.unit)}"
        if price is not None
        else ""
    )
    click.echo(f"estimate: {rows} rows of {endpoint_id}{unit}: {render.money(cost.total_cost, cost.currency)} in all")
