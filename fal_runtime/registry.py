"""The lazy endpoint index behind `generated.ENDPOINTS` and `generated.load()`.

fal has over a thousand endpoints; importing `generated` must not import any of them. The index maps endpoint ids
to module names and imports a module only when it is asked for; what a listing shows (category, display name,
deprecation) is in the index itself, so `fal-typed list` or an app's model picker imports no endpoint module.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import NamedTuple

from fal_runtime.errors import UnknownEndpointError as UnknownEndpointError  # importable from here too


class EndpointRow(NamedTuple):
    """What the generated index says of one endpoint, by name (`generated/__init__.py` writes one per endpoint)."""

    module: str  # module name relative to the package (`.fal_ai.flux.dev`)
    category: str = ""  # fal's category (`text-to-image`); "" when fal gave none
    display_name: str = ""  # fal's display name (`FLUX.1 [dev]`); "" when fal gave none
    deprecated: bool = False  # fal lists it as deprecated: calling it warns
    unlisted: str = ""  # the date of fal's newest listing, which no longer names it; "" while listed
    types_only: bool = False  # its models come from fal's TypeScript types alone, not a full JSON Schema
    streams: bool = False  # it has `stream()`
    realtime: bool = False  # it has `realtime()`
    tags: tuple[str, ...] = ()  # fal's gallery tags
    kind: str = ""  # "inference" or "training"
    source: str = ""  # where its schema's newest statement came from (a key of the spec's `info.x-fal-sources`)
    source_date: str = ""


class EndpointInfo(NamedTuple):
    """One endpoint as the index knows it, without importing its module."""

    endpoint_id: str
    module: str  # absolute module name (`generated.fal_ai.flux.dev`)
    category: str  # fal's category (`text-to-image`); "" when fal gave none
    display_name: str  # fal's display name (`FLUX.1 [dev]`); "" when fal gave none
    deprecated: bool  # fal lists it as deprecated: calling it warns
    unlisted: str = ""  # the date of fal's newest listing, which no longer names it (fal may still serve it)
    types_only: bool = False  # its models come from fal's TypeScript types alone
    streams: bool = False
    realtime: bool = False
    tags: tuple[str, ...] = ()
    kind: str = ""
    source: str = ""
    source_date: str = ""


class EndpointRegistry(Mapping[str, ModuleType]):
    """A read-only mapping of endpoint id → generated module, importing each module on first access."""

    def __init__(self, package: str, entries: Mapping[str, str | EndpointRow]) -> None:
        """`entries`: endpoint id → its `EndpointRow`, or just its module name relative to `package`
        (".fal_ai.flux.dev")."""
        self._package = package
        self._entries = {k: EndpointRow(v) if isinstance(v, str) else v for k, v in entries.items()}
        self._modules = {k: v.module for k, v in self._entries.items()}

    def __getitem__(self, endpoint_id: str) -> ModuleType:
        try:
            relative = self._modules[endpoint_id]
        except KeyError:
            import difflib  # only for the error message

            close = difflib.get_close_matches(endpoint_id, self._modules, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownEndpointError(f"no generated module for endpoint {endpoint_id!r}{hint}") from None
        return importlib.import_module(relative, self._package)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._modules

    def module_name(self, endpoint_id: str) -> str:
        """The absolute module name for an endpoint id, without importing it."""
        return self._package + self._modules[endpoint_id]

    def info(self, endpoint_id: str) -> EndpointInfo:
        """What the index knows of one endpoint (KeyError for an unknown id), importing nothing."""
        row = self._entries[endpoint_id]
        return EndpointInfo(endpoint_id, self._package + row.module, *row[1:])

    def infos(
        self, *, category: str | None = None, include_deprecated: bool = True, include_unlisted: bool = True
    ) -> list[EndpointInfo]:
        """Every endpoint, sorted by id; `category` keeps one of fal's categories only; `include_unlisted=False`
        leaves out those fal's newest listing no longer names."""
        found = (self.info(k) for k in sorted(self._entries))
        return [
            i
            for i in found
            if (category is None or i.category == category)
            and (include_deprecated or not i.deprecated)
            and (include_unlisted or not i.unlisted)
        ]

    def categories(self) -> list[str]:
        """fal's categories present in the index, sorted."""
        return sorted({v.category for v in self._entries.values() if v.category})

    def __repr__(self) -> str:
        return f"<EndpointRegistry {self._package!r}: {len(self._modules)} endpoints>"
