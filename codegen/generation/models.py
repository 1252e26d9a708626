"""Stage 3a: pydantic v2 models for one endpoint, from datamodel-code-generator's parser called in-process.

The parser (`OpenAPIParser`, with `DCG_OPTIONS`) reads the endpoint's schemas into its models (`DataModel`s, named,
typed, sorted); `modelir.describe` reads those once into the typed description the rest of generation works from,
and `modelir.render_models` writes the classes. The parser's own text is never written, so never read back.
Parsing in-process costs ~10-20 ms a spec once warm, against ~0.55 s for one CLI process per spec.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from codegen.generation import keywords, modelir, naming
from codegen.generation.ir import EndpointIR
from codegen.generation.modelir import FieldIR, ModelsIR

# Options chosen for fal's shapes: Literal for enums so callers pass plain strings (and defaults serialize without
# warnings); strict nullability so `int = 1` does not silently accept None; constraints enforced by pydantic.
DCG_OPTIONS: dict[str, Any] = {
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
    file_input: bool = False  # whether it takes a file (`FileInput`)


@dataclass(frozen=True)
class Models:
    source: str  # the models' Python source (aliases and classes), without imports
    imports: dict[str, frozenset[str]]  # what `source` imports: module → names
    aliases: tuple[str, ...]  # the `Literal` aliases `source` defines, in order
    classes: tuple[str, ...]  # every class the models define, in order
    params: tuple[Param, ...]  # the Input model's fields, in order
    file_attrs: dict[str, tuple[str, ...]]  # the endpoint's file inputs by class, as attribute names
    ir: ModelsIR  # the typed description `source` is written from


@cache
def _parser_options() -> dict[str, Any]:
    """`DCG_OPTIONS` as the parser takes them, with the pydantic v2 model classes for Python 3.11."""
    from datamodel_code_generator.enums import DataModelType
    from datamodel_code_generator.format import PythonVersion
    from datamodel_code_generator.model import get_data_model_types

    types = get_data_model_types(DataModelType.PydanticV2BaseModel, PythonVersion.PY_311)
    return dict(
        DCG_OPTIONS,
        data_model_type=types.data_model,
        data_model_root_type=types.root_model,
        data_model_field_type=types.field_model,
        data_type_manager_type=types.data_type_manager,
        dump_resolve_reference_action=types.dump_resolve_reference_action,
        known_third_party=types.known_third_party,
        target_python_version=PythonVersion.PY_311,
    )


def warm_up() -> None:
    """One tiny parse: the first call in a process pays for imports and building the parser's configuration."""
    _parse({"Input": {"type": "object", "properties": {"a": {"type": "string"}}}}, [{}])


def generate_models(endpoint: EndpointIR, reserved_kwargs: frozenset[str]) -> Models:
    (described,) = _parse(_schemas(endpoint), [endpoint.file_inputs])
    return _finish(endpoint, described, reserved_kwargs)


def generate_models_batch(endpoints: Sequence[EndpointIR], reserved_kwargs: frozenset[str]) -> list[Models]:
    """`generate_models` for several endpoints in one parse: each endpoint's schemas become one module of a modular
    document (`m0.Input`, `m1.Input`), which the parser reads exactly as it would alone, at ~20 % less than one parse
    each. A batch that fails is retried one endpoint at a time, so an error names its endpoint."""
    if len(endpoints) < 2:
        return [generate_models(e, reserved_kwargs) for e in endpoints]
    try:
        described = _parse_modular([_schemas(e) for e in endpoints], [e.file_inputs for e in endpoints])
    except Exception:
        return [generate_models(e, reserved_kwargs) for e in endpoints]
    return [_finish(e, d, reserved_kwargs) for e, d in zip(endpoints, described, strict=True)]


def _schemas(endpoint: EndpointIR) -> dict[str, Any]:
    """The component schemas datamodel-code-generator gets for an endpoint: file inputs marked, titles dropped,
    file models based on `FalFile`, and the stream's chunk model when it streams."""
    schemas = {name: untitled(schema) for name, schema in _mark_file_inputs(endpoint).items()}
    for name in endpoint.file_models:  # downloadable files get save() / download()
        schemas[name] = {**schemas[name], "customBasePath": FILE_MODEL_BASE}
    if endpoint.streams:
        if STREAM_EVENT in schemas:
            raise AssertionError(f"{endpoint.endpoint_id} defines a class {STREAM_EVENT!r} of its own")
        schemas[STREAM_EVENT] = _stream_event(schemas["Output"])
    for name, schema in schemas.items():
        _only_own_keywords(schema, f"{endpoint.endpoint_id}: {name}")
    return schemas


# JSON Schema keywords whose values are schemas (or lists / maps of schemas); `title` is dropped only inside these,
# never from examples, defaults or a property that happens to be called `title`.
_SCHEMA = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")
_SCHEMA_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAP = ("properties", "patternProperties", "$defs", "definitions")


def untitled(schema: Any) -> Any:
    """A copy of `schema` with every schema's `title` removed (names come from component keys and field names, and
    no field carries `Field(title="Num Inference Steps")` noise), and the intermediate model's file-input markers
    (`ui`, `_fal_ui_field`), which model generation does not read."""
    if not isinstance(schema, dict):
        return schema
    out = {
        k: v for k, v in schema.items() if not (k == "title" and isinstance(v, str)) and k not in keywords.FILE_MARKERS
    }
    for key in _SCHEMA:
        if key in out:
            out[key] = untitled(out[key])
    for key in _SCHEMA_LIST:
        if isinstance(out.get(key), list):
            out[key] = [untitled(s) for s in out[key]]
    for key in _SCHEMA_MAP:
        if isinstance(out.get(key), dict):
            out[key] = {name: untitled(s) for name, s in out[key].items()}
    return out


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


