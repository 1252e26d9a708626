"""Stage 2 for fal's Platform API spec (`specs/_platform/v1.yaml`, `info.x-fal-kind: platform-api`): the intermediate
model of a REST API, as `ir` is of one queue endpoint.

An `ApiIR` holds the API's operations, each with its typed parameters (path, query and header: `Idempotency-Key` is
fal's, sent by the runtime, not a caller's argument), its JSON body and answer as component classes, and whether it
pages by cursor; and the component schemas, normalized as an endpoint's are (`ir.normalize_schema`), grouped by the
module that holds them: one module per tag fal gives its operations (`models`, `keys`, `assets`, ...), each with only
the models its operations reach, so importing one costs what it holds.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from codegen.generation import ir, naming
from codegen.generation.loader import SpecDocument
from codegen.problems import Problem, pointer

KIND = "platform-api"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_METHODS = ("get", "put", "post", "delete", "patch")
_REF = "#/components/schemas/"
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass(frozen=True)
class ParamIR:
    """One path, query or header parameter of an operation."""

    wire: str  # its name on the wire (`endpoint_id`, `Idempotency-Key`)
    location: str  # "path", "query" or "header"
    required: bool
    schema: dict[str, Any]  # normalized JSON Schema
    description: str = ""


@dataclass(frozen=True)
class OperationIR:
    operation_id: str  # fal's (`getUsage`)
    name: str  # the function's (`get_usage`)
    method: str  # "GET", "POST", ...
    path: str  # `/models/requests/{request_id}/payloads`
    summary: str
    description: str
    params: tuple[ParamIR, ...]  # path, then query, then header; without Idempotency-Key
    body: str | None  # the body's class, or None
    body_required: bool
    answer: str | None  # the JSON answer's class; None when the answer is not JSON (or empty)
    answer_type: str  # its content type ("application/json", "text/csv", ...; "" for an empty answer)
    idempotency_key: bool  # fal accepts an `Idempotency-Key` header: the runtime sends one, so retries are safe
    pages: bool  # takes a `cursor` and answers `next_cursor` / `has_more`
    items: str = ""  # the answer's one list field, which `iter_...` yields item by item ("" → it yields pages)
    admin: bool = False  # fal asks for an admin key
    public: bool = False  # fal asks for no key at all (`GET /meta`): the key goes along only when configured
    body_type: str = "application/json"  # or "multipart/form-data" (a file upload)

    @property
    def reads(self) -> bool:
        """A read that changes nothing: retried like a status call."""
        return self.method == "GET"


@dataclass(frozen=True)
class ModuleIR:
    name: str  # `keys`: the module `generated.platform.keys`
    tag: str  # fal's tag (`Keys`)
    operations: tuple[OperationIR, ...]
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)  # class → normalized schema, what they reach


@dataclass(frozen=True)
class ApiIR:
    spec_file: str
    title: str
    base_url: str
    modules: tuple[ModuleIR, ...]


def api_to_json(api: ApiIR) -> dict[str, Any]:
    """The model as JSON, for the spec cache (`api_from_json` reads it back)."""
    return asdict(api)


def api_from_json(data: dict[str, Any]) -> ApiIR:
    modules = tuple(
        ModuleIR(m["name"], m["tag"], tuple(_operation_from_json(o) for o in m["operations"]), m["schemas"])
        for m in data["modules"]
    )
    return ApiIR(data["spec_file"], data["title"], data["base_url"], modules)


def _operation_from_json(data: dict[str, Any]) -> OperationIR:
    return OperationIR(**{**data, "params": tuple(ParamIR(**p) for p in data["params"])})


def is_api_spec(doc: dict[str, Any]) -> bool:
    info = doc.get("info")
    return isinstance(info, dict) and info.get("x-fal-kind") == KIND


def function_name(operation_id: str) -> str:
    """`getUsage` → `get_usage`, `listRequestsByEndpoint` → `list_requests_by_endpoint`."""
    return _CAMEL.sub("_", operation_id).lower()


def build(spec: SpecDocument, spec_file: str, problems: list[Problem]) -> ApiIR | None:
    """The intermediate model of a validated API spec, or None (with problems recorded)."""
    doc = spec.doc
    components: dict[str, Any] = (doc.get("components") or {}).get("schemas") or {}
    for name in components:  # the importer names them from operation ids: already class names
        if not name.isidentifier() or name in naming.RESERVED_CLASS_NAMES or name != naming.pascal(name):
            problems.append(Problem(spec.rel, pointer(["components", "schemas", name]), "not a class name"))
    if problems:
        return None
    renames = {name: name for name in components}
    by_tag: dict[str, list[OperationIR]] = {}
    seen: set[str] = set()
    for path, item in sorted((doc.get("paths") or {}).items()):
        for method in (m for m in _METHODS if isinstance(item.get(m), dict)):
            op = item[method]
            where = pointer(["paths", path, method])
            operation = _operation(
                path, method.upper(), op, components, renames, spec.rel, where, problems, bool(doc.get("security"))
            )
            if operation is None:
                continue
            if operation.name in seen or operation.name in naming.RESERVED_MODULE_NAMES:
                problems.append(Problem(spec.rel, f"{where}/operationId", f"function {operation.name!r} is taken"))
                continue
            seen.add(operation.name)
            tag = (op.get("tags") or ["Other"])[0]
            by_tag.setdefault(str(tag), []).append(operation)
    modules = []
    for tag in sorted(by_tag):
        operations = tuple(sorted(by_tag[tag], key=lambda o: o.name))
        roots = [c for o in operations for c in (o.body, o.answer) if c]
        schemas = {name: ir.normalize_schema(components[name], renames) for name in ir.reachable(components, roots)}
        modules.append(ModuleIR(naming.module_segment(tag), tag, operations, schemas))
    servers = doc.get("servers") or [{}]
    info = doc.get("info") or {}
    return ApiIR(spec_file, str(info.get("title") or ""), str(servers[0].get("url") or ""), tuple(modules))


def _operation(
    path: str,
    method: str,
    op: dict[str, Any],
    components: dict[str, Any],
    renames: dict[str, str],
    rel: str,
    where: str,
    problems: list[Problem],
    doc_security: bool = True,
) -> OperationIR | None:
    op_id = op.get("operationId")
    if not isinstance(op_id, str) or not op_id.isidentifier():
        problems.append(Problem(rel, f"{where}/operationId", f"operationId {op_id!r} is not an identifier"))
        return None
    params: list[ParamIR] = []
    idempotency = False
    for parameter in op.get("parameters") or []:
        if not isinstance(parameter, dict) or parameter.get("in") not in ("path", "query", "header"):
            continue
        if parameter["in"] == "header" and str(parameter.get("name")).lower() == IDEMPOTENCY_HEADER.lower():
            idempotency = True
            continue
        schema = ir.normalize_schema(parameter.get("schema") or {}, renames)
        params.append(ParamIR(str(parameter["name"]), parameter["in"], bool(parameter.get("required")), schema,
                              inspect.cleandoc(str(parameter.get("description") or ""))))  # fmt: skip
    order = {"path": 0, "query": 1, "header": 2}
    params.sort(key=lambda p: order[p.location])
    body, body_required, body_type = None, False, "application/json"
    content = (op.get("requestBody") or {}).get("content") or {}
    for media in ("application/json", "multipart/form-data"):
        if media in content:
            body, body_type = _class(content[media].get("schema"), renames), media
            body_required = bool((op.get("requestBody") or {}).get("required"))
            break
    answer, answer_type = None, ""
    for code, response in sorted((op.get("responses") or {}).items()):
        if str(code).startswith("2"):
            answers = (response or {}).get("content") or {}
            answer_type = next(iter(answers), "")
            if answer_type == "application/json":
                answer = _class(answers[answer_type].get("schema"), renames)
            break
    answer_schema = components.get(answer) if answer else None
    pages = any(p.wire == "cursor" for p in params) and _has(answer_schema, "next_cursor")
    lists = [k for k, v in ((answer_schema or {}).get("properties") or {}).items() if (v or {}).get("type") == "array"]
    admin = any("adminApiKey" in s for s in op.get("security") or [] if isinstance(s, dict))
    public = op.get("security") == [] or (op.get("security") is None and not doc_security)
    return OperationIR(
        op_id, function_name(op_id), method, path, str(op.get("summary") or ""),
        inspect.cleandoc(str(op.get("description") or "")), tuple(params), body, body_required, answer,
        answer_type, idempotency, pages, lists[0] if pages and len(lists) == 1 else "", admin, public, body_type,
    )  # fmt: skip


def _class(schema: Any, renames: dict[str, str]) -> str | None:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    return renames.get(ref[len(_REF) :]) if isinstance(ref, str) and ref.startswith(_REF) else None


def _has(schema: Any, name: str) -> bool:
    return isinstance(schema, dict) and name in (schema.get("properties") or {})
