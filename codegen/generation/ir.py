"""Stage 2: the intermediate model — what the generator knows about one endpoint, free of OpenAPI plumbing.

Built from a validated document by following the queue paths' `$ref`s (never by schema name), with schemas
pruned to what the input and output reach, renamed to readable class names, and normalized for code generation.
"""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass, fields, replace
from typing import Any, TypeGuard

from codegen.generation import keywords, naming
from codegen.generation.loader import SpecDocument, resolve_pointer
from codegen.problems import Problem, pointer
from fal_runtime import inputs, queue_document

_ENDPOINT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)+$")
_SCHEMA_REF = "#/components/schemas/"
_FILE_UI_FIELDS = frozenset({"image", "file", "video", "audio", "image_url", "video_url", "audio_url"})


# fal's longest id today has 62 characters and its longest segment 36; a segment becomes a file name (at most 255
# bytes on most file systems) and a module name.
MAX_ID_LENGTH = 200
MAX_SEGMENT_LENGTH = 100


def is_endpoint_id(value: object) -> TypeGuard[str]:
    """`owner/alias[/path...]`, no `.` or `..` segment, no segment longer than MAX_SEGMENT_LENGTH: an id names a file
    under specs/ and a module path."""
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or not _ENDPOINT_ID.match(value):
        return False
    segments = value.split("/")
    return not {".", ".."} & set(segments) and max(map(len, segments)) <= MAX_SEGMENT_LENGTH


@dataclass(frozen=True)
class EndpointIR:
    endpoint_id: str
    spec_file: str  # as shown in the generated header: the spec's path relative to the specs root
    module_parts: tuple[str, ...]  # `fal-ai/flux/dev` → ("fal_ai", "flux", "dev")
    description: str
    schemas: dict[str, dict[str, Any]]  # class name → normalized JSON schema; "Input" and "Output" always present
    # Fields that take a file (URL strings or lists of them), by class: the Input's own, and those of models only the
    # input uses (`ControlNet.control_image_url`), so a local file is accepted at any depth. Wire names.
    file_inputs: dict[str, tuple[str, ...]]
    file_models: tuple[str, ...]  # classes describing a downloadable file (a required `url` and file metadata)
    streams: bool
    category: str = ""  # fal's category (`text-to-image`), from x-fal-metadata
    display_name: str = ""  # fal's display name (`FLUX.1 [dev]`), where fal gave one
    deprecated: bool = False  # the submit operation is marked `deprecated: true`
    # fal's realtime apps are published under an id ending in `/realtime` (`fal-ai/flux-2/klein/realtime`); fal's
    # documents have no other mark of a WebSocket endpoint.
    realtime: bool = False
    types_only: bool = False  # the schemas come from fal's TypeScript types alone (`info.x-fal-types-only`)
    # What fal's gallery says of it, where it says anything (`info.x-fal-metadata`).
    tags: tuple[str, ...] = ()
    kind: str = ""  # "inference" or "training"
    group: str = ""  # the family fal shows it in, with its label in that family (`flux-1: Text to Image [schnell]`)
    date: str = ""  # the day fal published it
    license: str = ""  # "commercial", "research", ...
    source: str = ""  # the newest of `info.x-fal-sources`: its key
    source_date: str = ""  # and its date

    @property
    def module(self) -> str:
        return ".".join(self.module_parts)


def endpoint_fields(endpoint: EndpointIR) -> dict[str, Any]:
    """The endpoint's fields as they are, for JSON (which writes tuples as lists): `dataclasses.asdict` deep-copies
    every schema, which was most of a no-op run at 1,000 specs."""
    return {f.name: getattr(endpoint, f.name) for f in fields(endpoint)}


def endpoint_from_json(data: dict[str, Any]) -> EndpointIR:
    """An endpoint from `endpoint_fields` after a JSON round trip: its lists made tuples again."""
    tuples = {
        "module_parts": tuple(data["module_parts"]),
        "file_models": tuple(data["file_models"]),
        "file_inputs": {cls: tuple(names) for cls, names in data["file_inputs"].items()},
        "tags": tuple(data.get("tags", ())),
    }
    return EndpointIR(**{**data, **tuples})


def _schema_ref(spec: SpecDocument, path: list[str | int], what: str, problems: list[Problem]) -> str | None:
    node = resolve_pointer(spec.doc, pointer(path))
    if not isinstance(node, dict) or not isinstance(node.get("$ref"), str):
        problems.append(
            Problem(spec.rel, pointer(path), f"no {what} schema: expected a $ref to #/components/schemas/...")
        )
        return None
    ref: str = node["$ref"]
    if not ref.startswith(_SCHEMA_REF) or resolve_pointer(spec.doc, ref[1:]) is None:
        problems.append(
            Problem(
                spec.rel,
                pointer([*path, "$ref"]),
                f"{what} $ref {ref!r} does not name a schema under #/components/schemas",
            )
        )
        return None
    return ref[len(_SCHEMA_REF) :].replace("~1", "/").replace("~0", "~")


