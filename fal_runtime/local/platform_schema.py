"""fal's Platform API spec (`specs/_platform/v1.yaml`) as the local server reads it: its operations, a validator for
any of its schemas, the request checks (path, query and header parameters, JSON bodies) and a minimal valid instance
of any schema (what an operation without local state answers).

Parameters arrive as strings; each is read as its schema's type says (an integer, a number, a boolean, a list when
the parameter is repeated) before it is validated, so `limit=abc` is refused naming `limit`. Formats are checked
(`date-time`, `uuid`, `uri`, ...), as a validator with jsonschema's format checker does.

Instances are built from a schema's own `example`/`examples`/`default` when they validate, else from its structure:
required properties only, the first enum value, formats honoured (`date-time` is now, `uuid` a new one), bounds
respected. Every instance is checked against its schema; one that is not valid is reported by `instance` as None.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

JSON = dict[str, Any]
PLATFORM_SPEC = Path("_platform") / "v1.yaml"
METHODS = ("get", "post", "put", "patch", "delete")
MAX_DEPTH = 24  # synthesis stops here (recursive schemas)
_PATH_LIKE = frozenset({"file", "dir", "target_path", "path"})  # a last path parameter that may hold slashes


class SpecError(ValueError):
    """The Platform API spec cannot be served: the message says why."""


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path, query, header
    required: bool
    schema: JSON

    @property
    def label(self) -> str:
        return f"{self.location} parameter '{self.name}'"


@dataclass(frozen=True)
class Operation:
    """One operation of the spec: where it lives, what it takes and what it answers on success."""

    operation_id: str
    method: str  # upper case
    template: str  # `/keys/{key_id}`, under /v1
    pattern: re.Pattern[str] = field(repr=False)
    literals: int  # literal path segments: the more, the better a match
    parameters: tuple[Parameter, ...] = field(repr=False)
    body_schema: JSON | None = field(repr=False)
    body_media: str | None
    body_required: bool
    status: int  # the success status
    media: str | None  # the success answer's media type (None: no body)
    schema: JSON | None = field(repr=False)  # the success answer's schema
    examples: tuple[Any, ...] = field(repr=False)  # the success answer's examples, as the spec gives them
    secured: bool  # whether `Authorization: Key ...` is required
    statuses: frozenset[str] = field(repr=False)  # every status the spec lists

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        return None if found is None else found.groupdict()


def _compile(template: str, parameters: tuple[Parameter, ...]) -> tuple[re.Pattern[str], int]:
    segments = template.strip("/").split("/")
    names = {p.name for p in parameters if p.location == "path"}
    parts, literals = [], 0
    for index, segment in enumerate(segments):
        name = segment[1:-1] if segment.startswith("{") and segment.endswith("}") else None
        if name is None or name not in names:
            parts.append(re.escape(segment))
            literals += 1
            continue
        last = index == len(segments) - 1
        group = re.sub(r"\W", "_", name)
        parts.append(f"(?P<{group}>.+)" if last and name in _PATH_LIKE else f"(?P<{group}>[^/]+)")
    return re.compile("/".join(parts)), literals


class PlatformSpec:
    """The parsed spec: operations by id and a validator for any schema of it."""

    def __init__(self, document: JSON) -> None:
        if not isinstance(document.get("paths"), dict):
            raise SpecError("the Platform API spec has no paths")
        self.document = document
        self.components: JSON = document.get("components", {})
        self._validators: dict[int, tuple[JSON, Draft202012Validator]] = {}  # the schema kept: its id stays its own
        self._lock = threading.Lock()
        self.operations: dict[str, Operation] = {}
        for template, item in document["paths"].items():
            for method in METHODS:
                raw = item.get(method) if isinstance(item, dict) else None
                if isinstance(raw, dict):
                    operation = self._operation(template, method, raw, item.get("parameters", []))
                    self.operations[operation.operation_id] = operation
        self._by_specificity = sorted(self.operations.values(), key=lambda o: -o.literals)

    @classmethod
    def load(cls, path: Path) -> PlatformSpec:
        loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        if not isinstance(document, dict):
            raise SpecError(f"{path}: not a YAML mapping")
        return cls(document)

    # -- operations -------------------------------------------------------------------------------------------------

    def _operation(self, template: str, method: str, raw: JSON, shared: list[Any]) -> Operation:
        parameters = tuple(
            Parameter(str(p["name"]), str(p["in"]), bool(p.get("required", p.get("in") == "path")), p.get("schema", {}))
            for p in (self.resolve(x) for x in [*shared, *raw.get("parameters", [])])
            if isinstance(p, dict) and "name" in p and "in" in p
        )
        body = self.resolve(raw.get("requestBody") or {})
        body_media, body_schema = next(iter((body.get("content") or {}).items()), (None, None))
        responses: JSON = raw.get("responses") or {}
        status_text = next((code for code in sorted(responses) if code.startswith("2")), "200")
        success = self.resolve(responses.get(status_text) or {})
        media, content = next(iter((success.get("content") or {}).items()), (None, {}))
        examples: list[Any] = []
        if isinstance(content, dict):
            if "example" in content:
                examples.append(content["example"])
            for example in (content.get("examples") or {}).values():
                if isinstance(example, dict) and "value" in example:
                    examples.append(example["value"])
        security = raw.get("security", self.document.get("security"))
        pattern, literals = _compile(template, parameters)
        return Operation(
            operation_id=str(raw.get("operationId") or f"{method} {template}"),
            method=method.upper(),
            template=template,
            pattern=pattern,
            literals=literals,
            parameters=parameters,
            body_schema=body_schema.get("schema") if isinstance(body_schema, dict) else None,
            body_media=body_media,
            body_required=bool(body.get("required", False)),
            status=int(status_text),
            media=media,
            schema=content.get("schema") if isinstance(content, dict) else None,
            examples=tuple(examples),
            secured=bool(security),
            statuses=frozenset(str(code) for code in responses),
        )

    def find(self, method: str, path: str) -> tuple[Operation | None, dict[str, str], bool]:
        """The operation serving `method path` (path relative to /v1, no leading slash) and its raw path parameters;
        the flag says whether some operation has that path under another method (a 405 rather than a 404)."""
        other_method = False
        for operation in self._by_specificity:
            found = operation.match(path)
            if found is None:
                continue
            if operation.method == method:
                names = {re.sub(r"\W", "_", p.name): p.name for p in operation.parameters if p.location == "path"}
                return operation, {names.get(k, k): v for k, v in found.items()}, other_method
            other_method = True
        return None, {}, other_method

    # -- schemas ----------------------------------------------------------------------------------------------------

    def resolve(self, node: Any) -> Any:
        """Follow local `$ref`s; sibling keywords of a `$ref` win over its target's."""
        seen = 0
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 32:
            pointer = node["$ref"]
            if not pointer.startswith("#/"):
                raise SpecError(f"only local $refs are supported, got {pointer}")
            target: Any = self.document
            for part in pointer[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            seen += 1
        return node

    def validator(self, schema: JSON) -> Draft202012Validator:
        """A Draft 2020-12 validator (formats checked) for a schema of this spec; its `$ref`s resolve against it."""
        with self._lock:
            found = self._validators.get(id(schema))
            if found is None:
                root = {"allOf": [schema], "components": self.components}
                found = schema, Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
                self._validators[id(schema)] = found
            return found[1]

    def valid(self, schema: JSON, value: Any) -> bool:
        return bool(self.validator(schema).is_valid(value))

    def errors(self, schema: JSON, value: Any) -> Iterator[str]:
        """Readable validation errors, each naming where in the value it is."""
        for error in sorted(self.validator(schema).iter_errors(value), key=lambda e: list(map(str, e.path))):
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path).lstrip(".")
            yield f"{where}: {error.message}" if where else str(error.message)

    # -- instances --------------------------------------------------------------------------------------------------

    def instance(self, schema: JSON) -> Any:
        """A minimal instance valid for `schema` (see the module's doc), or None when none could be made."""
        made = self._make(schema, 0)
        return made if self.valid(schema, made) else None

    def answer(self, operation: Operation) -> Any:
        """What an operation without local state answers: the spec's example when it validates, else an instance."""
        if operation.schema is None:
            return None
        for example in operation.examples:
            if self.valid(operation.schema, example):
                return copy.deepcopy(example)
        return self.instance(operation.schema)

    def shaped(self, schema: JSON, fields: JSON) -> JSON:
        """An instance of an object schema carrying `fields`: those it has properties for, each kept only when the
        object stays valid with it; what is required and not given is synthesized."""
        properties = self.resolve(schema).get("properties") or {}
        given = {k: v for k, v in fields.items() if k in properties}
        made = self.instance(schema)
        base: JSON = made if isinstance(made, dict) else {}
        candidate = {**base, **given}
        if self.valid(schema, candidate):
            return candidate
        for key, value in given.items():
            if self.valid(schema, {**base, key: value}):
                base = {**base, key: value}
        return base

    def at(self, schema: JSON | None, *keys: str) -> JSON:
        """The subschema at a path of property names (`[]`: an array's items)."""
        node: Any = schema or {}
        for key in keys:
            node = self.resolve(node)
            node = node.get("items", {}) if key == "[]" else (node.get("properties") or {}).get(key, {})
        resolved: JSON = self.resolve(node)
        return resolved

    def _make(self, node: Any, depth: int) -> Any:
        schema = self.resolve(node)
        if not isinstance(schema, dict) or depth > MAX_DEPTH:
            return None
        if "const" in schema:
            return copy.deepcopy(schema["const"])
        for candidate in _given(schema):
            if self.valid(schema, candidate):
                return copy.deepcopy(candidate)
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return next((v for v in schema["enum"] if v is not None), schema["enum"][0])
        if isinstance(schema.get("allOf"), list):
            return self._make(self._merged(schema), depth + 1)
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                branches = sorted(schema[key], key=lambda b: self.resolve(b).get("type") == "null")
                rest = {k: v for k, v in schema.items() if k != key}
                for branch in branches:
                    made = self._make({**rest, **self.resolve(branch)}, depth + 1)
                    if self.valid(schema, made):
                        return made
                return None
        kind = _kind(schema)
        if kind == "object":
            properties = schema.get("properties") or {}
            made_object: JSON = {}
            for name in schema.get("required") or []:
                made_object[name] = self._make(properties.get(name, {}), depth + 1)
            return made_object
        if kind == "array":
            count = int(schema.get("minItems", 0))
            return [self._make(schema.get("items", {}), depth + 1) for _ in range(count)]
        if kind == "string":
            return _string(schema)
        if kind in ("integer", "number"):
            return _number(schema, kind)
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return {}

    def _merged(self, schema: JSON) -> JSON:
        merged: JSON = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = self.resolve(part)
            if "allOf" in part:
                part = self._merged(part)
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
                else:
                    merged.setdefault(key, value)
        return merged


