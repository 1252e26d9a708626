"""Finding endpoints: the generated module of an id (with a "did you mean" for a typo), and catalogue searches that
import no endpoint module."""

from __future__ import annotations

import difflib
from types import ModuleType

import click

import generated
from fal_runtime.registry import EndpointInfo


def load(endpoint_id: str) -> ModuleType:
    """The generated module of `endpoint_id`; a usage error (exit 2) suggesting close ids when there is none."""
    if endpoint_id not in generated.ENDPOINTS:
        close = difflib.get_close_matches(endpoint_id, list(generated.ENDPOINTS), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `fal-typed list` shows every endpoint"
        raise click.UsageError(f"unknown endpoint {endpoint_id!r}{hint}")
    return generated.load(endpoint_id)


def search(query: str | None, category: str | None) -> list[EndpointInfo]:
    """Endpoints whose id or display name contains `query` (any case), optionally in one category."""
    if category is not None and category not in generated.ENDPOINTS.categories():
        known = ", ".join(generated.ENDPOINTS.categories())
        raise click.UsageError(f"unknown category {category!r}; known: {known}")
    needle = (query or "").lower()
    return [
        info
        for info in generated.ENDPOINTS.infos(category=category)
        if needle in info.endpoint_id.lower() or needle in info.display_name.lower()
    ]
