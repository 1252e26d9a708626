"""fal's own published documents, verbatim, through the same generator: each imports and its examples validate."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
import pytest

from codegen.generation.pipeline import generate
from codegen.problems import Level
from tests.codegen.conftest import SOURCES, write_specs

DOCS = sorted((SOURCES / "fal-openapi").glob("*__*.json"))


def _endpoint_id(doc: dict[str, Any]) -> str:
    return str(doc["info"]["x-fal-metadata"]["endpointId"])


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[ModuleType, set[str]]]]:
    """doc file name → (its generated module, pointers of its examples the loader flagged as invalid)."""
    tmp = tmp_path_factory.mktemp("real")
    # Second captures of an endpoint (`--owner` in the file name) share its id: they go in a second package.
    batches: dict[str, list[Path]] = {"fal_docs": [], "fal_docs_drift": []}
    for doc in DOCS:
        batches["fal_docs_drift" if "--" in doc.name else "fal_docs"].append(doc)
    result: dict[str, tuple[ModuleType, set[str]]] = {}
    sys.path.insert(0, str(tmp))
    try:
        for package, docs in batches.items():
            specs = write_specs(
                tmp / f"specs-{package}",
                {f"{_endpoint_id(json.loads(d.read_text()))}.json": json.loads(d.read_text()) for d in docs},
            )
            outcome, _ = generate(specs, tmp / package, jobs=2)
            pkg = importlib.import_module(package)
            flagged: dict[str, set[str]] = {}
            for w in outcome.warnings:
                if w.level is Level.WARNING and "example" in w.message:
                    flagged.setdefault(Path(w.file).name, set()).add(w.pointer)
            for doc in docs:
                endpoint_id = _endpoint_id(json.loads(doc.read_text()))
                result[doc.name] = (pkg.load(endpoint_id), flagged.get(Path(endpoint_id).name + ".json", set()))
        yield result
    finally:
        sys.path.remove(str(tmp))


def _example(schema: dict[str, Any]) -> dict[str, Any] | None:
    """An instance assembled from the properties' own examples, when they cover every required field."""
    props = schema.get("properties", {})
    example = {k: v["examples"][0] for k, v in props.items() if isinstance(v, dict) and v.get("examples")}
    return example if all(r in example for r in schema.get("required", [])) else None


def test_all_documents_are_covered() -> None:
    assert len(DOCS) == 36


@pytest.mark.parametrize("doc_path", DOCS, ids=[d.stem for d in DOCS])
def test_document_generates_imports_and_validates_its_examples(
    doc_path: Path, packages: dict[str, tuple[ModuleType, set[str]]]
) -> None:
    doc = json.loads(doc_path.read_text())
    module, flagged = packages[doc_path.name]
    endpoint_id = _endpoint_id(doc)
    assert endpoint_id == module.ENDPOINT_ID
    schemas = doc["components"]["schemas"]
    in_ref = doc["paths"][f"/{endpoint_id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    out_ref = doc["paths"][f"/{endpoint_id}/requests/{{request_id}}"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]["$ref"]
    input_schema, output_schema = schemas[in_ref.rsplit("/", 1)[1]], schemas[out_ref.rsplit("/", 1)[1]]

    example_input = _example(input_schema)
    assert example_input is not None, "every fal document has examples for its required inputs"
    parsed, options = module.endpoint.build_input(None, dict(example_input))
    assert options == {}
    assert module.endpoint.payload(parsed) == example_input  # what we would send is exactly fal's example

    example_output = _example(output_schema)
    if example_output is None:
        return
    out_name = out_ref.rsplit("/", 1)[1]
    if any(p.startswith(f"/components/schemas/{out_name}/") for p in flagged):
        with pytest.raises(pydantic.ValidationError):  # fal's example contradicts fal's schema: we follow the schema
            module.Output.model_validate(example_output)
    else:
        module.Output.model_validate(example_output)


@pytest.mark.slow
def test_generated_code_for_every_document_passes_mypy_strict(
    packages: dict[str, tuple[ModuleType, set[str]]], tmp_path: Path
) -> None:
    """What the generator writes for fal's real shapes type-checks as the committed package does (`make test` runs
    mypy on generated/ only, which holds the seeds)."""
    import subprocess

    roots = sorted(
        {Path(sys.modules[module.__name__.split(".")[0]].__file__ or "").parent for module, _ in packages.values()}
    )
    assert [r.name for r in roots] == ["fal_docs", "fal_docs_drift"]
    cmd = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"), *map(str, roots)]
    result = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
