"""The typed description of an endpoint's models, built once from datamodel-code-generator's parsed models.

`describe` reads each `DataModel` the parser made (its class name, base, description, config and fields) into a
`ModelIR` of `FieldIR`s: attribute, wire name, annotation, `Field(...)` metadata, default, bounds, description, file
input, `Literal` aliases. Everything after reads the description, never the text: `render_models` writes the model
classes from it, and the call functions, their `Args:` docs and the import block read the same fields (`models`).

What used to be passes over datamodel-code-generator's text are decisions here:
- a `dict` default of a field typed by one model is that model built (`ImageSize(width=2048, ...)`), and a class
  built in another's default is defined first (`_typed_defaults`, `_defined_before_use`);
- a `Literal` of more than `MAX_INLINE_LITERAL` values is named once (`Style: TypeAlias = Literal[...]`) and
  referenced by name (`_literal_aliases`);
- no `model_config = ConfigDict(arbitrary_types_allowed=True)`, which the parser adds for the custom `FileInput` type
  and pydantic does not need (`FileInput` is an `Annotated` validator);
- one-line docstrings longer than the line are wrapped (`_wrapped_docstring`).

Spec text reaches the source through datamodel-code-generator's own escaping (types, `Field(...)`), `escape.pyrepr`
(defaults) and `_docstring` (descriptions), never pasted as it came.
"""

from __future__ import annotations

import io
import re
import textwrap
import tokenize
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from codegen.generation import formatting
from codegen.generation.escape import black_quoted, pyrepr
from codegen.generation.style import LINE_LENGTH

MAX_INLINE_LITERAL = 3  # a Literal with more values than this gets a name
INDENT = "    "


@dataclass(frozen=True)
class FieldIR:
    """One field of a model, as its class declares it."""

    attr: str  # the attribute name
    wire: str  # the field's name in fal's JSON (the alias, when the attribute had to be renamed)
    annotation: str  # Python source of the type, without `Annotated` metadata, `Literal` aliases by name
    metadata: str = ""  # the `Field(...)` of its `Annotated[...]`, or "" when it has none
    default: str | None = None  # Python source of the default the class writes; None when it writes none (required)
    literal_default: bool = True  # whether `default` is a literal a signature can repeat (JSON-like, or a model of it)
    bounds: tuple[str, ...] = ()  # its constraints as pydantic enforces them: `("ge=0.01", "le=1.0")`
    description: str = ""  # its docstring's text, as the spec gives it ("" when none)
    file_input: bool = False  # whether it takes a file (`FileInput`): upload, path, bytes, PIL image
    enum_aliases: tuple[str, ...] = ()  # the `Literal` aliases its annotation names
    # Where datamodel-code-generator's formatter split the field before its `Literal`s were named, which black keeps
    # for the magic trailing comma it left: "annotated" (`Annotated[` one element a line), "list" / "dict" (the
    # default one item a line, `items`), or "" (black's own layout).
    layout: str = ""
    items: tuple[str, ...] = ()  # the default's items, as source, when the layout splits it
    builds: str = ""  # the generated class the default builds (`ImageSize(width=2048, ...)`), if any
    # What the description is built from, not part of it: the `Literal[...]` types of more than MAX_INLINE_LITERAL
    # values its annotation held, and the classes it names.
    literals: tuple[str, ...] = field(default=(), compare=False, repr=False)
    refs: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @property
    def annotated(self) -> str:
        """The field's whole annotation: `Annotated[type, Field(...)]` when it has metadata."""
        return f"Annotated[{self.annotation}, {self.metadata}]" if self.metadata else self.annotation


@dataclass(frozen=True)
class ModelIR:
    """One generated class."""

    name: str
    base: str  # `FalModel`, `FalFile` (downloadable files) or `RootModel`
    root: bool  # a `RootModel[...]`: one field, `root`
    description: str | None
    config: tuple[tuple[str, str], ...]  # the `ConfigDict(...)` items it keeps, as (name, value source)
    fields: tuple[FieldIR, ...]
    # The JSON value of each field's default, by attribute (for `_typed_defaults`); not part of the description.
    values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class LiteralAlias:
    name: str
    literal: str  # `Literal[...]` source, strings quoted as black writes them


@dataclass(frozen=True)
class ModelsIR:
    """Every class of an endpoint's models, in the order the module defines them, and the `Literal` aliases before
    them. `imports`: what the classes use, module → names."""

    classes: tuple[ModelIR, ...]
    aliases: tuple[LiteralAlias, ...]
    imports: Mapping[str, frozenset[str]]

    def model(self, name: str) -> ModelIR:
        return next(m for m in self.classes if m.name == name)


