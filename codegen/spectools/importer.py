"""`python -m codegen import SOURCE...`: fal's published OpenAPI → a normalized spec in specs/.

SOURCE is an endpoint id (fetched from fal's public per-endpoint URL), a URL, a local OpenAPI JSON file, or a file in
the shape of fal's model listing API (`{"models": [entry, ...]}` or one `{"endpoint_id", "metadata", "openapi"}`).
Normalization makes imports reproducible: importing the same document twice changes nothing, and a changed
document gives a minimal, readable diff. fal's irregularities are repaired and reported one line each; a document
that cannot be repaired fails with the JSON pointer of the fault, and nothing is written.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from codegen.generation import ir, keywords, loader, naming
from codegen.generation.listing import LISTING_FILE, listing_json
from codegen.problems import InvalidSpecError, Level, Problem, pointer
from codegen.spectools import catalogue
from codegen.spectools.catalogue import Provenance
from fal_runtime import queue_document

FAL_OPENAPI_URL = "https://fal.ai/api/openapi/queue/openapi.json?endpoint_id={}"
# info.x-fal-metadata keys that describe the endpoint (fal's camelCase → the model search's snake_case); the rest
# (thumbnails, playground links, favourites) churn.
_METADATA_KEYS = {
    "endpointId": "endpoint_id", "category": "category", "documentationUrl": "documentation_url",
    "displayName": "display_name", "tags": "tags", "group": "group", "kind": "kind", "date": "date",
    "licenseType": "license_type",
}  # fmt: skip
_KEPT_METADATA = tuple(_METADATA_KEYS)
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


@dataclass
class Source:
    """One of fal's documents for one endpoint, with where it came from."""

    origin: str
    doc: dict[str, Any]
    metadata: dict[str, Any]  # model-search metadata (`display_name`, `category`, `status`, `stream_url`, ...)
    provenance: Provenance

    @property
    def endpoint_id(self) -> Any:
        meta = self.doc.get("info", {}).get("x-fal-metadata") if isinstance(self.doc.get("info"), dict) else None
        return (meta.get("endpointId") if isinstance(meta, dict) else None) or self.metadata.get("endpoint_id")


# Reading sources.


def read_sources(source: str, *, fetch: Any = None) -> Iterator[Source]:
    """Every document a SOURCE names: an OpenAPI document, a model listing, or fal's JSON Schema snapshot."""
    path = Path(source)
    if path.exists() and catalogue.is_types_file(path):
        yield from _types_sources(path)
        return
    if path.exists():
        try:
            data = catalogue.read_json(path)
        except (OSError, ValueError) as exc:
            raise InvalidSpecError([Problem(str(path), "", f"cannot read: {exc}")]) from None
        origin = str(path)
        about = catalogue.manifest_entry(path)
    else:
        url = source if source.startswith(("https://", "http://")) else FAL_OPENAPI_URL.format(quote(source, safe="/"))
        data = (fetch or _fetch)(url)
        origin = url
        about = {
            "from": f"fal's published OpenAPI document, fetched from {url}",
            "date": datetime.date.today().isoformat(),
        }
    if catalogue.is_snapshot(data):
        for endpoint_id, entry in data.items():
            doc = catalogue.document_from_schemas(endpoint_id, entry)
            doc["info"]["x-fal-metadata"].pop("category", None)  # a folder name: fal's own category wins (merge)
            prov = catalogue.snapshot_provenance(path, endpoint_id, entry)
            yield Source(
                f"{origin} ({endpoint_id})",
                doc,
                {"endpoint_id": endpoint_id, "category_folder": entry.get("category")},
                prov,
            )
    elif catalogue.is_listing(data):
        prov = Provenance(catalogue.LISTING_KEY, about.get("from", f"fal's model listing, read from {origin}"),
                          about.get("date", ""))  # fmt: skip
        for item in data:
            yield Source(f"{origin} ({item['endpoint_id']})", {}, catalogue.listing_metadata(item), prov)
    elif catalogue.is_gallery(data):
        prov = Provenance(catalogue.GALLERY_KEY, about.get("from", f"fal's gallery entries, read from {origin}"),
                          about.get("date", ""))  # fmt: skip
        for item in data:
            yield Source(f"{origin} ({item['id']})", {}, catalogue.gallery_metadata(item), prov)
    elif isinstance(data, dict) and isinstance(data.get("models"), list):
        for entry in data["models"]:
            yield _entry(entry, origin, about)
    elif isinstance(data, dict) and "openapi" in data and "endpoint_id" in data:
        yield _entry(data, origin, about)
    elif isinstance(data, dict):
        text = about.get("from", f"fal's published OpenAPI document, imported from {origin}")
        yield Source(origin, data, {}, Provenance("fal-openapi", text, about.get("date", "")))
    else:
        raise InvalidSpecError([Problem(origin, "", "not an OpenAPI document or a model listing")])


