"""Filters through which spec text reaches generated code: each output reads back as exactly the input text.

`docstring` for text inside a triple-quoted literal, `comment` for a `#` line, `pyrepr` for literals; `black_quotes`
and `black_quoted` write string literals as black would, so formatting never has to touch them.
"""

from __future__ import annotations

import io
import re
import tokenize
import unicodedata
from typing import Any


def _printable(text: str, keep: str) -> str:
    """Escape every character that could end a line or confuse a reader (controls, separators, bidi marks)."""
    if text.isascii() and text.isprintable():  # most spec text: nothing to escape (ASCII has no Cf/Zl/Zp)
        return text
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
    # A quote is escaped where it could help close the literal or confuse black: beside another quote, or at either
    # end. Every other quote stays readable (`Defaults to "jpeg".`).
    last = len(text) - 1
    return "".join('\\"' if ch == '"' and (i in (0, last) or text[i + 1] == '"') else ch for i, ch in enumerate(text))


def comment(text: str) -> str:
    """Text safe inside a `#` comment: one line, no control characters."""
    return _printable(text.replace("\\", "\\\\"), keep="")


def black_quotes(literal: str) -> str:
    """A one-line string literal as black writes it: double quotes, unless they need more escapes than single ones
    (black's own rule, asked of black where the text holds both quotes: `'"'` is written `"'\\"'"`)."""
    if not literal.startswith("'") or literal.startswith("'" * 3):
        return literal
    if '"' not in literal:
        return '"' + literal[1:-1].replace("\\'", "'") + '"'
    from black.strings import normalize_string_quotes  # black is pinned: its rule is the output's

    return normalize_string_quotes(literal)


def black_quoted(code: str) -> str:
    """One-line source whose string literals are `repr`'s (datamodel-code-generator's types, `Field(...)` and defaults,
    `ast.unparse` output) with them quoted as black writes them (`repr` prefers single quotes)."""
    if "'" not in code:  # no single-quoted literal to requote (most types and numbers)
        return code
    tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    for token in reversed(tokens):  # right to left, so earlier offsets stay valid (unparse output is one line)
        if token.type == tokenize.STRING:
            (_, start), (_, end) = token.start, token.end
            code = code[:start] + black_quotes(token.string) + code[end:]
    return code


def pyrepr(value: Any) -> str:
    """A Python literal for JSON-like data, quoted as black would; anything else is a generator bug, not spec input."""
    if isinstance(value, str):
        return black_quotes(repr(value))
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{pyrepr(k)}: {pyrepr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(pyrepr(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as a literal")


_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>()#+|!~])")
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def visible(text: str) -> str:
    """Text on one line without control or format characters (NUL, ESC, U+202E and the other bidi overrides,
    zero-width marks): in Markdown a reviewer reads, they hide or reorder what the text says."""
    return " ".join("".join(" " if unicodedata.category(ch) in _INVISIBLE else ch for ch in text).split())


def markdown(text: str) -> str:
    """Text from fal in Markdown (a pull request's body, `CATALOGUE.md`): never markup, HTML or a table's `|`."""
    return _MARKDOWN.sub(r"\\\1", visible(text))


def markdown_code(text: str) -> str:
    """Text inside a Markdown code span: no backtick, line break or table `|` can end it early."""
    return visible(text).replace("`", "'").replace("|", "\\|")