# --- from datamodel-code-generator's parsed models ---------------------------------------------------------------

_NO_VALUE = object()
# `Field(...)` arguments that bound a value, in the order pydantic's `Field` takes them (and the parser writes them).
_BOUNDS = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length")
_CONFIG_NOISE = (("arbitrary_types_allowed", "True"),)


def describe(
    models: Sequence[Any], imports: Mapping[str | None, Iterable[str]], file_inputs: Mapping[str, Sequence[str]]
) -> ModelsIR:
    """The typed description of one module's parsed models (`DataModel`s, in the order the parser sorted them), with
    the module's imports as the parser planned them (module → names) and `file_inputs` (class → wire names) marked.
    Reads the parser's models while its parse is under way."""
    classes = [_model(m) for m in models]
    names = {m.name for m in classes}
    aliased = getattr(imports, "alias", {})
    needed: dict[str, set[str]] = {}
    for module, imported in imports.items():
        if module is None:
            raise AssertionError(f"unexpected import in generated models: import {sorted(imported)}")
        if any(name != alias for name, alias in aliased.get(module, {}).items()):
            raise AssertionError(f"datamodel-code-generator renamed an import from {module}: {aliased[module]}")
        if module != "__future__":
            needed[module] = set(imported)
    if not any(m.config for m in classes):  # its only config was noise
        needed.get("pydantic", set()).discard("ConfigDict")
    # The parser imports `Dict` for its template's `__pydantic_extra__` annotation; the fields here write `dict[...]`
    if not any("Dict[" in f.annotation for m in classes for f in m.fields):
        needed.get("typing", set()).discard("Dict")
    classes = _typed_defaults(classes, names)
    classes = _defined_before_use(classes)
    classes, aliases = _literal_aliases(classes)
    if aliases:
        needed.setdefault("typing", set()).add("TypeAlias")
    for cls, wires in file_inputs.items():  # a class missing here is reported by the caller, which names the endpoint
        wanted = set(wires)
        classes = [
            replace(m, fields=tuple(replace(f, file_input=f.wire in wanted) for f in m.fields)) if m.name == cls else m
            for m in classes
        ]
    frozen = {module: frozenset(n) for module, n in needed.items() if n}
    return ModelsIR(tuple(classes), tuple(aliases), frozen)


def _model(model: Any) -> ModelIR:
    root = model.base_class == "RootModel"
    config = model.extra_template_data.get("config")
    items: tuple[tuple[str, str], ...] = ()
    if config is not None:
        # The values are source already (`extra="'allow'"`), but for booleans.
        items = tuple(
            (k, black_quoted(v if isinstance(v, str) else repr(v)))
            for k, v in config.model_dump(exclude_none=True).items()
        )
        if items == _CONFIG_NOISE:
            items = ()
    fields = []
    values = {}
    for f in model.fields:
        written = _written_default(f, root)
        attr = "root" if root else f.name
        annotation = black_quoted(f.type_hint)
        metadata = black_quoted(str(f)) if f.annotated else ""
        default = black_quoted(f.represented_default) if written else None
        value = f.default if written else _NO_VALUE
        layout = _layout(attr, annotation, metadata, value, default or "")
        fields.append(
            FieldIR(
                attr=attr,
                wire=f.alias or attr,
                annotation=annotation,
                metadata=metadata,
                default=default,
                literal_default=value is _NO_VALUE or _is_json(value),
                bounds=_bounds(f, metadata),
                description=f.docstring if f.docstring and f.docstring.strip() else "",
                layout=layout,
                items=_items(value) if layout in ("list", "dict") else (),
                literals=_big_literals(f),
                refs=frozenset(dt.reference.short_name for dt in f.data_type.all_data_types if dt.reference),
            )
        )
        values[attr] = value
    return ModelIR(
        name=model.class_name,
        base=model.base_class,
        root=root,
        description=model.description if model.description and model.description.strip() else None,
        config=items,
        fields=tuple(fields),
        values=values,
    )


def _big_literals(f: Any) -> tuple[str, ...]:
    """The `Literal[...]` types of more than MAX_INLINE_LITERAL values in a field's type, in the order they appear."""
    found = [
        black_quoted(dt.type_hint)
        for dt in f.data_type.all_data_types
        if dt.literals and len(dt.literals) > MAX_INLINE_LITERAL
    ]
    if not found:
        return ()
    whole = black_quoted(f.type_hint)
    return tuple(sorted(dict.fromkeys(found), key=whole.find))


