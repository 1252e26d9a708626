"""Stage 3b for an API spec (fal's Platform API): one module per tag (`generated/platform/keys.py`, ...) and the
package that loads them lazily, rendered with the endpoint modules' template family, docstrings, imports and
formatting.

A module holds its models (`models.generate_api_models`: the operations' bodies and answers, and a `...Params` model
per operation for its path and query parameters), one `fal_runtime.ApiOperation` per operation (method, path, where
each parameter goes, the answer's class, whether fal takes an `Idempotency-Key`, how it pages), and for each
operation a function with typed keyword arguments and its `_async` twin, plus `iter_...` / `iter_..._async` for an
operation that pages by cursor. Each function validates its arguments into the models (bounds and enums enforced
before anything is sent) and hands them to the runtime, which sends, retries and parses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from codegen.generation import calldocs, naming
from codegen.generation.escape import docstring, pyrepr
from codegen.generation.imports import Imports
from codegen.generation.models import ApiModels, Param
from codegen.generation.operations import ApiIR, ModuleIR, OperationIR
from codegen.generation.render import environment, param_block, wrap_docstring

RESERVED_KWARGS = frozenset({"client", "body"})  # keywords every API function takes or may take itself
_VERBS = ("get_", "list_", "search_")
_LIST = re.compile(r"^list\[(.+)\]( \| None)?$")


def params_class(op: OperationIR) -> str:
    return f"{naming.pascal(op.operation_id)}Params"


def params_schema(op: OperationIR) -> dict[str, object]:
    """The JSON Schema of an operation's path and query parameters, as one model."""
    properties = {p.wire: {**p.schema, **({"description": p.description} if p.description else {})} for p in op.params}
    required = [p.wire for p in op.params if p.required]
    return {"type": "object", "properties": properties, **({"required": required} if required else {})}


def module_schemas(module: ModuleIR) -> tuple[dict[str, object], list[str]]:
    """Every schema a module's models are made from, and the classes whose fields become keyword arguments."""
    schemas: dict[str, object] = dict(module.schemas)
    keyword_classes = []
    for op in module.operations:
        schemas[params_class(op)] = params_schema(op)
        keyword_classes.append(params_class(op))
        if op.body and _object_body(module, op):
            keyword_classes.append(op.body)
    return schemas, sorted(set(keyword_classes))


def _object_body(module: ModuleIR, op: OperationIR) -> bool:
    body = module.schemas.get(op.body or "")
    return isinstance(body, dict) and isinstance(body.get("properties"), dict) and bool(body["properties"])


def iter_name(op: OperationIR) -> str:
    """`get_usage` → `iter_usage`, `list_api_keys` → `iter_api_keys`; other names keep their verb."""
    rest = next((op.name[len(v) :] for v in _VERBS if op.name.startswith(v)), op.name)
    return f"iter_{rest}"


@dataclass(frozen=True)
class _Function:
    name: str
    prefix: str
    params: str
    client: str
    returns: str
    doc: str
    call: str


