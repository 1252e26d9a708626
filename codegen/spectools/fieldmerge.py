"""The newest statement of fal wins, field by field: fal's TypeScript types over an older JSON Schema spec.

fal's TypeScript endpoint types (`codegen.spectools.tstypes`) are newer than its JSON Schemas but say less. `apply_types` takes
from them what they can say (which fields exist, required-ness, enum values, defaults, descriptions) and keeps what
only the older schema said (integer against number, bounds, lengths, formats, patterns, examples, titles,
nullability, `x-fal-file-input` and fal's other `x-` keys) for every field whose kind did not change. (fal-js types
every field named `*_url` as `string | Blob | File` and no other, not even `*_urls` items: that is its naming rule,
not a statement of which fields take files.)

Models are matched by property path (`input.image_size` → its object branch), never by component name: fal's
TypeScript names differ from its JSON Schema names (`ImageSize` against `ImageSizeType2`).

fal's TypeScript generator declares one type per shape and aliases the others to it (`FluxSchnellInput =
FluxDevInput`): the shape is the endpoint's, but the doc comments, hence descriptions and defaults, are the other
endpoint's (dev's 28 steps, where schnell's default is 4 and its maximum 12). So a types default or enum that
contradicts a type or bound kept from the old schema is not applied, and neither are the descriptions and defaults
of a side whose root type is an alias (`x-fal-types-alias-of`); the old value stays and the notes say so (each such
note starts with `kept`).
"""

from __future__ import annotations

import copy
import json
import operator
from typing import Any

from fal_runtime.queue_document import input_schema_path, output_schema_path

_PREFIX = "#/components/schemas/"
_ALIAS_OF = "x-fal-types-alias-of"  # codegen.spectools.tstypes: the types root is an alias of another endpoint's type
_ORDER = "x-fal-order-properties"
_SHARED = "x-fal-types-shared"  # codegen.spectools.tstypes: a nested type declared once for this many endpoints
_BOUNDS = (  # key, the kind of value it bounds, the test that must hold, the word for a failure
    ("minimum", "number", operator.ge, "below"),
    ("maximum", "number", operator.le, "above"),
    ("exclusiveMinimum", "number", operator.gt, "not above"),
    ("exclusiveMaximum", "number", operator.lt, "not below"),
    ("minLength", "string", operator.ge, "shorter than"),
    ("maxLength", "string", operator.le, "longer than"),
    ("minItems", "array", operator.ge, "fewer items than"),
    ("maxItems", "array", operator.le, "more items than"),
)
_DATA = ("default", "enum", "const", "examples")  # values, not schemas


