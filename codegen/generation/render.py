"""Stage 3b: render endpoint modules and the package index from Jinja templates, then format with black.

An endpoint module is its models (`modelir.render_models`, from the typed description) and its call functions, whose
signatures, `Args:` docs and imports read the same description (`models.Param`, `calldocs`, `imports`). Spec text
reaches generated code only through the filters below (`pyrepr`, `docstring`, `comment`) or through
datamodel-code-generator's own escaping of the types it writes, never pasted as text.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from codegen.generation import formatting
from codegen.generation.calldocs import argument_lines, call_docstring
from codegen.generation.escape import comment, docstring, pyrepr
from codegen.generation.formatting import black_format as black_format
from codegen.generation.imports import Imports
from codegen.generation.ir import EndpointIR
from codegen.generation.style import LINE_LENGTH

if TYPE_CHECKING:
    import jinja2

    from codegen.generation.models import Models


@dataclass(frozen=True)
class Operation:
    """One call function of an endpoint module; type names are keys of `Names`, resolved when rendering."""

    name: str
    prefix: str  # "" or "async "
    client: str
    options: str
    returns: str
    summary: str
    returns_doc: str

    @property
    def await_(self) -> str:
        return "await " if self.prefix else ""


_SYNC = (
    Operation("submit", "", "fal_runtime.Client", "fal_runtime.SubmitOptions", "fal_runtime.RequestHandle[Output]",
              "Submit a request to fal's queue and return its handle, without waiting.",
              "A handle to the queued request: its `request_id`, `status()`, `result()` and `cancel()`."),
    Operation("subscribe", "", "fal_runtime.Client", "fal_runtime.SubscribeOptions", "Output",
              "Submit a request to fal's queue, wait for it to complete and return its result.",
              "The endpoint's result, validated as `Output`."),
    Operation("run", "", "fal_runtime.Client", "fal_runtime.RunOptions", "Output",
              "Run the endpoint in one round trip, bypassing the queue, and return its result.",
              "The endpoint's result, validated as `Output`."),
)  # fmt: skip
_STREAM = Operation("stream", "", "fal_runtime.Client", "fal_runtime.StreamOptions", "Iterator[OutputChunk]",
                    "Run the endpoint and yield its server-sent events as they arrive.",
                    "Each event's data as an `OutputChunk`, in the order fal sends them.")  # fmt: skip
_ASYNC = tuple(
    Operation(op.name + "_async", "async ", "fal_runtime.AsyncClient", op.options,
              op.returns.replace("RequestHandle", "AsyncRequestHandle"), op.summary, op.returns_doc)
    for op in _SYNC
)  # fmt: skip
_STREAM_ASYNC = Operation("stream_async", "", "fal_runtime.AsyncClient", "fal_runtime.StreamOptions", "AsyncIterator[OutputChunk]",
                          _STREAM.summary, _STREAM.returns_doc)  # fmt: skip


def operations(endpoint: EndpointIR) -> tuple[Operation, ...]:
    if endpoint.streams:
        return (*_SYNC, _STREAM, *_ASYNC, _STREAM_ASYNC)
    return (*_SYNC, *_ASYNC)


@functools.cache
def environment() -> jinja2.Environment:
    """One Jinja environment per process: compiling templates per run is where slow generators spend their time.
    jinja2 is imported here, so a no-op run (which renders nothing) does not pay for it."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("codegen.generation", "templates"),
        autoescape=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    env.filters.update(pyrepr=pyrepr, docstring=docstring, comment=comment)
    return env


@dataclass(frozen=True)
class Rendered:
    source: str  # the module, before formatting
    # Text black already formatted where it stands in `source`: the call functions' parameters, the models.
    black_block: tuple[str, ...]


# What the call functions use, all bound at run time (so `typing.get_type_hints` works on them): the client types
# are named through the `fal_runtime` package, whose lazy attributes import the HTTP stack only when evaluated.
_CALL_NAMES = {"typing": ("Any", "overload"), "typing_extensions": ("Unpack",), "fal_runtime": ("Endpoint",)}
_STREAM_NAMES = {"collections.abc": ("AsyncIterator", "Iterator")}
_NAME = re.compile(r"(?<![.\w])[A-Za-z_]\w*")


