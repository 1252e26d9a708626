"""`python -m codegen sync`: bring `specs/` up to date with fal's live model search, and say what changed.

The walk (`GET /v1/models?expand=openapi-3.0`, every cursor page, on `FAL_API_HOST`) is fal_runtime's typed
`iter_models`, so it pages, retries and honours 429 + Retry-After as any runtime call does. Each listed endpoint goes
through the importer's own normalizer and checks. Nothing is written until the whole walk has succeeded; then each
new or changed spec is written atomically. An endpoint whose document cannot be repaired is skipped and reported
(file#pointer), the rest imported. Curated specs are never overwritten: the report says where fal's data differs.
Specs that fal no longer lists are reported, and deleted only with `prune` (curated ones never).
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codegen.generation import ir, loader
from codegen.generation.escape import markdown, markdown_code
from codegen.generation.listing import LISTING_FILE, listing_json
from codegen.problems import InvalidSpecError, Level, Problem, display_path
from codegen.spectools import importer

if TYPE_CHECKING:
    from codegen.spectools.diff import Change
    from fal_runtime import Client
    from fal_runtime.platform import ModelEntry


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
    prune_refused: str = ""  # why `prune` deleted nothing
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
            lines += [f"- `{markdown_code(o.item.endpoint_id)}`{_about(o.item.spec)}" for o in self.added]
        if self.changed:
            lines += ["", f"## Changed ({len(self.changed)})"]
            for outcome, changes in self.changed:
                lines += ["", f"### `{markdown_code(outcome.item.endpoint_id)}`", ""]
                lines += [_change(c) for c in changes] or ["- documentation, examples or metadata only"]
        if self.curated:
            lines += ["", f"## Curated specs where fal's data differs (kept; decide by hand) ({len(self.curated)})"]
            for outcome in self.curated:
                lines += ["", f"### `{markdown_code(outcome.item.endpoint_id)}`", ""]
                lines += [_change(c) for c in outcome.changes] or ["- documentation, examples or metadata only"]
        if self.deprecated:
            lines += ["", f"## Deprecated by fal ({len(self.deprecated)})", ""]
            lines += [f"- `{markdown_code(eid)}`" for eid in self.deprecated]
        if self.absent:
            state = "deleted (--prune)" if self.pruned else "kept; --prune deletes those not curated"
            if self.prune_refused:
                state = f"kept: {self.prune_refused}"
            lines += ["", f"## Absent from fal's listing ({len(self.absent)}: {state})", ""]
            lines += [f"- `{markdown_code(eid)}`{' (deleted)' if eid in self.pruned else ''}" for eid in self.absent]
        if self.skipped:
            lines += ["", f"## Skipped ({len(self.skipped)})", ""]
            for endpoint_id, problems in self.skipped:
                why = "; ".join(
                    f"{markdown(p.file)}#{markdown(p.pointer)}: {markdown(p.message)}" for p in problems[:3]
                )
                more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
                lines.append(f"- `{markdown_code(endpoint_id)}`: {why}{more}")
        return "\n".join(lines) + "\n"


_LISTING_TEXT = "fal's model search (GET /v1/models), as fal listed its endpoints on the day of the sync"


@dataclass(frozen=True)
class Limits:
    """How much of a listing a sync reads before it stops, so a listing whose pages never end (or never stop
    growing) cannot keep it walking, and holding entries, for ever. fal lists ~1,500 endpoints in ~15 pages of
    100; the defaults leave room for ten times that. Reaching one fails the sync, writing nothing."""

    max_pages: int = 500
    max_entries: int = 20_000
    max_seconds: float = 1_800.0
    # Pruning deletes specs: refused (unless forced) when the listing is empty, or when it would delete more than
    # this share of the specs in scope and more than `max_prune_count`, as a truncated listing would.
    max_prune_share: float = 0.1
    max_prune_count: int = 10


class SyncLimitError(ValueError):
    """The walk reached one of `Limits`: nothing was written."""


def sync(
    specs_root: Path,
    *,
    client: Client | None = None,
    endpoint_ids: list[str] | None = None,
    category: str | None = None,
    dry_run: bool = False,
    prune: bool = False,
    force_prune: bool = False,
    limits: Limits = Limits(),
    cache_dir: Path | None = None,
) -> Report:
    """Walk fal's listing, import what is new or changed, report everything (see the module docstring).

    Each entry is read on its own: one that cannot be imported, or whose module the generator would refuse, is
    skipped with the reason, and the others go on. `cache_dir` is the generator's module cache, shared with the
    `make gen` that follows."""
    from fal_runtime import Client

    report = Report(dry_run=dry_run, scope=_scope(endpoint_ids, category))
    own = client is None
    api = client or Client()
    ready: list[tuple[importer.Outcome, str]] = []
    seen: set[str] = set()
    listed: dict[str, dict[str, str]] = {}  # what `specs/LISTING.json` records of each entry
    try:
        for entry in _walk(api, endpoint_ids, category, limits):
            report.listed += 1
            endpoint_id = entry.endpoint_id
            seen.add(endpoint_id)
            if ir.is_endpoint_id(endpoint_id):
                meta = entry.metadata
                listed[endpoint_id] = {k: v for k, v in (("display_name", meta.display_name),
                                       ("category", meta.category), ("status", meta.status)) if isinstance(v, str)}  # fmt: skip
            if entry.metadata.status == "deprecated":
                report.deprecated.append(endpoint_id)
            prepared, problems = _prepare(entry, specs_root)
            if problems:
                report.skipped.append((endpoint_id, problems))
            else:
                ready.extend(prepared)
    finally:
        if own:
            api.close()
    ready = _generator_checks(specs_root, ready, report, cache_dir)
    for outcome, _ in ready:
        if outcome.state == "unchanged":
            report.unchanged += 1
        elif outcome.state == "curated":
            report.curated.append(outcome)
        elif outcome.target.exists():
            report.changed.append((outcome, outcome.changes))
        else:
            report.added.append(outcome)
    report.absent = _absent(specs_root, seen, endpoint_ids, category)
    if dry_run:
        return report
    importer.write(ready)
    if (
        not endpoint_ids and not category
    ):  # the whole listing: the catalogue's record of it (`codegen.generation.listing`)
        record = {"from": _LISTING_TEXT, "date": datetime.date.today().isoformat(), "endpoints": listed}
        importer.write_text(specs_root / LISTING_FILE, listing_json(record))
    if prune:
        deletable = [e for e in report.absent if not importer.is_curated(_spec_text(specs_root, e))]
        in_scope = report.listed + len(report.absent)
        share = len(deletable) / in_scope if in_scope else 1.0
        sharply_smaller = share > limits.max_prune_share and len(deletable) > limits.max_prune_count
        if deletable and not force_prune and (report.listed == 0 or sharply_smaller):
            report.prune_refused = (
                f"pruning would delete {len(deletable)} of {in_scope} specs ({share:.0%}) from a listing of "
                f"{report.listed}: an empty or truncated listing looks like this; nothing deleted (--force-prune "
                "deletes them)"
            )
        else:
            for endpoint_id in deletable:
                (specs_root / f"{endpoint_id}.yaml").unlink()
                report.pruned.append(endpoint_id)
    return report


def _walk(api: Client, endpoint_ids: list[str] | None, category: str | None, limits: Limits) -> Iterator[ModelEntry]:
    """fal's listing, entry by entry as each page arrives (a page's entries are dropped once imported), within
    `limits`."""
    from fal_runtime.platform import search_models

    deadline = time.monotonic() + limits.max_seconds
    cursor: str | None = None
    visited: set[str] = set()
    entries = 0
    for page_number in range(1, limits.max_pages + 1):
        page = search_models(
            endpoint_ids=endpoint_ids or (), category=category, expand=["openapi-3.0"], client=api, cursor=cursor
        )
        entries += len(page.models)
        if entries > limits.max_entries:
            raise SyncLimitError(f"the listing has more than {limits.max_entries:,} entries: stopped at page "
                                 f"{page_number}")  # fmt: skip
        yield from page.models
        if not page.has_more:
            return
        if not page.next_cursor or page.next_cursor in visited:
            raise SyncLimitError(f"page {page_number} says has_more but gives no new cursor: stopped")
        visited.add(page.next_cursor)
        cursor = page.next_cursor
        if time.monotonic() > deadline:
            raise SyncLimitError(f"the walk took more than {limits.max_seconds:.0f} s: stopped at page {page_number}")
    raise SyncLimitError(f"the listing has more than {limits.max_pages} pages: stopped")


def _prepare(entry: ModelEntry, specs_root: Path) -> tuple[list[tuple[importer.Outcome, str]], list[Problem]]:
    """One listing entry through the importer and its checks: what writing it would do, or why it cannot be
    imported. Nothing an entry holds may stop the sync of the others: a failure the importer did not foresee is
    reported against the entry too."""
    endpoint_id = entry.endpoint_id
    origin = f"fal's model search ({endpoint_id})"
    if not ir.is_endpoint_id(endpoint_id):
        return [], [Problem(origin, "/endpoint_id", "not an endpoint id fal would serve ('owner/alias[/path...]', "
                            f"segments of at most {ir.MAX_SEGMENT_LENGTH} characters)")]  # fmt: skip
    if isinstance(entry.openapi, dict):
        malformed = loader.check_structure(loader.SpecDocument(Path(origin), origin, entry.openapi))
        if malformed is not None:
            return [], [malformed]
    raw = {"endpoint_id": endpoint_id, "metadata": entry.metadata.model_dump(exclude_none=True),
           "openapi": entry.openapi}  # fmt: skip
    text = "fal's model search (GET /v1/models?expand=openapi-3.0), as fal serves the endpoint now"
    try:
        source = importer.listing_source(raw, origin, text)
        if source.endpoint_id != endpoint_id:
            raise InvalidSpecError([Problem(origin, "/info/x-fal-metadata/endpointId",
                                            f"the document names another endpoint: {source.endpoint_id!r}")])  # fmt: skip
        imported, problems = importer.collect([source])
        prepared, more = importer.prepare(imported, specs_root)
        problems += more
    except InvalidSpecError as exc:
        return [], exc.problems
    except (RecursionError, OSError, ValueError, LookupError, TypeError) as exc:
        return [], [Problem(origin, "", f"cannot import: {type(exc).__name__}: {str(exc)[:200]}")]
    errors = [p for p in problems if p.level is Level.ERROR]
    return ([], errors) if errors else (prepared, [])


def _generator_checks(
    specs_root: Path, ready: list[tuple[importer.Outcome, str]], report: Report, cache_dir: Path | None
) -> list[tuple[importer.Outcome, str]]:
    """The specs a sync would write, generated with the specs already there, by the generator itself: an entry
    that would stop `make gen` (an id equal to another's but for case or punctuation, a module it cannot write) is
    skipped with the generator's reason, so the catalogue always generates. Runs in a copy; writes nothing."""
    from codegen.generation.pipeline import generate

    candidates = {o.target.relative_to(specs_root.resolve()).as_posix(): (o, text) for o, text in ready
                  if o.state == "written"}  # fmt: skip
    if not candidates:
        return ready
    dropped = _module_collisions(specs_root, candidates, report)
    with tempfile.TemporaryDirectory(prefix="fal-sync-") as tmp:
        tree = Path(tmp) / "specs"
        for path in loader.find_spec_files(specs_root):
            rel = path.relative_to(specs_root).as_posix()
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tree / rel)
        for rel, (_, text) in candidates.items():
            if rel in dropped:
                continue
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text, encoding="utf-8")
        for _ in range(len(candidates) + 1):
            try:
                generate(tree, Path(tmp) / "out", cache_dir=cache_dir, jobs=os.cpu_count() or 1)
                break
            except InvalidSpecError as exc:
                by_file: dict[str, list[Problem]] = {}
                for problem in exc.problems:
                    by_file.setdefault(problem.file, []).append(problem)
                bad = [rel for rel in candidates if rel not in dropped and display_path(tree / rel) in by_file]
                if not bad:  # only specs already in the tree are broken: `make gen` reports them itself
                    break
                for rel in bad:
                    dropped.add(rel)
                    outcome = candidates[rel][0]
                    problems = [replace(p, file=outcome.item.origin) for p in by_file[display_path(tree / rel)]]
                    report.skipped.append((outcome.item.endpoint_id, problems))
                    if (specs_root / rel).exists():
                        shutil.copyfile(specs_root / rel, tree / rel)
                    else:
                        (tree / rel).unlink()
    return [(o, text) for o, text in ready if o.state != "written" or
            o.target.relative_to(specs_root.resolve()).as_posix() not in dropped]  # fmt: skip