def apply_types(old_doc: dict[str, Any], types_doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`old_doc` with each field updated to what `types_doc` says of it, plus one note per change (and per types
    value not applied). Neither argument is modified; the old document's component names are kept."""
    endpoint_id = types_doc["info"]["x-fal-metadata"]["endpointId"]
    merge = _Merge(copy.deepcopy(old_doc), types_doc)
    before = _reachable(merge.doc)
    for side, path in (("input", input_schema_path(endpoint_id)), ("output", output_schema_path(endpoint_id))):
        old_root = _at(merge.doc, path, "the old document")
        new_root = _at(types_doc, path, "the types document")
        new_target = merge.new_target(new_root)
        merge.alias = new_target.get(_ALIAS_OF)
        merge.model(merge.old_target(old_root), new_target, side)
        if merge.alias and merge.kept_descriptions:
            merge.notes.append(
                f"{side}: kept {merge.kept_descriptions} old descriptions: the types' are {merge.alias}'s"
            )
        merge.kept_descriptions = 0
    for name in sorted(before - _reachable(merge.doc)):
        del merge.doc["components"]["schemas"][name]
        merge.notes.append(f"components: removed {name}, no longer used")
    return merge.doc, merge.notes


class _Merge:
    """One merge: the document being written, the types document read, and what was done."""

    def __init__(self, doc: dict[str, Any], types_doc: dict[str, Any]) -> None:
        self.doc = doc
        self.types_doc = types_doc
        self.notes: list[str] = []
        self._merged: set[int] = set()  # old models already merged (one model may be reached by several paths)
        self._imported: dict[str, str] = {}  # types component name → its name in `doc`
        self.alias: str | None = None  # the side's types root is an alias of this type: its doc comments are not ours
        self.kept_descriptions = 0

    def old_target(self, schema: dict[str, Any]) -> dict[str, Any]:
        return _deref(self.doc, schema)

    def new_target(self, schema: dict[str, Any]) -> dict[str, Any]:
        return _deref(self.types_doc, schema)

    def model(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        """Merge one object model in place: fields added, removed, required-ness, and each common field.

        A nested model that fal's TypeScript declares once for several endpoints (`x-fal-types-shared`: one `Image`
        for every endpoint) is a statement about all of them at once, so only what cannot break a call is taken from
        it: fields added, and fields made optional. Fields it lacks and fields it newly requires are kept as the
        endpoint's own schema has them, and the notes say so."""
        if id(old) in self._merged:
            return
        self._merged.add(id(old))
        nested = path not in ("input", "output") and new.get(_SHARED, 1) > 1
        old_props: dict[str, Any] = old.get("properties") or {}
        new_props: dict[str, Any] = new.get("properties") or {}
        removed = [name for name in old_props if name not in new_props]
        added = [name for name in new_props if name not in old_props]
        props = {name: schema for name, schema in old_props.items() if name in new_props or nested}
        for name in props:
            if name in new_props:
                props[name] = self.field(props[name], new_props[name], f"{path}.{name}")
        for name in added:
            props[name] = self.imported(new_props[name])
        if props or "properties" in old:
            old["properties"] = props
        if nested and removed:
            self.notes.append(f"{path}: kept {', '.join(removed)}: the types' shared {new.get('title', 'type')} "
                              "lacks them")  # fmt: skip
        elif removed:
            self.notes.extend(f"{path}.{name}: removed" for name in removed)
        self.notes.extend(f"{path}.{name}: added" for name in added)
        if isinstance(old.get(_ORDER), list):
            old[_ORDER] = [name for name in old[_ORDER] if name in props] + added
        if nested:
            was = set(old.get("required") or [])
            tightened = [name for name in new.get("required") or [] if name not in was]
            if tightened:
                self.notes.append(f"{path}: kept {', '.join(tightened)} optional: the types' shared "
                                  f"{new.get('title', 'type')} requires them")  # fmt: skip
            new = {**new, "required": [name for name in new.get("required") or [] if name in was]}
        self._required(old, new, added, path)

    def _required(self, old: dict[str, Any], new: dict[str, Any], added: list[str], path: str) -> None:
        """Required-ness → the types' (a field just added is not noted again as now required)."""
        was = [name for name in old.get("required") or [] if name in old.get("properties", {})]
        wanted: list[str] = new.get("required") or []
        required = [name for name in was if name in wanted] + [name for name in wanted if name not in was]
        newly = [name for name in wanted if name not in was and name not in added]
        self.notes.extend(f"{path}.{name}: now required" for name in newly)
        self.notes.extend(f"{path}.{name}: now optional" for name in was if name not in wanted)
        if required:
            old["required"] = required
        else:
            old.pop("required", None)

    def field(self, old: dict[str, Any], new: dict[str, Any], path: str) -> dict[str, Any]:
        """The merged schema of one field (or array items): the old one updated, or the types' one when the kind
        changed (string → number, object → array, ...)."""
        old_kinds = [_kind(self.doc, b) for b in _branches(old)]
        new_kinds = [_kind(self.types_doc, b) for b in _branches(new)]
        concrete = {k for k in new_kinds if k != "any"}
        if not (concrete == set(old_kinds) or ("any" in new_kinds and concrete <= set(old_kinds))):
            self.notes.append(
                f"{path}: kind changed ({' | '.join(old_kinds)} → {' | '.join(new_kinds)}), took the types' schema"
            )
            taken: dict[str, Any] = self.imported(new)
            return taken
        self._branches(old, new, "default" in new, path)
        self._description(old, new, path)
        if "default" in new:
            self._default(old, new["default"], path)
        return old

    def _branches(self, old: dict[str, Any], new: dict[str, Any], new_default: bool, path: str) -> None:
        """Pair each types branch with the first unpaired old branch of its kind, and merge the pairs."""
        free = list(_branches(old))
        for branch in _branches(new):
            kind = _kind(self.types_doc, branch)
            match = next((b for b in free if _kind(self.doc, b) == kind), None) if kind != "any" else None
            if match is None:
                continue
            free.remove(match)
            if kind == "object":
                self.model(self.old_target(match), self.new_target(branch), path)
            elif kind == "array" and isinstance(match.get("items"), dict) and isinstance(branch.get("items"), dict):
                match["items"] = self.field(match["items"], branch["items"], f"{path}[]")
            elif kind in ("string", "number", "boolean"):
                self._enum(old, match, branch.get("enum"), new_default, path)

    def _enum(self, field: dict[str, Any], old: dict[str, Any], wanted: Any, new_default: bool, path: str) -> None:
        """Enum values → the types' (none: any value of the kind), unless a types value breaks a type or bound the
        old schema keeps, or the new values leave out the field's default and the types state no other."""
        was = old["enum"] if "enum" in old else [old["const"]] if "const" in old else None
        if was == wanted:
            return
        bare = {k: v for k, v in old.items() if k not in ("enum", "const")}
        problems = [f"{v!r} {why}" for v in wanted or [] if (why := _violation(self.doc, v, bare))]
        before = copy.deepcopy(old)
        old.pop("const", None)
        old.pop("enum", None)
        if wanted is not None:
            old["enum"] = copy.deepcopy(wanted)
        if not problems and "default" in field and not new_default:
            why = _violation(self.doc, field["default"], field)
            problems = [f"none is the default {field['default']!r}, and the types state no other"] if why else []
        if problems:
            old.clear()
            old.update(before)
            self.notes.append(f"{path}: kept enum {_short(was)}: of the types' {_short(wanted)}, {problems[0]}")
            return
        self.notes.append(f"{path}: enum {_short(was)} → {_short(wanted)}")

    def _description(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        """The types' description when it differs in more than whitespace (fal's JSON Schemas indent theirs)."""
        text = new.get("description")
        if not isinstance(text, str) or text.split() == str(old.get("description", "")).split():
            return
        if self.alias:
            self.kept_descriptions += 1  # one note per side says how many
            return
        old["description"] = text
        self.notes.append(f"{path}: description updated")

    def _default(self, old: dict[str, Any], value: Any, path: str) -> None:
        """The types' default, unless the kept schema refuses it or it is an aliased type's."""
        if "default" in old and _same(old["default"], value):
            return
        why = _violation(self.doc, value, old) or (f"is {self.alias}'s (the types alias it)" if self.alias else "")
        if why:
            kept = f"kept default {old['default']!r}" if "default" in old else "kept no default"
            self.notes.append(f"{path}: {kept}: the types' {value!r} {why}")
            return
        was = f"{old['default']!r}" if "default" in old else "none"
        old["default"] = copy.deepcopy(value)
        self.notes.append(f"{path}: default {was} → {value!r}")

    def imported(self, schema: Any) -> Any:
        """A copy of a types schema whose `$ref`s point at components of `doc` (added under free names)."""
        if isinstance(schema, dict):
            out = {}
            for key, value in schema.items():
                if key == "$ref" and isinstance(value, str) and value.startswith(_PREFIX):
                    value = _PREFIX + self._component(value[len(_PREFIX) :])
                out[key] = value if key in _DATA else self.imported(value)
            return out
        if isinstance(schema, list):
            return [self.imported(v) for v in schema]
        return schema

    def _component(self, name: str) -> str:
        if name not in self._imported:
            schemas = self.doc["components"]["schemas"]
            free, n = name, 1
            while free in schemas:
                n += 1
                free = f"{name}{n}"
            self._imported[name] = free
            schemas[free] = {}  # placeholder first: a model may refer to itself
            schemas[free] = self.imported(self.types_doc["components"]["schemas"][name])
            self.notes.append(f"components: added {free} (the types' {name})")
        return self._imported[name]


def _at(doc: dict[str, Any], path: list[str | int], what: str) -> dict[str, Any]:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"{what} has nothing at {'/'.join(map(str, path))}")
        node = node[key]
    if not isinstance(node, dict):
        raise ValueError(f"{what}: {'/'.join(map(str, path))} is not a schema")
    return node


def _deref(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a `$ref` (or fal's one-element `allOf: [{$ref}]`) points at; `schema` itself otherwise."""
    for _ in range(16):
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
            schema = all_of[0]
            continue
        ref = schema.get("$ref")
        if not (isinstance(ref, str) and ref.startswith(_PREFIX)):
            return schema
        target = doc.get("components", {}).get("schemas", {}).get(ref[len(_PREFIX) :])
        if not isinstance(target, dict):
            raise ValueError(f"dangling $ref {ref!r}")
        schema = target
    raise ValueError("$ref chain longer than 16")


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A field's alternatives without its `null`: `anyOf` members, or the field itself."""
    members = schema.get("anyOf")
    if not isinstance(members, list):
        return [schema]
    return [m for m in members if isinstance(m, dict) and m.get("type") != "null"]


def _kind(doc: dict[str, Any], schema: dict[str, Any]) -> str:
    """What a field holds, in the terms TypeScript can say: integer and number are both `number`, `{}` is `any`."""
    schema = _deref(doc, schema)
    if isinstance(schema.get("anyOf"), list):
        return "union"
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else "union"
    if kind == "integer":
        return "number"
    if isinstance(kind, str):
        return kind
    values = schema.get("enum", [schema["const"]] if "const" in schema else [])
    if values:
        return {bool: "boolean", str: "string", int: "number", float: "number"}.get(type(values[0]), "any")
    return "object" if "properties" in schema else "any"


def _violation(doc: dict[str, Any], value: Any, schema: dict[str, Any]) -> str:
    """Why `value` is not an instance of `schema` by the type, enum and bounds the schema states ("" if it is)."""
    schema = _deref(doc, schema)
    members = schema.get("anyOf")
    if isinstance(members, list):
        reasons = [_violation(doc, value, m) for m in members if isinstance(m, dict)]
        return "" if not all(reasons) else reasons[0] if len(set(reasons)) == 1 else "fits none of its types"
    kind = schema.get("type")
    for k in kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []:
        if not _is(value, k):
            return f"is not {'an' if k[0] in 'aeiou' else 'a'} {k}"
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        return f"is not one of {_short(schema['enum'])}"
    if "const" in schema and not _same(value, schema["const"]):
        return f"is not {schema['const']!r}"
    return _bound_violation(value, schema)


def _bound_violation(value: Any, schema: dict[str, Any]) -> str:
    measure = value if _is(value, "number") else len(value) if isinstance(value, (str, list)) else None
    for key, kind, ok, word in _BOUNDS:
        bound = schema.get(key)
        if measure is None or bound is None or not _is(value, kind) or not _is(bound, "number"):
            continue
        if not ok(measure, bound):
            return f"is {word} {key} {bound}"
    return ""


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return _is(value, "number") and float(value).is_integer()
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    types = {"string": str, "boolean": bool, "array": list, "object": dict, "null": type(None)}
    return kind not in types or isinstance(value, types[kind])


def _same(a: Any, b: Any) -> bool:
    """JSON equality: `1 == 1.0`, but `True != 1`."""
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def _reachable(doc: dict[str, Any]) -> set[str]:
    """Names of the components the document's paths reach, through any number of `$ref`s."""
    schemas = doc.get("components", {}).get("schemas", {})
    seen: set[str] = set()
    stack: list[Any] = [doc.get("paths", {})]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_PREFIX) and ref[len(_PREFIX) :] not in seen:
                seen.add(ref[len(_PREFIX) :])
                stack.append(schemas.get(ref[len(_PREFIX) :]))
            stack.extend(v for k, v in node.items() if k not in _DATA)
        elif isinstance(node, list):
            stack.extend(node)
    return seen


def _short(values: Any, limit: int = 120) -> str:
    text = json.dumps(values, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
