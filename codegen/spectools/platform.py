"""fal's Platform API document (`https://api.fal.ai/v1`: model search, pricing, usage, request history, keys, ...) as
a spec: `specs/_platform/v1.yaml`, which `codegen.generation` turns into `generated.platform`.

fal publishes it as one OpenAPI 3.1 document whose schemas are all written inline. Normalizing makes it a spec like
the endpoint specs: each operation's request body and success answer become a named component (`GetUsageResponse`,
`EstimatePricingRequest`, named from the operation id), the one error shape every operation shares becomes `Error`,
the documentation site's own keys (`x-mint`) go, descriptions are cleaned, unknown schema keywords are dropped and
reported (as for every import), and the document gets one key order, so importing it again changes nothing.
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Any

from codegen.generation.naming import pascal
from codegen.problems import InvalidSpecError, Problem
from codegen.spectools.catalogue import Provenance

KIND = "platform-api"  # `info.x-fal-kind` of the Platform API's spec
SPEC_PATH = "_platform/v1.yaml"  # under specs/; `_` starts no endpoint id, so it names no endpoint
_METHODS = ("get", "put", "post", "delete", "patch")
_REF = "#/components/schemas/"


def is_platform_document(data: Any) -> bool:
    """fal's Platform API: served from `https://api.fal.ai/v1`, with its model-search and pricing routes."""
    if not isinstance(data, dict) or not isinstance(data.get("paths"), dict):
        return False
    servers = [s.get("url", "") for s in data.get("servers") or [] if isinstance(s, dict)]
    return any(str(u).rstrip("/").endswith("api.fal.ai/v1") for u in servers) and "/models/pricing" in data["paths"]


def normalize_platform(
    doc: dict[str, Any], origin: str, provenance: Provenance
) -> tuple[dict[str, Any], list[Problem]]:
    """The spec made from fal's document, and what was repaired on the way."""
    from codegen.spectools import importer

    doc = copy.deepcopy(doc)
    repairs: list[Problem] = []
    schemas: dict[str, Any] = {}
    errors: dict[str, str] = {}  # an error schema's JSON → its component name

    def hoist(schema: Any, name: str) -> Any:
        if not isinstance(schema, dict) or "$ref" in schema:
            return schema
        if name in schemas:
            raise InvalidSpecError([Problem(origin, "", f"two schemas would be named {name!r}")])
        schemas[name] = schema
        return {"$ref": _REF + name}

    operation_ids: set[str] = set()
    for path, item in (doc.get("paths") or {}).items():
        for method in [m for m in _METHODS if isinstance(item.get(m), dict)]:
            op = item[method]
            op_id = op.get("operationId")
            if not isinstance(op_id, str) or not op_id or op_id in operation_ids:
                where = f"/paths/{path.replace('~', '~0').replace('/', '~1')}/{method}/operationId"
                raise InvalidSpecError([Problem(origin, where, f"operationId missing or repeated: {op_id!r}")])
            operation_ids.add(op_id)
            op.pop("x-mint", None)
            if isinstance(op.get("description"), str):
                op["description"] = inspect.cleandoc(op["description"])
            name = pascal(op_id)
            for content_type, media in ((op.get("requestBody") or {}).get("content") or {}).items():
                suffix = "Request" if content_type == "application/json" else "Form"
                media["schema"] = hoist(media.get("schema"), name + suffix)
            successes = [code for code in op.get("responses") or {} if str(code).startswith("2")]
            for code, response in (op.get("responses") or {}).items():
                for content_type, media in (response.get("content") or {}).items():
                    schema = media.get("schema")
                    if content_type != "application/json" or not isinstance(schema, dict):
                        continue
                    if str(code).startswith("2"):
                        media["schema"] = hoist(schema, name + "Response" + ("" if len(successes) == 1 else code))
                    else:
                        shape = json.dumps(schema, sort_keys=True)
                        if shape not in errors:
                            errors[shape] = "Error" if not errors else f"Error{len(errors) + 1}"
                            schemas[errors[shape]] = schema
                        media["schema"] = {"$ref": _REF + errors[shape]}
    doc.pop("webhooks", None)
    components = doc.setdefault("components", {})
    if not components.get("parameters"):
        components.pop("parameters", None)
    for name in sorted(schemas):
        _hoist_nested(schemas, name, schemas[name], _owner(name))
    components["schemas"] = schemas  # what a `$ref` of a repair below resolves against
    components["schemas"] = {
        n: importer._repair(s, ["components", "schemas", n], doc, origin, repairs) for n, s in sorted(schemas.items())
    }
    _drop_unknown_in_parameters(doc, origin, repairs)
    info = doc.setdefault("info", {})
    info["x-fal-kind"] = KIND
    info["x-fal-sources"] = {provenance.key: provenance.entry()}
    return importer.canonical(doc), repairs