def _module_collisions(
    specs_root: Path, candidates: dict[str, tuple[importer.Outcome, str]], report: Report
) -> set[str]:
    """Candidates the generator would refuse beside another endpoint of the same module (see
    `importer.module_collisions`), skipped with the reason."""
    found = importer.module_collisions(specs_root, {rel: o.item.endpoint_id for rel, (o, _) in candidates.items()})
    for rel, message in found.items():
        outcome = candidates[rel][0]
        report.skipped.append((outcome.item.endpoint_id, [Problem(outcome.item.origin, "/endpoint_id", message)]))
    return set(found)


def _spec_text(specs_root: Path, endpoint_id: str) -> str:
    return (specs_root / f"{endpoint_id}.yaml").read_text(encoding="utf-8")


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
    parts = ([f"endpoint {', '.join(f'`{markdown_code(e)}`' for e in endpoint_ids)}"] if endpoint_ids else []) + (
        [f"category `{markdown_code(category)}`"] if category else []
    )
    return f" ({'; '.join(parts)})" if parts else ""


def _about(spec: dict[str, Any]) -> str:
    meta = spec.get("info", {}).get("x-fal-metadata", {})
    bits = [markdown(str(meta[k])) for k in ("displayName", "category") if meta.get(k)]
    return f": {' · '.join(bits)}" if bits else ""


def _change(change: Change) -> str:
    where = f"{change.side} `{markdown_code(change.field)}`" if change.field else change.side or "endpoint"
    mark = " **breaking**" if change.breaking else ""
    return f"- {where}: {markdown(change.what)}{mark}"
