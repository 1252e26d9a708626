"""What goes in and out of a model: fal's 422 details for bad inputs, and outputs that satisfy the Output schema.

There is no model here, so an output is the schema's own `examples[0]` when it validates, else one synthesized from
the schema. Any file object in it (`{"url": ...}`) is pointed at a file this server serves, so a client that downloads
outputs works offline too.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from jsonschema import ValidationError  # type: ignore[import-untyped]

from ..inputs import is_url, presets
from .specs import JSON, ServedEndpoint

# pydantic v2's error types, which is what fal's FastAPI apps answer with.
_ERROR_TYPES = {
    "type": "type_error",
    "enum": "literal_error",
    "const": "literal_error",
    "minimum": "greater_than_equal",
    "maximum": "less_than_equal",
    "exclusiveMinimum": "greater_than",
    "exclusiveMaximum": "less_than",
    "minLength": "string_too_short",
    "maxLength": "string_too_long",
    "minItems": "too_short",
    "maxItems": "too_long",
    "pattern": "string_pattern_mismatch",
    "additionalProperties": "extra_forbidden",
}


def input_errors(endpoint: ServedEndpoint, payload: Any) -> list[JSON]:
    """fal's `detail` list (`{"loc", "msg", "type"}`, loc starting at "body") for an input; empty when it is valid.

    Besides the schema, a file input (see `file_input_errors`) must not hold a local path, as the model has to
    download it: a path sent as a string (`"cat.png"`) is refused, never taken on trust."""
    validator = endpoint.validator(endpoint.input_schema)
    details: list[JSON] = []
    for error in sorted(validator.iter_errors(payload), key=lambda e: [str(p) for p in e.absolute_path]):
        details.extend(_details(error))
    flagged = {tuple(d["loc"]) for d in details}
    details.extend(d for d in file_input_errors(endpoint, payload) if tuple(d["loc"]) not in flagged)
    return details


# As the generator finds file inputs (codegen/ir.py `_is_file_input`): a `*_url` / `*_urls` field, or one fal's UI
# marks as a file, holding a string or a list of strings.
_FILE_UI_FIELDS = frozenset({"image", "file", "video", "audio", "image_url", "video_url", "audio_url"})
_MAX_DEPTH = 64


def file_input_errors(endpoint: ServedEndpoint, payload: Any) -> list[JSON]:
    """fal's 422 details for file inputs, at any depth of the input, whose strings are local paths (or URLs of a
    scheme fal does not fetch) instead of an http(s) URL or a data URI: the model could not download them (`type`
    "file_download_error", as fal's apps answer)."""
    found: list[JSON] = []
    _walk(endpoint, endpoint.input_schema, payload, ["body"], found, 0)
    return found


def _alternatives(endpoint: ServedEndpoint, schema: Any, depth: int = 0) -> list[JSON]:
    """The schemas a value may match: `$ref`s followed, anyOf / oneOf / allOf flattened."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return []
    try:
        schema = endpoint.resolve(schema)
    except (KeyError, TypeError, ValueError):
        return []
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list):
            return [alt for sub in schema[key] for alt in _alternatives(endpoint, sub, depth + 1)]
    return [schema]


def _kinds(alternatives: list[JSON]) -> set[str]:
    kinds: set[str] = set()
    for alt in alternatives:
        kind = alt.get("type")
        kinds.update(kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else [])
    return kinds - {"null"}


def _is_file_input(endpoint: ServedEndpoint, name: str, schema: JSON) -> bool:
    alternatives = _alternatives(endpoint, schema)
    marks = [schema, *alternatives]
    marked = any(
        (isinstance(m.get("ui"), dict) and m["ui"].get("field") in _FILE_UI_FIELDS)
        or m.get("_fal_ui_field") in _FILE_UI_FIELDS
        for m in marks
    )
    if not (marked or name.endswith(("_url", "_urls"))):
        return False
    kinds = _kinds(alternatives)
    if kinds == {"array"}:
        items = [i for alt in alternatives for i in _alternatives(endpoint, alt.get("items"))]
        return bool(items) and _kinds(items) == {"string"}
    return kinds == {"string"}


def _walk(endpoint: ServedEndpoint, schema: Any, value: Any, loc: list[Any], found: list[JSON], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    alternatives = _alternatives(endpoint, schema)
    if isinstance(value, dict):
        for key, item in value.items():
            props = [
                alt["properties"][key]
                for alt in alternatives
                if isinstance(alt.get("properties"), dict) and isinstance(alt["properties"].get(key), dict)
            ]
            if not props:
                continue
            if any(_is_file_input(endpoint, str(key), prop) for prop in props):
                named = frozenset(name for prop in props for name in presets(prop.get("examples")))
                found.extend(_not_urls(item, [*loc, key], named))
            else:
                _walk(endpoint, props[0], item, [*loc, key], found, depth + 1)
    elif isinstance(value, list):
        items = [alt["items"] for alt in alternatives if isinstance(alt.get("items"), dict)]
        if items:
            for index, item in enumerate(value):
                _walk(endpoint, items[0], item, [*loc, index], found, depth + 1)


def _not_urls(value: Any, loc: list[Any], named: frozenset[str] = frozenset()) -> Iterator[JSON]:
    """A detail for the string, or each string of the list, that fal could not download: not an http(s) URL or a data
    URI, unless it is one of the presets the field's spec names (flux-general's `control_method_url`: `canny`, ...)."""
    items = enumerate(value) if isinstance(value, list) else [(None, value)]
    for index, item in items:
        if isinstance(item, str) and not is_url(item) and item not in named:
            shown = item if len(item) <= 80 else item[:77] + "..."
            yield {
                "loc": loc if index is None else [*loc, index],
                "msg": f"Failed to download the file: {shown!r} is not a URL (http://, https://) or a data URI",
                "type": "file_download_error",
            }


def _details(error: ValidationError) -> Iterator[JSON]:
    loc: list[Any] = ["body", *error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        for name in error.validator_value:
            if name not in error.instance:
                yield {"loc": [*loc, name], "msg": "Field required", "type": "missing"}
        return
    yield {"loc": loc, "msg": error.message, "type": _ERROR_TYPES.get(str(error.validator), "value_error")}


def output_template(endpoint: ServedEndpoint) -> JSON | None:
    """An output valid against the Output schema (file URLs still to be filled in), or None if none can be made."""
    schema = endpoint.resolve(endpoint.output_schema)
    validator = endpoint.validator(endpoint.output_schema)
    candidates: list[Any] = []
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        candidates.append(examples[0])
    candidates.append(_synthesize(endpoint, endpoint.output_schema, 0))
    for candidate in candidates:
        filled = with_file_urls(candidate, lambda content_type: "https://127.0.0.1/placeholder")
        if isinstance(filled, dict) and validator.is_valid(filled):
            return filled
    return None


def with_file_urls(value: Any, url_for: Callable[[str], str]) -> Any:
    """A copy of `value` whose file objects (`{"url": str, ...}`) point at `url_for(content_type)`."""
    if isinstance(value, list):
        return [with_file_urls(item, url_for) for item in value]
    if not isinstance(value, dict):
        return value
    copy = {key: with_file_urls(item, url_for) for key, item in value.items()}
    if isinstance(copy.get("url"), str):
        content_type = copy.get("content_type")
        copy["url"] = url_for(content_type if isinstance(content_type, str) else "image/png")
    return copy


def _synthesize(endpoint: ServedEndpoint, schema: JSON, depth: int) -> Any:
    """The simplest value a schema accepts: its const, default, first example or enum value, else one built by type."""
    schema = endpoint.resolve(schema)
    if depth > 16:
        return None
    declared = [schema[k] for k in ("const", "default") if k in schema]
    declared += [schema[k][0] for k in ("examples", "enum") if isinstance(schema.get(k), list) and schema[k]]
    if declared:
        # fal's documents carry defaults and examples that contradict their own schema: only take one that fits.
        validator = endpoint.validator(schema)
        for value in declared:
            if validator.is_valid(value):
                return value
    for keyword in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(keyword, []) if endpoint.resolve(b).get("type") != "null"]
        if branches:
            return _synthesize(endpoint, branches[0], depth + 1)
    if "allOf" in schema:
        merged: JSON = {}
        for branch in schema["allOf"]:
            part = _synthesize(endpoint, branch, depth + 1)
            if isinstance(part, dict):
                merged.update(part)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        kind = "object"
    builder = _BUILDERS.get(str(kind))
    return None if builder is None else builder(endpoint, schema, depth)


def _object(endpoint: ServedEndpoint, schema: JSON, depth: int) -> JSON:
    properties: JSON = schema.get("properties", {})
    required = [name for name in schema.get("required", []) if isinstance(name, str)]
    result: JSON = {}
    for name in required:
        result[name] = _synthesize(endpoint, properties.get(name, {}), depth + 1) if name in properties else ""
    return result


def _array(endpoint: ServedEndpoint, schema: JSON, depth: int) -> list[Any]:
    count = max(1, int(schema.get("minItems", 1)))
    items = schema.get("items")
    return [_synthesize(endpoint, items if isinstance(items, dict) else {}, depth + 1) for _ in range(count)]


def _number(endpoint: ServedEndpoint, schema: JSON, depth: int) -> float:
    return _within(schema, 1.0, 0.5)


def _integer(endpoint: ServedEndpoint, schema: JSON, depth: int) -> int:
    return int(_within(schema, 1, 1))


def _within(schema: JSON, preferred: float, step: float) -> float:
    """`preferred` moved inside the schema's bounds, kept `step` away from an exclusive bound."""
    value = preferred
    if "minimum" in schema:
        value = max(value, float(schema["minimum"]))
    if "exclusiveMinimum" in schema:
        value = max(value, float(schema["exclusiveMinimum"]) + step)
    if "maximum" in schema:
        value = min(value, float(schema["maximum"]))
    if "exclusiveMaximum" in schema:
        value = min(value, float(schema["exclusiveMaximum"]) - step)
    return value


def _string(endpoint: ServedEndpoint, schema: JSON, depth: int) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return datetime.now(UTC).isoformat()
    if fmt in ("uri", "url"):
        return "https://127.0.0.1/placeholder"
    return "x" * int(schema.get("minLength", 0)) or "text"


_BUILDERS: dict[str, Callable[[ServedEndpoint, JSON, int], Any]] = {
    "object": _object,
    "array": _array,
    "number": _number,
    "integer": _integer,
    "string": _string,
    "boolean": lambda e, s, d: False,
}


def png(width: int = 16, height: int = 16) -> bytes:
    """A small valid RGB PNG (a gradient), built by hand so serving images needs no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
