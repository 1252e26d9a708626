"""The endpoints the local server answers, read from the project's OpenAPI specs.

Each spec is one fal queue document. Input and output schemas are found the way fal's own documents link them — the
requestBody of `POST /<id>` and the 200 response of `GET /<id>/requests/{request_id}` — never by schema name, because
names in fal's documents are arbitrary. A `POST /<id>/stream` path marks a streaming endpoint.
"""

from __future__ import annotations

import bisect
import json
import re
import sys
import threading
from collections.abc import Iterator, Mapping
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


# `info.x-fal-metadata.endpointId` in block-style YAML, as the specs are written: `x-fal-metadata` must sit exactly at
# the indentation of `info`'s keys and `endpointId` exactly at that of `x-fal-metadata`'s keys, with anything deeper
# (or blank, or a comment) in between. Values: plain, '…' ('' is a quote) or "…" without escapes. Anything else
# (flow style, tags, anchors, escapes) does not match and the spec is parsed instead: the scan only saves work.
_ENDPOINT_ID = re.compile(
    r"""
    ^info:[ \t]*(?:\#.*)?\n
    (?:[ \t]*(?:\#.*)?\n)*
    (?=(?P<info>[ ]+)\S)                                    # the indentation of info's keys
    (?:(?P=info).*\n|[ \t]*(?:\#.*)?\n)*?                   # info's other keys, deeper lines, blanks and comments
    (?P=info)x-fal-metadata:[ \t]*(?:\#.*)?\n
    (?:[ \t]*(?:\#.*)?\n)*
    (?=(?P=info)(?P<meta>[ ]+)\S)                           # the indentation of x-fal-metadata's keys
    (?:(?P=info)(?P=meta).*\n|[ \t]*(?:\#.*)?\n)*?
    (?P=info)(?P=meta)endpointId:[ \t]+
    (?:'(?P<single>(?:[^'\n]|'')*)'|"(?P<double>[^"\\\n]*)"|(?P<plain>[^\s'"\#&*!|>%@`{}\[\],?:-]\S*(?<!:)))
    [ \t]*(?:[ \t]\#.*)?$
    """,
    re.MULTILINE | re.VERBOSE,
)


def scan_endpoint_id(text: str) -> str | None:
    """The endpoint id of a YAML spec, read without parsing it (~100x faster than PyYAML), or None when the text is
    not laid out the simple way `_ENDPOINT_ID` knows. A plain scalar is taken as the string it reads as; one YAML
    would resolve to something else (`true`, `12`) fails later, when the spec is parsed, as it would have anyway."""
    match = _ENDPOINT_ID.search(text)
    if match is None:
        return None
    if match["single"] is not None:
        return match["single"].replace("''", "'")
    return match["double"] if match["double"] is not None else match["plain"]


def _spec_files(specs_dir: Path) -> list[Path]:
    """The endpoint specs: files at `owner/alias[...]`. Files directly in the specs folder (`LISTING.json`) are the
    catalogue's, and `_platform/` holds the Platform API's spec, which no queue endpoint serves."""
    return sorted(
        p
        for p in specs_dir.rglob("*")
        if p.suffix in SPEC_SUFFIXES
        and p.is_file()
        and p.parent != specs_dir
        and not p.relative_to(specs_dir).parts[0].startswith("_")
    )


class SpecIndex(Mapping[str, ServedEndpoint]):
    """Every servable endpoint under a specs directory by id, parsed on first use.

    Parsing the whole catalogue with PyYAML takes seconds and dominated the start of every local server, while a
    test session uses a handful of endpoints. So construction only finds each spec's id (JSON specs, fast to read,
    are parsed; YAML ones are scanned by `scan_endpoint_id`, and parsed at once only when the scan finds nothing),
    and a lookup parses the specs filed under that id. The result is what `load_specs` used to return eagerly:

    - a broken spec is reported on stderr (once) and is absent, so one spec being edited does not take the whole
      server down;
    - of several specs with one id, the last in sorted path order that can be served wins;
    - a spec whose parsed id differs from its scanned one is filed under its real id, not the scanned one.

    Iterating or taking the length parses everything (once): only servable endpoints count. Lookups of unknown ids
    parse nothing. A lock makes the lazy parsing safe from the server's thread and a test's at once.
    """

    def __init__(self, specs_dir: Path) -> None:
        self._lock = threading.RLock()
        self._loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        self._files = _spec_files(specs_dir)
        self._candidates: dict[str, list[Path]] = {}  # by id: sorted paths of specs that may serve it
        self._loaded: dict[Path, ServedEndpoint | None] = {}  # None: broken, already reported
        self._all: dict[str, ServedEndpoint] | None = None
        for path in self._files:
            endpoint_id = self._scan(path)
            if endpoint_id is None:
                self._load(path)  # files it under its id, or reports it
            else:
                self._candidates.setdefault(endpoint_id, []).append(path)

    @staticmethod
    def _scan(path: Path) -> str | None:
        if path.suffix == ".json":
            return None  # json.loads is fast enough to read them whole
        try:
            return scan_endpoint_id(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # the parse will report it

    def _load(self, path: Path) -> ServedEndpoint | None:
        """Parse one spec (once) into its endpoint, filed among its id's candidates; None (reported) if broken."""
        if path in self._loaded:
            return self._loaded[path]
        endpoint: ServedEndpoint | None = None
        try:
            document = _parsed(path, self._loader)
            if not isinstance(document, dict):
                raise SpecLoadError(f"{path}: not a YAML mapping")
            endpoint = endpoint_from_document(document, str(path))
        except (OSError, ValueError, yaml.YAMLError, SpecLoadError, KeyError) as exc:
            print(f"fal_runtime.local: skipping {path}: {exc}", file=sys.stderr)
        self._loaded[path] = endpoint
        if endpoint is not None:
            paths = self._candidates.setdefault(endpoint.id, [])
            if path not in paths:
                bisect.insort(paths, path)
        return endpoint

    def _resolve(self, endpoint_id: str) -> ServedEndpoint | None:
        """The endpoint of the last candidate spec that parses to `endpoint_id`; the others are dropped from it."""
        with self._lock:
            paths = self._candidates.get(endpoint_id)
            while paths:
                endpoint = self._load(paths[-1])
                if endpoint is not None and endpoint.id == endpoint_id:
                    return endpoint
                paths.pop()  # broken, or filed under its real id by `_load`
            return None

    def _everything(self) -> dict[str, ServedEndpoint]:
        with self._lock:
            if self._all is None:
                for path in self._files:
                    self._load(path)
                found = {key: self._resolve(key) for key in sorted(self._candidates)}
                self._all = {key: endpoint for key, endpoint in found.items() if endpoint is not None}
            return self._all

    @property
    def spec_count(self) -> int:
        """How many spec files were found (without parsing them: `len()` counts the servable ones)."""
        return len(self._files)

    def __getitem__(self, endpoint_id: str) -> ServedEndpoint:
        endpoint = self._resolve(endpoint_id)
        if endpoint is None:
            raise KeyError(endpoint_id)
        return endpoint

    def __iter__(self) -> Iterator[str]:
        return iter(self._everything())

    def __len__(self) -> int:
        return len(self._everything())


def load_specs(specs_dir: Path) -> SpecIndex:
    """Every servable endpoint under `specs_dir` by id, each spec parsed on first use (see `SpecIndex`)."""
    return SpecIndex(specs_dir)