def _parse(schemas: dict[str, Any], file_inputs: Sequence[Any]) -> list[ModelsIR]:
    """The typed description of each module the parser makes of a document of `schemas` (one, or one per endpoint of
    a modular document, in module order), `file_inputs[i]` marking module i's file inputs."""
    from datamodel_code_generator.parser.openapi import OpenAPIParser

    described: dict[int, ModelsIR] = {}

    class Parser(OpenAPIParser):
        """The parser, reading each module's models when it would write the module's text (its models are final
        then: named, typed, sorted), and writing none."""

        def _generate_module_output(self, ctx: Any, *args: Any, **kwargs: Any) -> None:
            if ctx.models:
                index = _module_index(ctx.module)
                described[index] = modelir.describe(ctx.models, ctx.imports, file_inputs[index])

    # A mapping, as `generate()` hands the parser a document given as one (its signature names text and paths).
    parser = Parser(cast("Any", _document(schemas)), **_parser_options())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser.parse(format_=False)
    if sorted(described) != list(range(len(file_inputs))):
        raise AssertionError(f"datamodel-code-generator made modules {sorted(described)} of {len(file_inputs)}")
    return [described[i] for i in range(len(file_inputs))]


def _module_index(module: tuple[str, ...]) -> int:
    """Which endpoint a module of the parser's holds: `("__init__.py",)` for a single document, `("m3.py",)` for the
    fourth of a modular one."""
    name = module[-1].removesuffix(".py") if module else ""
    if name in ("__init__", ""):
        return 0
    if not (name.startswith("m") and name[1:].isdigit()):
        raise AssertionError(f"datamodel-code-generator made an unexpected module {module!r}")
    return int(name[1:])


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


def _parse_modular(documents: Sequence[dict[str, Any]], file_inputs: Sequence[Any]) -> list[ModelsIR]:
    schemas: dict[str, Any] = {}
    for i, document in enumerate(documents):
        schemas.update((f"m{i}.{name}", _prefixed(schema, f"m{i}.")) for name, schema in document.items())
    return _parse(schemas, file_inputs)


def _finish(endpoint: EndpointIR, described: ModelsIR, reserved_kwargs: frozenset[str]) -> Models:
    """The models' source, and what the call functions need to know of them."""
    names = [m.name for m in described.classes]
    if "Input" not in names:
        raise AssertionError(f"datamodel-code-generator wrote no class 'Input' for {endpoint.endpoint_id}")
    file_attrs: dict[str, tuple[str, ...]] = {}
    for cls, wires in endpoint.file_inputs.items():
        if cls not in names:
            raise AssertionError(f"datamodel-code-generator wrote no class {cls!r} for {endpoint.endpoint_id}")
        attrs = {f.wire: f.attr for f in described.model(cls).fields}
        file_attrs[cls] = tuple(attrs[w] for w in wires)
    params = _input_params(described.model("Input").fields, reserved_kwargs)
    aliases = tuple(a.name for a in described.aliases)
    source = modelir.render_models(described)
    return Models(source, dict(described.imports), aliases, tuple(names), params, file_attrs, described)


def _input_params(fields: Sequence[FieldIR], reserved: frozenset[str]) -> tuple[Param, ...]:
    used = set(reserved) | {f.attr for f in fields}
    params: list[Param] = []
    for f in fields:
        kwarg = f.attr
        if f.attr in reserved:  # e.g. a field called `client`: the keyword becomes `client_`
            while kwarg in used:
                kwarg += "_"
            used.add(kwarg)
        default = f.default if f.default is None or f.literal_default else "..."
        params.append(Param(kwarg, f.attr, f.wire, f.annotation, default, f.description, f.bounds, f.file_input))
    return tuple(params)


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
    elif "string" in kinds and "enum" not in schema:  # an enum of strings is a field's presets (`ir._with_presets`)
        schema = {k: v for k, v in schema.items() if k not in _URL_ONLY}
        if "null" in kinds:  # a custom type replaces the whole `type` list: keep None as its own alternative
            rest = {k: v for k, v in schema.items() if k != "type"}
            return {**rest, "anyOf": [{"type": "string", "customTypePath": FILE_INPUT_TYPE}, {"type": "null"}]}
        schema["customTypePath"] = FILE_INPUT_TYPE
    return schema


@dataclass(frozen=True)
class ApiModels:
    """The models of one module of an API spec (`operations.ModuleIR`): their source, imports and classes, and the
    fields of each class whose fields become keyword arguments (each operation's parameters, its object body)."""

    source: str
    imports: dict[str, frozenset[str]]
    aliases: tuple[str, ...]
    classes: tuple[str, ...]
    keywords: dict[str, tuple[Param, ...]]  # class → its fields as keyword arguments
    ir: ModelsIR


def generate_api_models(
    schemas: dict[str, Any], keyword_classes: Sequence[str], reserved_kwargs: frozenset[str]
) -> ApiModels:
    """Models for an API module's schemas (normalized, as `operations` gives them), through the same parser and
    typed description as an endpoint's; `keyword_classes` are the classes whose fields become keyword arguments."""
    prepared = {name: untitled(schema) for name, schema in schemas.items()}
    for name, schema in prepared.items():
        _only_own_keywords(schema, name)
    (described,) = _parse(prepared, [{}])
    names = tuple(m.name for m in described.classes)
    missing = [c for c in keyword_classes if c not in names]
    if missing:
        raise AssertionError(f"datamodel-code-generator wrote no class {missing[0]!r}")
    keywords_of = {c: _input_params(described.model(c).fields, reserved_kwargs) for c in keyword_classes}
    aliases = tuple(a.name for a in described.aliases)
    return ApiModels(modelir.render_models(described), dict(described.imports), aliases, names, keywords_of, described)
