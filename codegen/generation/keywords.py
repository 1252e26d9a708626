"""Which keywords a schema in a spec may hold, and which of them reach datamodel-code-generator.

datamodel-code-generator reads keywords of its own inside a schema (`customTypePath`, `customBasePath`, ...) and
turns them into `from <module> import <name>` and base classes in the generated module, which runs whenever the
module is imported. A spec comes from fal's listing, so a schema must never choose what generated code imports:

- the loader rejects, with its JSON pointer, any keyword that is neither JSON Schema / OpenAPI, one of fal's own
  annotations, nor an `x-` extension (`unknown_keyword`);
- the importer (and so `sync`) drops such keywords from fal's documents, reporting each (`importable`);
- the intermediate model keeps only `GENERATED` keywords (and the file-input markers it reads), so nothing else is
  ever handed to datamodel-code-generator; the generator adds its own custom paths afterwards and accepts no other.
"""

from __future__ import annotations

# JSON Schema 2020-12 and the OpenAPI 3.1 Schema Object: what a schema may say about data.
JSON_SCHEMA = frozenset(
    {
        "$schema", "$id", "$ref", "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor", "$comment", "$vocabulary",
        "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "prefixItems", "items",
        "contains", "properties", "patternProperties", "additionalProperties", "propertyNames", "unevaluatedItems",
        "unevaluatedProperties", "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
        "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
        "maxContains", "minContains", "maxProperties", "minProperties", "required", "dependentRequired", "format",
        "contentEncoding", "contentMediaType", "contentSchema", "title", "description", "default", "deprecated",
        "readOnly", "writeOnly", "examples", "definitions",
        # OpenAPI's own (`nullable` is 3.0's, upgraded to a type list by the loader)
        "discriminator", "xml", "externalDocs", "example", "nullable",
    }
)  # fmt: skip

# Annotations fal writes into its schemas for its playground: inert for a client, kept in specs as fal wrote them.
# `ui` and `_fal_ui_field` mark file inputs; their values are data, never schemas.
FAL_ANNOTATIONS = frozenset(
    {
        "ui", "_fal_ui_field", "limit_description", "max_file_size", "max_height", "max_width", "min_height",
        "min_width", "step", "ge", "le", "min", "max",
    }
)  # fmt: skip

# Keywords whose values are data (or fal's annotations), not schemas: checks do not descend into them.
DATA = frozenset({"examples", "example", "default", "enum", "const", "required", "ui", "_fal_ui_field"})

# What the intermediate model hands on to model generation: the data keywords datamodel-code-generator renders.
GENERATED = frozenset(
    {
        "$ref", "$defs", "definitions", "allOf", "anyOf", "oneOf", "not", "prefixItems", "items", "properties",
        "patternProperties", "additionalProperties", "type", "enum", "const", "multipleOf", "maximum",
        "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems",
        "minItems", "uniqueItems", "maxProperties", "minProperties", "required", "format", "contentEncoding",
        "contentMediaType", "title", "description", "default", "deprecated", "readOnly", "writeOnly", "nullable",
    }
)  # fmt: skip

# Read by the intermediate model to find file inputs, then dropped before model generation.
FILE_MARKERS = frozenset({"ui", "_fal_ui_field"})


def unknown_keyword(key: str) -> bool:
    """A key of a schema object that no spec may hold."""
    return not (key in JSON_SCHEMA or key in FAL_ANNOTATIONS or key.startswith("x-"))
