"""Passes over datamodel-code-generator's output that make a model module read as if written by hand.

- `untitled`: schemas without `title`, so no field carries `Field(title="Num Inference Steps")` noise.
- `without_config_noise`: no `model_config = ConfigDict(arbitrary_types_allowed=True)`, which the generator adds for
  the custom `FileInput` type and pydantic does not need (`FileInput` is an `Annotated` validator).
- `literal_aliases`: a `Literal` of many values is named once (`Style: TypeAlias = Literal[...]`) and referenced by
  name, instead of being pasted into the model and every call signature.
- `wrap_attribute_docstrings`: field docstrings wrapped to the line length.
- `split_imports`: the models' imports taken out, so the module can have one import block holding what it uses.

Each pass parses the source and edits it by offsets, so spec text is never re-quoted here.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable
from typing import Any

from codegen.generation import keywords
from codegen.generation.escape import black_quoted
from codegen.generation.style import LINE_LENGTH

MAX_INLINE_LITERAL = 3  # a Literal with more values than this gets a name

# JSON Schema keywords whose values are schemas (or lists / maps of schemas); `title` is dropped only inside these,
# never from examples, defaults or a property that happens to be called `title`.
_SCHEMA = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")
_SCHEMA_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAP = ("properties", "patternProperties", "$defs", "definitions")


def untitled(schema: Any) -> Any:
    """A copy of `schema` with every schema's `title` removed (names come from component keys and field names), and
    the intermediate model's file-input markers (`ui`, `_fal_ui_field`), which model generation does not read."""
    if not isinstance(schema, dict):
        return schema
    out = {
        k: v for k, v in schema.items() if not (k == "title" and isinstance(v, str)) and k not in keywords.FILE_MARKERS
    }
    for key in _SCHEMA:
        if key in out:
            out[key] = untitled(out[key])
    for key in _SCHEMA_LIST:
        if isinstance(out.get(key), list):
            out[key] = [untitled(s) for s in out[key]]
    for key in _SCHEMA_MAP:
        if isinstance(out.get(key), dict):
            out[key] = {name: untitled(s) for name, s in out[key].items()}
    return out


class SourceEdit:
    """Source text with edits applied by (line, column) spans from its AST, right to left."""

    def __init__(self, source: str) -> None:
        self.text = source
        self.line_text = source.splitlines(keepends=True)
        self.offsets = [0]
        for line in self.line_text:
            self.offsets.append(self.offsets[-1] + len(line))
        self.edits: list[tuple[int, int, str]] = []

    def _offset(self, line: int, byte_column: int) -> int:
        """A character offset from the AST's (line, UTF-8 byte column): spec text may hold any character."""
        return self.offsets[line - 1] + len(self.line_text[line - 1].encode()[:byte_column].decode())

    def span(self, node: ast.expr) -> tuple[int, int]:
        end_line, end_column = node.end_lineno or node.lineno, node.end_col_offset or 0
        return self._offset(node.lineno, node.col_offset), self._offset(end_line, end_column)

    def replace(self, node: ast.expr, text: str) -> None:
        self.edits.append((*self.span(node), text))

    def lines(self, first: int, last: int, text: str) -> None:
        """Replace whole lines `first`..`last` (1-based, inclusive)."""
        self.edits.append((self.offsets[first - 1], self.offsets[last], text))

    def result(self) -> str:
        text = self.text
        for start, end, new in sorted(self.edits, reverse=True):
            text = text[:start] + new + text[end:]
        return text


def without_config_noise(source: str) -> str:
    tree = ast.parse(source)
    edit = SourceEdit(source)
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if _is_arbitrary_types_config(stmt):
                edit.lines(stmt.lineno, stmt.end_lineno or stmt.lineno, "")
    return edit.result()


