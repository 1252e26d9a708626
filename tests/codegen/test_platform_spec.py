"""fal's Platform API document as a spec (`codegen.spectools.platform`) and its intermediate model
(`codegen.generation.operations`): every one of fal's 82 operations, named as fal names them, typed, and nothing
made up."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from codegen.generation import loader, operations
from codegen.spectools import importer
from tests.codegen.conftest import SOURCES

DOCUMENT = SOURCES / "fal-sources" / "fal-platform-api-v1-openapi.json.gz"


@functools.cache
def imported(root: Path) -> Path:
    importer.import_sources([str(DOCUMENT)], root)
    return root / "_platform" / "v1.yaml"


def api(tmp_path: Path) -> operations.ApiIR:
    problems: list[Any] = []
    spec = loader.load(imported(tmp_path), problems)
    assert spec is not None and problems == [], problems
    built = operations.build(spec, "_platform/v1.yaml", problems)
    assert built is not None and problems == []
    return built


def test_the_document_becomes_a_spec_with_named_components_and_its_source(tmp_path: Path) -> None:
    doc = yaml.safe_load(imported(tmp_path).read_text(encoding="utf-8"))
    assert doc["info"]["x-fal-kind"] == "platform-api"
    assert set(doc["info"]["x-fal-sources"]) == {"fal-platform-openapi"}
    assert doc["info"]["x-fal-sources"]["fal-platform-openapi"]["date"] == "2026-08-21"
    schemas = doc["components"]["schemas"]
    assert {"GetUsageResponse", "EstimatePricingRequest", "CreateApiKeyResponse", "Error"} <= set(schemas)
    # Objects written inline are named for their holder and field (singular for a list's items), not by the model
    # generator (`TimeSery1`)
    assert {"GetUsageTimeSeries", "GetUsageTimeSeriesResult", "GetBillingEventsBillingEvent"} <= set(schemas)
    assert "x-mint" not in imported(tmp_path).read_text(encoding="utf-8")
    usage = doc["paths"]["/models/usage"]["get"]
    assert usage["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GetUsageResponse"
    }
    assert usage["responses"]["429"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    again = importer.import_sources([str(DOCUMENT)], tmp_path)
    assert [o.state for o in again] == ["unchanged"], "importing it again changes nothing"


def test_every_operation_is_in_the_model_named_as_fal_names_it(tmp_path: Path) -> None:
    built = api(tmp_path)
    ops = {o.name: o for m in built.modules for o in m.operations}
    assert len(ops) == 82 and built.base_url == "https://api.fal.ai/v1"
    for name in ("get_usage", "list_requests_by_endpoint", "delete_request_payloads", "create_api_key"):
        assert name in ops
    usage = ops["get_usage"]
    assert (usage.method, usage.path, usage.answer, usage.pages, usage.reads) == (
        "GET", "/models/usage", "GetUsageResponse", True, True
    )  # fmt: skip
    limit = next(p for p in usage.params if p.wire == "limit")
    assert (limit.location, limit.required, limit.schema["minimum"]) == ("query", False, 1)
    delete = ops["delete_request_payloads"]
    assert delete.idempotency_key and not any(p.location == "header" for p in delete.params)
    assert [p.wire for p in delete.params] == ["request_id"] and delete.params[0].required
    keys = ops["list_api_keys"]
    assert keys.pages and keys.items == "keys" and keys.admin
    assert ops["create_api_key"].body == "CreateApiKeyRequest" and not ops["create_api_key"].reads
    assert ops["get_focus_report"].answer is None and ops["get_focus_report"].answer_type == "text/csv"


def test_each_module_holds_only_the_models_its_operations_reach(tmp_path: Path) -> None:
    modules = {m.name: m for m in api(tmp_path).modules}
    assert set(modules) >= {"models", "keys", "assets", "serverless", "account", "organization", "meta"}
    assert set(modules["keys"].schemas) == {
        "CreateApiKeyRequest",
        "CreateApiKeyResponse",
        "ListApiKeysResponse",
        "ListApiKeysKey",
    }  # a list's items, named for their holder and field
    assert "GetUsageResponse" in modules["models"].schemas and "GetUsageResponse" not in modules["keys"].schemas


def test_the_model_round_trips_through_the_spec_cache(tmp_path: Path) -> None:
    """An incremental run reads the API's model from the spec cache instead of parsing its 600 KB spec again."""
    import json

    built = api(tmp_path)
    assert operations.api_from_json(json.loads(json.dumps(operations.api_to_json(built)))) == built


def test_the_branches_of_a_union_are_named_by_what_tells_them_apart(tmp_path: Path) -> None:
    """No class of `generated.platform` is named by a counter (`Nodes1`, `EstimatePricingRequest2`, `Openapi1`): a
    union's object branches are named for their holder and field plus the value that tells them apart, else the
    property only that branch requires; a holder's second field of one name takes the holder's full name."""
    schemas = yaml.safe_load(imported(tmp_path).read_text(encoding="utf-8"))["components"]["schemas"]
    assert {
        "EstimatePricingRequestHistoricalApiPrice", "EstimatePricingRequestUnitPrice",  # estimate_type
        "EstimatePricingRequestUnitPriceEndpoint",  # the values of its `endpoints` map
        "GetAssetLineageLineageNodeAsset", "GetAssetLineageLineageNodeRequest",  # kind
        "GetModelsModelOpenapi", "GetModelsModelOpenapiError",  # the required property only one branch has
        "GetModelsModelEnterpriseStatus",  # the one object beside a string
        "UpdateStorageSettingsResponseInitialAcl",  # the request's took UpdateStorageSettingsInitialAcl
    } <= set(schemas)  # fmt: skip
    assert [n for n in schemas if n[-1].isdigit()] == []
    request = schemas["EstimatePricingRequest"]
    assert request["oneOf"] == [{"$ref": "#/components/schemas/EstimatePricingRequestHistoricalApiPrice"},
                                {"$ref": "#/components/schemas/EstimatePricingRequestUnitPrice"}]  # fmt: skip
