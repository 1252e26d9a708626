"""black, asked only about the statements that need it.

black costs ~0.3 ms a line (far more on lines it must split), and most of a generated module is text already in
black's style: the templates write it so, and `modelir` writes each model statement from the typed description. So a
statement black would leave alone (`settled`) is kept as it is, and the others go to black: top-level statements
together in one call (`black_statements`), class-body statements too (`black_class_statements`), each memoized for
the process, as fal's fields (`prompt`, `image_size`, `num_inference_steps`) recur in hundreds of
endpoints. Tests and `codegen check` assert that every generated file is a fixed point of black (pinned).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable

from codegen.generation.style import LINE_LENGTH

FUTURE = "from __future__ import annotations\n\n"

_STATEMENTS: dict[str, str] = {}
_CLASS_STATEMENTS: dict[str, str] = {}
_MEMO_LIMIT = 50_000


def black_format(source: str) -> str:
    import black
    from black.mode import Mode, TargetVersion

    return black.format_str(source, mode=Mode(target_versions={TargetVersion.PY311}, line_length=LINE_LENGTH))


def _memoized(memo: dict[str, str], texts: list[str], format_missing: Callable[[list[str]], list[str]]) -> list[str]:
    """Each text as formatted: those `memo` lacks go to `format_missing` in one call, the rest come from `memo`."""
    if len(memo) > _MEMO_LIMIT:
        memo.clear()
    missing = [t for t in dict.fromkeys(texts) if t not in memo]
    if missing:
        memo.update(zip(missing, format_missing(missing), strict=True))
    return [memo[t] for t in texts]


def black_statements(chunks: list[str]) -> list[str]:
    """Top-level statements as black writes them inside a generated module."""
    return _memoized(_STATEMENTS, chunks, _format_statements)


def _format_statements(chunks: list[str]) -> list[str]:
    """Top-level statements formatted by black in one call, as they would be inside a generated module (black's
    choices depend on the module's future imports; every generated module has this one)."""
    formatted = black_format(FUTURE + "\n\n".join(chunks))
    lines = formatted.splitlines(keepends=True)
    # black's own output, parsed only to find where each statement it was given begins and ends again.
    body = ast.parse(formatted).body[1:]
    if len(body) != len(chunks):
        raise AssertionError("black changed the number of statements")
    return ["".join(lines[slice(*span(node))]) for node in body]


def black_class_statements(statements: list[tuple[str, bool]]) -> list[str]:
    """Statements of class bodies (`    name: type = default`, a docstring), as black writes them there, each given
    with whether it is to format as the first statement of its class (where a string is a docstring to black, whose
    lines it trims and whose closing quotes it may move; it never changes a string after other statements)."""
    keys = [("first\n" if first else "after\n") + statement for statement, first in statements]
    return _memoized(_CLASS_STATEMENTS, keys, _format_class_statements)


_AFTER = "    _ = 0\n"


def _format_class_statements(keys: list[str]) -> list[str]:
    """Class-body statements formatted by black in one call, each the body of a stand-in class of its own (after a
    stand-in statement when it is not to format first), the output cut at the stand-ins' `class` lines."""
    heads = [f"\nclass _{i}:\n" + ("" if key.startswith("first\n") else _AFTER) for i, key in enumerate(keys)]
    bodies = [key.split("\n", 1)[1] for key in keys]
    formatted = "\n" + black_format("\n\n".join(head + body for head, body in zip(heads, bodies, strict=True)))
    out: list[str] = []
    # A `class` line at column 0 is a stand-in's: a statement's own lines are indented, its strings escaped.
    for head, following in itertools.zip_longest(heads, heads[1:]):
        start = formatted.index(head) + len(head)
        end = formatted.index(following.split(":", 1)[0] + ":\n", start) if following else len(formatted)
        out.append(formatted[start:end].rstrip("\n") + "\n")
    return out


def span(node: ast.stmt) -> tuple[int, int]:
    """A top-level statement's lines (0-based, end exclusive), decorators included."""
    decorators = getattr(node, "decorator_list", [])
    return min([d.lineno for d in decorators] + [node.lineno]) - 1, node.end_lineno or node.lineno


def settled(lines: list[str]) -> bool:
    """Whether black would leave a statement as it is: every line fits (or is a one-line docstring, which black never
    splits), and every bracket left open at the end of a line is closed on a later line after a magic trailing comma
    (so black keeps it exploded instead of joining it)."""
    for i, line in enumerate(lines):
        text = line.rstrip()
        if len(text) > LINE_LENGTH and not _one_line_docstring(text):
            return False
        if text.endswith(("(", "[", "{")):
            indent = len(line) - len(line.lstrip())
            close = next(
                (j for j in range(i + 1, len(lines)) if len(lines[j]) - len(lines[j].lstrip()) == indent), None
            )
            if close is None or not lines[close].lstrip().startswith((")", "]", "}")):
                return False
            if not lines[close - 1].rstrip().endswith(","):
                return False
    return True


def _one_line_docstring(text: str) -> bool:
    body = text.strip()
    return len(body) >= 6 and body.startswith('"' * 3) and body.endswith('"' * 3) and '"' * 3 not in body[3:-3]
