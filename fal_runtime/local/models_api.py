"""fal's model search (`GET /v1/models` on api.fal.ai) for the endpoints this server serves.

The three modes of fal's Platform API — list (no filters), find (`endpoint_id`, repeated, 1-50 ids) and search (`q`,
`category`, `status`) — over the loaded specs, with fal's paging: `limit` (1-100 here, default 50) and an opaque
`cursor` that is, as in fal's own example (`"Mg=="`), the base64 of the next page's number. `expand=openapi-3.0`
inlines each endpoint's spec document under `openapi`. Bad parameters answer 400 with fal's `Error`
(`{"error": {"type": "validation_error", "message": ...}}`).

Each entry's `metadata` comes from the spec: `info.x-fal-metadata` (`displayName`, `category`, `thumbnailUrl`),
`info.description`, `status` ("deprecated" when `x-fal-metadata.deprecated` or the submit operation's `deprecated`
is true) and `stream_url` where the spec has a `/{id}/stream` path. URLs point at this server's run host.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import QueryParams

from .specs import JSON, ServedEndpoint

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_ENDPOINT_IDS = 50
EXPANSIONS = frozenset({"openapi-3.0", "enterprise_status"})
STATUSES = frozenset({"active", "deprecated"})
_STARTED = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")  # `updated_at` when the spec has none


class BadQuery(ValueError):
    """A parameter fal would refuse: answered 400 with fal's `Error` (`faults.error_response`)."""


@dataclass(frozen=True)
class _Entry:
    endpoint: ServedEndpoint
    display_name: str
    category: str | None
    description: str
    status: str
    haystack: str  # lower-cased id, display name and description: what `q` matches


def _entry(endpoint: ServedEndpoint) -> _Entry:
    info = _mapping(endpoint.document.get("info"))
    meta = _mapping(info.get("x-fal-metadata"))
    submit = _mapping(_mapping(_mapping(endpoint.document.get("paths")).get(f"/{endpoint.id}")).get("post"))
    deprecated = meta.get("deprecated") is True or submit.get("deprecated") is True
    display_name = _string(meta.get("displayName")) or endpoint.id
    description = _string(info.get("description")) or ""
    haystack = f"{endpoint.id}\n{display_name}\n{description}".lower()
    status = "deprecated" if deprecated else "active"
    return _Entry(endpoint, display_name, _string(meta.get("category")), description, status, haystack)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class ModelsApi:
    """The search index over the server's endpoints, ordered by endpoint id so pages are stable.

    Built on the first search, not with the server: it reads every endpoint's spec, and the specs are parsed lazily
    (`specs.SpecIndex`) so that a server that is never searched does not parse the whole catalogue."""

    def __init__(self, endpoints: Mapping[str, ServedEndpoint]) -> None:
        self._endpoints = endpoints
        self._built: list[_Entry] | None = None

    @property
    def _entries(self) -> list[_Entry]:
        # Two threads building at once build equal lists; the assignment is atomic, so no lock is needed here.
        if self._built is None:
            self._built = [_entry(self._endpoints[key]) for key in sorted(self._endpoints)]
        return self._built

    def page(self, params: QueryParams, run_base: str) -> JSON:
        """One page of results for a request's query string; BadQuery when fal would answer 400."""
        ids = params.getlist("endpoint_id")
        if len(ids) > MAX_ENDPOINT_IDS:
            raise BadQuery(f"endpoint_id: at most {MAX_ENDPOINT_IDS} ids, got {len(ids)}")
        if any(not i for i in ids):
            raise BadQuery("endpoint_id: must not be empty")
        status = params.get("status")
        if status is not None and status not in STATUSES:
            raise BadQuery(f"status: must be one of {sorted(STATUSES)}")
        expand = set(params.getlist("expand"))
        if expand - EXPANSIONS:
            raise BadQuery(f"expand: unknown {sorted(expand - EXPANSIONS)}; known: {sorted(EXPANSIONS)}")
        limit = _limit(params.get("limit"))
        number = _page_number(params.get("cursor"))

        query = (params.get("q") or "").strip().lower()
        category = params.get("category")
        wanted = set(ids)
        matches = [
            e
            for e in self._entries
            if (not wanted or e.endpoint.id in wanted)
            and (not query or query in e.haystack)
            and (category is None or e.category == category)
            and (status is None or e.status == status)
        ]
        start = (number - 1) * limit
        chosen = matches[start : start + limit]
        has_more = start + limit < len(matches)
        return {
            "models": [_model(e, run_base, "openapi-3.0" in expand) for e in chosen],
            "next_cursor": base64.b64encode(str(number + 1).encode()).decode() if has_more else None,
            "has_more": has_more,
        }


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise BadQuery(f"limit: not an integer: {value[:40]!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit: must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _page_number(cursor: str | None) -> int:
    """The page a cursor names (no cursor: the first); anything this server did not hand out is a BadQuery."""
    if cursor is None:
        return 1
    try:
        text = base64.b64decode(cursor.encode("ascii"), validate=True).decode("ascii")
        number = int(text)
    except (ValueError, UnicodeError, binascii.Error):
        raise BadQuery(f"cursor: invalid cursor {cursor[:40]!r}") from None
    if number < 1 or not text.isdigit():
        raise BadQuery(f"cursor: invalid cursor {cursor[:40]!r}")
    return number


def _model(entry: _Entry, run_base: str, with_openapi: bool) -> JSON:
    endpoint = entry.endpoint
    meta = _mapping(_mapping(endpoint.document.get("info")).get("x-fal-metadata"))
    thumbnail = _string(meta.get("thumbnailUrl"))
    # Every field fal's schema requires (GetModelsResponse): a missing string is "", a date the spec has none of
    # is this server's start; fal's deprecated flags are always false; favourites need an account (null).
    updated = _string(meta.get("updatedAt")) or _STARTED
    metadata: dict[str, Any] = {
        "display_name": entry.display_name,
        "category": entry.category or "",
        "description": entry.description,
        "status": entry.status,
        "tags": [],
        "kind": "inference",
        "model_url": f"{run_base}/{endpoint.id}",
        "thumbnail_url": thumbnail or "",
        "updated_at": updated,
        "date": _string(meta.get("date")) or updated,
        "is_favorited": None,
        "highlighted": False,
        "pinned": False,
    }
    if endpoint.streams:
        metadata["stream_url"] = f"{run_base}/{endpoint.id}/stream"
    model: JSON = {"endpoint_id": endpoint.id, "metadata": metadata}
    if with_openapi:
        model["openapi"] = endpoint.document
    return model
