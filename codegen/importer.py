"""`python -m codegen import SOURCE...`: fal's published OpenAPI → a normalized spec in specs/.

SOURCE is an endpoint id (fetched from fal's public per-endpoint URL), a URL, a local OpenAPI JSON file, or a file in
the shape of fal's model listing API (`{"models": [entry, ...]}` or one `{"endpoint_id", "metadata", "openapi"}`).
Normalization makes imports reproducible: importing the same document twice changes nothing, and a changed
document gives a minimal, readable diff. fal's irregularities are repaired and reported one line each; a document
that cannot be repaired fails with the JSON pointer of the fault, and nothing is written.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from codegen import ir, loader
from codegen.problems import Level, Problem, SpecError, pointer

FAL_OPENAPI_URL = "https://fal.ai/api/openapi/queue/openapi.json?endpoint_id={}"
# info.x-fal-metadata keys that describe the endpoint; the rest (thumbnails, playground links) churn.
_KEPT_METADATA = ("endpointId", "category", "documentationUrl", "displayName")
_TOP_ORDER = ("openapi", "info", "servers", "security", "components", "paths")
_SCHEMA_ORDER = (
    "title", "description", "type", "format", "enum", "const", "default", "minimum", "exclusiveMinimum", "maximum",
    "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
    "items", "properties", "required", "additionalProperties", "$ref", "allOf", "anyOf", "oneOf", "not", "examples",
)  # fmt: skip
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list,),
    "object": (dict,), "null": (type(None),),
}  # fmt: skip


@dataclass
class Imported:
    endpoint_id: str
    origin: str
    spec: dict[str, Any]
    repairs: list[Problem]


# Reading sources.


def read_sources(source: str, *, fetch: Any = None) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(origin, OpenAPI document, listing metadata) for every document a SOURCE names."""
    path = Path(source)
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        origin = str(path)
    else:
        url = source if source.startswith(("https://", "http://")) else FAL_OPENAPI_URL.format(quote(source, safe="/"))
        data = (fetch or _fetch)(url)
        origin = url
    if isinstance(data, dict) and isinstance(data.get("models"), list):
        for entry in data["models"]:
            yield from _entry(entry, origin)
    elif isinstance(data, dict) and "openapi" in data and "endpoint_id" in data:
        yield from _entry(data, origin)
    elif isinstance(data, dict):
        yield origin, data, {}
    else:
        raise SpecError([Problem(origin, "", "not an OpenAPI document or a model listing")])


def _entry(entry: Any, origin: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("openapi"), dict):
        raise SpecError([Problem(origin, "", "a model listing entry without an `openapi` document")])
    yield f"{origin} ({entry.get('endpoint_id')})", entry["openapi"], entry.get("metadata") or {}


def _fetch(url: str) -> Any:
    import httpx

    try:
        response = httpx.get(url, timeout=30, follow_redirects=True)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SpecError([Problem(url, "", f"cannot fetch: {exc}")]) from None


# Normalizing.


