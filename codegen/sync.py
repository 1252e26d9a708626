"""`python -m codegen sync`: bring `specs/` up to date with fal's live model search, and say what changed.

The walk (`GET /v1/models?expand=openapi-3.0`, every cursor page, on `FAL_API_HOST`) is fal_runtime's typed
`iter_models`, so it pages, retries and honours 429 + Retry-After as any runtime call does. Each listed endpoint goes
through the importer's own normalizer and checks. Nothing is written until the whole walk has succeeded; then each
new or changed spec is written atomically. An endpoint whose document cannot be repaired is skipped and reported
(file#pointer), the rest imported. Curated specs are never overwritten: the report says where fal's data differs.
Specs that fal no longer lists are reported, and deleted only with `prune` (curated ones never).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codegen import importer, loader
from codegen.problems import InvalidSpecError, Level, Problem

if TYPE_CHECKING:
    from codegen.diff import Change
    from fal_runtime import Client


@dataclass
class Report:
    """What a sync found; `render()` is the Markdown a sync pull request carries."""

    listed: int = 0
    added: list[importer.Outcome] = field(default_factory=list)
    changed: list[tuple[importer.Outcome, list[Change]]] = field(default_factory=list)
    curated: list[importer.Outcome] = field(default_factory=list)  # kept; fal's data differs
    deprecated: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # specs fal's listing no longer has
    pruned: list[str] = field(default_factory=list)
    skipped: list[tuple[str, list[Problem]]] = field(default_factory=list)
    unchanged: int = 0
    dry_run: bool = False
    scope: str = ""

    @property
    def breaking(self) -> bool:
        return any(c.breaking for _, changes in self.changed for c in changes)

    def render(self) -> str:
        lines = [f"# fal catalogue sync{' (dry run: nothing written)' if self.dry_run else ''}", ""]
        lines.append(
            f"{self.listed} endpoints in fal's listing{self.scope}: {len(self.added)} added, {len(self.changed)} changed, "
            f"{self.unchanged} unchanged, {len(self.curated)} curated kept, {len(self.deprecated)} deprecated, "
            f"{len(self.absent)} absent from the listing, {len(self.skipped)} skipped."
        )
        if self.breaking:
            lines += ["", "**Some changes break callers** (marked below)."]
        if self.added:
            lines += ["", f"## Added ({len(self.added)})", ""]
            lines += [f"- `{o.item.endpoint_id}`{_about(o.item.spec)}" for o in self.added]
        if self.changed:
            lines += ["", f"## Changed ({len(self.changed)})"]
            for outcome, changes in self.changed:
                lines += ["", f"### `{outcome.item.endpoint_id}`", ""]
                lines += [_change(c) for c in changes] or ["- documentation, examples or metadata only"]
        if self.curated:
            lines += ["", f"## Curated specs where fal's data differs (kept; decide by hand) ({len(self.curated)})"]
            for outcome in self.curated:
                lines += ["", f"### `{outcome.item.endpoint_id}`", ""]
                lines += [_change(c) for c in outcome.changes] or ["- documentation, examples or metadata only"]
        if self.deprecated:
            lines += ["", f"## Deprecated by fal ({len(self.deprecated)})", ""]
            lines += [f"- `{eid}`" for eid in self.deprecated]
        if self.absent:
            state = "deleted (--prune)" if self.pruned else "kept; --prune deletes those not curated"
            lines += ["", f"## Absent from fal's listing ({len(self.absent)}: {state})", ""]
            lines += [f"- `{eid}`{' (deleted)' if eid in self.pruned else ''}" for eid in self.absent]
        if self.skipped:
            lines += ["", f"## Skipped ({len(self.skipped)})", ""]
            for endpoint_id, problems in self.skipped:
                why = "; ".join(f"{_md(p.file)}#{_md(p.pointer)}: {_md(p.message)}" for p in problems[:3])
                more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
                lines.append(f"- `{_code(endpoint_id)}`: {why}{more}")
        return "\n".join(lines) + "\n"


def sync(
    specs_root: Path,
    *,
    client: Client | None = None,
    endpoint_ids: list[str] | None = None,
    category: str | None = None,
    dry_run: bool = False,
    prune: bool = False,
) -> Report:
    """Walk fal's listing, import what is new or changed, report everything (see the module docstring)."""
    from fal_runtime import Client
    from fal_runtime.platform import iter_models

    report = Report(dry_run=dry_run, scope=_scope(endpoint_ids, category))
    own = client is None
    api = client or Client()
    try:
        text = "fal's model search (GET /v1/models?expand=openapi-3.0), as fal serves the endpoint now"
        entries = list(
            iter_models(
                endpoint_ids=endpoint_ids or (), category=category, expand=["openapi-3.0"], client=api, limit=None
            )
        )
    finally:
        if own:
            api.close()
    report.listed = len(entries)
    ready: list[tuple[importer.Outcome, str]] = []
    seen: set[str] = set()
    for entry in entries:
        endpoint_id = entry.endpoint_id
        seen.add(endpoint_id)
        if entry.metadata.status == "deprecated":
            report.deprecated.append(endpoint_id)
        raw = {
            "endpoint_id": endpoint_id,
            "metadata": entry.metadata.model_dump(exclude_none=True),
            "openapi": entry.openapi,
        }
        try:
            source = importer.listing_source(raw, f"fal's model search ({endpoint_id})", text)
            if source.endpoint_id != endpoint_id:
                raise InvalidSpecError(
                    [
                        Problem(
                            source.origin,
                            "/info/x-fal-metadata/endpointId",
                            f"the document names another endpoint: {source.endpoint_id!r}",
                        )
                    ]
                )
            imported, problems = importer.collect([source])
            prepared, more = importer.prepare(imported, specs_root)
            problems += more
        except InvalidSpecError as exc:
            problems, prepared = exc.problems, []
        errors = [p for p in problems if p.level is Level.ERROR]
        if errors:
            report.skipped.append((endpoint_id, errors))
            continue
        ready.extend(prepared)
    for outcome, _ in ready:
        if outcome.state == "unchanged":
            report.unchanged += 1
        elif outcome.state == "curated":
            report.curated.append(outcome)
        elif outcome.target.exists():
            report.changed.append(
                (
                    outcome,
                    importer.differences(outcome.target, outcome.target.read_text(encoding="utf-8"), outcome.item),
                )
            )
        else:
            report.added.append(outcome)
    report.absent = _absent(specs_root, seen, endpoint_ids, category)
    if not dry_run:
        importer.write(ready)
        if prune:
            for endpoint_id in report.absent:
                path = specs_root / f"{endpoint_id}.yaml"
                if not importer.is_curated(path.read_text(encoding="utf-8")):
                    path.unlink()
                    report.pruned.append(endpoint_id)
    return report