def _is_arbitrary_types_config(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        return False
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    call = stmt.value
    return (
        [ast.unparse(t) for t in targets] == ["model_config"]
        and isinstance(call, ast.Call)
        and ast.unparse(call.func) == "ConfigDict"
        and not call.args
        and [(k.arg, ast.unparse(k.value)) for k in call.keywords] == [("arbitrary_types_allowed", "True")]
    )


def literal_aliases(source: str) -> tuple[str, dict[str, str]]:
    """Every `Literal` of more than `MAX_INLINE_LITERAL` values replaced by a module-level alias named after the
    first field that uses it (`output_format` → `OutputFormat`). When a class has that name, the values are
    `...Preset` if they stand beside that class in the field's type (`image_size: ImageSize | ImageSizePreset`: named
    sizes instead of a custom one), else `...Value`. Returns the
    source and the aliases, name → the `Literal[...]` source, in order of first use."""
    tree = ast.parse(source)
    taken = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    aliases: dict[str, str] = {}  # literal source → alias name
    edit = SourceEdit(source)
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            for node in _literals(stmt.annotation):
                text = ast.unparse(node)
                if text not in aliases:
                    beside = {n.id for n in ast.walk(stmt.annotation) if isinstance(n, ast.Name)}
                    aliases[text] = _alias_name(stmt.target.id, taken, beside)
                    taken.add(aliases[text])
                edit.replace(node, aliases[text])
    if not aliases:
        return source, {}
    definitions = "".join(f"{name}: TypeAlias = {black_quoted(text)}\n\n\n" for text, name in aliases.items())
    first_class = min(n.lineno for n in tree.body if isinstance(n, ast.ClassDef))
    edit.edits.append((edit.offsets[first_class - 1], edit.offsets[first_class - 1], definitions))
    return edit.result(), {name: text for text, name in aliases.items()}


def _literals(annotation: ast.expr) -> Iterable[ast.Subscript]:
    for node in ast.walk(annotation):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
            values = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if len(values) > MAX_INLINE_LITERAL:
                yield node


def _alias_name(field: str, taken: set[str], beside: set[str]) -> str:
    base = "".join(part[:1].upper() + part[1:] for part in re.split(r"_+", field) if part) or "Choice"
    if not base[0].isalpha():
        base = "Choice" + base
    suffix = "Preset" if base in beside else "Value"
    name = base if base not in taken else base + suffix
    number = 2
    while name in taken:
        name, number = f"{base}{suffix}{number}", number + 1
    return name


def wrap_attribute_docstrings(source: str) -> str:
    """One-line field docstrings longer than the line wrapped at spaces, reading back as the same words."""
    tree = ast.parse(source)
    edit = SourceEdit(source)
    lines = source.splitlines()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
                continue
            if not isinstance(stmt.value.value, str) or stmt.lineno != stmt.end_lineno:
                continue
            line = lines[stmt.lineno - 1]
            if len(line) <= LINE_LENGTH:
                continue
            wrapped = wrap_docstring_line(line)
            if wrapped != line and _same_words(wrapped, stmt.value.value):
                edit.lines(stmt.lineno, stmt.lineno, wrapped + "\n")
    return edit.result()


def wrap_docstring_line(line: str) -> str:
    """`    \"\"\"long text\"\"\"` as several lines of at most `LINE_LENGTH` (a word longer than that stays whole)."""
    indent = line[: len(line) - len(line.lstrip())]
    body = line.strip()
    if not (body.startswith('"""') and body.endswith('"""')) or len(body) < 6:
        return line
    words = body[3:-3].split(" ")
    if any(w.endswith("\\") for w in words[:-1]):  # a split there would turn `\` + newline into a continuation
        return line
    return "\n".join(
        textwrap.wrap(
            body,
            width=LINE_LENGTH,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
            drop_whitespace=True,
        )
    )


def _same_words(wrapped: str, text: str) -> bool:
    try:
        value = ast.literal_eval(wrapped.strip())
    except (SyntaxError, ValueError):
        return False
    return isinstance(value, str) and value.split() == text.split()


def split_imports(source: str) -> tuple[str, dict[str, set[str]]]:
    """The source without its top-level imports, and what they imported that it still uses: module → names
    (`__future__` dropped; a name the other passes made unused, like `ConfigDict`, too)."""
    tree = ast.parse(source)
    imported: dict[str, set[str]] = {}
    edit = SourceEdit(source)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "__future__":
                if any(a.asname for a in node.names):
                    raise AssertionError(f"datamodel-code-generator renamed an import: {ast.unparse(node)}")
                imported.setdefault(node.module, set()).update(a.name for a in node.names)
            edit.lines(node.lineno, node.end_lineno or node.lineno, "")
        elif isinstance(node, ast.Import):
            raise AssertionError(f"unexpected import in generated models: {ast.unparse(node)}")
    rest = edit.result().lstrip("\n")
    used = {node.id for node in ast.walk(ast.parse(rest)) if isinstance(node, ast.Name)}
    kept = {module: names & used for module, names in imported.items()}
    return rest, {module: names for module, names in kept.items() if names}
