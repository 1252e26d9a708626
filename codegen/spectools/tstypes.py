"""fal's TypeScript endpoint types (fal-js `libs/client/src/types/endpoints.ts`) → JSON Schema, faithfully.

fal's JS client carries one `XInput` / `XOutput` type per endpoint and an `EndpointTypeMap` from endpoint id to the
two. It is newer than fal's JSON Schema snapshot, but TypeScript says less: field names, optional (`?`) or required,
literal unions, arrays, nested types, unions, `string | Blob | File` for a file input, and a doc comment that ends
with `Default value: ...`. It cannot say integer against number, bounds, formats, patterns or examples, so none are
made up here: a TypeScript `number` stays `{"type": "number"}`, and each root schema says `x-fal-types-only: true`
so a spec made from it records where it came from (`codegen.spectools.fieldmerge` keeps what an older JSON Schema said).

`TypeCatalogue.entry` returns an entry in the shape of fal's JSON Schema snapshot (`{"input", "output", "inputName",
"outputName"}`, nested types under `$defs`), which `catalogue.document_from_schemas` turns into fal's queue document.
A form this module does not know raises `ValueError` naming the type and property: a guess would end up in a spec.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tree_sitter_typescript
from tree_sitter import Language, Node, Parser

TYPES_ONLY = "x-fal-types-only"  # on each root schema: made from TypeScript types alone
# On a nested type the file declares once for this many endpoints (one `Image` for all): not a statement about any
# one of them (codegen.spectools.fieldmerge).
SHARED = "x-fal-types-shared"
ALIAS_OF = "x-fal-types-alias-of"  # on a root whose type is an alias (`FluxSchnellInput = FluxDevInput`): the target
FILE_INPUT = "x-fal-file-input"  # fal's JSON Schema mark of a field that takes a file (a URL, or data to upload)
_MAP = "EndpointTypeMap"
_FILE_UNION = frozenset({"string", "Blob", "File"})  # fal-js types a file input as `string | Blob | File`
_PREDEFINED: dict[str, dict[str, Any]] = {
    "number": {"type": "number"},
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "unknown": {},  # fal's generator writes `unknown` (and `void`) where it could not type a value: anything
    "void": {},
}
_DEFAULT = re.compile(r"\s*Default value: `([^`]*)`\s*\Z")
_EMPTY_RECORD = re.compile(r"\s+")  # whitespace, taken out to recognise `Record<string, never>`
_LANGUAGE = Language(tree_sitter_typescript.language_typescript())


class TypeCatalogue:
    """Every type declaration of one endpoints.ts, parsed once; `entry` converts one endpoint on demand."""

    def __init__(self, source: bytes) -> None:
        self._source = source
        tree = Parser(_LANGUAGE).parse(source)
        if tree.root_node.has_error:
            raise ValueError(f"not valid TypeScript: syntax error at line {_first_error_line(tree.root_node)}")
        self._tree = tree  # keeps the nodes below alive
        self._decls: dict[str, Node] = {}
        for decl in _declarations(tree.root_node):
            name = self._text(decl.child_by_field_name("name"))
            value = decl.child_by_field_name("value")
            if value is None:
                raise ValueError(f"type {name} has no value")
            self._decls[name] = value
        self._endpoints = self._endpoint_map()
        self._users: dict[str, int] | None = None

    def endpoint_ids(self) -> list[str]:
        """The ids of `EndpointTypeMap`, in the file's order."""
        return list(self._endpoints)

    def entry(self, endpoint_id: str) -> dict[str, Any]:
        """The endpoint's input and output as fal's JSON Schema snapshot holds them (a fresh copy each call)."""
        input_name, output_name = self._endpoints[endpoint_id]
        return {
            "input": self._root(input_name),
            "output": self._root(output_name),
            "inputName": input_name,
            "outputName": output_name,
        }

    def resolve(self, name: str) -> str:
        """The declaration an alias chain ends at (`FluxSchnellInput` → `FluxDevInput`); `name` itself if none."""
        seen = [name]
        while name in self._decls and self._decls[name].type == "type_identifier":
            name = self._text(self._decls[name])
            if name in seen:
                raise ValueError(f"type alias cycle: {' = '.join([*seen, name])}")
            seen.append(name)
        if name not in self._decls:
            raise ValueError(f"type {seen[0]} refers to {name}, which the file does not declare")
        return name

    def users(self, name: str) -> int:
        """How many endpoints' input or output reaches the declaration `name` (after aliases)."""
        if self._users is None:
            refs = {decl: self._referenced(value) for decl, value in self._decls.items()}
            counts: dict[str, int] = {}
            for roots in self._endpoints.values():
                seen: set[str] = set()
                todo = [self.resolve(r) for r in roots]
                while todo:
                    decl = todo.pop()
                    if decl not in seen:
                        seen.add(decl)
                        todo.extend(refs.get(decl, ()))
                for decl in seen:
                    counts[decl] = counts.get(decl, 0) + 1
            self._users = counts
        return self._users.get(self.resolve(name), 0)

    def _referenced(self, node: Node) -> set[str]:
        found: set[str] = set()
        stack = [node]
        while stack:
            current = stack.pop()
            if current.type == "type_identifier":
                text = self._text(current)
                if text in self._decls:
                    found.add(self.resolve(text))
            stack.extend(current.children)
        return found

    def _root(self, name: str) -> dict[str, Any]:
        """fal's generator aliases a type to another of the same shape (`FluxSchnellInput = FluxDevInput`), whose doc
        comments then stand for both: an alias root says so (`x-fal-types-alias-of`), since its descriptions and
        defaults may be another endpoint's."""
        converter = _Converter(self)
        target = self.resolve(name)
        schema = {"title": name, **converter.named_body(target), TYPES_ONLY: True}
        if target != name:
            schema[ALIAS_OF] = target
        if converter.defs:
            schema["$defs"] = dict(sorted(converter.defs.items()))
        return schema

    def _endpoint_map(self) -> dict[str, tuple[str, str]]:
        body = self._decls.get(_MAP)
        if body is None or body.type != "object_type":
            raise ValueError(f"the file declares no `{_MAP}` object type")
        endpoints: dict[str, tuple[str, str]] = {}
        for endpoint_id, node in self._properties(_MAP, body):
            sides = {name: self._text(value) for name, value in self._properties(endpoint_id, node)}
            if node.type != "object_type" or set(sides) != {"input", "output"}:
                raise ValueError(f"{_MAP}[{endpoint_id!r}]: expected `{{ input: X; output: Y }}`")
            for side in sides.values():
                self.resolve(side)
            endpoints[endpoint_id] = (sides["input"], sides["output"])
        return endpoints

    def _properties(self, owner: str, body: Node) -> Iterator[tuple[str, Node]]:
        """(name, type node) of an object type's properties; only for the map, whose members carry no docs."""
        for member in body.named_children:
            if member.type == "property_signature":
                annotation = _type_of(member)
                yield self._property_name(owner, member), annotation
            elif member.type != "comment":
                raise ValueError(f"{owner}: cannot read member `{self._text(member)}`")

    def _property_name(self, owner: str, member: Node) -> str:
        name = member.child_by_field_name("name")
        if name is None:
            raise ValueError(f"{owner}: property without a name: `{self._text(member)}`")
        if name.type == "property_identifier":
            return self._text(name)
        if name.type == "string":
            return "".join(self._text(part) for part in name.named_children)
        raise ValueError(f"{owner}: cannot read property name `{self._text(name)}`")

    def _text(self, node: Node | None) -> str:
        assert node is not None
        return self._source[node.start_byte : node.end_byte].decode("utf-8")