def module_summary(endpoint: EndpointIR) -> str:
    """The module docstring's text (unescaped): the endpoint, what fal says about it, and its description."""
    summary = f"Typed client for fal's ``{endpoint.endpoint_id}`` endpoint."
    about = [
        f"{endpoint.display_name}." if endpoint.display_name else "",
        f"Category: {endpoint.category}." if endpoint.category else "",
    ]
    if endpoint.deprecated:
        about.append("fal lists this endpoint as deprecated: every call warns (``DeprecationWarning``).")
    if any(about):
        summary += "\n\n" + " ".join(a for a in about if a)
    if endpoint.description:
        summary += "\n\n" + endpoint.description
    if endpoint.types_only:
        summary += "\n\n" + _TYPES_ONLY
    return summary


_TYPES_ONLY = (
    "These models come from fal's TypeScript types alone (fal-js's endpoint types), as no JSON Schema of fal's "
    "describes this endpoint offline: field names, which fields are required, enums, defaults and descriptions are "
    "fal's, but numbers are not told from integers and no bounds are checked here. `make sync` against fal replaces "
    "them with fal's full schema."
)


def render_endpoint(endpoint: EndpointIR, models: Models) -> Rendered:
    imports = Imports(taken={*models.classes, *models.aliases, "ENDPOINT_ID", "endpoint"})
    for module, names in sorted(models.imports.items()):
        imports.add(module, sorted(names))
    imports.add_module("fal_runtime")
    n: dict[str, str] = {}
    for module, wanted in _CALL_NAMES.items():
        n.update(imports.add(module, wanted))
    if endpoint.streams:
        for module, wanted in _STREAM_NAMES.items():
            n.update(imports.add(module, wanted))
    if any(p.file_input and "list[FileInput]" in p.annotation for p in models.params):
        n.update(imports.add("collections.abc", ["Sequence"]))

    def bound(code: str) -> str:  # `fal_runtime.X` stays as it is; a bare name takes its binding
        return _NAME.sub(lambda m: n.get(m.group(), m.group()), code)

    renamed = {p.kwarg: p.attr for p in models.params if p.kwarg != p.attr}
    # A list of files is taken as any sequence: `list` is invariant, so a caller's `list[str]` would not type-check
    # against `list[FileInput]` (pydantic turns the sequence into a list).
    params = [
        dataclasses.replace(
            p, annotation=p.annotation.replace("list[FileInput]", f"{n.get('Sequence', 'Sequence')}[FileInput]")
        )
        if p.file_input
        else p
        for p in models.params
    ]
    # The runtime's map of file inputs: each class (a name datamodel-code-generator defined above) to its attributes.
    if not all(cls.isidentifier() and cls in models.classes for cls in models.file_attrs):
        raise AssertionError(f"file inputs name classes the models do not define: {sorted(models.file_attrs)}")
    file_map = "{" + ", ".join(f"{cls}: {pyrepr(list(attrs))}" for cls, attrs in models.file_attrs.items()) + "}"
    ops = operations(endpoint)
    realtime = ["realtime", "realtime_async"] if endpoint.realtime else []
    exports = ["ENDPOINT_ID", "endpoint", *models.aliases, *models.classes, *(op.name for op in ops), *realtime]
    lines = [
        f"    {p.kwarg}: {p.annotation}" + ("" if p.default is None else f" = {p.default}") + ",\n" for p in params
    ]
    template = environment().get_template("endpoint.py.jinja")
    block = param_block(lines)
    arguments = argument_lines(models.params)
    rendered_ops = [
        {
            "name": op.name,
            "prefix": op.prefix,
            "await": op.await_,
            "client": bound(op.client),
            "options": bound(op.options),
            "returns": bound(op.returns),
            "event": "event=OutputChunk, " if "OutputChunk" in op.returns else "",
            "doc": call_docstring(
                op.summary, op.returns_doc, op.client.split(".")[-1], op.options.split(".")[-1], arguments
            ),
        }
        for op in ops
    ]
    source = template.render(
        endpoint=endpoint,
        summary=wrap_docstring(docstring(module_summary(endpoint))),
        imports=imports.render(),
        models=models.source,
        param_block=block,
        n=n,
        renamed=renamed,
        files=file_map if models.file_attrs else "",
        exports=exports,
        operations=rendered_ops,
    )
    return Rendered(source, (block, models.source))


def wrap_docstring(text: str) -> str:
    """Escaped docstring text with each line longer than the line length wrapped at spaces (a list item's lines
    hang under its text; fenced and indented code is left alone)."""
    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or len(line) <= LINE_LENGTH or line.startswith("    "):
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        bullet = re.match(r"\s*([-*+]|\d+[.)])\s+", line)
        hanging = " " * bullet.end() if bullet else indent
        out += textwrap.wrap(line, LINE_LENGTH, initial_indent="", subsequent_indent=hanging,
                             break_long_words=False, break_on_hyphens=False) or [line]  # fmt: skip
    return "\n".join(out)


