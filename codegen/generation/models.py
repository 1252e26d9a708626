"""Stage 3a: pydantic v2 models for one endpoint, from datamodel-code-generator called in-process.

Calling `generate()` in-process costs ~20-40 ms a spec once warm, against ~0.55 s for one CLI process per spec.
It holds a process-wide lock, so calls stay on one thread per process.
"""

from __future__ import annotations

import ast
import copy
import itertools
import warnings
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from codegen.generation import keywords, naming, polish
from codegen.generation.escape import black_quoted
from codegen.generation.ir import EndpointIR

# Options chosen for fal's shapes: Literal for enums so callers pass plain strings (and defaults serialize without
# warnings); strict nullability so `int = 1` does not silently accept None; constraints enforced by pydantic.
DCG_OPTIONS: dict[str, Any] = {
    "disable_timestamp": True,
    "keep_model_order": True,
    "enum_field_as_literal": "all",
    "use_annotated": True,
    "field_constraints": True,
    "use_field_description": True,
    "use_single_line_docstring": True,
    "use_schema_description": True,
    "use_standard_collections": True,
    "use_union_operator": True,
    "use_double_quotes": True,
    "strict_nullable": True,
    "capitalise_enum_members": False,
    "base_class": "fal_runtime.models.FalModel",
    # A field named like a name the module imports (`Literal`, `Field`) gets an attribute with a trailing `_` and
    # its wire name as alias; left alone, datamodel-code-generator would rename the import instead.
    "aliases": {name: f"{name}_" for name in sorted(naming.RESERVED_CLASS_NAMES)},
}


FILE_INPUT_TYPE = "fal_runtime.inputs.FileInput"
FILE_MODEL_BASE = "fal_runtime.files.FalFile"


@dataclass(frozen=True)
class Param:
    """One input field as a keyword argument of the call functions."""

    kwarg: str  # the keyword argument name (the attribute name, renamed if it collides with a runtime option)
    attr: str  # the model's attribute name
    wire: str  # the field's name in fal's JSON (the alias, when the attribute had to be renamed)
    annotation: str  # Python source of the type, without `Annotated[...]` metadata
    default: str | None  # Python source of the default; None when the field is required; "..." when not a literal
    description: str = ""  # the field's description (plain text, as the spec gives it)
    bounds: tuple[str, ...] = ()  # its constraints as pydantic enforces them: `("ge=0.01", "le=1.0")`


@dataclass(frozen=True)
class Models:
    source: str  # the models' Python source (aliases and classes), without imports
    imports: dict[str, frozenset[str]]  # what `source` imports: module → names
    aliases: tuple[str, ...]  # the `Literal` aliases `source` defines, in order
    classes: tuple[str, ...]  # every class the models define, in order
    params: tuple[Param, ...]  # the Input model's fields, in order
    file_attrs: dict[str, tuple[str, ...]]  # the endpoint's file inputs by class, as attribute names


def _dcg_options() -> dict[str, Any]:
    from datamodel_code_generator.enums import DataModelType, InputFileType
    from datamodel_code_generator.format import Formatter, PythonVersion

    return dict(
        DCG_OPTIONS,
        input_file_type=InputFileType.OpenAPI,
        output_model_type=DataModelType.PydanticV2BaseModel,
        target_python_version=PythonVersion.PY_311,
        formatters=[Formatter.BUILTIN],
    )


def warm_up() -> None:
    """One tiny generation: the first call in a process pays for imports and building the parser's configuration."""
    from datamodel_code_generator import generate

    schemas = {"Input": {"type": "object", "properties": {"a": {"type": "string"}}}}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "m", "version": "0"},
        "paths": {},
        "components": {"schemas": schemas},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generate(document, **_dcg_options())


def generate_models(endpoint: EndpointIR, reserved_kwargs: frozenset[str]) -> Models:
    return _finish(endpoint, _datamodel_code(_schemas(endpoint)), reserved_kwargs)


