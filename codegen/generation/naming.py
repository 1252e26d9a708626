"""Readable, stable Python names for endpoint ids, schema names and files.

Every name that reaches generated code passes through here, so the rules (and their collisions) live in one place.
"""

from __future__ import annotations

import keyword
import re

from codegen.generation.style import MODULE_FUNCTIONS

_NON_IDENT = re.compile(r"[^0-9a-zA-Z_]+")

# Names the generated module itself defines or imports: a schema may not take them.
RESERVED_CLASS_NAMES = frozenset(
    {
        "Annotated", "Any", "AnyUrl", "AwareDatetime", "BaseModel", "ConfigDict", "Dict", "Enum", "Field",
        "List", "Literal", "Optional", "RootModel", "Union", "UUID", "Endpoint", "Client", "AsyncClient",
        "TypeAlias", "Unpack", "Iterator", "AsyncIterator", "Sequence", "FalModel", "FalFile", "FileInput",
    }
)  # fmt: skip


# Lower-case names a generated endpoint module or the package defines: a segment spelled so gets a trailing `_`,
# whether or not a parent endpoint exists today, so `fal-ai/flux-lora/stream` is `fal_ai.flux_lora.stream_` for
# good (as a plain `stream` its import would replace its parent's `stream` function).
RESERVED_MODULE_NAMES = frozenset({"endpoint", "load", *MODULE_FUNCTIONS})


def module_segment(part: str) -> str:
    """One endpoint-id segment as a Python module name: `v1.1-ultra` → `v1_1_ultra`, `3d` → `_3d`,
    `CassetteAI` → `cassetteai`, `stream` → `stream_`."""
    name = _NON_IDENT.sub("_", part).strip("_").lower() or "_"
    if name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in RESERVED_MODULE_NAMES:
        name += "_"
    return name


def module_parts(endpoint_id: str) -> tuple[str, ...]:
    return tuple(module_segment(p) for p in endpoint_id.split("/") if p)


def pascal(text: str) -> str:
    """`fast_sdxl` / `fast-sdxl` / `fastSdxl` → `FastSdxl`."""
    words = [w for w in re.split(r"[^0-9a-zA-Z]+", text) if w]
    out = "".join(w[:1].upper() + w[1:] for w in words)
    if not out:
        return "Model"
    return "_" + out if out[0].isdigit() else out


_GENERIC_SEGMENTS = frozenset({"models", "model", "types", "schemas", "schema", "io"})


# The class a streaming endpoint's module defines for `stream()`'s events: a schema of a streaming endpoint may not
# take it.
STREAM_EVENT = "OutputChunk"


def class_names(
    schema_names: list[str], fixed: dict[str, str], reserved: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Map component schema names to readable class names.

    `fixed` pins some (the input and output become `Input` / `Output`). fal qualifies clashing names with their
    Python module path (`registry__image__fast_sdxl__models__Image`); those become the last segment (`Image`),
    or, when that is taken, the nearest distinctive module segment in front of it (`FastSdxlImage`).
    Unqualified names claim their name first, then qualified ones in sorted order, so the result does not
    depend on the order schemas appear in the document. `reserved` names are the module's own (`OutputChunk` when
    the endpoint streams), as `RESERVED_CLASS_NAMES` are every module's.
    """
    taken = {v: k for k, v in fixed.items()}
    result = dict(fixed)

    def claim(original: str, candidate: str) -> bool:
        if (
            candidate in RESERVED_CLASS_NAMES
            or candidate in reserved
            or (candidate in taken and taken[candidate] != original)
        ):
            return False
        taken[candidate] = original
        result[original] = candidate
        return True

    rest = sorted((n for n in schema_names if n not in fixed), key=lambda n: ("__" in n, n))
    for name in rest:
        segments = [s for s in name.split("__") if s]
        base = pascal(segments[-1] if segments else name)
        if claim(name, base):
            continue
        prefix = ""
        done = False
        for seg in reversed(segments[:-1]):
            if seg.lower() in _GENERIC_SEGMENTS:
                continue
            prefix = pascal(seg) + prefix
            if claim(name, prefix + base):
                done = True
                break
        if done:
            continue
        candidate = base + "Model"
        n = 2
        while not claim(name, candidate):
            candidate = f"{base}Model{n}"
            n += 1
    return result
