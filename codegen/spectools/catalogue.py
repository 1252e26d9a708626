"""fal's catalogue as import sources: where each document came from and when, and fal's JSON Schema snapshot.

fal publishes every public endpoint's input and output JSON Schema in its JS monorepo (`fal-ai/fal-js`,
`libs/schemas`). That snapshot has no queue paths and no `x-fal-metadata`; `document_from_schemas` rebuilds fal's
per-endpoint OpenAPI document around the two schemas, in the shape fal serves (see `specs/` for one), so the
importer treats it like any other of fal's documents.

Each source carries a `Provenance`: the key and text it gets in a spec's `info.x-fal-sources`, and its date. When
one import run reads the same endpoint from several sources, the newest supplies the schemas and the others only
fill metadata the newest lacks (a display name, a category, whether it streams).
"""

from __future__ import annotations

import copy
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "SOURCES.json"  # beside source files: {file name: {"from": text, "date": "YYYY-MM-DD"}}
SNAPSHOT_KEY = "fal-js-schemas"


@dataclass(frozen=True)
class Provenance:
    key: str  # its key in info.x-fal-sources
    text: str  # what and where, for a reader
    date: str  # "YYYY-MM-DD", or "" when unknown (sorts oldest)

    def entry(self) -> dict[str, str]:
        return {"from": self.text, "date": self.date} if self.date else {"from": self.text}


def manifest_entry(path: Path) -> dict[str, str]:
    """What the directory's SOURCES.json says of `path` (empty when it says nothing)."""
    manifest = path.parent / MANIFEST
    if not manifest.is_file():
        return {}
    data = json.loads(manifest.read_text(encoding="utf-8"))
    entry = data.get(path.name) if isinstance(data, dict) else None
    return {k: str(v) for k, v in entry.items()} if isinstance(entry, dict) else {}


def read_json(path: Path) -> Any:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


LISTING_KEY = "fal-listing"
TYPES_KEY = "fal-js-types"
TYPES_ONLY = "x-fal-types-only"  # on a spec's `info`: its schemas come from fal's TypeScript types alone


def is_types_file(path: Path) -> bool:
    """fal's TypeScript endpoint types (fal-js `libs/client/src/types/endpoints.ts`), plain or gzipped."""
    return path.name.endswith((".ts", ".ts.gz"))


GALLERY_KEY = "fal-gallery"


def is_listing(data: Any) -> bool:
    """fal's model listing: `[{"endpoint_id", "category", "display_name", "status"}, ...]`, no documents."""
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(i, dict) and isinstance(i.get("endpoint_id"), str) and "openapi" not in i for i in data)
        and "display_name" in data[0]
    )


def is_gallery(data: Any) -> bool:
    """fal's gallery entries: `[{"id", "title", "category", "tags", "group", "kind", "date", ...}, ...]`."""
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in data)
        and {"title", "kind"} <= set(data[0])
    )


def listing_metadata(item: dict[str, Any]) -> dict[str, Any]:
    """A listing entry in the model search's metadata shape."""
    keys = ("category", "display_name", "status")
    return {"endpoint_id": item["endpoint_id"], **{k: item[k] for k in keys if item.get(k) is not None}}


def gallery_metadata(item: dict[str, Any]) -> dict[str, Any]:
    """A gallery entry in the model search's metadata shape (`streamUrl` → `stream_url`, ...)."""
    fields = {"title": "display_name", "category": "category", "tags": "tags", "group": "group", "kind": "kind",
              "date": "date", "streamUrl": "stream_url", "licenseType": "license_type"}  # fmt: skip
    out: dict[str, Any] = {"endpoint_id": item["id"]}
    out.update((snake, item[key]) for key, snake in fields.items() if item.get(key) not in (None, "", []))
    if item.get("deprecated") is True:
        out["status"] = "deprecated"
    return out


def metadata_value(key: str, value: Any) -> Any:
    """What a spec keeps of one metadata value fal gave, or None: text as text, tags as a list of text, a group as
    its key and label, a date as its day. Anything else fal might send is not kept."""
    if key in ("category", "display_name", "documentation_url", "kind", "license_type"):
        return value if isinstance(value, str) and value else None
    if key == "date":
        return value[:10] if isinstance(value, str) and len(value) >= 10 else None
    if key == "tags":
        tags = [t for t in value if isinstance(t, str) and t] if isinstance(value, list) else []
        return tags or None
    if key == "group":
        kept = {k: value[k] for k in ("key", "label") if isinstance(value, dict) and isinstance(value.get(k), str)}
        return kept or None
    return None