def reachable(schemas: dict[str, Any], roots: list[str]) -> list[str]:
    """The component schemas `roots` reach through `$ref`s, sorted."""
    seen: list[str] = []
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in schemas:
            continue
        seen.append(name)
        stack.extend(schema_refs(schemas[name]))
    return sorted(seen)


def holders(schemas: dict[str, Any], roots: list[str]) -> dict[str, naming.Holder]:
    """Where each schema is first reached from `roots`, breadth first, each model's fields in display order: the
    field that holds it names a class whose title another took (`naming.class_names`)."""
    found: dict[str, naming.Holder] = {}
    queue, seen = list(roots), set(roots)
    while queue:
        name = queue.pop(0)
        schema = schemas.get(name)
        if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
            continue
        for field_name, field in _ordered(schema["properties"], schema.get("x-fal-order-properties")).items():
            for ref, item in _field_refs(field):
                if ref in found and not found[ref].shared:
                    found[ref] = replace(found[ref], shared=True)
                if ref not in seen and ref in schemas:
                    seen.add(ref)
                    found[ref] = naming.Holder(name, field_name, item, len(found))
                    queue.append(ref)
    return found


def _field_refs(field: Any, item: bool = False) -> list[tuple[str, bool]]:
    """The schemas a field refers to itself or through its items and alternatives, and whether as items."""
    if not isinstance(field, dict):
        return []
    ref = field.get("$ref")
    found = [(ref[len(_SCHEMA_REF) :], item)] if isinstance(ref, str) and ref.startswith(_SCHEMA_REF) else []
    for key in ("anyOf", "oneOf", "allOf"):
        for alternative in field.get(key) or []:
            found += _field_refs(alternative, item)
    return found + _field_refs(field.get("items"), True)


