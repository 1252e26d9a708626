"""Stage 1: find, parse and validate spec documents.

One loader serves hand-captured specs (OpenAPI 3.1 YAML) and fal's published documents (OpenAPI "3.0.4" JSON that
uses 3.1 features), which are upgraded in memory first. Every problem is collected with its file and JSON pointer;
nothing here raises on a bad spec.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, TypeGuard
from urllib.parse import quote

import yaml

from codegen.generation import keywords
from codegen.problems import Level, Problem, display_path, pointer

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
# Keys whose values are maps of user-chosen names (a property may be called "type" or "description").
_NAME_MAPS = frozenset(
    {
        "properties",
        "patternProperties",
        "$defs",
        "definitions",
        "schemas",
        "paths",
        "responses",
        "content",
        "headers",
        "securitySchemes",
        "parameters",
        "requestBodies",
        "examples",
    }
)
# Keys whose values are data, not schemas.
_DATA_KEYS = keywords.DATA | {"x-fal-order-properties"}
_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})
# Deepest nesting of mappings and lists a spec may have. fal's documents reach 11 (specs/ and ../shared/fal-openapi);
# every later stage (the 3.0 upgrade, the checks, the intermediate model, datamodel-code-generator) recurses once or
# more a level, so a schema nested hundreds deep would crash them with a RecursionError (or take minutes).
MAX_DEPTH = 64
_JSON_SCALARS = (str, int, float, bool, type(None))


@dataclass
class SpecDocument:
    path: Path  # the file
    rel: str  # the path shown in messages
    doc: dict[str, Any]


def find_endpoint_spec_files(root: Path) -> list[Path]:
    """The specs of fal's queue endpoints: those at `owner/alias[...]` (an id starts with a letter or digit), not the
    Platform API's (`_platform/`)."""
    return [p for p in find_spec_files(root) if not p.relative_to(root).parts[0].startswith("_")]