def render_api_module(api: ApiIR, module: ModuleIR, models: ApiModels) -> tuple[str, tuple[str, ...]]:
    """The module's source, and the text in it black has formatted already (the models, the parameter blocks)."""
    constants = {op.name: f"_{op.name.upper()}" for op in module.operations}
    imports = Imports(taken={*models.classes, *models.aliases, *constants.values()})
    for name, wanted in sorted(models.imports.items()):
        imports.add(name, sorted(wanted))
    imports.add_module("fal_runtime")
    paged = [op for op in module.operations if op.pages]
    n = imports.add("collections.abc", ["Iterator", "AsyncIterator"]) if paged else {}
    any_ = imports.add("typing", ["Any"])["Any"]
    ops, functions, blocks = [], [], [models.source]
    for op in module.operations:
        answer = op.answer or ("bytes" if op.answer_type else "None")
        ops.append(
            {
                "constant": constants[op.name], "method": op.method, "path": op.path, "params": params_class(op),
                "answer": answer, "answer_class": op.answer or "None",
                "answer_type": op.answer_type if op.answer_type not in ("application/json", "") else "",
                "body": op.body or "", "idempotency_key": op.idempotency_key, "pages": op.pages, "item_field": op.items,
                "public": op.public, "name": op.name,
                "body_type": op.body_type if op.body and op.body_type != "application/json" else "",
                "locations": pyrepr({p.wire: p.location for p in op.params}),
            }
        )  # fmt: skip
        keywords = list(models.keywords[params_class(op)])
        body_keywords = list(models.keywords.get(op.body or "", ())) if op.body else []
        body_arg = ""
        if op.body and not body_keywords:  # a body that is not an object with fields: one argument
            required = op.body_required
            keywords.append(Param("body", "body", "body", op.body if required else f"{op.body} | None",
                                  None if required else "None", f"The request body, as `{op.body}`."))  # fmt: skip
            body_arg = ", body"
        elif op.body:
            body_arg = ", " + _construct(op.body, body_keywords)
        all_keywords = keywords + body_keywords
        arguments = [line for p in all_keywords for line in calldocs.api_argument_lines(p)]
        block = param_block(_lines(all_keywords))
        blocks.append(block)
        params_arg = _construct(params_class(op), models.keywords[params_class(op)])
        for prefix, suffix, client, await_ in (("", "", "fal_runtime.Client", ""),
                                               ("async ", "_async", "fal_runtime.AsyncClient", "await ")):  # fmt: skip
            doc = calldocs.api_docstring(op.summary or op.name, op.description, arguments, _returns_doc(op, answer),
                                         client.split(".")[-1], op.idempotency_key)  # fmt: skip
            call = f"{await_}{constants[op.name]}.call{suffix}({params_arg}{body_arg}, client=client)"
            functions.append(_Function(op.name + suffix, prefix, block, client, answer, doc, call))
        if op.pages:
            item = _item_class(models, op)
            page_keywords = [p for p in models.keywords[params_class(op)] if p.wire != "cursor"]
            page_block = param_block(_lines(page_keywords))
            blocks.append(page_block)
            page_arguments = [line for p in page_keywords for line in calldocs.api_argument_lines(p)]
            for suffix, client, iterator in (("", "fal_runtime.Client", "Iterator"),
                                             ("_async", "fal_runtime.AsyncClient", "AsyncIterator")):  # fmt: skip
                returns = f"{n[iterator]}[{item}]"
                what = f"each item of `{op.items}`" if op.items else "each page"
                doc = calldocs.api_docstring(
                    f"{op.summary or op.name}: {what}, page after page by cursor.", "", page_arguments,
                    f"An iterator over {what} (`{item}`), fetching each page as it is needed.", client.split(".")[-1],
                    False,
                )  # fmt: skip
                call = f"{constants[op.name]}.iterate{suffix}({_construct(params_class(op), page_keywords)}, client=client)"
                functions.append(_Function(iter_name(op) + suffix, "", page_block, client, returns, doc, call))
    exports = [*models.aliases, *models.classes, "OPERATIONS", *(f.name for f in functions)]
    source = (
        environment()
        .get_template("api_module.py.jinja")
        .render(
            spec_file=api.spec_file,
            summary=wrap_docstring(docstring(_module_summary(api, module))),
            imports=imports.render(),
            exports=exports,
            models=models.source,
            operations=ops,
            functions=functions,
            any=any_,
        )
    )
    return source, tuple(blocks)


def render_api_package(api: ApiIR, package: str) -> str:
    """The package's `__init__.py`: every function by name, each module imported only when one of its names is."""
    homes = sorted(
        (name, module.name)
        for module in api.modules
        for op in module.operations
        for name in (op.name, op.name + "_async", *((iter_name(op), iter_name(op) + "_async") if op.pages else ()))
    )
    by_module: dict[str, list[str]] = {}
    for name, module_name in homes:
        by_module.setdefault(module_name, []).append(name)
    summary = (
        f"fal's Platform API ({api.base_url}): {sum(len(m.operations) for m in api.modules)} operations as typed "
        f"functions, each with an `_async` twin (and `iter_...` for those that page by cursor), in one module per "
        f"area: {', '.join(f'`{package}.{m.name}`' for m in api.modules)}.\n\n"
        "Importing this package imports none of them; a function imports only its own module. Arguments are checked "
        "before anything is sent; requests go through the runtime's client (`FAL_API_HOST`, the key, retries of "
        "reads, the error tree), and writes fal accepts an `Idempotency-Key` for carry one."
    )
    return (
        environment()
        .get_template("api_package.py.jinja")
        .render(
            spec_file=api.spec_file,
            summary=wrap_docstring(docstring(summary)),
            imports=sorted(by_module.items()),
            exports=[name for name, _ in homes],
            homes=homes,
        )
    )


def _module_summary(api: ApiIR, module: ModuleIR) -> str:
    names = ", ".join(f"`{op.name}`" for op in module.operations)
    return f"fal's Platform API: {module.tag} ({api.base_url}).\n\nOperations: {names}."


def _construct(cls: str, keywords: Sequence[Param]) -> str:
    return f"{cls}({', '.join(f'{p.attr}={p.kwarg}' for p in keywords)})"


def _lines(keywords: Sequence[Param]) -> list[str]:
    lines = []
    for p in keywords:
        if p.default == "...":
            raise AssertionError(f"{p.kwarg}: a default that is not a literal cannot be a keyword's default")
        lines.append(f"    {p.kwarg}: {p.annotation}" + ("" if p.default is None else f" = {p.default}") + ",\n")
    return lines


def _item_class(models: ApiModels, op: OperationIR) -> str:
    if not op.items or not op.answer:
        return op.answer or "None"
    field = next(f for f in models.ir.model(op.answer).fields if f.wire == op.items)
    match = _LIST.match(field.annotation)
    if match is None:
        raise AssertionError(f"{op.answer}.{op.items} is not a list: {field.annotation}")
    return match.group(1)


def _returns_doc(op: OperationIR, answer: str) -> str:
    if op.answer:
        return f"fal's answer, validated as `{answer}`."
    if op.answer_type:
        return f"fal's answer as bytes ({op.answer_type})."
    return "None: fal answers with no content."
