"""`python -m codegen diff [BASE]`: what changed in specs/ since a git ref, as Markdown for a pull request.

Each change is judged from the caller's side of the generated client. Input and output have opposite rules: a
caller *sends* inputs (a new required field or a removed enum value breaks existing calls) and *receives* outputs
(a removed field or a new enum value breaks code that reads them, or the validation of the response).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codegen.generation import ir, loader
from codegen.problems import InvalidSpecError, Level, Problem

BOUNDS = {"minimum": "lower", "exclusiveMinimum": "lower", "minLength": "lower", "minItems": "lower",
          "maximum": "upper", "exclusiveMaximum": "upper", "maxLength": "upper", "maxItems": "upper"}  # fmt: skip


@dataclass(frozen=True)
class Change:
    endpoint: str
    side: str  # "input" | "output" | ""
    field: str
    what: str
    breaking: bool


def _flatten(
    schema: Any,
    schemas: dict[str, Any],
    prefix: str,
    out: dict[str, dict[str, Any]],
    seen: frozenset[str] = frozenset(),
) -> None:
    """Every field reachable from an object schema, keyed by dotted path, with what a caller depends on."""
    if not isinstance(schema, dict):
        return
    required = set(schema.get("required") or [])
    for name, prop in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        alts = _alternatives(prop, schemas)
        out[path] = {
            "type": sorted({_type_name(a) for a in alts}),
            "required": name in required,
            "enum": sorted({repr(v) for a in alts for v in a.get("enum", [])}),
            "default": prop.get("default"),
            "bounds": {k: v for a in alts for k, v in a.items() if k in BOUNDS},
        }
        for alt in alts:
            target = alt.get("items", alt) if alt.get("type") == "array" else alt
            ref = (prop.get("$ref") or (prop.get("items") or {}).get("$ref") or "") if isinstance(prop, dict) else ""
            if isinstance(target, dict) and target.get("properties") and ref not in seen:
                _flatten(target, schemas, path + ("[]." if alt.get("type") == "array" else "."), out, seen | {ref})


def _alternatives(schema: Any, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(schema, dict):
        return []
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return _alternatives(schemas.get(ref.rsplit("/", 1)[1]), schemas)
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list):
            # Keywords beside anyOf (bounds, say) constrain every alternative.
            outer = {k: v for k, v in schema.items() if k in BOUNDS}
            return [{**outer, **a} for sub in schema[key] for a in _alternatives(sub, schemas)]
    if isinstance(schema.get("type"), list):  # `type: [T, "null"]` is the alternatives T and null
        return [a for t in schema["type"] for a in _alternatives({**schema, "type": t}, schemas)]
    if isinstance(schema.get("items"), dict):
        items = _alternatives(schema["items"], schemas)
        return [{**schema, "items": items[0] if len(items) == 1 else {"anyOf": items}}]
    return [schema]


def _type_name(alt: dict[str, Any]) -> str:
    if alt.get("type") == "array":
        items = alt.get("items") or {}
        return f"array<{_type_name(items) if isinstance(items, dict) and 'anyOf' not in items else 'mixed'}>"
    return str(alt.get("type", "any"))


def _fields(endpoint: ir.EndpointIR) -> dict[str, dict[str, dict[str, Any]]]:
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for side, name in (("input", "Input"), ("output", "Output")):
        out: dict[str, dict[str, Any]] = {}
        _flatten(_alternatives(endpoint.schemas[name], endpoint.schemas)[0], endpoint.schemas, "", out)
        result[side] = out
    return result


def compare(old: dict[str, ir.EndpointIR], new: dict[str, ir.EndpointIR]) -> list[Change]:
    changes: list[Change] = []
    for eid in sorted(set(old) | set(new)):
        if eid not in new:
            changes.append(Change(eid, "", "", "endpoint removed", True))
            continue
        if eid not in old:
            changes.append(Change(eid, "", "", "endpoint added", False))
            continue
        before, after = _fields(old[eid]), _fields(new[eid])
        for side in ("input", "output"):
            changes.extend(_compare_side(eid, side, before[side], after[side]))
    return changes


def _compare_side(
    eid: str, side: str, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> list[Change]:
    inp = side == "input"
    out: list[Change] = []
    removed = [f for f in before if f not in after]
    added = [f for f in after if f not in before]
    for f in removed:
        twin = next(
            (
                a
                for a in added
                if a.rpartition(".")[0] == f.rpartition(".")[0] and after[a]["type"] == before[f]["type"]
            ),
            None,
        )
        hint = f" (renamed to `{twin}`?)" if twin else ""
        out.append(Change(eid, side, f, f"field removed{hint}", True))
    for f in added:
        if inp:
            out.append(
                Change(
                    eid,
                    side,
                    f,
                    "required field added" if after[f]["required"] else "optional field added",
                    after[f]["required"],
                )
            )
        else:
            out.append(Change(eid, side, f, "field added", False))
    for f in sorted(set(before) & set(after)):
        b, a = before[f], after[f]
        if b["type"] != a["type"]:
            wider, narrower = set(a["type"]) > set(b["type"]), set(a["type"]) < set(b["type"])
            # A caller sends inputs (a wider type accepts every old call) and reads outputs (a wider type is new to it).
            breaking = not (wider if inp else narrower)
            out.append(Change(eid, side, f, f"type {'|'.join(b['type'])} → {'|'.join(a['type'])}", breaking))
        if b["required"] != a["required"]:
            now = "required" if a["required"] else "optional"
            out.append(Change(eid, side, f, f"now {now}", a["required"] if inp else not a["required"]))
        gone = sorted(set(b["enum"]) - set(a["enum"]))
        new = sorted(set(a["enum"]) - set(b["enum"]))
        if gone and a["enum"]:
            out.append(Change(eid, side, f, f"enum values removed: {', '.join(gone)}", inp))
        if new and b["enum"]:
            out.append(Change(eid, side, f, f"enum values added: {', '.join(new)}", not inp))
        if b["default"] != a["default"]:
            out.append(Change(eid, side, f, f"default {b['default']!r} → {a['default']!r}", False))
        for key in sorted(set(b["bounds"]) | set(a["bounds"])):
            vb, va = b["bounds"].get(key), a["bounds"].get(key)
            if vb == va:
                continue
            tighter = _tighter(key, vb, va)
            # Tighter input bounds reject calls that worked; looser output bounds reject responses that validate now.
            out.append(Change(eid, side, f, f"{key} {vb} → {va}", tighter if inp else not tighter))
    return out


def _tighter(key: str, before: Any, after: Any) -> bool:
    if before is None:
        return True
    if after is None:
        return False
    return bool(after > before) if BOUNDS[key] == "lower" else bool(after < before)


def render(changes: list[Change], base: str) -> str:
    if not changes:
        return f"### Spec changes since `{base}`\n\nNo changes to the endpoints' inputs or outputs.\n"
    breaking = sum(c.breaking for c in changes)
    lines = [f"### Spec changes since `{base}`", "",
             f"**{breaking} breaking**, {len(changes) - breaking} compatible, for callers of the generated client.", ""]  # fmt: skip
    for eid in sorted({c.endpoint for c in changes}):
        lines.append(f"#### `{eid}`")
        lines.append("")
        for c in [c for c in changes if c.endpoint == eid]:
            mark = "**breaking**" if c.breaking else "compatible"
            where = f"{c.side} `{c.field}`: " if c.field else ""
            lines.append(f"- {mark}: {where}{c.what}")
        lines.append("")
    return "\n".join(lines)


def endpoints_in_tree(specs: Path, *, skipped: list[str] | None = None) -> dict[str, ir.EndpointIR]:
    """Every endpoint under `specs` by id. A spec with an error raises `InvalidSpecError` naming its file and
    pointer (a pull request's own tree must be valid), unless `skipped` is given (a base ref's old tree): then each
    error is appended there and its spec left out."""
    problems: list[Problem] = []
    found: dict[str, ir.EndpointIR] = {}
    for path in loader.find_spec_files(specs):
        spec = loader.load(path, problems)
        endpoint = ir.build(spec, path.relative_to(specs).as_posix(), problems) if spec else None
        if endpoint is not None:
            found[endpoint.endpoint_id] = endpoint
    errors = [p for p in problems if p.level is Level.ERROR]
    if errors and skipped is None:
        raise InvalidSpecError(errors)
    if skipped is not None:
        skipped.extend(str(p) for p in errors)
    return found


def endpoints_at_ref(ref: str, specs: Path, tmp: Path, skipped: list[str]) -> dict[str, ir.EndpointIR]:
    """The specs directory as it was at a git ref, materialized in `tmp`; its broken specs are left out and
    reported in `skipped`."""
    top = Path(
        os.fsdecode(
            subprocess.run(
                ["git", "rev-parse", "--show-toplevel"], cwd=specs, capture_output=True, check=True
            ).stdout.strip()
        )
    )
    rel = specs.resolve().relative_to(top).as_posix()
    # NUL-separated: a path may hold spaces, and git would quote one with non-ASCII characters.
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--name-only", ref, "--", rel], cwd=top, capture_output=True, check=True
    ).stdout
    for name in (os.fsdecode(raw) for raw in listing.split(b"\0") if raw):
        blob = subprocess.run(["git", "show", f"{ref}:{name}"], cwd=top, capture_output=True, check=True).stdout
        target = tmp / Path(name).relative_to(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    return endpoints_in_tree(tmp, skipped=skipped)


def merge_base(specs: Path) -> str:
    run = subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=specs, capture_output=True, text=True)
    return run.stdout.strip() or "HEAD"
