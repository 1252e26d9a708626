"""What the command line says about one field of a generated model: its kind, type label, bounds, default and
description, read from the pydantic model alone.

The generated models keep each field's description as an attribute docstring (not `Field(description=...)`), so it
is read back from the class source here; that costs one `ast.parse` per model, cached.
"""

from __future__ import annotations

import ast
import enum
import functools
import inspect
import itertools
import json
import textwrap
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

Kind = Literal["bool", "int", "float", "str", "choice", "file", "json"]
_BOUNDS = ("ge", "gt", "le", "lt", "min_length", "max_length", "multiple_of", "pattern")
_BOUND_SIGNS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_SCALARS: dict[Any, Kind] = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclass(frozen=True)
class Field:
    """One model field as the command line presents it."""

    name: str  # the model attribute
    kind: Kind  # how one value is read from the command line
    many: bool  # a list: the option repeats
    choices: tuple[Any, ...]  # the allowed values of a `choice`
    model: str  # the model class of a `json` field ("" for anything else)
    required: bool
    default: Any  # PydanticUndefined when required or computed
    bounds: tuple[str, ...]  # "ge 1", "max_length 4", ... as readable text
    description: str

    @property
    def type_label(self) -> str:
        labels = {"bool": "boolean", "int": "integer", "float": "number", "str": "text", "json": "JSON",
                  "file": "file (path, URL or data URI)"}  # fmt: skip
        one = "one of " + "|".join(map(str, self.choices)) if self.kind == "choice" else labels[self.kind]
        if self.model:
            one = f"{self.model} (JSON)"
        return f"list of {one}" if self.many else one

    @property
    def default_label(self) -> str:
        if self.required:
            return "required"
        if self.default is PydanticUndefined:
            return "optional"
        return "default: " + json.dumps(_plain(self.default))


def fields_of(model: type[BaseModel], file_fields: frozenset[str] = frozenset()) -> list[Field]:
    """Every field of `model`, in declaration order; `file_fields` are the attributes that take file inputs."""
    docs = _docstrings(model)
    return [_field(name, info, name in file_fields, docs.get(name, "")) for name, info in model.model_fields.items()]


def _field(name: str, info: FieldInfo, is_file: bool, doc: str) -> Field:
    annotation, _ = _without_none(info.annotation)
    many = get_origin(annotation) is list
    item = get_args(annotation)[0] if many and get_args(annotation) else annotation
    kind, choices = ("file", ()) if is_file else _kind(_without_none(item)[0])
    return Field(
        name=name,
        kind=kind,
        many=many,
        choices=choices,
        model=_without_none(item)[0].__name__ if kind == "json" and _is_model(_without_none(item)[0]) else "",
        required=info.is_required(),
        default=info.default,
        bounds=_bounds(info),
        description=" ".join((doc or info.description or "").split()),
    )


def _without_none(annotation: Any) -> tuple[Any, bool]:
    """`X | None` → (X, True); anything else unchanged."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return annotation, False


def _kind(annotation: Any) -> tuple[Kind, tuple[Any, ...]]:
    """How a single value of `annotation` is given: a scalar, one of fixed choices, or JSON (everything else)."""
    if annotation in _SCALARS:
        return _SCALARS[annotation], ()
    if get_origin(annotation) is Literal:
        return "choice", get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "choice", tuple(member.value for member in annotation)
    return "json", ()


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _bounds(info: FieldInfo) -> tuple[str, ...]:
    found = []
    for item in info.metadata:
        for attr in _BOUNDS:
            value = getattr(item, attr, None)
            if value is not None:
                found.append(f"{_BOUND_SIGNS[attr]} {value}" if attr in _BOUND_SIGNS else f"{attr} {value}")
    return tuple(found)


def _plain(value: Any) -> Any:
    """A default as JSON-ready data (a model default becomes its dict)."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


@functools.cache
def _docstrings(model: type[BaseModel]) -> dict[str, str]:
    """Attribute docstrings of `model` and its bases: the string literal right after each annotated field."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if cls is BaseModel or not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError, SyntaxError):  # no source (built at run time): descriptions are optional
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and _is_string(after):
                docs[node.target.id] = inspect.cleandoc(after.value.value)  # type: ignore[attr-defined]
    return docs


def _is_string(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