def _types_sources(path: Path) -> Iterator[Source]:
    """One source per endpoint of fal's TypeScript types: fal's per-endpoint document around what the types say,
    marked as coming from types only (no bounds, no integers: `codegen.spectools.tstypes`)."""
    from codegen.spectools import tstypes

    try:
        types = tstypes.read_types(path)
    except (OSError, ValueError) as exc:
        raise InvalidSpecError([Problem(str(path), "", f"cannot read fal's TypeScript types: {exc}")]) from None
    about = catalogue.manifest_entry(path)
    for endpoint_id in types.endpoint_ids():
        try:
            doc = catalogue.document_from_schemas(endpoint_id, types.entry(endpoint_id))
        except ValueError as exc:
            raise InvalidSpecError([Problem(f"{path} ({endpoint_id})", "", str(exc))]) from None
        doc["info"]["x-fal-metadata"].pop("category", None)
        doc["info"][catalogue.TYPES_ONLY] = True
        names = f"{types.entry(endpoint_id)['inputName']} / {types.entry(endpoint_id)['outputName']}"
        text = f"{about.get('from', f'fal TypeScript endpoint types, read from {path.name}')}; EndpointTypeMap: {names}"
        yield Source(f"{path} ({endpoint_id})", doc, {"endpoint_id": endpoint_id},
                     Provenance(catalogue.TYPES_KEY, text, about.get("date", "")))  # fmt: skip


def listing_source(entry: Any, origin: str, text: str) -> Source:
    """A model search entry (`{"endpoint_id", "metadata", "openapi"}`); dated by fal's `updated_at`."""
    if not isinstance(entry, dict) or not isinstance(entry.get("openapi"), dict):
        raise InvalidSpecError([Problem(origin, "", "a model listing entry without an `openapi` document")])
    given = entry.get("metadata")
    metadata: dict[str, Any] = {**(given if isinstance(given, dict) else {}), "endpoint_id": entry.get("endpoint_id")}
    date = str(metadata.get("updated_at") or "")[:10]
    return Source(
        f"{origin} ({entry.get('endpoint_id')})", entry["openapi"], metadata, Provenance("fal-model-search", text, date)
    )


def _entry(entry: Any, origin: str, about: dict[str, str]) -> Source:
    source = listing_source(entry, origin, about.get("from", f"fal's model search entry, read from {origin}"))
    if about.get("date") and not source.provenance.date:
        source.provenance = Provenance(source.provenance.key, source.provenance.text, about["date"])
    return source


def _fetch(url: str) -> Any:
    import httpx

    try:
        response = httpx.get(url, timeout=30, follow_redirects=True)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise InvalidSpecError([Problem(url, "", f"cannot fetch: {exc}")]) from None


def merge(sources: list[Source]) -> tuple[Source, dict[str, Any], dict[str, dict[str, str]]]:
    """The newest source (its document supplies the schemas), the metadata all of them give (newest first), and
    the `x-fal-sources` of the ones used."""
    ordered = sorted(sources, key=lambda s: s.provenance.date, reverse=True)  # stable: ties keep the given order
    chosen = next(s for s in ordered if s.doc)  # metadata-only sources (a listing, the gallery) have none
    metadata: dict[str, Any] = {}
    used = {chosen.provenance.key: chosen.provenance.entry()}
    for source in ordered:
        meta = source.doc.get("info", {}).get("x-fal-metadata") or {}
        given = {**{_SNAKE[k]: v for k, v in meta.items() if k in _SNAKE}, **source.metadata}
        added = [k for k, v in given.items() if v not in (None, "", []) and k not in metadata]
        for k in added:
            metadata[k] = given[k]
        if added and source.provenance.key not in used:
            used[source.provenance.key] = source.provenance.entry()
    if "category" not in metadata and metadata.get("category_folder"):
        metadata["category"] = metadata["category_folder"]
    metadata.pop("category_folder", None)
    used.pop(_EXISTING.key, None)
    return chosen, metadata, dict(sorted(used.items()))