def _owner(name: str) -> str:
    """What a component's nested models are named after: `GetUsageResponse` → `GetUsage`."""
    for suffix in ("Response", "Request", "Form"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _hoist_nested(schemas: dict[str, Any], name: str, schema: Any, owner: str) -> None:
    """Each object written inline as a field (or as a list field's items) becomes a component of its own, named by the
    rule the endpoint modules' classes follow: its title when free, else its holder and field, singular for a list's
    items (`GetUsageTimeSeries` for the items of `GetUsageResponse.time_series`). An inline object of the same shape
    as one already named takes that name. Named here, in the spec, the classes keep their names whatever the model
    generator would have made of them (`TimeSery1`)."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return
    for field, sub in properties.items():
        if not isinstance(sub, dict):
            continue
        target, item = (sub.get("items"), True) if sub.get("type") == "array" else (sub, False)
        if not isinstance(target, dict) or not _inline_object(target):
            continue
        shape = json.dumps(target, sort_keys=True)
        title = target.get("title") if isinstance(target.get("title"), str) else ""
        wanted = [pascal(title)] if title else []
        wanted.append(f"{owner}{pascal(_singular(field) if item else field)}")
        candidate = next((c for c in wanted if c not in schemas or json.dumps(schemas[c], sort_keys=True) == shape),
                         wanted[-1])  # fmt: skip
        base, n = candidate, 2
        while candidate in schemas and json.dumps(schemas[candidate], sort_keys=True) != shape:
            candidate, n = f"{base}{n}", n + 1
        schemas[candidate] = target
        ref = {"$ref": _REF + candidate}
        if item:
            sub["items"] = ref
        else:
            kept = {k: v for k, v in sub.items() if k in ("description", "default", "deprecated")}
            properties[field] = {**ref, **kept} if kept else ref
        _hoist_nested(schemas, candidate, target, candidate)


def _singular(field: str) -> str:
    """A list field's item, named: `results` → `result`, `entries` → `entry`, `time_series` stays, `children` →
    `children_item`."""
    if field.endswith("series") or field.endswith("ss"):
        return field if field.endswith("series") else f"{field}_item"
    if field.endswith("ies"):
        return field[:-3] + "y"
    if field.endswith("s") and len(field) > 3:
        return field[:-1]
    return f"{field}_item"


def _inline_object(schema: Any) -> bool:
    return (
        isinstance(schema, dict)
        and "$ref" not in schema
        and isinstance(schema.get("properties"), dict)
        and bool(schema["properties"])
    )


def _drop_unknown_in_parameters(doc: dict[str, Any], origin: str, repairs: list[Problem]) -> None:
    """Parameter schemas hold what any schema may (the loader checks them too)."""
    from codegen.spectools import importer

    for path, item in (doc.get("paths") or {}).items():
        for method in [m for m in _METHODS if isinstance(item.get(m), dict)]:
            for i, parameter in enumerate(item[method].get("parameters") or []):
                if isinstance(parameter, dict) and isinstance(parameter.get("schema"), dict):
                    where = ["paths", path, method, "parameters", i, "schema"]
                    parameter["schema"] = importer._repair(parameter["schema"], where, doc, origin, repairs)


def provenance_of(path: Path) -> Provenance:
    from codegen.spectools.catalogue import manifest_entry

    about = manifest_entry(path)
    return Provenance("fal-platform-openapi", about.get("from", f"fal's Platform API document, read from {path.name}"),
                      about.get("date", ""))  # fmt: skip