def find_spec_files(root: Path) -> list[Path]:
    """Every spec file under `root`, sorted so the result never depends on directory listing order. A spec lives
    at `owner/alias[/path...]`: files directly in `root` (`LISTING.json`) are the catalogue's, not specs."""
    found = []
    top = os.path.normpath(root)
    for directory, _, names in os.walk(root):  # os.walk: a third of rglob's time at 1,300 specs
        if os.path.normpath(directory) == top:
            continue
        found += [os.path.join(directory, n) for n in names if os.path.splitext(n)[1] in SPEC_SUFFIXES]
    paths = [Path(p) for p in found if os.path.isfile(p)]
    return sorted(paths, key=lambda p: p.as_posix())


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse(path: Path, problems: list[Problem]) -> SpecDocument | None:
    rel = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(rel, "", f"cannot read file: {exc}"))
        return None
    try:
        if path.suffix == ".json":
            doc = json.loads(text)
        else:
            doc = yaml.load(text, Loader=_UniqueKeyLoader)
    except json.JSONDecodeError as exc:
        problems.append(Problem(rel, "", f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(rel, "", f"not valid YAML: {_yaml_message(exc)}"))
        return None
    except RecursionError:  # both parsers recurse a level at a time
        problems.append(Problem(rel, "", f"nested too deeply to parse (a spec may nest at most {MAX_DEPTH} levels)"))
        return None
    if not isinstance(doc, dict):
        problems.append(Problem(rel, "", f"a spec must be a mapping, got {type(doc).__name__}"))
        return None
    return SpecDocument(path, rel, doc)


def check_structure(spec: SpecDocument) -> Problem | None:
    """The first place the document is nested deeper than MAX_DEPTH or holds what JSON cannot (a YAML `200:` key,
    a date, NaN), in document order. Iterative, and run before anything that recurses or hands the document to
    jsonschema-rs (which rejects non-string keys with a bare ValueError)."""
    stack: list[tuple[Any, list[str | int]]] = [(spec.doc, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            children: list[tuple[Any, list[str | int]]] = []
            for key, value in node.items():
                if not isinstance(key, str):
                    return Problem(
                        spec.rel, pointer([*path, str(key)]), f"mapping key {key!r} is not a string: quote it"
                    )
                children.append((value, [*path, key]))
        elif isinstance(node, list):
            children = [(value, [*path, i]) for i, value in enumerate(node)]
        else:
            if not isinstance(node, _JSON_SCALARS) or (isinstance(node, float) and not math.isfinite(node)):
                return Problem(spec.rel, pointer(path), f"{node!r} is not a JSON value: quote it")
            continue
        if children and len(path) >= MAX_DEPTH:
            return Problem(spec.rel, pointer(path), f"nested deeper than {MAX_DEPTH} levels")
        stack.extend(reversed(children))
    return None


def _yaml_message(exc: yaml.YAMLError) -> str:
    """One line: what is wrong and where (PyYAML's own message spans several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def upgrade_30(spec: SpecDocument, problems: list[Problem]) -> bool:
    """fal publishes `openapi: 3.0.x` documents whose schemas already use 3.1 features; read them as 3.1.

    Only the 3.0-only spellings need rewriting (`nullable`, boolean `exclusiveMinimum`); reported as a warning
    so the upgrade is never silent.
    """
    version = spec.doc.get("openapi")
    if not (isinstance(version, str) and version.startswith("3.0")):
        return False
    spec.doc["openapi"] = "3.1.0"
    problems.append(Problem(spec.rel, "/openapi", f"read OpenAPI {version} as 3.1.0", Level.WARNING))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.pop("nullable", False) is True and "type" in node and not isinstance(node["type"], list):
                node["type"] = [node["type"], "null"]
            for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
                if isinstance(node.get(key), bool) and node.pop(key) and bound in node:
                    node[key] = node.pop(bound)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec.doc)
    return True


@functools.cache
def _oas31_validator() -> Any:
    """One compiled validator for OpenAPI 3.1 documents, schema objects checked against JSON Schema 2020-12.

    Built from openapi-spec-validator's copy of the official OAS 3.1 schema, compiled once with jsonschema-rs:
    ~0.2 ms a document against ~50-100 ms for openapi-spec-validator's own validator (which the test suite
    still runs over every spec).
    """
    import importlib.util

    import jsonschema_rs

    spec = importlib.util.find_spec("openapi_spec_validator")  # its data file only: importing it costs ~0.3 s
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "resources/schemas/v3.1/schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["$defs"]["schema"] = {"$dynamicAnchor": "meta", "$ref": "https://json-schema.org/draft/2020-12/schema"}
    return jsonschema_rs.validator_for(schema)


def _openapi_errors(spec: SpecDocument) -> Iterator[Problem]:
    version = spec.doc.get("openapi")
    if not (isinstance(version, str) and version.startswith("3.1")):
        yield Problem(spec.rel, "/openapi", f"unsupported OpenAPI version {version!r}: expected 3.1.x (or fal's 3.0.x)")
        return
    seen: set[str] = set()
    for error in _oas31_validator().iter_errors(spec.doc):
        ptr = pointer(error.instance_path)
        if any(ptr.startswith(s + "/") or ptr == s for s in seen):
            continue
        seen.add(ptr)
        yield Problem(spec.rel, ptr, f"invalid OpenAPI 3.1: {_short(error.message)}")


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def check_schemas(spec: SpecDocument) -> Iterator[Problem]:
    """Checks JSON Schema itself allows but a typed client cannot honour: unknown types, mixed-type enums,
    non-string descriptions, bounds that contradict each other, `$ref`s that point nowhere."""

    def walk(node: Any, path: list[str | int], in_schema: bool) -> Iterator[Problem]:
        if isinstance(node, dict) and path[-1:] and path[-1] in _NAME_MAPS:
            for key, value in node.items():
                yield from walk(value, [*path, key], in_schema)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                if not isinstance(ref, str) or not ref.startswith("#/"):
                    yield Problem(
                        spec.rel, pointer([*path, "$ref"]), f"only local `#/...` references are supported, got {ref!r}"
                    )
                elif resolve_pointer(spec.doc, ref[1:]) is None:
                    yield Problem(spec.rel, pointer([*path, "$ref"]), f"dangling $ref {ref!r}: nothing at that pointer")
            if in_schema:
                yield from _schema_node_problems(spec, node, path)
            for key, value in node.items():
                if key in _DATA_KEYS or key.startswith("x-"):
                    continue
                yield from walk(value, [*path, key], in_schema or key == "schema")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, [*path, i], in_schema)

    schemas = (
        (spec.doc.get("components") or {}).get("schemas") if isinstance(spec.doc.get("components"), dict) else None
    )
    rest = {k: v for k, v in spec.doc.items() if k != "components"}
    yield from walk(rest, [], False)
    if isinstance(spec.doc.get("components"), dict):
        others = {k: v for k, v in spec.doc["components"].items() if k != "schemas"}
        yield from walk(others, ["components"], False)
    if isinstance(schemas, dict):
        yield from walk(schemas, ["components", "schemas"], True)


def _schema_node_problems(spec: SpecDocument, node: dict[str, Any], path: list[str | int]) -> Iterator[Problem]:
    for key in node:
        if keywords.unknown_keyword(key):
            yield Problem(
                spec.rel,
                pointer([*path, key]),
                f"unknown schema keyword {_short(repr(key), 80)}: not JSON Schema, OpenAPI, one of fal's annotations "
                "or an `x-` extension (a schema must not choose what generated code imports)",
            )
    types = node.get("type")
    for t in types if isinstance(types, list) else [types] if types is not None else []:
        if not isinstance(t, str) or t not in _TYPES:
            yield Problem(spec.rel, pointer([*path, "type"]), f"unknown type {t!r}")
    if "description" in node and not isinstance(node["description"], str):
        yield Problem(spec.rel, pointer([*path, "description"]), "description must be a string")
    enum = node.get("enum")
    if isinstance(enum, list):
        kinds = {_json_kind(v) for v in enum if v is not None}
        if len(kinds) > 1:
            yield Problem(spec.rel, pointer([*path, "enum"]), f"enum mixes value types {sorted(kinds)}")
    for low, high in (("minimum", "maximum"), ("minLength", "maxLength"), ("minItems", "maxItems")):
        lo, hi = node.get(low), node.get(high)
        if _is_number(lo) and _is_number(hi) and lo > hi:
            yield Problem(spec.rel, pointer(path), f"{low} {lo} is greater than {high} {hi}")
    if isinstance(node.get("pattern"), str):
        error = pattern_error(node["pattern"])
        if error:
            yield Problem(
                spec.rel, pointer([*path, "pattern"]), f"pydantic cannot compile pattern {node['pattern']!r}: {error}"
            )
    if isinstance(node.get("patternProperties"), dict):
        for key in node["patternProperties"]:
            error = pattern_error(key)
            if error:
                yield Problem(
                    spec.rel,
                    pointer([*path, "patternProperties", key]),
                    f"pydantic cannot compile pattern {key!r}: {error}",
                )


@functools.lru_cache(maxsize=4096)
def pattern_error(pattern: str) -> str | None:
    """Why pydantic would refuse `pattern`, or None. Asks pydantic itself (the Rust `regex` crate, its rules on
    lookarounds and escapes), with the generated models' regex engine: a pattern it refuses makes the generated
    module fail at its first use, which no Python `re` or ECMA check predicts."""
    from pydantic import ConfigDict, StringConstraints, TypeAdapter

    from fal_runtime.models import FalModel

    config = ConfigDict(regex_engine=FalModel.model_config.get("regex_engine", "rust-regex"))
    try:
        TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)], config=config)
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return _short(lines[-1] if lines else type(exc).__name__)
    return None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def resolve_pointer(doc: Any, ptr: str) -> Any:
    """The node at a JSON pointer (`/components/schemas/Image`), or None."""
    node = doc
    for raw in ptr.split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def load(path: Path, problems: list[Problem]) -> SpecDocument | None:
    """Parse and validate one document; returns None when it has errors (already recorded in `problems`)."""
    spec = parse(path, problems)
    if spec is None:
        return None
    malformed = check_structure(spec)
    if malformed is not None:
        problems.append(malformed)
        return None
    published = upgrade_30(spec, problems)
    found = list(check_schemas(spec))
    if not found:
        found = list(_openapi_errors(spec))
    if not found and published:
        # fal's own examples sometimes contradict fal's own schemas: report, but the schema is what we generate.
        problems.extend(replace(p, level=Level.WARNING) for p in check_examples(spec))
    elif not found:
        found = list(check_examples(spec))
    problems.extend(found)
    return None if found else spec


def check_examples(spec: SpecDocument) -> Iterator[Problem]:
    """Every `examples` entry of a component schema (and of its properties) must validate against that schema."""
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    Draft202012Validator = _example_validator()
    uri = "urn:spec"
    registry: Registry[Any] = Registry().with_resource(uri, DRAFT202012.create_resource(spec.doc))
    schemas = (spec.doc.get("components") or {}).get("schemas") or {}
    for name, schema in schemas.items():
        if not isinstance(schema, dict):
            continue
        targets: list[tuple[list[str | int], Any]] = [(["components", "schemas", name], schema)]
        for prop, sub in (schema.get("properties") or {}).items():
            targets.append((["components", "schemas", name, "properties", prop], sub))
        for path, sub in targets:
            examples = sub.get("examples") if isinstance(sub, dict) else None
            if not isinstance(examples, list):
                continue
            validator = Draft202012Validator({"$ref": pointer_ref(uri, pointer(path))}, registry=registry)
            for i, example in enumerate(examples):
                error = next(iter(sorted(validator.iter_errors(example), key=lambda e: list(e.absolute_path))), None)
                if error is not None:
                    where = pointer([*path, "examples", i, *error.absolute_path])
                    yield Problem(spec.rel, where, f"example does not validate: {_short(error.message)}")


def pointer_ref(uri: str, ptr: str) -> str:
    """A `$ref` to the JSON pointer `ptr` in the resource at `uri`. The fragment is URI-encoded: a property named
    `a%41` or holding a newline must not be decoded into another name (and point nowhere)."""
    return f"{uri}#{quote(ptr, safe='/~')}"


@functools.cache
def _example_validator() -> Any:
    """jsonschema's 2020-12 validator, but a pattern Python's `re` cannot compile (`\\p{L}`, `\\z`: valid for pydantic's
    Rust engine) leaves the value unchecked instead of raising re.error out of the loader."""
    from jsonschema import Draft202012Validator, validators  # type: ignore[import-untyped]

    def tolerant(rule: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def check(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
            try:
                errors = list(rule(validator, value, instance, schema))
            except re.error:
                return
            yield from errors

        return check

    rules = {k: tolerant(Draft202012Validator.VALIDATORS[k]) for k in ("pattern", "patternProperties")}
    return validators.extend(Draft202012Validator, rules)