# The spec already in specs/, as the document that metadata-only sources update: oldest, and recorded by the sources
# it already names.
_EXISTING = Provenance("", "", "")


_SNAKE = {k: v for k, v in _METADATA_KEYS.items() if k != "endpointId"}


# Normalizing.


def normalize(doc: dict[str, Any], origin: str, metadata: dict[str, Any], sources: dict[str, Any]) -> Imported:
    """A canonical 3.1 spec from one of fal's documents, with every repair reported. `metadata` is in the shape of
    fal's model search (it wins over the document's own `x-fal-metadata`); `sources` becomes `info.x-fal-sources`."""
    doc = copy.deepcopy(doc)
    repairs: list[Problem] = []
    spec = loader.SpecDocument(Path(origin), origin, doc)
    uses_31 = _uses_31_features(doc)
    upgrade: list[Problem] = []
    if loader.upgrade_30(spec, upgrade):
        why = f"uses 3.1 features ({', '.join(uses_31)})" if uses_31 else "read as 3.1"
        repairs.append(
            Problem(
                origin,
                "/openapi",
                f"OpenAPI {upgrade[0].message.split()[2]} document {why}: declared 3.1.0",
                Level.WARNING,
            )
        )
    info = doc.setdefault("info", {})
    meta = info.get("x-fal-metadata") if isinstance(info.get("x-fal-metadata"), dict) else {}
    endpoint_id = meta.get("endpointId") or metadata.get("endpoint_id")
    if not ir.is_endpoint_id(endpoint_id):
        raise InvalidSpecError(
            [
                Problem(
                    origin,
                    "/info/x-fal-metadata/endpointId",
                    f"no endpoint id, or not one: {endpoint_id!r} (expected 'owner/alias[/path...]')",
                )
            ]
        )
    kept = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    kept["endpointId"] = endpoint_id
    for key, snake in _METADATA_KEYS.items():
        value = catalogue.metadata_value(snake, metadata.get(snake))
        if value is not None and key != "endpointId":
            kept[key] = value
    info["x-fal-metadata"] = {k: kept[k] for k in _KEPT_METADATA if k in kept}
    if metadata.get("description"):
        info["description"] = metadata["description"]
    if isinstance(info.get("description"), str):
        info["description"] = _capped(info["description"], "/info/description", origin, repairs)
    info["x-fal-sources"] = sources
    if metadata.get("stream_url"):
        _add_stream_path(doc, endpoint_id, origin)
    submit = (doc.get("paths") or {}).get(f"/{endpoint_id}", {}).get("post")
    if isinstance(submit, dict):
        if metadata.get("status") == "deprecated":
            submit["deprecated"] = True
        elif metadata.get("status") == "active":
            submit.pop("deprecated", None)

    schemas = doc.get("components", {}).get("schemas", {})
    doc["components"]["schemas"] = {
        name: _repair(schema, ["components", "schemas", name], doc, origin, repairs) for name, schema in schemas.items()
    }
    for path_item in (doc.get("paths") or {}).values():
        _check_path_refs(path_item, doc, origin)
    _check_io(doc, endpoint_id, origin)
    _prune(doc)
    _drop_invalid_examples(doc, origin, repairs)
    _drop_invalid_defaults(doc, origin, repairs)
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
            repairs.append(
                Problem(origin, "/".join(parts[: i + 2]), f"{problem.message}: example dropped", Level.WARNING)
            )
    _strip_dropped(doc)


_DROPPED = object()