def generate_models_batch(endpoints: Sequence[EndpointIR], reserved_kwargs: frozenset[str]) -> list[Models]:
    """`generate_models` for several endpoints in one datamodel-code-generator call: each endpoint's schemas become
    one module of a modular document (`m0.Input`, `m1.Input`), which it renders exactly as it would alone, at ~20 %
    less than one call each. A batch that fails is retried one endpoint at a time, so an error names its endpoint."""
    if len(endpoints) < 2:
        return [generate_models(e, reserved_kwargs) for e in endpoints]
    try:
        outputs = _datamodel_code_modular([_schemas(e) for e in endpoints])
    except Exception:
        return [generate_models(e, reserved_kwargs) for e in endpoints]
    return [_finish(e, out, reserved_kwargs) for e, out in zip(endpoints, outputs, strict=True)]


def _schemas(endpoint: EndpointIR) -> dict[str, Any]:
    """The component schemas datamodel-code-generator gets for an endpoint: file inputs marked, titles dropped,
    file models based on `FalFile`, and the stream's chunk model when it streams."""
    schemas = {name: polish.untitled(schema) for name, schema in _mark_file_inputs(endpoint).items()}
    for name in endpoint.file_models:  # downloadable files get save() / download()
        schemas[name] = {**schemas[name], "customBasePath": FILE_MODEL_BASE}
    if endpoint.streams:
        if STREAM_EVENT in schemas:
            raise AssertionError(f"{endpoint.endpoint_id} defines a class {STREAM_EVENT!r} of its own")
        schemas[STREAM_EVENT] = _stream_event(schemas["Output"])
    for name, schema in schemas.items():
        _only_own_keywords(schema, f"{endpoint.endpoint_id}: {name}")
    return schemas


# The keywords of datamodel-code-generator's own that the generator writes, with the only values it writes.
_OWN_KEYWORDS = {"customTypePath": (FILE_INPUT_TYPE,), "customBasePath": (FILE_MODEL_BASE,)}


def _only_own_keywords(node: Any, where: str) -> None:
    """Nothing but rendered JSON Schema keywords and the generator's own custom paths reaches datamodel-code-generator:
    a custom path names an import in the generated module, so one that came from a spec would be code it runs."""
    if isinstance(node, list):
        for item in node:
            _only_own_keywords(item, where)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in _OWN_KEYWORDS:
            if value not in _OWN_KEYWORDS[key]:
                raise AssertionError(f"{where}: {key} {value!r} is not the generator's own")
        elif key not in keywords.GENERATED:
            raise AssertionError(f"{where}: keyword {key!r} must not reach datamodel-code-generator")
        elif key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(value, dict):
            for sub in value.values():
                _only_own_keywords(sub, where)
        elif key not in ("default", "enum", "const", "required"):
            _only_own_keywords(value, where)


def _document(schemas: dict[str, Any]) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "models", "version": "0"}, "paths": {},
            "components": {"schemas": schemas}}  # fmt: skip


def _datamodel_code(schemas: dict[str, Any]) -> str:
    from datamodel_code_generator import generate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = generate(_document(schemas), **_dcg_options())
    if not isinstance(out, str):
        raise TypeError("datamodel-code-generator returned several modules for one endpoint")
    return out


_REF = "#/components/schemas/"


def _prefixed(node: Any, prefix: str) -> Any:
    """A schema with every local `$ref` pointing into module `prefix` of a modular document."""
    if isinstance(node, dict):
        return {
            k: f"{_REF}{prefix}{v[len(_REF) :]}" if k == "$ref" and isinstance(v, str) and v.startswith(_REF)
            else _prefixed(v, prefix)
            for k, v in node.items()
        }  # fmt: skip
    if isinstance(node, list):
        return [_prefixed(v, prefix) for v in node]
    return node


