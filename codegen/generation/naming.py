"""Readable, stable Python names for endpoint ids, schema names and files.

Every name that reaches generated code passes through here, so the rules (and their collisions) live in one place.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass

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


_FAL_COLLISION = re.compile(r"(?<=[a-z0-9])Type\d+$")  # fal's suffix for a second schema of one title: `ImageType2`
_GENERIC_SEGMENTS = frozenset({"models", "model", "types", "schemas", "schema", "io"})


# The class a streaming endpoint's module defines for `stream()`'s events: a schema of a streaming endpoint may not
# take it.
STREAM_EVENT = "OutputChunk"


def class_names(
    schema_names: list[str],
    fixed: dict[str, str],
    reserved: frozenset[str] = frozenset(),
    titles: Mapping[str, str] | None = None,
    holders: Mapping[str, Holder] | None = None,
) -> dict[str, str]:
    """Map component schema names to class names a reader can predict.

    `fixed` pins some (the input and output become `Input` / `Output`). Every other schema is named, in this order:

    1. its title (`title: Image` → `Image`), when no other schema of the endpoint takes it: schemas titled as they are
       named claim first, then the others in sorted order. A schema without a title goes by its name, fal's module
       qualification and collision suffix dropped (`registry__image__fast_sdxl__models__Image` → `Image`,
       `ImageFileType2` → `ImageFile`). So fal's collision names (`ImageType2`, titled `Image`) do not reach the
       module.
    2. when that is taken, the field that holds it: the holding class and the field, in the order the input and
       output reach them (`OutputImage` for the items of `Output.images`, `InputImageSize` for `Input.image_size`;
       `holders`); when several fields hold it, the holding class and its title (`ModelUrlsFile` for the file of
       `ModelUrls.fbx`, `.obj`, ...);
    3. for a qualified name, the nearest distinctive module segment in front of it (`FastSdxlImage`);
    4. else the name and a number (`Image2`).

    The result never depends on the order schemas appear in the document. `reserved` names are the module's own
    (`OutputChunk` when the endpoint streams), as `RESERVED_CLASS_NAMES` are every module's.
    """
    titles = titles or {}
    holders = holders or {}
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

    def base(name: str) -> str:
        segments = [s for s in name.split("__") if s]
        return pascal(segments[-1] if segments else name)

    def preferred(name: str) -> str:
        title = titles.get(name)
        return pascal(title) if title else _FAL_COLLISION.sub("", base(name)) or base(name)

    rest = [n for n in schema_names if n not in fixed]
    first = sorted(rest, key=lambda n: (preferred(n) != base(n), "__" in n, n))
    unnamed = [n for n in first if not claim(n, preferred(n))]
    by_reach = sorted(unnamed, key=lambda n: holders[n].order if n in holders else len(schema_names))
    for name in by_reach:
        holder = holders.get(name)
        if holder is not None:
            owner = result.get(holder.schema) or preferred(holder.schema)
            held = (
                preferred(name) if holder.shared else pascal(_singular(holder.field) if holder.item else holder.field)
            )
            if claim(name, owner + held):
                continue
        segments = [s for s in name.split("__") if s]
        prefix = ""
        for seg in reversed(segments[:-1]):
            if seg.lower() in _GENERIC_SEGMENTS:
                continue
            prefix = pascal(seg) + prefix
            if claim(name, prefix + preferred(name)):
                break
        else:
            n = 2
            while not claim(name, f"{preferred(name)}{n}"):
                n += 1
    return result


@dataclass(frozen=True)
class Holder:
    """Where a schema is first reached: the schema and field that hold it (`item`: as a list's items), and how
    early (`order`: the input's fields first, then the output's, each in display order)."""

    schema: str
    field: str
    item: bool
    order: int
    shared: bool = False  # other fields hold it too


def _singular(field: str) -> str:
    """`images` → `image` (the items of a list field); `mask`, `address` stay."""
    return field[:-1] if field.endswith("s") and not field.endswith("ss") and len(field) > 3 else field