def _drop_invalid_defaults(doc: dict[str, Any], origin: str, repairs: list[Problem]) -> None:
    """A field default that contradicts the field's own schema (fal's flowedit: `1.5` on an integer; sam-3's output:
    a URL string for a File object) cannot be typed; it is dropped and reported. An omitted field still gets fal's
    own default on fal's side: the client only sends what the caller set."""
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    validator_class = loader._example_validator()
    registry: Registry[Any] = Registry().with_resource("urn:spec", DRAFT202012.create_resource(doc))
    for name, schema in (doc.get("components", {}).get("schemas") or {}).items():
        for prop, sub in ((schema.get("properties") or {}) if isinstance(schema, dict) else {}).items():
            if not isinstance(sub, dict) or "default" not in sub:
                continue
            where = pointer(["components", "schemas", name, "properties", prop])
            validator = validator_class({"$ref": loader.pointer_ref("urn:spec", where)}, registry=registry)
            errors = list(validator.iter_errors(sub["default"]))
            if errors:
                repairs.append(
                    Problem(
                        origin,
                        f"{where}/default",
                        f"default {sub['default']!r} does not validate: {errors[0].message[:120]}: dropped",
                        Level.WARNING,
                    )
                )
                sub.pop("default")


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
            if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(
                node.get("exclusiveMinimum"), bool
            ):
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
    if (
        isinstance(all_of, list)
        and len(all_of) == 1
        and isinstance(all_of[0], dict)
        and "$ref" in all_of[0]
        and "$ref" not in node
    ):
        node.pop("allOf")
        node["$ref"] = all_of[0]["$ref"]
        repairs.append(
            Problem(
                origin, pointer([*path, "allOf"]), "single-element allOf wrapper: replaced by its $ref", Level.WARNING
            )
        )
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and loader.resolve_pointer(doc, ref[1:]) is None:
        node.pop("$ref")
        repairs.append(
            Problem(
                origin,
                pointer([*path, "$ref"]),
                f"dangling $ref {ref!r}: replaced by an unconstrained schema",
                Level.WARNING,
            )
        )
    if isinstance(node.get("description"), str):
        node["description"] = _capped(inspect.cleandoc(node["description"]), pointer([*path, "description"]),
                                      origin, repairs)  # fmt: skip
    if "default" in node and isinstance(node.get("type"), str):
        original = node["default"]
        fixed = _coerce_default(original, node["type"])
        where = pointer([*path, "default"])
        if fixed is _BAD:
            repairs.append(
                Problem(
                    origin, where, f"default {original!r} does not match type {node['type']}: dropped", Level.WARNING
                )
            )
            node.pop("default")
        elif type(fixed) is not type(original) and not (node["type"] == "number" and isinstance(original, int)):
            repairs.append(
                Problem(
                    origin,
                    where,
                    f"default {original!r} does not match type {node['type']}: read as {fixed!r}",
                    Level.WARNING,
                )
            )
            node["default"] = fixed
    for key, value in list(node.items()):
        if keywords.unknown_keyword(key):
            node.pop(key)
            repairs.append(
                Problem(
                    origin,
                    pointer([*path, key]),
                    "unknown schema keyword: dropped (only JSON Schema, OpenAPI, fal's annotations and `x-` "
                    "extensions are kept; a schema must not choose what generated code imports)",
                    Level.WARNING,
                )
            )
        elif key in ("properties", "patternProperties", "$defs"):
            order = node.get("x-fal-order-properties")
            props = value
            if isinstance(props, dict) and isinstance(order, list):
                first = [k for k in order if isinstance(k, str) and k in props]
                props = {k: props[k] for k in first + [k for k in props if k not in first]}
            node[key] = (
                {k: _repair(v, [*path, key, k], doc, origin, repairs) for k, v in props.items()}
                if isinstance(props, dict)
                else props
            )
        elif key not in keywords.DATA and not key.startswith("x-"):
            node[key] = _repair(value, [*path, key], doc, origin, repairs)
    return node


_BAD = object()
# fal's longest description is a few hundred characters; one of megabytes would become a module of megabytes.
MAX_DESCRIPTION = 10_000


def _capped(text: str, where: str, origin: str, repairs: list[Problem]) -> str:
    if len(text) <= MAX_DESCRIPTION:
        return text
    repairs.append(Problem(origin, where, f"description of {len(text):,} characters: cut to {MAX_DESCRIPTION:,}",
                           Level.WARNING))  # fmt: skip
    return text[: MAX_DESCRIPTION - 1] + "…"


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
            raise InvalidSpecError(
                [
                    Problem(
                        origin,
                        "",
                        f"a queue path refers to a missing schema {ref!r}: cannot find the endpoint's input or output",
                    )
                ]
            )
        for v in node.values():
            _check_path_refs(v, doc, origin)
    elif isinstance(node, list):
        for v in node:
            _check_path_refs(v, doc, origin)