def _datamodel_code_modular(documents: Sequence[dict[str, Any]]) -> list[str]:
    from datamodel_code_generator import generate

    schemas: dict[str, Any] = {}
    for i, document in enumerate(documents):
        schemas.update((f"m{i}.{name}", _prefixed(schema, f"m{i}.")) for name, schema in document.items())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = generate(_document(schemas), **_dcg_options())
    if not isinstance(out, dict):
        raise TypeError("datamodel-code-generator returned one module for a modular document")
    return [out[(f"m{i}.py",)] for i in range(len(documents))]


def _finish(endpoint: EndpointIR, out: str, reserved_kwargs: frozenset[str]) -> Models:
    """datamodel-code-generator's module polished (`polish`), and what the call functions need to know of it."""
    source = polish.without_config_noise(_typed_defaults(_strip_header(out)))
    source, aliases = polish.literal_aliases(source)
    tree = ast.parse(source)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    file_attrs: dict[str, tuple[str, ...]] = {}
    for cls, wires in endpoint.file_inputs.items():
        if cls not in classes:
            raise AssertionError(f"datamodel-code-generator wrote no class {cls!r} for {endpoint.endpoint_id}")
        attrs = {wire: attr for _, attr, _, wire in _fields(classes[cls])}
        file_attrs[cls] = tuple(attrs[w] for w in wires)
    params = _input_params(classes["Input"], reserved_kwargs, set(classes))
    source, imports = polish.split_imports(polish.wrap_attribute_docstrings(source))
    if aliases:
        imports.setdefault("typing", set()).add("TypeAlias")
    frozen = {module: frozenset(names) for module, names in imports.items()}
    return Models(source, frozen, tuple(aliases), tuple(classes), params, file_attrs)


def _typed_defaults(source: str) -> str:
    """Object defaults written as the model they stand for: fal's `image_size` defaults to `{"width": 2048, ...}`
    on a field typed `ImageSize | Literal[...]`; datamodel-code-generator keeps the dict, which a type checker
    rejects (and pydantic would serialize with a warning). `ImageSize(width=2048, ...)` says the same, typed."""
    tree = ast.parse(source)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    edit = polish.SourceEdit(source)
    for cls in classes.values():
        for stmt, _, annotation, _ in _fields(cls):
            value = stmt.value
            model = _single_model(annotation, classes)
            if value is None or model is None or (isinstance(value, ast.Constant) and value.value is None):
                continue
            built: str | None
            if _is_root_model(classes[model]) and _is_literal(value):  # `FocusPoint([0.5, 0.5])`
                built = f"{model}({ast.unparse(value)})"
            elif isinstance(value, ast.Dict):
                built = _instance(model, value, classes)
            elif isinstance(value, ast.List) and value.elts and all(isinstance(e, ast.Dict) for e in value.elts):
                items = [_instance(model, e, classes) for e in value.elts if isinstance(e, ast.Dict)]
                built = "[" + ", ".join(i for i in items if i) + "]" if None not in items else None
            else:
                continue
            if built is not None:
                edit.replace(value, black_quoted(built))
    return _defined_before_use(edit.result()) if edit.edits else source


def _defined_before_use(source: str) -> str:
    """Classes reordered (stably) so that a model built in another's default is defined first: annotations are
    lazy (`from __future__ import annotations`), defaults are not."""
    tree = ast.parse(source)
    body = tree.body
    first = next((i for i, n in enumerate(body) if isinstance(n, ast.ClassDef)), None)
    if first is None or not all(isinstance(n, ast.ClassDef) for n in body[first:]):
        return source  # something other than classes among them: leave the order alone
    classes = [n for n in body[first:] if isinstance(n, ast.ClassDef)]
    names = {c.name for c in classes}
    needs = {
        c.name: {n.func.id for stmt in c.body if isinstance(stmt, ast.AnnAssign) and stmt.value is not None
                 for n in ast.walk(stmt.value) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in names}
        for c in classes
    }  # fmt: skip
    lines = source.splitlines(keepends=True)
    chunks = {c.name: "".join(lines[_start(c) : c.end_lineno]).rstrip("\n") + "\n" for c in classes}
    order: list[str] = []

    def emit(name: str, visiting: frozenset[str]) -> None:
        if name in order or name in visiting:
            return
        for dependency in sorted(needs[name]):
            emit(dependency, visiting | {name})
        order.append(name)

    for c in classes:
        emit(c.name, frozenset())
    if order == [c.name for c in classes]:
        return source
    head = "".join(lines[: _start(classes[0])])
    return head + "\n\n".join(chunks[name] for name in order)


