"""One import block for a generated module: what its models use and what its call functions use, nothing else.

Names the call functions need are bound plainly (`overload`, `Endpoint`) unless the models already use that name for
something else (a class called `Endpoint`, an alias), in which case they are imported under a private name
(`_Endpoint`). Client types are written `fal_runtime.Client`, through `import fal_runtime`.
Groups and order follow isort's black profile: standard library, third party, first party; constants, classes,
then functions within a line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

FIRST_PARTY = frozenset({"fal_runtime", "generated"})


@dataclass
class Imports:
    """Requested imports, each bound to a name free in the module: module → {imported name: bound name}."""

    taken: set[str]  # names the module defines itself (classes, aliases)
    modules: set[str] = field(default_factory=set)  # `import module`
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    _bound: dict[str, tuple[str, str]] = field(default_factory=dict)  # bound name → (module, name)

    def add_module(self, module: str) -> None:
        """`import module`, for names used as `module.Name`."""
        top = module.split(".")[0]
        if top in self.taken or self._bound.get(top, (module, "")) != (module, ""):
            raise AssertionError(f"the module defines a name {top!r}, which `import {module}` would replace")
        self._bound[top] = (module, "")
        self.modules.add(module)

    def add(self, module: str, names: Iterable[str]) -> dict[str, str]:
        """Import `names` from `module`; returns each name's binding in the module."""
        return {name: self._bind(module, name) for name in names}

    def _bind(self, module: str, name: str) -> str:
        if name in self.names.get(module, {}):  # imported already
            return self.names[module][name]
        binding = name
        while binding in self.taken or binding in self._bound:
            binding = "_" + binding
        self._bound[binding] = (module, name)
        self.names.setdefault(module, {})[name] = binding
        return binding

    def render(self) -> str:
        """The module's import statements."""
        return "from __future__ import annotations\n\n" + _groups(self.names, self.modules)


def _group(module: str) -> int:
    top = module.split(".")[0]
    return 0 if top in sys.stdlib_module_names else 2 if top in FIRST_PARTY else 1


def _groups(block: Mapping[str, Mapping[str, str]], modules: Iterable[str]) -> str:
    groups: list[list[str]] = [[], [], []]
    for module in sorted(modules):  # isort: `import x` lines come before `from x import` lines in their group
        groups[_group(module)].append(f"import {module}\n")
    for module in sorted(block):
        group = _group(module)
        names = sorted(block[module].items(), key=lambda item: _order(item[0]))
        listed = ", ".join(name if name == bound else f"{name} as {bound}" for name, bound in names)
        groups[group].append(f"from {module} import {listed}\n")
    return "\n".join("".join(lines) for lines in groups if lines)


def _order(name: str) -> tuple[int, str]:
    """isort's `order_by_type`: CONSTANTS, then Classes, then functions."""
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name
