"""fal's newest listing as the catalogue knows it (`specs/LISTING.json`), and `CATALOGUE.md`, the page that shows a
reviewer what the package holds against it.

The listing is written by `codegen import` (from a listing file) and `codegen sync` (from fal's live model search);
the generator only reads it, for what no single spec can say: which specs fal no longer lists (kept and marked
unlisted with the listing's date: fal may still serve them) and which listed endpoints no offline source describes
(so no module is generated for them, and a live sync will add them).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codegen.generation.escape import markdown, markdown_code
from codegen.generation.ir import EndpointIR
from codegen.generation.tree import CATALOGUE as CATALOGUE_FILE

__all__ = ["CATALOGUE_FILE", "LISTING_FILE", "Listing", "listing_json", "read_listing", "render_catalogue"]

LISTING_FILE = "LISTING.json"


@dataclass(frozen=True)
class Listing:
    """What `specs/LISTING.json` holds: where the listing came from, its date, and each endpoint it names with its
    display name and category."""

    source: str = ""
    date: str = ""
    endpoints: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return bool(self.endpoints)

    def unlisted(self, endpoints: Sequence[EndpointIR]) -> dict[str, str]:
        """Endpoint id → the listing's date, for each generated endpoint the listing does not name."""
        if not self.known:
            return {}
        return {e.endpoint_id: self.date or "unknown" for e in endpoints if e.endpoint_id not in self.endpoints}


def read_listing(specs_root: Path) -> tuple[Listing, bytes]:
    """The listing beside the specs (an empty one when there is none), and its bytes for the run stamp."""
    path = specs_root / LISTING_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Listing(), b""
    data = json.loads(raw)
    endpoints = data.get("endpoints") if isinstance(data, dict) else None
    if not isinstance(endpoints, dict):
        raise ValueError(f"{path}: expected an object with an `endpoints` object")
    rows = {
        str(k): {f: str(v[f]) for f in ("display_name", "category", "status") if isinstance(v.get(f), str)}
        for k, v in endpoints.items()
        if isinstance(v, dict)
    }
    return Listing(str(data.get("from", "")), str(data.get("date", "")), rows), raw


def render_catalogue(endpoints: Sequence[EndpointIR], listing: Listing, modules: dict[str, str]) -> str:
    """`CATALOGUE.md`: counts by category and by source, every endpoint with what fal says of it, the listed
    endpoints no offline source describes, and the specs fal no longer lists. `modules`: endpoint id → its file."""
    unlisted = listing.unlisted(endpoints)
    generated = {e.endpoint_id for e in endpoints}
    undescribed = sorted(set(listing.endpoints) - generated)
    types_only = sum(e.types_only for e in endpoints)
    lines = [
        "# The catalogue",
        "",
        "Written by `make gen` from `specs/` and `specs/LISTING.json`; `codegen check` holds it current. Do not edit.",
        "",
        f"**{len(endpoints):,} endpoints generated**: {len(endpoints) - types_only:,} from fal's full JSON Schema, "
        f"{types_only:,} from fal's TypeScript types only (no bounds, numbers not told from integers; a live "
        "`make sync` replaces them with fal's full schema).",
    ]
    if listing.known:
        listed = len(listing.endpoints)
        covered = listed - len(undescribed)
        lines += [
            "",
            f"fal's newest listing known here ({markdown(listing.date) or 'undated'}; {markdown(listing.source)}) names "
            f"**{listed:,}** endpoints: {covered:,} generated ({covered / listed:.1%}), {len(undescribed):,} described "
            f"by no offline source (below). {len(unlisted):,} generated endpoints are not in it: kept, marked unlisted "
            "(`fal-typed list --all` shows them).",
        ]
    lines += ["", "## By category", "", "| category | endpoints | of them types only |", "|---|---:|---:|"]
    by_category = Counter(e.category or "(none)" for e in endpoints)
    typed = Counter(e.category or "(none)" for e in endpoints if e.types_only)
    lines += [f"| {markdown(c)} | {n:,} | {typed[c]:,} |" for c, n in sorted(by_category.items())]
    lines += ["", "## By source of the schema", "", "| newest source | endpoints |", "|---|---:|"]
    by_source = Counter(e.source or "(none)" for e in endpoints)
    lines += [f"| `{markdown_code(s)}` | {n:,} |" for s, n in sorted(by_source.items())]
    lines += [
        "",
        "## Endpoints",
        "",
        "| endpoint | display name | category | module | schema | newest source | date | streams | realtime |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in endpoints:
        schema = "types only" if e.types_only else "JSON Schema"
        name = markdown(e.display_name) + (f" (unlisted since {markdown(unlisted[e.endpoint_id])})"
                                        if e.endpoint_id in unlisted else "")  # fmt: skip
        lines.append(
            f"| `{markdown_code(e.endpoint_id)}` | {name} | {markdown(e.category)} | `{modules[e.endpoint_id]}` | {schema} | "
            f"`{markdown_code(e.source)}` | {markdown(e.source_date)} | {'yes' if e.streams else ''} | "
            f"{'yes' if e.realtime else ''} |"
        )
    if listing.known:
        lines += ["", f"## Listed by fal, described by no offline source ({len(undescribed):,})", ""]
        lines += ["These have no spec and no module: a live `make sync` imports them from fal's own documents.", ""]
        lines += ["| endpoint | display name | category |", "|---|---|---|"]
        for endpoint_id in undescribed:
            row = listing.endpoints[endpoint_id]
            lines.append(
                f"| `{markdown_code(endpoint_id)}` | {markdown(row.get('display_name', ''))} | {markdown(row.get('category', ''))} |"
            )
    return "\n".join(lines) + "\n"


def listing_json(record: dict[str, Any]) -> str:
    """`specs/LISTING.json` as written: one key order, one line per endpoint, so a new listing diffs readably."""
    endpoints = record.get("endpoints", {})
    head = {k: v for k, v in record.items() if k != "endpoints"}
    body = ",\n".join(
        f"  {json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False, sort_keys=True)}"
        for k, v in sorted(endpoints.items())
    )
    head_text = json.dumps(head, ensure_ascii=False, indent=1, sort_keys=True)[:-2]
    return f'{head_text},\n "endpoints": {{\n{body}\n }}\n}}\n'
