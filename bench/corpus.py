"""A corpus of N fal-shaped specs for scale benchmarks, built from fal's real documents and the seed specs.

Each copy gets a distinct endpoint id and a slightly different shape (a different optional input field dropped in
each copy of a base), so no two specs generate the same module.
Written to a directory of the caller's choosing; not committed.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _bases() -> list[dict[str, Any]]:
    docs = [json.loads(p.read_text()) for p in sorted((SHARED / "fal-openapi").glob("*.json")) if "--" not in p.name]
    docs += [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "specs").rglob("*.yaml"))]
    return docs


def _retarget(doc: dict[str, Any], new_id: str, k: int) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    old_id = doc["info"]["x-fal-metadata"]["endpointId"]
    doc["info"]["x-fal-metadata"]["endpointId"] = new_id
    doc["paths"] = {path.replace(f"/{old_id}", f"/{new_id}", 1): item for path, item in doc["paths"].items()}
    ref = doc["paths"][f"/{new_id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    optional = [name for name in schema.get("properties", {}) if name not in schema.get("required", [])]
    if optional:
        victim = optional[k % len(optional)]
        del schema["properties"][victim]
        order = schema.get("x-fal-order-properties")
        if isinstance(order, list) and victim in order:
            order.remove(victim)
        for example in schema.get("examples", []):
            example.pop(victim, None)
    return doc


def build(target: Path, count: int) -> list[Path]:
    bases = _bases()
    written = []
    for i in range(count):
        base = bases[i % len(bases)]
        original = base["info"]["x-fal-metadata"]["endpointId"]
        new_id = f"bench-{i // len(bases):03d}/{original}"
        path = target / f"{new_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_retarget(base, new_id, i // len(bases))))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", type=Path)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    print(f"{len(build(args.target, args.count))} specs in {args.target}")


if __name__ == "__main__":
    main()