def _written_default(f: Any, root: bool) -> bool:
    """Whether the class writes a default for the field (the condition of datamodel-code-generator's templates)."""
    if f.has_default_factory_in_field:
        return False
    if root:
        return not (f.required or (f.represented_default == "None" and f.strip_default_none))
    return bool(
        (not f.required or f.use_default_with_required)
        and (f.represented_default != "None" or not f.strip_default_none or f.data_type.is_optional)
    )


def _bounds(f: Any, metadata: str) -> tuple[str, ...]:
    """The constraints the field's `Field(...)` writes (the parser's plan of its arguments), as `name=value` source."""
    call = f._render_plan().call if metadata else None  # the typed arguments `str(f)` writes
    if call is None:
        return ()
    return tuple(f"{k.name}={pyrepr(k.value)}" for k in call.kwargs if k.name in _BOUNDS)


def _identifiers(code: str) -> Iterable[str]:
    """The names a type expression uses (strings in it are not names)."""
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.NAME:
            yield token.string


# --- typed defaults -------------------------------------------------------------------------------------------------


def _typed_defaults(classes: list[ModelIR], names: set[str]) -> list[ModelIR]:
    """Object defaults written as the model they stand for: fal's `image_size` defaults to `{"width": 2048, ...}` on a
    field typed `ImageSize | Literal[...]`; the parser keeps the dict, which a type checker rejects (and pydantic would
    serialize with a warning). `ImageSize(width=2048, ...)` says the same, typed."""
    by_name = {m.name: m for m in classes}
    out = []
    for m in classes:
        fields = list(m.fields)
        for i, f in enumerate(fields):
            value = m.values.get(f.attr, _NO_VALUE)
            if value is _NO_VALUE or value is None or f.default is None:
                continue
            model = _single_model(f, names)
            if model is None:
                continue
            built: str | None = None
            literal = True  # a signature repeats `Model(key=value)`, not `Model(value)` (a call it cannot judge)
            if by_name[model].root and _is_json(value):  # `FocusPoint([0.5, 0.5])`
                built, literal = f"{model}({pyrepr(value)})", False
            elif isinstance(value, dict):
                built = _instance(by_name[model], value)
            elif isinstance(value, list) and value and all(isinstance(e, dict) for e in value):
                items = [_instance(by_name[model], e) for e in value]
                built = "[" + ", ".join(i for i in items if i) + "]" if None not in items else None
            if built is not None:
                layout = "annotated" if f.layout == "annotated" else ""  # the split dict or list is gone
                fields[i] = replace(f, default=built, literal_default=literal, layout=layout, items=(), builds=model)
        out.append(replace(m, fields=tuple(fields)) if fields != list(m.fields) else m)
    return out


def _single_model(f: FieldIR, names: set[str]) -> str | None:
    """The one generated model a field's type names (`ImageSize | Literal[...]`, `list[LoraWeight]`), if exactly one."""
    found = f.refs & names
    return next(iter(found)) if len(found) == 1 else None


def _is_json(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))


def _instance(model: ModelIR, value: dict[Any, Any]) -> str | None:
    """`Model(key=value, ...)` for a dict default whose keys are all the model's attribute names, else None."""
    attrs = {f.attr for f in model.fields if f.attr == f.wire}
    if not all(isinstance(k, str) and k in attrs for k in value):
        return None
    return f"{model.name}(" + ", ".join(f"{k}={pyrepr(v)}" for k, v in value.items()) + ")"


def _defined_before_use(classes: list[ModelIR]) -> list[ModelIR]:
    """Classes reordered (stably) so that a model built in another's default is defined first: annotations are lazy
    (`from __future__ import annotations`), defaults are not."""
    names = {c.name for c in classes}
    needs = {c.name: {f.builds for f in c.fields if f.builds in names} for c in classes}
    order: list[str] = []

    def emit(name: str, visiting: frozenset[str]) -> None:
        if name in order or name in visiting:
            return
        for dependency in sorted(needs[name]):
            emit(dependency, visiting | {name})
        order.append(name)

    for c in classes:
        emit(c.name, frozenset())
    by_name = {c.name: c for c in classes}
    return [by_name[n] for n in order]


# --- Literal aliases ------------------------------------------------------------------------------------------------


