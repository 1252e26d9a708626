"""The lazy endpoint index behind `generated.ENDPOINTS` and `generated.load()`.

fal has over a thousand endpoints; importing `generated` must not import any of them. The index maps endpoint ids
to module names and imports a module only when it is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from types import ModuleType


class UnknownEndpointError(KeyError):
    """Raised by `load()` for an endpoint id that has no generated module."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class EndpointRegistry(Mapping[str, ModuleType]):
    """A read-only mapping of endpoint id → generated module, importing each module on first access."""

    def __init__(self, package: str, modules: Mapping[str, str]) -> None:
        self._package = package
        self._modules = dict(modules)  # endpoint id → module name relative to `package` (".fal_ai.flux.dev")

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

    def __repr__(self) -> str:
        return f"<EndpointRegistry {self._package!r}: {len(self._modules)} endpoints>"