def _start(node: ast.ClassDef) -> int:
    return min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1


def _is_root_model(cls: ast.ClassDef) -> bool:
    return any(
        isinstance(b, ast.Subscript) and isinstance(b.value, ast.Name) and b.value.id == "RootModel" for b in cls.bases
    )


def _single_model(annotation: ast.expr, classes: dict[str, ast.ClassDef]) -> str | None:
    """The one generated model a type names (`ImageSize | Literal[...]`, `list[LoraWeight]`), if exactly one."""
    names = {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name) and n.id in classes}
    return names.pop() if len(names) == 1 else None


def _instance(model: str, value: ast.Dict, classes: dict[str, ast.ClassDef]) -> str | None:
    """`Model(key=value, ...)` for a dict default whose keys are all the model's attribute names, else None."""
    attrs = {attr for _, attr, _, wire in _fields(classes[model]) if attr == wire}
    keys = [
        k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str) and k.value in attrs
    ]
    if len(keys) != len(value.keys) or not all(_is_literal(v) for v in value.values):
        return None
    return f"{model}(" + ", ".join(f"{k}={ast.unparse(v)}" for k, v in zip(keys, value.values, strict=False)) + ")"


STREAM_EVENT = naming.STREAM_EVENT


def _stream_event(output: dict[str, Any]) -> dict[str, Any]:
    """What a streaming endpoint's events are: fal sends the output as it becomes ready (fal-js types each event as
    the endpoint's output), so a chunk has the output's fields, each optional. An output that is not an object
    with properties gives a chunk that keeps whatever fields arrive."""
    if output.get("type") == "object" and isinstance(output.get("properties"), dict):
        chunk = {k: v for k, v in output.items() if k not in ("required", "description", "examples", "example")}
    else:
        chunk = {"type": "object", "additionalProperties": True}
    chunk["description"] = (
        "One event of `stream()`: the output's fields as fal sends them while it works; any may be missing."
    )
    return chunk


# Constraints of a URL string that cannot apply to a path, bytes or an image; fal checks the URL it finally gets.
_URL_ONLY = ("format", "minLength", "maxLength", "pattern", "contentMediaType", "contentEncoding")


def _mark_file_inputs(endpoint: EndpointIR) -> dict[str, Any]:
    """The schemas with each file-input field typed as `FileInput` (URL, path, bytes, file object or PIL image).

    datamodel-code-generator's `customTypePath` names the type; only the marked class's own copy of the field
    changes, so a `$ref`'d string definition shared with the output keeps `str`.
    """
    schemas = dict(endpoint.schemas)
    for cls, names in endpoint.file_inputs.items():
        schema = schemas[cls] = copy.deepcopy(schemas[cls])
        for name in names:
            schema["properties"][name] = _as_file_input(schema["properties"][name])
    return schemas


def _as_file_input(schema: Any) -> Any:
    if not isinstance(schema, dict) or "$ref" in schema:
        return schema  # a shared definition stays a plain string
    schema = dict(schema)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            schema[key] = [_as_file_input(alt) for alt in schema[key]]
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if "array" in kinds:
        schema["items"] = _as_file_input(schema.get("items"))
    elif "string" in kinds:
        schema = {k: v for k, v in schema.items() if k not in _URL_ONLY}
        if "null" in kinds:  # a custom type replaces the whole `type` list: keep None as its own alternative
            rest = {k: v for k, v in schema.items() if k != "type"}
            return {**rest, "anyOf": [{"type": "string", "customTypePath": FILE_INPUT_TYPE}, {"type": "null"}]}
        schema["customTypePath"] = FILE_INPUT_TYPE
    return schema