def _literal_aliases(classes: list[ModelIR]) -> tuple[list[ModelIR], list[LiteralAlias]]:
    """Every `Literal` of more than `MAX_INLINE_LITERAL` values replaced by a module-level alias named after the first
    field that uses it (`output_format` → `OutputFormat`). When a class has that name, the values are `...Preset` if
    they stand beside that class in the field's type (`image_size: ImageSize | ImageSizePreset`: named sizes instead
    of a custom one), else `...Value`."""
    taken = {m.name for m in classes}
    aliases: dict[str, str] = {}  # literal source → alias name
    out = []
    for m in classes:
        fields = list(m.fields)
        for i, f in enumerate(fields):
            if not f.literals:
                continue
            beside = frozenset(_identifiers(f.annotated))
            annotation = f.annotation
            used = []
            for text in f.literals:
                if text not in aliases:
                    aliases[text] = _alias_name(f.attr, taken, beside)
                    taken.add(aliases[text])
                if text not in annotation:
                    raise AssertionError(f"{m.name}.{f.attr}: {text} is not in {annotation}")
                annotation = annotation.replace(text, aliases[text])
                used.append(aliases[text])
            fields[i] = replace(f, annotation=annotation, enum_aliases=tuple(used))
        out.append(replace(m, fields=tuple(fields)))
    return out, [LiteralAlias(name, text) for text, name in aliases.items()]


def _alias_name(field: str, taken: set[str], beside: frozenset[str]) -> str:
    base = "".join(part[:1].upper() + part[1:] for part in re.split(r"_+", field) if part) or "Choice"
    if not base[0].isalpha():
        base = "Choice" + base
    suffix = "Preset" if base in beside else "Value"
    name = base if base not in taken else base + suffix
    number = 2
    while name in taken:
        name, number = f"{base}{suffix}{number}", number + 1
    return name


# --- the layout datamodel-code-generator's formatter leaves ---------------------------------------------------------

_SHORT_DEFAULT_OVERFLOW = 13  # how far past the line a default may go before the formatter splits `Annotated[`


def _layout(attr: str, annotation: str, metadata: str, value: Any, default: str) -> str:
    """Which bracket of a field statement datamodel-code-generator's formatter (0.89, at `LINE_LENGTH`) splits one
    item a line with a trailing comma, as black then keeps it. Only statements longer than the line are split, and
    the decision is taken on the statement as the parser writes it (its `Literal`s inline, its dict defaults as
    dicts); only the splits that leave a trailing comma matter, as black redoes the others."""
    whole = f"Annotated[{annotation}, {metadata}]" if metadata else annotation
    prefix = f"{INDENT}{attr}: {whole}"
    line = prefix if value is _NO_VALUE else f"{prefix} = {default}"
    if len(line) <= LINE_LENGTH:
        return ""
    value_prefix = f"{prefix} = "
    if value is _NO_VALUE:
        return _annotated_split(annotation, metadata) if metadata else ""
    if not metadata and _top_level_union(annotation) and not isinstance(value, str):
        members = _union_members(annotation)
        simple = all(re.fullmatch(r"[\w.]+", m) for m in members)
        too_long = len(prefix) > LINE_LENGTH or (
            len(f"{prefix} = (") > LINE_LENGTH and len(f"{prefix} = {default}") > LINE_LENGTH
        )
        if (too_long and (simple or "Annotated[" in annotation)) or "list[Annotated[" in annotation:
            return ""
    if metadata and isinstance(value, list) and not any(isinstance(e, dict) for e in value):
        return _annotated_split(annotation, metadata)
    if isinstance(value, dict) and value:
        return "dict" if len(value) > 1 else ""
    if isinstance(value, list) and value:
        return "list" if len(value) > 1 else ""
    if metadata:
        if len(f"{value_prefix}(") <= LINE_LENGTH and len(line) <= LINE_LENGTH + _SHORT_DEFAULT_OVERFLOW:
            return ""
        return _annotated_split(annotation, metadata)
    return ""


def _annotated_split(annotation: str, metadata: str) -> str:
    """`Annotated[` split one element a line, unless both fit on one line under it (no trailing comma then)."""
    return "" if len(f"{INDENT * 2}{annotation}, {metadata}") <= LINE_LENGTH else "annotated"


def _union_members(annotation: str) -> list[str]:
    members, depth, start = [], 0, 0
    tokens = tokenize.generate_tokens(io.StringIO(annotation).readline)
    for token in tokens:
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        elif token.type == tokenize.OP and token.string == "|" and depth == 0:
            members.append(annotation[start : token.start[1]].strip())
            start = token.end[1]
    members.append(annotation[start:].strip())
    return members