def _check_io(doc: dict[str, Any], endpoint_id: str, origin: str) -> None:
    problems: list[Problem] = []
    in_path = [*queue_document.input_schema_path(endpoint_id), "$ref"]
    out_path = [*queue_document.output_schema_path(endpoint_id), "$ref"]
    for what, p in (("input", in_path), ("output", out_path)):
        if not isinstance(loader.resolve_pointer(doc, pointer(p)), str):
            problems.append(Problem(origin, pointer(p[:-1]), f"no {what} schema reachable from the queue paths"))
    if problems:
        raise InvalidSpecError(problems)


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
    return {
        k: canonical(node[k], in_names=k in ("properties", "patternProperties"), top=False)
        if k not in ("examples", "default", "enum", "const")
        else node[k]
        for k in keys
    }


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style, multi-line strings as literal blocks, no line folding: diffs stay line-per-fact."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = (
        "|"
        if "\n" in value and value == value.strip() and all(ch.isprintable() or ch == "\n" for ch in value)
        else None
    )
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _load(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def dump(spec: dict[str, Any]) -> str:
    return yaml.dump(spec, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000, default_flow_style=False)


@dataclass
class Outcome:
    """What an import did with one endpoint: `state` is "written", "unchanged", "curated" (a spec a maintainer
    curated is never overwritten; `changes` lists where fal's data now differs from it) or "skipped" (`reason`)."""

    item: Imported
    target: Path
    state: str
    changes: list[Any] = field(default_factory=list)
    reason: str = ""  # why a "skipped" import was not written

    @property
    def changed(self) -> bool:
        return self.state == "written"


def is_curated(text: str) -> bool:
    """A spec whose facts a maintainer settled (`x-fal-resolved`, `x-fal-unresolved`, `x-fal-curated`)."""
    return any(marker in text for marker in ("x-fal-resolved", "x-fal-unresolved", "x-fal-curated"))


def target_path(specs_root: Path, endpoint_id: str) -> Path | None:
    """Where an endpoint's spec goes, or None when the id would lead outside `specs_root`."""
    if not ir.is_endpoint_id(endpoint_id):
        return None
    root = specs_root.resolve()
    target = (root / f"{endpoint_id}.yaml").resolve()
    return target if target.is_relative_to(root) and not Path(endpoint_id).is_absolute() else None


@dataclass
class Collected:
    """What an import read: each endpoint normalized, the problems found, and the ids only metadata sources named
    (a listing or gallery entry) that no document describes and no spec in specs/ holds."""

    imported: list[Imported]
    problems: list[Problem]
    undescribed: list[str] = field(default_factory=list)


def collect(sources: Iterable[Source], specs_root: Path | None = None) -> tuple[list[Imported], list[Problem]]:
    """Normalize every endpoint the sources name, merging sources that name the same one."""
    found = collect_all(sources, specs_root)
    return found.imported, found.problems


def collect_all(sources: Iterable[Source], specs_root: Path | None = None) -> Collected:
    """`collect`, also saying which ids only metadata named. An endpoint only metadata sources name updates the spec
    already in `specs_root` (its schemas and sources kept, the metadata fal now gives applied)."""
    groups: dict[str, list[Source]] = {}
    found = Collected([], [])
    for source in sources:
        endpoint_id = source.endpoint_id
        if not ir.is_endpoint_id(endpoint_id):
            if source.doc:
                found.problems.append(
                    Problem(
                        source.origin,
                        "/info/x-fal-metadata/endpointId",
                        f"no endpoint id, or not one: {endpoint_id!r} (expected 'owner/alias[/path...]')",
                    )
                )
            continue
        groups.setdefault(endpoint_id, []).append(source)
    for endpoint_id in sorted(groups):
        group = groups[endpoint_id]
        recorded: dict[str, Any] = {}
        if not any(s.doc for s in group):
            existing = _existing_spec(specs_root, endpoint_id)
            if existing is None:
                found.undescribed.append(endpoint_id)
                continue
            recorded = dict(existing["info"].get("x-fal-sources") or {})
            group = [*group, Source(f"{specs_root}/{endpoint_id}.yaml", existing, {}, _EXISTING)]
        chosen, metadata, used = merge(group)
        doc = chosen.doc
        try:
            if chosen.provenance.key == catalogue.TYPES_KEY:
                doc, more = _with_types(chosen, group, specs_root, endpoint_id)
                recorded.update(more)
            found.imported.append(normalize(doc, chosen.origin, {**metadata, "endpoint_id": endpoint_id},
                                            dict(sorted({**recorded, **used}.items()))))  # fmt: skip
        except InvalidSpecError as exc:
            found.problems.extend(exc.problems)
    return found


def _with_types(
    chosen: Source, group: list[Source], specs_root: Path | None, endpoint_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The document an import writes when fal's TypeScript types are its newest statement of an endpoint, and the
    sources it keeps: the newest older document (one this import read, else the spec already in `specs_root`) with
    the types applied field by field (`codegen.spectools.fieldmerge`); the types alone when nothing older describes it."""
    from codegen.spectools import fieldmerge

    older = sorted((s for s in group if s.doc and s is not chosen and s.provenance.key != catalogue.TYPES_KEY),
                   key=lambda s: s.provenance.date, reverse=True)  # fmt: skip
    base = older[0].doc if older else _existing_spec(specs_root, endpoint_id)
    if base is None:
        return chosen.doc, {}
    kept = {} if older else dict(base["info"].get("x-fal-sources") or {})
    try:
        doc, _ = fieldmerge.apply_types(base, chosen.doc)
    except (KeyError, ValueError, TypeError) as exc:
        problem = Problem(chosen.origin, "", f"cannot apply fal's types to the older schema: {exc}")
        raise InvalidSpecError([problem]) from None
    if older:
        kept[older[0].provenance.key] = older[0].provenance.entry()
    if not base["info"].get(catalogue.TYPES_ONLY):
        doc["info"].pop(catalogue.TYPES_ONLY, None)
    return doc, kept


def _existing_spec(specs_root: Path | None, endpoint_id: str) -> dict[str, Any] | None:
    target = target_path(specs_root, endpoint_id) if specs_root is not None else None
    if target is None or not target.is_file():
        return None
    doc = _load(target.read_text(encoding="utf-8"))
    return doc if isinstance(doc, dict) and isinstance(doc.get("info"), dict) else None


def import_sources(sources: list[str], specs_root: Path, *, fetch: Any = None) -> list[Outcome]:
    """Import every document; validate each through the generator's own loader; write only if all succeed. A
    listing among the sources is also recorded in `specs/LISTING.json`."""
    read: list[Source] = []
    errors: list[Problem] = []
    platform_specs: list[Imported] = []
    for source in sources:
        try:
            platform_spec = _platform_spec(source)
            if platform_spec is not None:
                platform_specs.append(platform_spec)
            else:
                read.extend(read_sources(source, fetch=fetch))
        except InvalidSpecError as exc:
            errors.extend(exc.problems)
    found = collect_all(read, specs_root)
    errors.extend(found.problems)
    outcomes, problems = prepare(found.imported, specs_root)
    errors.extend(problems)
    root = specs_root.resolve()
    new = {o.target.relative_to(root).as_posix(): o.item.endpoint_id for o, _ in outcomes
           if o.state == "written" and not o.target.exists()}  # fmt: skip
    for rel, why in module_collisions(specs_root, new).items():
        outcome = next(o for o, _ in outcomes if o.target == root / rel)
        outcome.state, outcome.reason = "skipped", why
    for item in platform_specs:
        prepared, problems = _prepare_platform(item, specs_root)
        outcomes.append(prepared)
        errors.extend(problems)
    if errors:
        raise InvalidSpecError(errors)
    listing = [s for s in read if s.provenance.key == catalogue.LISTING_KEY]
    if listing:
        write_text(specs_root / LISTING_FILE, listing_json(catalogue.listing_record(listing)))
    return write(outcomes)


def _platform_spec(source: str) -> Imported | None:
    """fal's Platform API document, normalized (`codegen.spectools.platform`); None for any other source."""
    from codegen.spectools import platform

    path = Path(source)
    if not path.is_file() or catalogue.is_types_file(path):
        return None
    try:
        data = catalogue.read_json(path)
    except (OSError, ValueError):
        return None  # read_sources reports it
    if not platform.is_platform_document(data):
        return None
    spec, repairs = platform.normalize_platform(data, str(path), platform.provenance_of(path))
    return Imported(platform.SPEC_PATH.removesuffix(".yaml"), str(path), spec, repairs)


def _prepare_platform(item: Imported, specs_root: Path) -> tuple[tuple[Outcome, str], list[Problem]]:
    target = specs_root / f"{item.endpoint_id}.yaml"
    text = dump(item.spec)
    parsed = loader.SpecDocument(target, str(target), _load(text))
    problems = [p for p in [*loader.check_schemas(parsed), *loader._openapi_errors(parsed)] if p.level is Level.ERROR]
    current = target.read_text(encoding="utf-8") if target.exists() else None
    return (Outcome(item, target, "unchanged" if current == text else "written"), text), problems


def module_collisions(specs_root: Path, new: dict[str, str]) -> dict[str, str]:
    """Of the specs about to be written (`new`: path relative to `specs_root` → endpoint id), those whose id maps to
    the module of another endpoint (`CassetteAI/music-generator` beside `cassetteai/music-generator`; `fal_ai/aura.sr`
    beside `fal-ai/aura-sr`), with why: the generator refuses such a pair. The spec already in `specs/` is the one
    kept; two new ids that collide are both left out, since which one fal means is for a maintainer to say."""
    owner: dict[tuple[str, ...], list[str]] = {}
    for path in loader.find_spec_files(specs_root):
        rel = path.relative_to(specs_root).as_posix()
        if rel not in new:
            owner.setdefault(naming.module_parts(rel.rsplit(".", 1)[0]), []).append(rel)
    for rel, endpoint_id in new.items():
        owner.setdefault(naming.module_parts(endpoint_id), []).append(rel)
    found: dict[str, str] = {}
    for rels in owner.values():
        if len(rels) < 2:
            continue
        for rel in (r for r in rels if r in new):
            others = ", ".join(repr(r.rsplit(".", 1)[0]) for r in rels if r != rel)
            found[rel] = f"endpoint id {new[rel]!r} maps to the module of {others}: the generator refuses both"
    return found


def prepare(imported: list[Imported], specs_root: Path) -> tuple[list[tuple[Outcome, str]], list[Problem]]:
    """Each import's canonical text, checked by the generator's loader, and what writing it would do."""
    errors: list[Problem] = []
    _note_shared_names(imported)
    results: list[tuple[Outcome, str]] = []
    for item in imported:
        target = target_path(specs_root, item.endpoint_id)
        if target is None:
            errors.append(
                Problem(
                    item.origin,
                    "/info/x-fal-metadata/endpointId",
                    f"endpoint id {item.endpoint_id!r} leads outside {specs_root}/: refused",
                )
            )
            continue
        text = dump(item.spec)
        check: list[Problem] = []
        parsed = loader.SpecDocument(target, str(target), _load(text))
        check.extend(loader.check_schemas(parsed))
        if not check:
            check.extend(loader._openapi_errors(parsed))
        errors.extend(p for p in check if p.level is Level.ERROR)
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            results.append((Outcome(item, target, "unchanged"), text))
        elif current is not None and is_curated(current):
            results.append((Outcome(item, target, "curated", differences(target, current, item)), text))
        elif current is not None:
            results.append((Outcome(item, target, "written", differences(target, current, item)), text))
        else:
            results.append((Outcome(item, target, "written"), text))
    return results, errors


def write(results: list[tuple[Outcome, str]]) -> list[Outcome]:
    """Write what changed, each file atomically (a temporary beside it, renamed)."""
    for outcome, text in results:
        if outcome.state == "written":
            write_text(outcome.target, text)
    return [outcome for outcome, _ in results]


def write_text(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


def _note_shared_names(imported: list[Imported]) -> None:
    shapes: dict[str, tuple[str, str]] = {}
    for item in imported:
        for name, schema in item.spec["components"]["schemas"].items():
            shape = json.dumps(schema, sort_keys=True)
            if name in shapes and shapes[name][0] != shape and shapes[name][1] != item.endpoint_id:
                item.repairs.append(
                    Problem(
                        item.origin,
                        pointer(["components", "schemas", name]),
                        f"schema {name!r} has another shape in {shapes[name][1]}: each endpoint keeps its own",
                        Level.WARNING,
                    )
                )
            shapes.setdefault(name, (shape, item.endpoint_id))


def differences(target: Path, current: str, item: Imported) -> list[Any]:
    """Where an import differs from the spec now at `target` (`current`, its text), judged as `codegen diff` judges
    a change: for a curated spec it is kept, for sync's report it is written."""
    from codegen.spectools import diff

    found: list[Problem] = []
    old = ir.build(loader.SpecDocument(target, str(target), _load(current)), f"{item.endpoint_id}.yaml", found)
    new = ir.build(
        loader.SpecDocument(target, str(target), copy.deepcopy(item.spec)), f"{item.endpoint_id}.yaml", found
    )
    if old is None or new is None:
        return []
    return diff.compare({item.endpoint_id: old}, {item.endpoint_id: new})
