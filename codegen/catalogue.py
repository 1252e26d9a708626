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