class _Converter:
    """Converts one root type; `defs` collects the named object types it reaches (JSON Schema `$defs`)."""

    def __init__(self, catalogue: TypeCatalogue) -> None:
        self.catalogue = catalogue
        self.defs: dict[str, dict[str, Any]] = {}
        self._text = catalogue._text

    def named_body(self, name: str) -> dict[str, Any]:
        """The schema of a declared (non-alias) type."""
        value = self.catalogue._decls[name]
        if value.type == "object_type":
            return self.object_type(name, value)
        return self.type_node(value, name, "")

    def object_type(self, owner: str, body: Node) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        doc = ""
        for member in body.named_children:
            if member.type == "comment":
                doc = self._text(member)
                continue
            if member.type != "property_signature":
                raise ValueError(f"{owner}: cannot read member `{self._text(member)}`")
            name = self.catalogue._property_name(owner, member)
            properties[name] = self.property(owner, name, _type_of(member), doc)
            if not any(child.type == "?" for child in member.children):
                required.append(name)
            doc = ""
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return schema

    def property(self, owner: str, name: str, node: Node, doc: str) -> dict[str, Any]:
        schema = self.type_node(node, owner, name)
        description, default = _doc_comment(doc)
        if description:
            schema["description"] = description
        if default is not None and _fits(default, schema, self.defs):
            schema["default"] = default
        return schema

    def type_node(self, node: Node, owner: str, prop: str) -> dict[str, Any]:
        """JSON Schema for one TypeScript type expression."""
        kind = node.type
        if kind == "predefined_type" and self._text(node) in _PREDEFINED:
            return dict(_PREDEFINED[self._text(node)])
        if kind == "literal_type":
            value = self.literal(node, owner, prop)
            return {"type": "string" if isinstance(value, str) else "number", "enum": [value]}
        if kind == "union_type":
            return self.union(_flatten(node), owner, prop)
        if kind == "generic_type":
            return self.generic(node, owner, prop)
        if kind == "type_identifier":
            return self.reference(self._text(node), owner, prop)
        if kind == "object_type":
            return self.object_type(f"{owner}.{prop}", node)
        raise ValueError(f"{_where(owner, prop)}: cannot read TypeScript type `{self._text(node)}`")

    def literal(self, node: Node, owner: str, prop: str) -> str | int | float:
        text = self._text(node)
        value = _json(text)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"{_where(owner, prop)}: cannot read literal type `{text}`")
        return value

    def union(self, members: list[Node], owner: str, prop: str) -> dict[str, Any]:
        """Literals of one kind gather into one enum branch (where the first of them stands); `string | Blob |
        File` is one file-input branch; repeated branches (`number | number`) collapse."""
        texts = [self._text(m) for m in members]
        is_file = _FILE_UNION.issubset(texts)
        branches: list[dict[str, Any]] = []
        enums: dict[str, dict[str, Any]] = {}
        for member, text in zip(members, texts, strict=True):
            if is_file and text in _FILE_UNION:
                branch = {"type": "string", FILE_INPUT: True}
            elif member.type == "literal_type":
                value = self.literal(member, owner, prop)
                kind = "string" if isinstance(value, str) else "number"
                if kind in enums:
                    if value not in enums[kind]["enum"]:
                        enums[kind]["enum"].append(value)
                    continue
                branch = enums[kind] = {"type": kind, "enum": [value]}
            else:
                branch = self.type_node(member, owner, prop)
            if branch not in branches:
                branches.append(branch)
        return branches[0] if len(branches) == 1 else {"anyOf": branches}

    def generic(self, node: Node, owner: str, prop: str) -> dict[str, Any]:
        name = self._text(node.child_by_field_name("name"))
        arguments = node.child_by_field_name("type_arguments")
        args = arguments.named_children if arguments is not None else []
        if name == "Array" and len(args) == 1:
            return {"type": "array", "items": self.type_node(args[0], owner, prop)}
        if name == "Record" and [self._text(a) for a in args] == ["string", "never"]:
            return {"type": "object", "properties": {}}
        raise ValueError(f"{_where(owner, prop)}: cannot read TypeScript type `{self._text(node)}`")

    def reference(self, name: str, owner: str, prop: str) -> dict[str, Any]:
        """A named object type becomes a `$defs` entry (under the name its alias chain ends at); any other named
        type is written out in place."""
        if name not in self.catalogue._decls:
            raise ValueError(f"{_where(owner, prop)}: type {name} is not declared in the file")
        target = self.catalogue.resolve(name)
        value = self.catalogue._decls[target]
        if value.type != "object_type" and _EMPTY_RECORD.sub("", self._text(value)) != "Record<string,never>":
            return self.named_body(target)
        if target not in self.defs:
            self.defs[target] = {}  # placeholder first: a type may refer to itself
            self.defs[target] = {"title": target, **self.named_body(target)}
            users = self.catalogue.users(target)
            if users > 1:
                self.defs[target][SHARED] = users
        return {"$ref": f"#/$defs/{target}"}