def render_package(endpoints: Sequence[EndpointIR], unlisted: Mapping[str, str] | None = None) -> str:
    """The package's `__init__.py`: the index of every endpoint. `unlisted`: endpoint id → the date of fal's newest
    listing, for the endpoints it no longer names."""
    rows = [(e, registry_row(e, (unlisted or {}).get(e.endpoint_id, ""))) for e in endpoints]
    return environment().get_template("package_init.py.jinja").render(rows=rows, count=len(endpoints))


def registry_row(endpoint: EndpointIR, unlisted: str) -> str:
    """The arguments of an endpoint's `EndpointRow`: its module, then each value fal gave (by name)."""
    values: list[tuple[str, object]] = [
        ("category", endpoint.category), ("display_name", endpoint.display_name), ("deprecated", endpoint.deprecated),
        ("unlisted", unlisted), ("types_only", endpoint.types_only), ("streams", endpoint.streams),
        ("realtime", endpoint.realtime), ("tags", endpoint.tags), ("kind", endpoint.kind),
        ("source", endpoint.source), ("source_date", endpoint.source_date),
    ]  # fmt: skip
    named = [
        f"{name}={_tuple(value) if isinstance(value, tuple) else pyrepr(value)}" for name, value in values if value
    ]
    return ", ".join([pyrepr("." + endpoint.module), *named])


def _tuple(values: tuple[object, ...]) -> str:
    items = [pyrepr(v) for v in values]
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def render_namespace(prefix: str) -> str:
    return environment().get_template("namespace_init.py.jinja").render(prefix=prefix)


def format_python(source: str, black_block: str | Sequence[str] = "") -> str:
    """black's output for a module, asking black only about the top-level statements that may need it
    (`formatting`).

    A top-level statement black would leave alone (`formatting.settled`) is kept as it is, and the others are
    formatted by black together in one call. Statements format independently, and the blank lines between them are
    written as black wants them. `black_block`: text black has already formatted in the position it stands in (the
    call functions' parameters, `param_block`; the models, `modelir.render_models`): a statement holding one is judged
    on the rest of its lines, and one lying inside one is kept as it is.
    """
    blocks = [black_block] if isinstance(black_block, str) else list(black_block)
    blocks = [b for b in blocks if b]
    # The module parsed only to find where its top-level statements begin and end (it is the templates' and
    # `modelir`'s text, which is never read for what it says).
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    parts: list[str] = []
    pending: list[int] = []  # indexes in `parts` of statements for black
    pos = 0
    for node in tree.body:
        start, end = formatting.span(node)
        parts.append(_gap(lines[pos:start]))
        chunk = "".join(lines[start:end])
        rest = chunk
        for block in blocks:
            rest = rest.replace(block, "")
        verbatim = lines[start - 1].strip() == "# fmt: off" if start else False  # black leaves it as written
        formatted = any(chunk in block for block in blocks)
        if not verbatim and not formatted and not formatting.settled(rest.splitlines(keepends=True)):
            if node is tree.body[0] and isinstance(node, ast.Expr):  # the module docstring: black it where it is
                chunk = black_format(chunk)
            else:
                pending.append(len(parts))
        parts.append(chunk)
        pos = end
    for index, text in zip(pending, formatting.black_statements([parts[i] for i in pending]), strict=False):
        parts[index] = text
    tail = "".join(lines[pos:]).strip()  # black ends a file with exactly one newline
    return "".join(parts) + (f"\n{tail}\n" if tail else "")


def param_block(lines: list[str]) -> str:
    """Keyword parameter lines (`    name: type = default,`) as black writes them inside an exploded signature.

    Every call function repeats the same parameters; formatting them once here keeps black's costliest work, the
    splitting of long annotations, out of the other seven copies. black formats each parameter of an exploded
    signature on its own, so the block stays black's output in every signature it is pasted into.
    """
    block = "".join(lines)
    if all(len(line.rstrip("\n")) <= LINE_LENGTH for line in lines):
        return block
    (stub,) = formatting.black_statements([f"def _(\n    *,\n{block}) -> None: ...\n"])
    return "".join(stub.splitlines(keepends=True)[2:-1])


def _gap(lines: list[str]) -> str:
    """The text between two top-level statements; black keeps at most two blank lines in a row there."""
    text = "".join(lines)
    if text.strip() == "" and text.count("\n") > 2:
        return "\n\n"
    return text