def _strip_header(source: str) -> str:
    lines = source.splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).strip() + "\n"


_LITERAL_NODES = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.UnaryOp, ast.Set)


def _is_literal(node: ast.expr, classes: AbstractSet[str] = frozenset()) -> bool:
    """A default we can repeat in a signature: a JSON-like literal, or a generated model built from literals
    (`_typed_defaults`), nothing that runs other code."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in classes:
        return not node.args and all(k.arg and _is_literal(k.value) for k in node.keywords)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return all(_is_literal(e, classes) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_literal(k) for k in node.keys) and all(_is_literal(v) for v in node.values)
    return False


def _fields(cls: ast.ClassDef) -> list[tuple[ast.AnnAssign, str, ast.expr, str]]:
    """Each field a generated model declares: its statement, attribute, type (without `Annotated` metadata) and
    wire name."""
    found = []
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id != "model_config":
            attr, annotation, wire = stmt.target.id, stmt.annotation, stmt.target.id
            if (
                isinstance(annotation, ast.Subscript)
                and isinstance(annotation.value, ast.Name)
                and annotation.value.id == "Annotated"
            ):
                elts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
                annotation = elts[0]
                wire = _alias(elts[1:]) or attr
            found.append((stmt, attr, annotation, wire))
    return found


def _input_params(cls: ast.ClassDef, reserved: frozenset[str], classes: AbstractSet[str]) -> tuple[Param, ...]:
    fields = _fields(cls)
    docs = _docstrings(cls)
    used = set(reserved) | {attr for _, attr, _, _ in fields}
    params: list[Param] = []
    for stmt, attr, annotation, wire in fields:
        default: str | None
        if stmt.value is None:
            default = None
        elif _is_literal(stmt.value, classes):
            default = ast.unparse(stmt.value)
        else:
            default = "..."
        kwarg = attr
        if attr in reserved:  # e.g. a field called `client`: the keyword becomes `client_`
            while kwarg in used:
                kwarg += "_"
            used.add(kwarg)
        annotation_source = black_quoted(ast.unparse(annotation))
        params.append(Param(kwarg, attr, wire, annotation_source, default and black_quoted(default),
                            docs.get(attr, ""), _bounds(stmt.annotation)))  # fmt: skip
    return tuple(params)


_BOUNDS = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length")


def _bounds(annotation: ast.expr) -> tuple[str, ...]:
    """The constraints in a field's `Annotated[..., Field(...)]` metadata, as `name=value` source."""
    if not (isinstance(annotation, ast.Subscript) and isinstance(annotation.slice, ast.Tuple)):
        return ()
    found = []
    for node in annotation.slice.elts[1:]:
        if isinstance(node, ast.Call):
            found += [f"{k.arg}={ast.unparse(k.value)}" for k in node.keywords if k.arg in _BOUNDS]
    return tuple(found)


def _docstrings(cls: ast.ClassDef) -> dict[str, str]:
    """Each attribute's docstring (the string statement right after it)."""
    found = {}
    for stmt, after in itertools.pairwise(cls.body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            found[stmt.target.id] = after.value.value
    return found


def _alias(metadata: list[ast.expr]) -> str | None:
    """The `alias=` of a `Field(...)` in `Annotated` metadata: the wire name of a renamed attribute."""
    for node in metadata:
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if (
                    keyword.arg == "alias"
                    and isinstance(keyword.value, ast.Constant)
                    and isinstance(keyword.value.value, str)
                ):
                    return keyword.value.value
    return None