def schema_refs(node: Any) -> list[str]:
    """Names of the component schemas `node` refers to directly (not inside examples or defaults)."""
    found: list[str] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
            found.append(ref[len(_SCHEMA_REF) :])
        for key, value in node.items():
            if key not in ("examples", "example", "default", "enum", "const"):
                found.extend(schema_refs(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(schema_refs(value))
    return found


def normalize_schema(schema: Any, renames: dict[str, str]) -> Any:
    """A schema as model generation gets it (see `_normalize`), its refs to component `X` made refs to `renames[X]`."""
    return _normalize(schema, renames)


def _normalize(node: Any, renames: dict[str, str], *, in_names: bool = False) -> Any:
    """Rewrite refs to renamed classes, order properties for display, clean descriptions, and keep only the keywords
    model generation reads (`keywords.GENERATED`) and the file-input markers: `x-` keys, examples and fal's playground
    annotations stay in the spec, and a keyword of datamodel-code-generator's own never reaches it."""
    if isinstance(node, list):
        return [_normalize(v, renames) for v in node]
    if not isinstance(node, dict):
        return node
    if in_names:  # a `properties` map: keys are field names, values are schemas
        return {k: _normalize(v, renames) for k, v in node.items()}
    node = _merge_nullable(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in keywords.GENERATED and key not in keywords.FILE_MARKERS:
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith(_SCHEMA_REF):
            out[key] = _SCHEMA_REF + renames[value[len(_SCHEMA_REF) :]]
        elif key == "description" and isinstance(value, str):
            out[key] = inspect.cleandoc(value)
        elif key in ("default", "enum", "const") or key in keywords.FILE_MARKERS:
            out[key] = copy.deepcopy(value)
        elif key in ("properties", "patternProperties", "$defs"):
            out[key] = _normalize(_ordered(value, node.get("x-fal-order-properties")), renames, in_names=True)
        else:
            out[key] = _normalize(value, renames)
    return out


def _merge_nullable(node: dict[str, Any]) -> dict[str, Any]:
    """fal writes an optional constrained field as `anyOf: [{type: T, <bounds>}, {type: "null"}]`; as
    `type: [T, "null"]` with the bounds beside it, it means the same and becomes `T | None` with the bounds enforced,
    instead of a one-off RootModel class per field."""
    alts = node.get("anyOf")
    if not (isinstance(alts, list) and len(alts) == 2 and {"type": "null"} in alts):
        return node
    other = alts[0] if alts[1] == {"type": "null"} else alts[1]
    if (
        not isinstance(other, dict)
        or not isinstance(other.get("type"), str)
        or "$ref" in other
        or other["type"] == "null"
    ):
        return node
    if other["type"] in ("object", "array") or any(k in node for k in other if k != "type"):
        return node
    merged = {k: v for k, v in node.items() if k != "anyOf"}
    merged.update(other)
    merged["type"] = [other["type"], "null"]
    if "const" in merged:  # `enum`/`const` beside `type` restrict null away too: null must be one of the values
        merged["enum"] = [merged.pop("const")]
    if isinstance(merged.get("enum"), list) and None not in merged["enum"]:
        merged["enum"] = [*merged["enum"], None]
    return merged


def _ordered(props: Any, order: Any) -> Any:
    if not isinstance(props, dict) or not isinstance(order, list):
        return props
    first = [k for k in order if isinstance(k, str) and k in props]  # a malformed order names nothing
    return {k: props[k] for k in first + [k for k in props if k not in first]}


def _unwrap(schema: Any, schemas: dict[str, Any], seen: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The alternatives a field schema allows, with refs and single-element allOf resolved. A reference back to a
    schema being unwrapped (`U: anyOf [$ref U, string]`) adds nothing: it allows what its other alternatives allow."""
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema and isinstance(schema["$ref"], str) and schema["$ref"].startswith(_SCHEMA_REF):
        name = schema["$ref"][len(_SCHEMA_REF) :]
        return [] if name in seen else _unwrap(schemas.get(name), schemas, seen | {name})
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list):
            return [alt for sub in schema[key] for alt in _unwrap(sub, schemas, seen)]
    return [schema]


_FILE_METADATA = frozenset({"content_type", "file_name", "file_size"})


def _is_file_model(name: str, schema: dict[str, Any]) -> bool:
    """fal's File / Image / ImageFile / VideoFile shapes: a required string `url` beside file metadata."""
    props = schema.get("properties") or {}
    url = props.get("url") if isinstance(props, dict) else None
    return (
        name not in ("Input", "Output")
        and isinstance(url, dict)
        and _types(url) == {"string"}
        and "url" in (schema.get("required") or [])
        and bool(_FILE_METADATA & set(props))
    )


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()


def _is_file_input(name: str, schema: dict[str, Any], schemas: dict[str, Any]) -> bool:
    ui = schema.get("ui")
    marked = (isinstance(ui, dict) and ui.get("field") in _FILE_UI_FIELDS) or schema.get(
        "_fal_ui_field"
    ) in _FILE_UI_FIELDS
    if not (marked or name.endswith(("_url", "_urls"))):
        return False
    kinds = {t for alt in _unwrap(schema, schemas) for t in _types(alt)} - {"null"}
    if kinds == {"string"}:
        return True
    if kinds == {"array"}:
        items = [
            i for alt in _unwrap(schema, schemas) if "array" in _types(alt) for i in _unwrap(alt.get("items"), schemas)
        ]
        return bool(items) and all(_types(i) - {"null"} == {"string"} for i in items)
    return False


def _file_inputs(schemas: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """File-input fields of the Input and of the models only the input reaches (a model the output shares keeps
    plain URL strings: an output never holds a local file)."""
    shared = set(reachable(schemas, ["Output"])) - {"Input"}
    found: dict[str, tuple[str, ...]] = {}
    for name in ["Input", *(n for n in reachable(schemas, ["Input"]) if n != "Input" and n not in shared)]:
        props = schemas[name].get("properties")
        fields = (
            tuple(k for k, v in props.items() if isinstance(v, dict) and _is_file_input(k, v, schemas))
            if isinstance(props, dict)
            else ()
        )
        if fields:
            found[name] = fields
    return found


def _with_presets(
    schemas: dict[str, Any], file_inputs: dict[str, tuple[str, ...]], originals: dict[str, Any]
) -> dict[str, Any]:
    """File fields whose examples in the spec name presets rather than URLs (flux-general's `control_method_url`:
    `canny`, `depth`, ...) take those names too: the field becomes a string or one of them, so the generated type is
    `FileInput | Literal[...]` and the runtime, which refuses a string that is not a URL, lets a preset through."""
    for cls, names in file_inputs.items():
        for field in names:
            named = inputs.presets((originals[cls].get("properties") or {}).get(field, {}).get("examples"))
            prop = schemas[cls]["properties"][field]
            kinds = _types(prop)
            if not named or "$ref" in prop or not kinds or kinds - {"string", "null"}:
                continue
            rest = {k: v for k, v in prop.items() if k != "type"}
            alternatives = [{"type": "string"}, {"type": "string", "enum": named}]
            schemas[cls] = copy.deepcopy(schemas[cls])
            schemas[cls]["properties"][field] = {
                **rest,
                "anyOf": alternatives + ([{"type": "null"}] if "null" in kinds else []),
            }
    return schemas


def build(spec: SpecDocument, spec_file: str, problems: list[Problem]) -> EndpointIR | None:
    """The intermediate model of one validated document, or None (with problems recorded)."""
    doc = spec.doc
    info: dict[str, Any] = doc["info"] if isinstance(doc.get("info"), dict) else {}
    meta: dict[str, Any] = info["x-fal-metadata"] if isinstance(info.get("x-fal-metadata"), dict) else {}
    endpoint_id = meta.get("endpointId")
    id_ptr = "/info/x-fal-metadata/endpointId"
    if not isinstance(endpoint_id, str) or not is_endpoint_id(endpoint_id):
        problems.append(
            Problem(
                spec.rel, id_ptr, f"missing or malformed endpoint id {endpoint_id!r}: expected 'owner/alias[/path...]'"
            )
        )
        return None
    stem = spec_file.rsplit(".", 1)[0]
    if stem != endpoint_id:
        problems.append(
            Problem(
                spec.rel, id_ptr, f"endpoint id {endpoint_id!r} does not match the file's place in specs/ ({stem!r})"
            )
        )
        return None

    in_name = _schema_ref(spec, queue_document.input_schema_path(endpoint_id), "input", problems)
    out_name = _schema_ref(spec, queue_document.output_schema_path(endpoint_id), "output", problems)
    if in_name is None or out_name is None:
        return None
    components: dict[str, Any] = doc["components"]["schemas"]
    if components[in_name].get("type") != "object":
        problems.append(
            Problem(
                spec.rel, pointer(["components", "schemas", in_name, "type"]), "the input schema must be `type: object`"
            )
        )
        return None

    names = reachable(components, [in_name, out_name])
    fixed = {in_name: "Input"} if in_name == out_name else {in_name: "Input", out_name: "Output"}
    streams = isinstance(resolve_pointer(doc, pointer(queue_document.stream_operation_path(endpoint_id))), dict)
    titles = {n: components[n]["title"] for n in names if isinstance(components[n].get("title"), str)}
    reserved = frozenset({naming.STREAM_EVENT}) if streams else frozenset()
    renames = naming.class_names(names, fixed, reserved, titles, holders(components, [in_name, out_name]))
    schemas = {renames[n]: _normalize(components[n], renames) for n in names}
    if in_name == out_name:
        schemas["Output"] = {"$ref": _SCHEMA_REF + "Input"}

    file_inputs = _file_inputs(schemas)
    schemas = _with_presets(schemas, file_inputs, {renames[n]: components[n] for n in names})
    file_models = tuple(name for name, schema in sorted(schemas.items()) if _is_file_model(name, schema))
    return EndpointIR(
        endpoint_id=endpoint_id,
        spec_file=spec_file,
        module_parts=naming.module_parts(endpoint_id),
        description=inspect.cleandoc(str(info.get("description") or "")),
        schemas=schemas,
        file_inputs=file_inputs,
        file_models=file_models,
        streams=streams,
        category=_text(meta.get("category")),
        display_name=_text(meta.get("displayName")),
        deprecated=resolve_pointer(doc, pointer(["paths", f"/{endpoint_id}", "post", "deprecated"])) is True,
        realtime=endpoint_id.endswith("/realtime"),
        types_only=info.get("x-fal-types-only") is True,
        tags=tuple(t for t in meta.get("tags") or () if isinstance(t, str))
        if isinstance(meta.get("tags"), list)
        else (),
        kind=_text(meta.get("kind")),
        group=_group(meta.get("group")),
        date=_text(meta.get("date")),
        license=_text(meta.get("licenseType")),
        **_newest_source(info.get("x-fal-sources")),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _group(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    return ": ".join(v for v in (_text(value.get("key")), _text(value.get("label"))) if v)


def _newest_source(sources: Any) -> dict[str, str]:
    """The key and date of the newest entry of `info.x-fal-sources` (ties: the first by key)."""
    if not isinstance(sources, dict) or not sources:
        return {}
    dated = sorted(((_text(v.get("date")) if isinstance(v, dict) else "", k) for k, v in sources.items()),
                   key=lambda d: (-_day_number(d[0]), d[1]))  # fmt: skip
    date, key = dated[0]
    return {"source": str(key), "source_date": date}


def _day_number(date: str) -> int:
    """`2026-08-02` → 20260802; `2026-08` (a month) → 20260800, before every day of it."""
    digits = date.replace("-", "")
    return int((digits + "0000")[:8]) if digits.isdigit() else 0