def _given(schema: JSON) -> Iterator[Any]:
    """The values a schema offers itself: its example(s) and default."""
    if "example" in schema:
        yield schema["example"]
    examples = schema.get("examples")
    if isinstance(examples, list):
        yield from examples
    if "default" in schema:
        yield schema["default"]


def _kind(schema: JSON) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema:
            return "array"
    return kind if isinstance(kind, str) else None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _string(schema: JSON) -> str:
    fmt = schema.get("format")
    by_format: dict[str, Callable[[], str]] = {
        "date-time": now_iso,
        "date": lambda: datetime.now(UTC).date().isoformat(),
        "time": lambda: "00:00:00Z",
        "uuid": lambda: str(uuid.uuid4()),
        "uri": lambda: "https://example.com/",
        "url": lambda: "https://example.com/",
        "email": lambda: "user@example.com",
        "ipv4": lambda: "127.0.0.1",
    }
    value = by_format[fmt]() if isinstance(fmt, str) and fmt in by_format else "string"
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    if len(value) < low:
        value = value + "x" * (low - len(value))
    if isinstance(high, int) and len(value) > high:
        value = value[:high]
    return value


def _number(schema: JSON, kind: str) -> int | float:
    low = schema.get("minimum")
    if low is None and isinstance(schema.get("exclusiveMinimum"), (int, float)):
        low = schema["exclusiveMinimum"] + 1
    high = schema.get("maximum")
    if high is None and isinstance(schema.get("exclusiveMaximum"), (int, float)):
        high = schema["exclusiveMaximum"] - 1
    value = low if low is not None else 0
    if high is not None and value > high:
        value = high
    return int(value) if kind == "integer" else float(value)


