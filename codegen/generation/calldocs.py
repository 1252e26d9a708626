"""The docstring of a generated call function: what it does, every argument (meaning, bounds, default), what it
returns and raises, in Google style, so an editor's hover and signature help show it without opening `Input`.

Spec text (field descriptions) goes through `escape.docstring`; the rest is ours. Lines are wrapped to the line
length, so black leaves the docstring as written.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from codegen.generation.escape import docstring
from codegen.generation.style import LINE_LENGTH

if TYPE_CHECKING:
    from codegen.generation.models import Param

_FILE = "A file: a URL, a data URI, a `pathlib.Path`, bytes, a binary file object or a PIL image."
_FILES = "Files: each a URL, a data URI, a `pathlib.Path`, bytes, a binary file object or a PIL image."
_BOUND_TEXT = {
    "gt": "Greater than {}.",
    "ge": "At least {}.",
    "lt": "Less than {}.",
    "le": "At most {}.",
    "multiple_of": "A multiple of {}.",
    "min_length": "Length at least {}.",
    "max_length": "Length at most {}.",
}


def bounds_text(bounds: Sequence[str]) -> str:
    """`("ge=0.01", "le=1.0")` → `Between 0.01 and 1.0.`; each other constraint in words."""
    values = dict(b.split("=", 1) for b in bounds)
    parts = []
    for low, high, fmt in (("ge", "le", "Between {} and {}."), ("min_length", "max_length", "Length {} to {}.")):
        if low in values and high in values:
            parts.append(fmt.format(values.pop(low), values.pop(high)))
    parts += [_BOUND_TEXT[name].format(value) for name, value in values.items() if name in _BOUND_TEXT]
    return " ".join(parts)


def argument_text(param: Param) -> str:
    """One argument's entry text: description, file note, bounds, default (escaped, one paragraph)."""
    parts = [docstring(" ".join(param.description.split()))] if param.description.strip() else []
    if param.file_input:
        parts.append(_FILES if param.annotation.startswith(("list[", "Sequence[", "_Sequence[")) else _FILE)
    if param.bounds:
        parts.append(docstring(bounds_text(param.bounds)))
    if param.default is None:
        parts.append("Required.")
    elif param.default != "...":
        parts.append(docstring(f"Defaults to `{param.default}`."))
    return " ".join(p if p.endswith((".", "!", "?", ":")) else p + "." for p in parts if p)


def argument_lines(params: Sequence[Param]) -> list[str]:
    """The `Args:` entries of the input's fields, wrapped: the same in every call function of a module."""
    lines = _wrapped(
        "arguments: The whole input as one `Input` instance, instead of keyword arguments.", "    ", "        "
    )
    for p in params:
        lines += _wrapped(f"{p.kwarg}: {argument_text(p)}", indent="    ", hanging="        ")
    return lines


def call_docstring(summary: str, returns: str, client: str, options: str, arguments: Sequence[str]) -> str:
    """The docstring's text, indented for a function body, without the quotes; `arguments` from `argument_lines`."""
    lines = [summary, "", "Pass the input as keyword arguments, or as one `Input` instance.", "", "Args:", *arguments]
    client_text = f"The `{client}` to send with; by default a shared one configured from the environment (`FAL_KEY`)."
    lines += _wrapped(f"client: {client_text}", indent="    ", hanging="        ")
    lines += _wrapped(f"**options: Options for this call, as in `{options}`.", indent="    ", hanging="        ")
    lines += ["", "Returns:", *_wrapped(returns, indent="    ", hanging="    ")]
    lines += ["", "Raises:"]
    lines += _wrapped("pydantic.ValidationError: An argument is invalid; nothing was sent.", "    ", "        ")
    lines += _wrapped("fal_runtime.FalError: fal or the network failed (see `fal_runtime.errors`).", "    ", "        ")
    body = "\n".join(("    " + line) if line else "" for line in lines)
    return body.lstrip() + "\n    "


def api_argument_lines(param: Param) -> list[str]:
    """One `Args:` entry of an API function."""
    return _wrapped(f"{param.kwarg}: {argument_text(param)}", indent="    ", hanging="        ")


def api_docstring(
    summary: str, description: str, arguments: Sequence[str], returns: str, client: str, idempotent: bool
) -> str:
    """An API function's docstring text (`call_docstring`'s shape): fal's summary and description, every argument,
    what it returns and raises."""
    lines = [docstring(" ".join(summary.split())).rstrip(".") + "."]
    for paragraph in description.split("\n\n") if description.strip() else []:
        if paragraph.strip():
            lines += ["", *_paragraph(paragraph)]
    if idempotent:
        lines += ["", *_wrapped("Sent with an `Idempotency-Key`, so a retry never applies it twice.", "", "")]
    lines += ["", "Args:", *arguments]
    client_text = f"The `{client}` to send with; by default a shared one configured from the environment (`FAL_KEY`)."
    lines += _wrapped(f"client: {client_text}", indent="    ", hanging="        ")
    lines += ["", "Returns:", *_wrapped(returns, indent="    ", hanging="    ")]
    lines += ["", "Raises:"]
    lines += _wrapped("pydantic.ValidationError: An argument is invalid; nothing was sent.", "    ", "        ")
    lines += _wrapped("fal_runtime.FalError: fal or the network failed (see `fal_runtime.errors`).", "    ", "        ")
    body = "\n".join(("    " + line) if line else "" for line in lines)
    return body.lstrip() + "\n    "


def _paragraph(text: str) -> list[str]:
    """A paragraph of fal's Markdown, wrapped: running text joined, each list item (`- ...`) on lines of its own."""
    items: list[str] = []
    for line in text.strip().splitlines():
        if line.lstrip().startswith(("- ", "* ")) or not items:
            items.append(line.strip())
        else:
            items[-1] += " " + line.strip()
    lines: list[str] = []
    for item in items:
        bullet = item.startswith(("- ", "* "))
        lines += _wrapped(docstring(" ".join(item.split())), indent="", hanging="  " if bullet else "")
    return lines


def _wrapped(text: str, indent: str, hanging: str) -> list[str]:
    """Lines of at most the line length once the function body's own indent (4) is added."""
    return textwrap.wrap(
        text,
        width=LINE_LENGTH - 4,
        initial_indent=indent,
        subsequent_indent=hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )
