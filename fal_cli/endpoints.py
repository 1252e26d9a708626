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


def search(query: str | None, category: str | None, *, include_unlisted: bool = False) -> list[EndpointInfo]:
    """Endpoints whose id, display name or category contains each word of `query` (any case), optionally in one of
    fal's categories. Endpoints fal's newest listing no longer names are left out unless `include_unlisted`."""
    categories = generated.ENDPOINTS.categories()
    if category is not None and category not in categories:
        close = difflib.get_close_matches(category, categories, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise click.UsageError(f"unknown category {category!r}; {hint}known: {', '.join(categories)}")
    words = (query or "").lower().split()
    return [
        info
        for info in generated.ENDPOINTS.infos(category=category, include_unlisted=include_unlisted)
        if all(w in f"{info.endpoint_id}\n{info.display_name}\n{info.category}".lower() for w in words)
    ]
