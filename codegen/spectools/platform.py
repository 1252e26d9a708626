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
    components["schemas"] = {
        n: importer._repair(s, ["components", "schemas", n], doc, origin, repairs) for n, s in sorted(schemas.items())
    }
    _drop_unknown_in_parameters(doc, origin, repairs)
    info = doc.setdefault("info", {})
    info["x-fal-kind"] = KIND
    info["x-fal-sources"] = {provenance.key: provenance.entry()}
    return importer.canonical(doc), repairs


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