def read_types(path: Path) -> TypeCatalogue:
    """Parse an endpoints.ts (plain or gzip)."""
    raw = path.read_bytes()
    return parse_types(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)


def parse_types(source: str | bytes) -> TypeCatalogue:
    """Parse endpoints.ts text."""
    return TypeCatalogue(source.encode("utf-8") if isinstance(source, str) else source)


def _declarations(root: Node) -> Iterator[Node]:
    for statement in root.named_children:
        node = statement
        if node.type == "export_statement":
            node = next((c for c in node.named_children if c.type != "comment"), node)
        if node.type == "type_alias_declaration":
            yield node
        elif node.type != "comment":
            line = node.start_point[0] + 1
            raise ValueError(f"line {line}: expected `export type X = ...`, got a {node.type}")


def _type_of(member: Node) -> Node:
    annotation = member.child_by_field_name("type")
    if annotation is None or not annotation.named_children:
        raise ValueError(f"property without a type at line {member.start_point[0] + 1}")
    return annotation.named_children[0]


def _flatten(node: Node) -> list[Node]:
    """The members of a union in source order. tree-sitter nests `a | b | c` as `(a | b) | c`, as deep as the union
    is long (fal's unions reach 200 members), so this walks without recursion."""
    members: list[Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "union_type":
            stack.extend(reversed(current.named_children))
        else:
            members.append(current)
    return members


def _doc_comment(comment: str) -> tuple[str, Any]:
    """(description, default) from a `/** ... */` comment: its lines without the ` * ` gutter, line breaks kept, and
    the trailing `Default value: \\`...\\`` taken off and parsed (JSON if it parses, else the bare text; fal's
    generator writes a null default as `"null"`, which is read back as null)."""
    if not comment.startswith("/**"):
        return "", None
    lines = [re.sub(r"^\s*\* ?", "", line) for line in comment[3:-2].splitlines()]
    text = "\n".join(lines).strip()
    match = _DEFAULT.search(text)
    if match is None:
        return text, None
    raw = match.group(1)
    default = None if raw == '"null"' else _json(raw)
    return text[: match.start()].rstrip(), default


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _fits(value: Any, schema: dict[str, Any], defs: dict[str, dict[str, Any]]) -> bool:
    """Whether a default is an instance of the converted type (a default that does not fit is dropped)."""
    if "anyOf" in schema:
        return any(_fits(value, branch, defs) for branch in schema["anyOf"])
    if "$ref" in schema:
        return _fits(value, defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs)
    if "enum" in schema:
        return any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return isinstance(value, list) and all(_fits(v, schema["items"], defs) for v in value)
    checks = {"string": str, "boolean": bool, "object": dict}
    if kind == "number":
        return _is_number(value)
    return kind is None or isinstance(value, checks[kind])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _where(owner: str, prop: str) -> str:
    return f"{owner}.{prop}" if prop else owner


def _first_error_line(node: Node) -> int:
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "ERROR" or current.is_missing:
            return current.start_point[0] + 1
        stack.extend(reversed(current.children))
    return 0