# -- parameters -------------------------------------------------------------------------------------------------------


def types_of(spec: PlatformSpec, schema: JSON) -> set[str]:
    """Every JSON type a parameter schema allows (through anyOf/oneOf), to read a string parameter as."""
    schema = spec.resolve(schema)
    found: set[str] = set()
    kind = schema.get("type")
    if isinstance(kind, str):
        found.add(kind)
    elif isinstance(kind, list):
        found.update(k for k in kind if isinstance(k, str))
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key) or []:
            found |= types_of(spec, branch)
    if not found and isinstance(schema.get("enum"), list):
        names = {str: "string", bool: "boolean", int: "integer", float: "number"}
        found.update(names.get(type(v), "string") for v in schema["enum"])
    return found


def coerce(spec: PlatformSpec, parameter: Parameter, values: list[str]) -> Any:
    """A parameter's raw values read as its schema's type: a list when the schema takes one (and one only when it
    must, or when the parameter was repeated), else the first value as an integer, number, boolean or string."""
    kinds = types_of(spec, parameter.schema)
    if "array" in kinds and (len(values) > 1 or "string" not in kinds):
        schema = spec.resolve(parameter.schema)
        branches = [spec.resolve(b) for b in schema.get("anyOf", [])]
        items: JSON = schema.get("items") or next((b["items"] for b in branches if "items" in b), {})
        item_kinds = types_of(spec, items)
        return [_scalar(v, item_kinds) for v in values]
    return _scalar(values[0], kinds)


def _scalar(value: str, kinds: set[str]) -> Any:
    if "string" in kinds:
        return value
    if "integer" in kinds and re.fullmatch(r"-?\d+", value):
        return int(value)
    if "number" in kinds:
        try:
            return float(value)
        except ValueError:
            pass
    if "boolean" in kinds and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value
