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
    """Each object written inline becomes a component of its own, named by the rule the endpoint modules' classes
    follow, so the classes keep their names whatever the model generator would have made of them (`TimeSery1`):

    - a field's object (or a list field's items, singular; or a map field's values, singular): its title when free,
      else its holder and field (`GetUsageTimeSeries` for the items of `GetUsageResponse.time_series`), else the
      holder's full name and the field (`UpdateStorageSettingsResponseInitialAcl`, the request's having taken
      `UpdateStorageSettingsInitialAcl`);
    - a union's object branches (a field's, or the component's own): that name plus what tells each branch apart
      (`_branch_tags`: `EstimatePricingRequestUnitPrice` for `estimate_type: unit_price`).

    An inline object of the same shape as one already named takes that name; a counter is the last resort."""
    if not isinstance(schema, dict):
        return
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            _hoist_branches(schemas, schema[key], [name], "")
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return
    for field, sub in properties.items():
        if not isinstance(sub, dict):
            continue
        if sub.get("type") == "array":
            target, role = sub.get("items"), "items"
        elif _inline_object(sub.get("additionalProperties")) and not sub.get("properties"):
            target, role = sub["additionalProperties"], "values"
        else:
            target, role = sub, "field"
        if not isinstance(target, dict):
            continue
        held = pascal(field if role == "field" else _singular(field))
        wanted = list(dict.fromkeys([f"{owner}{held}", f"{name}{held}"]))
        if _inline_object(target):
            title = target.get("title") if isinstance(target.get("title"), str) else ""
            candidate = _claim(schemas, target, [pascal(title), *wanted] if title else wanted)
            ref = {"$ref": _REF + candidate}
            if role == "items":
                sub["items"] = ref
            elif role == "values":
                sub["additionalProperties"] = ref
            else:
                kept = {k: v for k, v in sub.items() if k in ("description", "default", "deprecated")}
                properties[field] = {**ref, **kept} if kept else ref
            _hoist_nested(schemas, candidate, target, candidate)
        for key in ("anyOf", "oneOf"):
            if isinstance(target.get(key), list):
                _hoist_branches(schemas, target[key], wanted, field)


def _hoist_branches(schemas: dict[str, Any], branches: list[Any], wanted: list[str], field: str) -> None:
    """A union's inline object branches as components: the union's name (the first of `wanted` free for them all)
    plus each branch's tag."""
    objects = [i for i, b in enumerate(branches) if _inline_object(b)]
    if not objects:
        return
    tags = _branch_tags([branches[i] for i in objects], field)
    for i, tag in zip(objects, tags, strict=True):
        branch = branches[i]
        candidate = _claim(schemas, branch, [f"{base}{tag}" for base in wanted])
        branches[i] = {"$ref": _REF + candidate}
        _hoist_nested(schemas, candidate, branch, candidate)


def _branch_tags(branches: list[dict[str, Any]], field: str) -> list[str]:
    """What tells a union's object branches apart, as a name's suffix: nothing for a lone object; else the value of
    the first property every branch fixes to one distinct value (`kind: "asset"` → `Asset`); else each branch's
    title, or the first property only it requires (none when that is the field's own name: `openapi` / `error` of
    `openapi` → ``, `Error`); else its position."""
    if len(branches) == 1:
        return [""]
    fixed = [
        {p: _single_value(s) for p, s in b["properties"].items() if _single_value(s) is not None} for b in branches
    ]
    for prop in fixed[0]:
        values = [f.get(prop) for f in fixed]
        if all(v is not None for v in values) and len(set(map(str, values))) == len(values):
            return [pascal(str(v)) for v in values]
    required = [[r for r in b.get("required") or [] if isinstance(r, str)] for b in branches]
    tags = []
    for i, branch in enumerate(branches):
        others = {r for j, names in enumerate(required) if j != i for r in names}
        own = next((r for r in required[i] if r not in others), None)
        title = branch.get("title") if isinstance(branch.get("title"), str) else ""
        tags.append(pascal(title) if title else "" if own == field else pascal(own) if own else str(i + 1))
    return tags if len(set(tags)) == len(tags) else [str(i + 1) for i in range(len(branches))]


def _single_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    return enum[0] if isinstance(enum, list) and len(enum) == 1 else None


def _claim(schemas: dict[str, Any], schema: dict[str, Any], wanted: list[str]) -> str:
    """The first wanted name that is free or holds this very shape, else the last one with a counter; claimed."""
    shape = json.dumps(schema, sort_keys=True)
    candidate = next((c for c in wanted if c not in schemas or json.dumps(schemas[c], sort_keys=True) == shape),
                     wanted[-1])  # fmt: skip
    base, n = candidate, 2
    while candidate in schemas and json.dumps(schemas[candidate], sort_keys=True) != shape:
        candidate, n = f"{base}{n}", n + 1
    schemas[candidate] = schema
    return candidate


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