def normalize(doc: dict[str, Any], origin: str, metadata: dict[str, Any]) -> Imported:
    """A canonical 3.1 spec from one of fal's documents, with every repair reported."""
    doc = copy.deepcopy(doc)
    repairs: list[Problem] = []
    spec = loader.SpecDocument(Path(origin), origin, doc)
    uses_31 = _uses_31_features(doc)
    upgrade: list[Problem] = []
    if loader.upgrade_30(spec, upgrade):
        why = f"uses 3.1 features ({', '.join(uses_31)})" if uses_31 else "read as 3.1"
        repairs.append(Problem(origin, "/openapi", f"OpenAPI {upgrade[0].message.split()[2]} document {why}: declared 3.1.0", Level.WARNING))
    info = doc.setdefault("info", {})
    meta = info.get("x-fal-metadata") if isinstance(info.get("x-fal-metadata"), dict) else {}
    endpoint_id = meta.get("endpointId") or metadata.get("endpoint_id")
    if not isinstance(endpoint_id, str):
        raise SpecError([Problem(origin, "/info/x-fal-metadata/endpointId", "no endpoint id")])
    kept = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    kept["endpointId"] = endpoint_id
    if metadata.get("display_name"):
        kept["displayName"] = metadata["display_name"]
    if metadata.get("category") and "category" not in kept:
        kept["category"] = metadata["category"]
    info["x-fal-metadata"] = {k: kept[k] for k in _KEPT_METADATA if k in kept}
    if metadata.get("description"):
        info["description"] = metadata["description"]
    info["x-fal-sources"] = {"fal-openapi": f"fal's published OpenAPI document, imported from {origin}"}
    if metadata.get("stream_url"):
        _add_stream_path(doc, endpoint_id, origin)

    schemas = doc.get("components", {}).get("schemas", {})
    doc["components"]["schemas"] = {name: _repair(schema, ["components", "schemas", name], doc, origin, repairs) for name, schema in schemas.items()}
    for path_item in (doc.get("paths") or {}).values():
        _check_path_refs(path_item, doc, origin)
    _check_io(doc, endpoint_id, origin)
    _prune(doc)
    _drop_invalid_examples(doc, origin, repairs)
    return Imported(endpoint_id, origin, canonical(doc), repairs)


def _drop_invalid_examples(doc: dict[str, Any], origin: str, repairs: list[Problem]) -> None:
    """fal's examples sometimes contradict fal's schemas; the schema is what we generate from, so such an example
    is dropped (and reported) rather than kept to fail every later validation."""
    spec = loader.SpecDocument(Path(origin), origin, doc)
    for problem in loader.check_examples(spec):
        parts = problem.pointer.split("/")
        i = parts.index("examples")
        holder = loader.resolve_pointer(doc, "/".join(parts[:i]))
        index = int(parts[i + 1])
        if isinstance(holder, dict) and isinstance(holder.get("examples"), list) and index < len(holder["examples"]):
            holder["examples"][index] = _DROPPED
            repairs.append(Problem(origin, "/".join(parts[: i + 2]), f"{problem.message}: example dropped", Level.WARNING))
    _strip_dropped(doc)


_DROPPED = object()


def _strip_dropped(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("examples"), list):
            node["examples"] = [e for e in node["examples"] if e is not _DROPPED]
            if not node["examples"]:
                node.pop("examples")
        for v in node.values():
            _strip_dropped(v)
    elif isinstance(node, list):
        for v in node:
            _strip_dropped(v)


def _uses_31_features(doc: dict[str, Any]) -> list[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "null" or (isinstance(node.get("type"), list)):
                found.add('type "null"')
            if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(node.get("exclusiveMinimum"), bool):
                found.add("numeric exclusiveMinimum")
            if "$ref" in node and len(node) > 1:
                found.add("$ref with siblings")
            if isinstance(node.get("examples"), list) and "properties" not in node:
                found.add("examples arrays")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc.get("components"))
    return sorted(found)


def _add_stream_path(doc: dict[str, Any], endpoint_id: str, origin: str) -> None:
    post = (doc.get("paths") or {}).get(f"/{endpoint_id}", {}).get("post")
    result = (doc.get("paths") or {}).get(f"/{endpoint_id}/requests/{{request_id}}", {}).get("get", {})
    out = result.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {}).get("schema")
    if post and out:
        doc["paths"][f"/{endpoint_id}/stream"] = {"post": {
            "requestBody": copy.deepcopy(post.get("requestBody")),
            "responses": {"200": {"description": "Server-sent events: partial outputs, then the final output.",
                                  "content": {"text/event-stream": {"schema": copy.deepcopy(out)}}}},
        }}  # fmt: skip


