"""Stage 3b: render endpoint modules and the package index from Jinja templates, then format with black.

Spec text reaches generated code only through the filters below (`pyrepr`, `docstring`, `comment`) or through
datamodel-code-generator's own escaping; type annotations and defaults are re-emitted from a parsed AST, never
pasted as text.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata
from dataclasses import dataclass
from typing import Any

import jinja2

from codegen.ir import Endpoint
from codegen.models import Models


@dataclass(frozen=True)
class Operation:
    name: str
    prefix: str  # "" or "async "
    client: str
    options: str
    returns: str
    doc: str

    @property
    def await_(self) -> str:
        return "await " if self.prefix else ""


_SYNC = (
    Operation("submit", "", "_Client", "_SubmitOptions", "_RequestHandle[Output]",
              "Submit a request to fal's queue and return its handle without waiting for the result."),
    Operation("subscribe", "", "_Client", "_SubscribeOptions", "Output",
              "Submit a request to fal's queue, wait for it to complete and return its result."),
    Operation("run", "", "_Client", "_RunOptions", "Output",
              "Run the endpoint in one round trip, bypassing the queue, and return its result."),
)  # fmt: skip
_STREAM = Operation("stream", "", "_Client", "_StreamOptions", "_Iterator[dict[str, _Any]]",
                    "Run the endpoint and yield its server-sent events as they arrive.")  # fmt: skip
_ASYNC = tuple(
    Operation(op.name + "_async", "async ", "_AsyncClient", op.options,
              op.returns.replace("_RequestHandle", "_AsyncRequestHandle"), op.doc)
    for op in _SYNC
)  # fmt: skip
_STREAM_ASYNC = Operation("stream_async", "", "_AsyncClient", "_StreamOptions", "_AsyncIterator[dict[str, _Any]]",
                          _STREAM.doc)  # fmt: skip


def operations(endpoint: Endpoint) -> tuple[Operation, ...]:
    if endpoint.streams:
        return (*_SYNC, _STREAM, *_ASYNC, _STREAM_ASYNC)
    return (*_SYNC, *_ASYNC)


def _printable(text: str, keep: str) -> str:
    """Escape every character that could end a line or confuse a reader (controls, separators, bidi marks)."""
    out = []
    for ch in text:
        if ch in keep or (ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zl", "Zp")):
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii") if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


def docstring(text: str) -> str:
    """Text safe inside a triple-double-quoted (non-raw) string literal, reading back as the same text."""
    text = text.replace("\\", "\\\\")
    text = _printable(text, keep="\n")
    return text.replace('"', '\\"')  # no quote can close the literal, wherever it stands


def comment(text: str) -> str:
    """Text safe inside a `#` comment: one line, no control characters."""
    return _printable(text.replace("\\", "\\\\"), keep="")


def pyrepr(value: Any) -> str:
    """A Python literal for JSON-like data; anything else is a generator bug, not spec input."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{pyrepr(k)}: {pyrepr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(pyrepr(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as a literal")


@functools.cache
def environment() -> jinja2.Environment:
    """One Jinja environment per process: compiling templates per run is where slow generators spend their time."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("codegen", "templates"),
        autoescape=False,  # noqa: S701 - output is Python; escaping is the filters' job
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    env.filters.update(pyrepr=pyrepr, docstring=docstring, comment=comment)
    return env


def render_endpoint(endpoint: Endpoint, models: Models) -> str:
    summary = f"Typed client for fal's ``{endpoint.endpoint_id}`` endpoint."
    if endpoint.description:
        summary += "\n\n" + endpoint.description
    renamed = {p.kwarg: p.attr for p in models.params if p.kwarg != p.attr}
    files = tuple(p.attr for p in models.params if p.wire in endpoint.file_inputs)
    # A list of files is taken as any sequence: `list` is invariant, so a caller's `list[str]` would not type-check
    # against `list[FileInput]` (pydantic turns the sequence into a list).
    params = [
        dataclasses.replace(p, annotation=p.annotation.replace("list[FileInput]", "_Sequence[FileInput]"))
        if p.attr in files else p
        for p in models.params
    ]
    ops = operations(endpoint)
    exports = ["ENDPOINT_ID", "endpoint", *models.classes, *(op.name for op in ops)]
    template = environment().get_template("endpoint.py.jinja")
    return template.render(
        endpoint=endpoint,
        summary=summary,
        models=models.source,
        params=params,
        sequences=any("_Sequence[" in p.annotation for p in params),
        renamed=renamed,
        files=files,
        exports=exports,
        operations=[dict(op.__dict__, **{"await": op.await_}) for op in ops],
    )


def render_package(modules: list[tuple[str, str]]) -> str:
    return environment().get_template("package_init.py.jinja").render(modules=modules, count=len(modules))


def render_namespace(prefix: str) -> str:
    return environment().get_template("namespace_init.py.jinja").render(prefix=prefix)


def format_python(source: str) -> str:
    import black

    return black.format_str(source, mode=black.Mode(target_versions={black.TargetVersion.PY311}))