def _top_level_union(annotation: str) -> bool:
    return len(_union_members(annotation)) > 1


# --- rendering ------------------------------------------------------------------------------------------------------


def render_models(models: ModelsIR) -> str:
    """The models' source (aliases and classes, without imports), as black writes it: each statement is written in
    black's style from the description, and black is asked only about those that may still need it (`formatting`):
    an alias, or a class whose header is too long, whole; else the statements of a class body that may need it, the
    first of them as the first statement of its class (which makes a string a docstring to black)."""
    parts = [[f"{a.name}: TypeAlias = {a.literal}\n"] for a in models.aliases] + [_class(m) for m in models.classes]
    whole = [i for i, statements in enumerate(parts) if not _fits(statements[0])]
    for i, text in zip(whole, formatting.black_statements(["".join(parts[i]) for i in whole]), strict=True):
        parts[i] = [text]
    asked: list[tuple[int, int, bool]] = []  # (part, statement, first asked of its class)
    for i, statements in enumerate(parts):
        unsettled = [j for j in range(1, len(statements)) if not _fits(statements[j])]
        asked += [(i, j, n == 0) for n, j in enumerate(unsettled)]
    formatted = formatting.black_class_statements([(parts[i][j], first) for i, j, first in asked])
    for (i, j, _), text in zip(asked, formatted, strict=True):
        parts[i][j] = text
    return "\n\n".join("".join(p) for p in parts)


def _fits(statement: str) -> bool:
    return formatting.settled(statement.splitlines(keepends=True))


def _class(model: ModelIR) -> list[str]:
    """A class as its statements, each in black's style but for long lines: the header, then its body's."""
    base = f"RootModel[{model.fields[0].annotation}]" if model.root and model.fields else model.base
    statements = [f"class {model.name}({base}):\n"]
    if model.description:
        statements.append(_wrapped_docstring(_docstring(model.description)) + "\n")
        if model.config or model.fields:
            statements.append("\n")
    if model.config:
        items = "".join(f"{INDENT * 2}{name}={value},\n" for name, value in model.config)
        statements.append(f"{INDENT}model_config = ConfigDict(\n{items}{INDENT})\n")
    for f in model.fields:
        statements.append(_field(f))
        if f.description:
            statements.append(_wrapped_docstring(_docstring(f.description)) + "\n")
    if len(statements) == 1:
        statements.append(f"{INDENT}pass\n")
    return statements


def _field(f: FieldIR) -> str:
    default = "" if f.default is None else f" = {f.default}"
    if f.layout == "annotated":
        elements = f"{INDENT * 2}{f.annotation},\n{INDENT * 2}{f.metadata},\n"
        return f"{INDENT}{f.attr}: Annotated[\n{elements}{INDENT}]{default}\n"
    if f.items:
        open_, close = ("[", "]") if f.layout == "list" else ("{", "}")
        body = "".join(f"{INDENT * 2}{item},\n" for item in f.items)
        return f"{INDENT}{f.attr}: {f.annotated} = {open_}\n{body}{INDENT}{close}\n"
    return f"{INDENT}{f.attr}: {f.annotated}{default}\n"


def _items(value: Any) -> tuple[str, ...]:
    """The items of a list or dict default, as source (`["a", "b"]` → `('"a"', '"b"')`)."""
    if isinstance(value, dict):
        return tuple(f"{pyrepr(k)}: {pyrepr(v)}" for k, v in value.items())
    return tuple(pyrepr(v) for v in value)


def _docstring(text: str) -> str:
    """A docstring at class-body depth as datamodel-code-generator writes one: escaped, on one line when the text is,
    else with the quotes on lines of their own."""
    escaped = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').replace("\0", "\\x00")
    if "\n" not in text and "\r" not in text:
        if escaped.endswith('"') and (len(escaped) - len(escaped[:-1].rstrip("\\")) - 1) % 2 == 0:
            escaped = escaped[:-1] + '\\"'
        return f'{INDENT}"""{escaped}"""'
    body = "\n".join(f"{INDENT}{line}" if line else "" for line in escaped.split("\n"))
    return f'{INDENT}"""\n{body}\n{INDENT}"""'


def _wrapped_docstring(line: str) -> str:
    """A one-line docstring longer than the line wrapped at spaces, reading back as the same words (a word longer
    than the line stays whole)."""
    if len(line) <= LINE_LENGTH or "\n" in line or len(line.splitlines()) != 1:
        return line
    return wrap_docstring_line(line)


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
