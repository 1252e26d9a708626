"""The endpoints the local server answers, read from the project's OpenAPI specs.

Each spec is one fal queue document. Input and output schemas are found the way fal's own documents link them — the
requestBody of `POST /<id>` and the 200 response of `GET /<id>/requests/{request_id}` — never by schema name, because
names in fal's documents are arbitrary. A `POST /<id>/stream` path marks a streaming endpoint.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from fal_runtime import queue_document

JSON = dict[str, Any]

DEFAULT_SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"


class SpecLoadError(ValueError):
    """A spec the server cannot serve: the message names the file and what is missing."""


@dataclass(frozen=True)
class ServedEndpoint:
    """One fal endpoint: its id, its schemas (resolvable against `document`) and whether it streams."""

    id: str
    document: JSON = field(repr=False)
    input_schema: JSON = field(repr=False)
    output_schema: JSON = field(repr=False)
    streams: bool

    @property
    def app_root(self) -> str:
        """`fal-ai/flux/dev` → `fal-ai/flux`: status, result and cancel URLs live under owner/alias only."""
        return "/".join(self.id.split("/")[:2])

    def validator(self, schema: JSON) -> Draft202012Validator:
        """A validator for a schema of this document: its `$ref`s to `#/components/...` resolve against it."""
        root = {"allOf": [schema], "components": self.document.get("components", {})}
        return Draft202012Validator(root)

    def resolve(self, schema: JSON) -> JSON:
        """Follow a chain of local `$ref`s to the schema it names."""
        seen = 0
        while "$ref" in schema and seen < 32:
            pointer = str(schema["$ref"])
            if not pointer.startswith("#/"):
                raise SpecLoadError(f"{self.id}: only local $refs are supported, got {pointer}")
            node: Any = self.document
            for part in pointer[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            # Sibling keywords of a $ref (title, description, default) win over the target's, as in 2020-12.
            schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        return schema


def _dig(node: Any, *keys: str | int) -> Any:
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def endpoint_from_document(document: JSON, source: str) -> ServedEndpoint:
    """Read one fal queue document; raise SpecLoadError naming `source` when it cannot be served."""
    endpoint_id = _dig(document, "info", "x-fal-metadata", "endpointId")
    if not isinstance(endpoint_id, str) or endpoint_id.count("/") < 1:
        raise SpecLoadError(f"{source}: info.x-fal-metadata.endpointId is missing or not owner/alias[/path]")
    input_schema = _dig(document, *queue_document.input_schema_path(endpoint_id))
    output_schema = _dig(document, *queue_document.output_schema_path(endpoint_id))
    if not isinstance(input_schema, dict):
        raise SpecLoadError(f"{source}: no JSON requestBody schema at paths./{endpoint_id}.post")
    if not isinstance(output_schema, dict):
        raise SpecLoadError(f"{source}: no 200 JSON schema at paths./{endpoint_id}/requests/{{request_id}}.get")
    streams = isinstance(_dig(document, *queue_document.stream_operation_path(endpoint_id)), dict)
    return ServedEndpoint(endpoint_id, document, input_schema, output_schema, streams)


SPEC_SUFFIXES = (".yaml", ".yml", ".json")  # as the generator reads them (JSON is YAML)


# Parsed documents by (path, size, mtime): several servers in one process (a test session) over the same 1,300
# specs parse them once (~6 ms each in PyYAML's constructor). The server only reads them.
_PARSED: dict[tuple[str, int, int], Any] = {}


def _parsed(path: Path, loader: Any) -> Any:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _PARSED:
        text = path.read_text(encoding="utf-8")
        # JSON is YAML, but the json module reads it ~50x faster: it matters with a catalogue of 1,000+ specs.
        _PARSED[key] = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=loader)
    return _PARSED[key]


def load_specs(specs_dir: Path) -> dict[str, ServedEndpoint]:
    """Every servable endpoint under `specs_dir` by id. A broken spec is reported on stderr and skipped, so one
    spec being edited does not take the whole server down."""
    endpoints: dict[str, ServedEndpoint] = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for path in sorted(p for p in specs_dir.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file()):
        try:
            document = _parsed(path, loader)
            if not isinstance(document, dict):
                raise SpecLoadError(f"{path}: not a YAML mapping")
            endpoint = endpoint_from_document(document, str(path))
        except (OSError, ValueError, yaml.YAMLError, SpecLoadError, KeyError) as exc:
            print(f"fal_runtime.local: skipping {path}: {exc}", file=sys.stderr)
            continue
        endpoints[endpoint.id] = endpoint
    return endpoints