def _repair(node: Any, path: list[str | int], doc: dict[str, Any], origin: str, repairs: list[Problem]) -> Any:
    if isinstance(node, list):
        return [_repair(v, [*path, i], doc, origin, repairs) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict) and "$ref" in all_of[0] and "$ref" not in node:
        node.pop("allOf")
        node["$ref"] = all_of[0]["$ref"]
        repairs.append(Problem(origin, pointer([*path, "allOf"]), "single-element allOf wrapper: replaced by its $ref", Level.WARNING))
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and loader.resolve_pointer(doc, ref[1:]) is None:
        node.pop("$ref")
        repairs.append(Problem(origin, pointer([*path, "$ref"]), f"dangling $ref {ref!r}: replaced by an unconstrained schema", Level.WARNING))
    if isinstance(node.get("description"), str):
        node["description"] = inspect.cleandoc(node["description"])
    if "default" in node and isinstance(node.get("type"), str):
        original = node["default"]
        fixed = _coerce_default(original, node["type"])
        where = pointer([*path, "default"])
        if fixed is _BAD:
            repairs.append(Problem(origin, where, f"default {original!r} does not match type {node['type']}: dropped", Level.WARNING))
            node.pop("default")
        elif type(fixed) is not type(original) and not (node["type"] == "number" and isinstance(original, int)):
            repairs.append(Problem(origin, where, f"default {original!r} does not match type {node['type']}: read as {fixed!r}", Level.WARNING))
            node["default"] = fixed
    for key, value in list(node.items()):
        if key in ("properties", "patternProperties", "$defs"):
            order = node.get("x-fal-order-properties")
            props = value
            if isinstance(props, dict) and isinstance(order, list):
                first = [k for k in order if k in props]
                props = {k: props[k] for k in first + [k for k in props if k not in first]}
            node[key] = {k: _repair(v, [*path, key, k], doc, origin, repairs) for k, v in props.items()} if isinstance(props, dict) else props
        elif key not in ("default", "enum", "const", "examples", "example") and not key.startswith("x-"):
            node[key] = _repair(value, [*path, key], doc, origin, repairs)
    return node


_BAD = object()


def _coerce_default(value: Any, kind: str) -> Any:
    allowed = _PY_TYPES.get(kind)
    if allowed is None:
        return value
    if isinstance(value, bool) and kind in ("integer", "number"):
        return _BAD
    if isinstance(value, allowed):
        return value
    if isinstance(value, str) and kind in ("integer", "number"):
        try:
            number = float(value)
        except ValueError:
            return _BAD
        return int(number) if kind == "integer" and number.is_integer() else (number if kind == "number" else _BAD)
    if isinstance(value, str) and kind == "boolean" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, (int, float)) and kind == "string":
        return str(value)
    return _BAD