def listing_record(sources: list[Any]) -> dict[str, Any]:
    """`specs/LISTING.json`: the endpoints fal's newest listing names, with their display name, category and status,
    and where the listing came from. The generator reads it for what no spec can say: which listed endpoints no
    offline source describes, and which specs fal no longer lists."""
    first = sources[0].provenance
    endpoints = {
        s.metadata["endpoint_id"]: {k: s.metadata[k] for k in ("display_name", "category", "status") if k in s.metadata}
        for s in sources
    }
    return {"from": first.text, "date": first.date, "endpoints": dict(sorted(endpoints.items()))}


def is_snapshot(data: Any) -> bool:
    """fal-js `libs/schemas` read into one object: `{endpoint id: {"category", "input", "output", ...}}`."""
    if not isinstance(data, dict) or not data or "openapi" in data or "models" in data:
        return False
    first = next(iter(data.values()))
    return isinstance(first, dict) and {"input", "output", "inputName", "outputName"} <= set(first)


def document_from_schemas(endpoint_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """fal's per-endpoint queue document for one snapshot entry; `#/$defs/X` refs become component refs. (A few
    entries refer to definitions no entry holds, such as `fal-ai_flux-2-klein_LoRAInput`: the importer repairs and
    reports those.)"""
    schemas: dict[str, Any] = {}
    for side in ("input", "output"):
        schema = _rebased(copy.deepcopy(entry[side]))
        schemas.update(schema.pop("$defs", {}) or {})
        schemas[entry[f"{side}Name"]] = schema
    schemas["QueueStatus"] = copy.deepcopy(_QUEUE_STATUS)
    request_id = {
        "required": True,
        "in": "path",
        "name": "request_id",
        "schema": {"description": "Request ID", "type": "string"},
    }
    status = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueueStatus"}}},
        "description": "The request status.",
    }
    paths = {
        f"/{endpoint_id}": {"post": {
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{entry['inputName']}"}}}},
            "responses": {"200": status},
        }},
        f"/{endpoint_id}/requests/{{request_id}}": {"get": {
            "parameters": [request_id],
            "responses": {"200": {"description": "Result of the request.", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{entry['outputName']}"}}}}},
        }},
        f"/{endpoint_id}/requests/{{request_id}}/cancel": {"put": {
            "parameters": [request_id],
            "responses": {"200": {"description": "The request was cancelled.", "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"success": {"type": "boolean", "description": "Whether the request was cancelled successfully."}},
            }}}}},
        }},
        f"/{endpoint_id}/requests/{{request_id}}/status": {"get": {
            "parameters": [request_id, {"required": False, "in": "query", "name": "logs", "schema": {
                "type": "number", "description": "Whether to include logs (`1`) in the response or not (`0`)."}}],
            "responses": {"200": status},
        }},
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Queue OpenAPI for {endpoint_id}",
            "version": "1.0.0",
            "x-fal-metadata": {"endpointId": endpoint_id, "category": entry.get("category")},
        },
        "servers": [{"url": "https://queue.fal.run"}],
        "security": [{"apiKeyAuth": []}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "Fal Key"}
            },
        },
        "paths": paths,
    }


def snapshot_provenance(path: Path, endpoint_id: str, entry: dict[str, Any]) -> Provenance:
    about = manifest_entry(path)
    where = about.get("from", f"fal's JSON Schemas, read from {path.name}")
    names = f"{entry.get('inputName')} / {entry.get('outputName')}"
    return Provenance(
        SNAPSHOT_KEY, f"{where}; src/{entry.get('category')}/schemas.gen.ts: {names}", about.get("date", "")
    )


def _rebased(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                value = "#/components/schemas/" + value[len("#/$defs/") :]
            out[key] = value if key in ("examples", "default", "enum", "const") else _rebased(value)
        return out
    if isinstance(node, list):
        return [_rebased(v) for v in node]
    return node


# fal's QueueStatus component, as every one of fal's per-endpoint documents carries it.
_QUEUE_STATUS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]},
        "request_id": {"type": "string", "description": "The request id."},
        "response_url": {"type": "string", "description": "The response url."},
        "status_url": {"type": "string", "description": "The status url."},
        "cancel_url": {"type": "string", "description": "The cancel url."},
        "logs": {"type": "object", "description": "The logs.", "additionalProperties": True},
        "metrics": {"type": "object", "description": "The metrics.", "additionalProperties": True},
        "queue_position": {"type": "integer", "description": "The queue position."},
    },
    "required": ["status", "request_id"],
}