def _absent(specs_root: Path, seen: set[str], endpoint_ids: list[str] | None, category: str | None) -> list[str]:
    """Specs in the tree that the walk should have listed but did not (within its filters)."""
    if endpoint_ids:
        return sorted(e for e in set(endpoint_ids) - seen if (specs_root / f"{e}.yaml").exists())
    absent = []
    for path in loader.find_spec_files(specs_root):
        endpoint_id = path.relative_to(specs_root).with_suffix("").as_posix()
        if endpoint_id in seen:
            continue
        if category is not None and _category(path) != category:
            continue
        absent.append(endpoint_id)
    return sorted(absent)


def _category(path: Path) -> str | None:
    found: list[Problem] = []
    spec = loader.load(path, found)
    meta = spec.doc.get("info", {}).get("x-fal-metadata") if spec is not None else None
    return meta.get("category") if isinstance(meta, dict) else None


def _scope(endpoint_ids: list[str] | None, category: str | None) -> str:
    parts = ([f"endpoint {', '.join(f'`{_code(e)}`' for e in endpoint_ids)}"] if endpoint_ids else []) + (
        [f"category `{_code(category)}`"] if category else []
    )
    return f" ({'; '.join(parts)})" if parts else ""


def _about(spec: dict[str, Any]) -> str:
    meta = spec.get("info", {}).get("x-fal-metadata", {})
    bits = [_md(str(meta[k])) for k in ("displayName", "category") if meta.get(k)]
    return f": {' · '.join(bits)}" if bits else ""


def _change(change: Change) -> str:
    where = f"{change.side} `{_code(change.field)}`" if change.field else change.side or "endpoint"
    mark = " **breaking**" if change.breaking else ""
    return f"- {where}: {_md(change.what)}{mark}"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+|!~])")


def _md(text: str) -> str:
    """Text from fal, escaped for Markdown: it reaches a pull request's body and must not become markup or HTML."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _code(text: str) -> str:
    """Text inside a code span: no backticks or line breaks can end it early."""
    return " ".join(text.replace("`", "'").split())