def _check_path_refs(node: Any, doc: dict[str, Any], origin: str) -> None:
    """A dangling $ref in a queue path hides the input or output itself: that cannot be repaired."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/") and loader.resolve_pointer(doc, ref[1:]) is None:
            raise SpecError([Problem(origin, "", f"a queue path refers to a missing schema {ref!r}: cannot find the endpoint's input or output")])
        for v in node.values():
            _check_path_refs(v, doc, origin)
    elif isinstance(node, list):
        for v in node:
            _check_path_refs(v, doc, origin)


def _check_io(doc: dict[str, Any], endpoint_id: str, origin: str) -> None:
    problems: list[Problem] = []
    in_path = ["paths", f"/{endpoint_id}", "post", "requestBody", "content", "application/json", "schema", "$ref"]
    out_path = ["paths", f"/{endpoint_id}/requests/{{request_id}}", "get", "responses", "200", "content", "application/json", "schema", "$ref"]
    for what, p in (("input", in_path), ("output", out_path)):
        if not isinstance(loader.resolve_pointer(doc, pointer(p)), str):
            problems.append(Problem(origin, pointer(p[:-1]), f"no {what} schema reachable from the queue paths"))
    if problems:
        raise SpecError(problems)


def _prune(doc: dict[str, Any]) -> None:
    """Drop component schemas nothing reaches from the paths (fal documents carry a few)."""
    schemas = doc["components"]["schemas"]
    keep = set(ir.reachable(schemas, ir.schema_refs(doc.get("paths"))))
    doc["components"]["schemas"] = {k: v for k, v in schemas.items() if k in keep}


def canonical(node: Any, *, in_names: bool = False, top: bool = True) -> Any:
    """One key order for every spec: fixed orders where a reader expects them, sorted names elsewhere."""
    if isinstance(node, list):
        return [canonical(v, top=False) for v in node]
    if not isinstance(node, dict):
        return node
    if top:
        keys = [k for k in _TOP_ORDER if k in node] + sorted(k for k in node if k not in _TOP_ORDER)
        out = {k: canonical(node[k], top=False) for k in keys}
        comps = out.get("components", {})
        if "schemas" in comps:
            comps["schemas"] = {k: canonical(comps["schemas"][k], top=False) for k in sorted(comps["schemas"])}
        if "paths" in out:
            out["paths"] = {k: out["paths"][k] for k in sorted(out["paths"])}
        return out
    if in_names:  # property maps keep their (display) order
        return {k: canonical(v, top=False) for k, v in node.items()}
    keys = [k for k in _SCHEMA_ORDER if k in node] + sorted(k for k in node if k not in _SCHEMA_ORDER)
    return {k: canonical(node[k], in_names=k in ("properties", "patternProperties"), top=False) if k not in ("examples", "default", "enum", "const") else node[k] for k in keys}


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literal blocks, no line folding: diffs stay line-per-fact."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and value == value.strip() and all(ch.isprintable() or ch == "\n" for ch in value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(spec: dict[str, Any]) -> str:
    return yaml.dump(spec, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000, default_flow_style=False)


def import_sources(sources: list[str], specs_root: Path, *, fetch: Any = None) -> list[tuple[Imported, Path, bool]]:
    """Import every document; validate each through the generator's own loader; write only if all succeed."""
    imported: list[Imported] = []
    errors: list[Problem] = []
    for source in sources:
        try:
            for origin, doc, metadata in read_sources(source, fetch=fetch):
                imported.append(normalize(doc, origin, metadata))
        except SpecError as exc:
            errors.extend(exc.problems)
    seen: dict[str, str] = {}
    for item in imported:
        if item.endpoint_id in seen:
            errors.append(Problem(item.origin, "/info/x-fal-metadata/endpointId", f"{item.endpoint_id!r} is imported twice in one run (also from {seen[item.endpoint_id]})"))
        seen.setdefault(item.endpoint_id, item.origin)
    shapes: dict[str, tuple[str, str]] = {}
    for item in imported:
        for name, schema in item.spec["components"]["schemas"].items():
            shape = json.dumps(schema, sort_keys=True)
            if name in shapes and shapes[name][0] != shape and shapes[name][1] != item.endpoint_id:
                item.repairs.append(Problem(item.origin, pointer(["components", "schemas", name]), f"schema {name!r} has another shape in {shapes[name][1]}: each endpoint keeps its own", Level.WARNING))
            shapes.setdefault(name, (shape, item.endpoint_id))
    results = []
    for item in imported:
        target = specs_root / f"{item.endpoint_id}.yaml"
        text = dump(item.spec)
        check: list[Problem] = []
        parsed = loader.SpecDocument(target, str(target), yaml.safe_load(text))
        check.extend(loader.check_schemas(parsed))
        if not check:
            check.extend(loader._openapi_errors(parsed))  # noqa: SLF001 - the generator's own validation
        errors.extend(p for p in check if p.level is Level.ERROR)
        results.append((item, target, text))
    if errors:
        raise SpecError(errors)
    written = []
    for item, target, text in results:
        changed = not target.exists() or target.read_text(encoding="utf-8") != text
        if changed:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        written.append((item, target, changed))
    return written
