"""An endpoint's `Input` model as click options, and the options' values (plus `--input-json`) as a validated input.

Options carry no click defaults and no click-side range checks: a field left out stays unset (so fal applies its own
default, exactly as the Python call functions do), and every check is pydantic's, whose messages name the field.

A file the command cannot read (`--input-json FILE`, or a local file given to a file field) is one line naming it,
exit 2, before anything is sent: `InputFileError`.
"""

from __future__ import annotations

import errno
import io
import json
import sys
from pathlib import Path
from typing import Any, BinaryIO, cast

import click
import pydantic
from pydantic import BaseModel

from fal_cli.fields import Field, fields_of
from fal_cli.render import clean

RESERVED = frozenset({"help", "json", "save", "input-json"})  # the command's own options
_URL_PREFIXES = ("http://", "https://", "data:")


class InputFileError(click.ClickException):
    """A file named on the command line that cannot be read or is not what it must be: `Error: ...`, exit 2 (a usage
    error, but without the usage text: the file is the problem, not the command)."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(clean(message))


def os_reason(exc: OSError) -> str:
    """Why a file could not be opened, in words (`permission denied`, `is a directory`), without errno's noise."""
    reasons = {errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.ENOENT: "no such file",
               errno.EISDIR: "is a directory", errno.ENOTDIR: "a part of the path is not a directory"}  # fmt: skip
    return reasons.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()


class JsonValue(click.ParamType[Any]):
    """A JSON value (an object for a nested model); text that is not JSON passes as a string, so a field typed
    `Model | Literal[...]` accepts either spelling."""

    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            return value
        except RecursionError:
            self.fail("the JSON nests too deeply", param, ctx)


class FileValue(click.ParamType[Any]):
    """A file input: a URL or data URI is sent as is; anything else is a local path, uploaded at submit time."""

    name = "file"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return file_value(value)


def file_value(value: Any) -> Any:
    """A file-input value from text: URLs and data URIs stay strings (the runtime sends them), paths become `Path`."""
    if isinstance(value, str) and not value.startswith(_URL_PREFIXES):
        return Path(value).expanduser()
    return value


def option_name(field: str) -> str:
    """`num_inference_steps` → `--num-inference-steps`; a field named like one of the command's own options gets
    a `--field-` prefix instead of shadowing it."""
    kebab = field.strip("_").replace("_", "-")
    return f"--field-{kebab}" if kebab in RESERVED else f"--{kebab}"


def help_text(field: Field) -> str:
    repeat = ["repeat the option"] if field.many else []
    facts = [field.type_label, *repeat, *field.bounds, field.default_label]
    text = f"[{'; '.join(facts)}]"
    return f"{clean(field.description)} {text}" if field.description else text


def click_option(field: Field) -> click.Option:
    """The option of one field: typed, repeatable for lists, `--x/--no-x` for booleans, choices for enums."""
    name = option_name(field.name)
    common: dict[str, Any] = {"help": help_text(field), "multiple": field.many, "default": None}
    if field.kind == "bool" and not field.many:
        return click.Option([f"{name}/--no-{name[2:]}", field.name], **common)
    types: dict[str, click.ParamType[Any]] = {"int": click.INT, "float": click.FLOAT, "str": click.STRING,
                                         "file": FileValue(), "json": JsonValue(), "bool": click.BOOL}  # fmt: skip
    kind = click.Choice([str(c) for c in field.choices]) if field.kind == "choice" else types[field.kind]
    return click.Option([name, field.name], type=kind, **common)


def input_options(model: type[BaseModel], file_fields: frozenset[str]) -> list[click.Option]:
    return [click_option(field) for field in fields_of(model, file_fields)]


def given_fields(ctx: click.Context, model: type[BaseModel], file_fields: frozenset[str]) -> dict[str, Any]:
    """The fields set on the command line (not those left at their unset default), with choices given their
    declared type back (`--steps 4` for a `Literal[4, 8]` is the int 4)."""
    given: dict[str, Any] = {}
    for field in fields_of(model, file_fields):
        if ctx.get_parameter_source(field.name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[field.name]
        if field.kind == "choice":
            lookup = {str(c): c for c in field.choices}
            value = [lookup[v] for v in value] if field.many else lookup[value]
        given[field.name] = list(value) if field.many else value
    return given


def read_input_json(source: str) -> dict[str, Any]:
    """`--input-json FILE|-`: one JSON object (UTF-8), the whole input. Whatever is wrong with the file (unreadable,
    a directory, not UTF-8, not JSON, nested too deeply, not an object) is an `InputFileError` naming it."""
    where = "--input-json -" if source == "-" else f"--input-json {source}"
    try:
        raw = _stdin().read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {where}: {os_reason(exc)}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputFileError(f"{where}: not valid JSON: {exc}") from None
    except RecursionError:
        raise InputFileError(f"{where}: the JSON nests too deeply") from None
    if not isinstance(data, dict):
        raise InputFileError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


def _stdin() -> BinaryIO:
    """Standard input as bytes (so its encoding is checked as a file's is), or its text encoded when it has none."""
    buffer = getattr(sys.stdin, "buffer", None)
    return cast("BinaryIO", buffer) if buffer is not None else io.BytesIO(sys.stdin.read().encode("utf-8"))


def check_readable(data: dict[str, Any], file_fields: frozenset[str]) -> None:
    """Every local file given to a file field (a `Path` from an option or `--input-json`) that exists must open for
    reading: an `InputFileError` naming the option and the file now, not a traceback at upload time. A path that is
    not a file is left to validation, whose message names the field."""
    for name in sorted(file_fields & data.keys()):
        value = data[name]
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, Path) or not item.is_file():
                continue
            try:
                with item.open("rb"):
                    pass
            except OSError as exc:
                raise InputFileError(f"cannot read {option_name(name)} {item}: {os_reason(exc)}") from None


def with_local_files(data: dict[str, Any], file_fields: frozenset[str]) -> dict[str, Any]:
    """Top-level file fields of JSON input read like the options: a string that is not a URL is a local path."""
    out = dict(data)
    for name in file_fields & out.keys():
        value = out[name]
        out[name] = [file_value(v) for v in value] if isinstance(value, list) else file_value(value)
    return out


def validate_input(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """The validated input, or a usage error (exit 2) naming each bad field by its option."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise click.UsageError(f"invalid input: {describe_errors(exc)}") from None


def describe_errors(exc: pydantic.ValidationError) -> str:
    """pydantic's errors as `--option (field.path): message`, one clause per error."""
    parts = []
    for error in exc.errors(include_url=False):
        loc = [str(p) for p in error["loc"]]
        where = f"{option_name(loc[0])} ({'.'.join(loc)})" if loc else "input"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
