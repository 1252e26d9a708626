"""fal's Platform API on the local server (`fal_runtime.local.platform_api`), over real HTTPS.

Conformance: every operation of `specs/_platform/v1.yaml` is called with a valid request built from the spec, and its
answer is validated against that operation's success schema (Draft 2020-12, formats checked, `$ref`s resolved by a
registry over the spec). Then the stateful parts: keys, request history, usage and billing from requests run through
the queue, deleted payloads, paging, and requests refused in fal's `Error` shape.
"""

from __future__ import annotations

import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from fal_runtime.local import LocalServer
from fal_runtime.local.platform_check import check_httpx_request
from fal_runtime.local.platform_query import Refused
from fal_runtime.local.platform_schema import Operation, PlatformSpec
from fal_runtime.local.platform_usage import billable_units, charge
from fal_runtime.local.pricing import Prices
from fal_runtime.local.script import Behaviour
from fal_runtime.local.specs import load_specs
from fal_runtime.local.store import Job

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_SPEC = ROOT / "specs" / "_platform" / "v1.yaml"
SPECS_DIR = Path(__file__).parent / "specs"
SPEC_URI = "https://api.fal.ai/v1/openapi.yaml"
ECHO = "fal-ai/test/echo"
FAST = "fal-ai/test/echo/fast"
DOCUMENT: dict[str, Any] = yaml.load(PLATFORM_SPEC.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
SPEC = PlatformSpec(DOCUMENT)
REGISTRY: Registry[Any] = Registry().with_resource(SPEC_URI, Resource.from_contents(DOCUMENT, DRAFT202012))
OPERATIONS = sorted(SPEC.operations)


# -- fixtures -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def specs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test endpoints plus the Platform API spec (the session's server has no `_platform/`)."""
    specs = tmp_path_factory.mktemp("specs")
    shutil.copytree(SPECS_DIR, specs, dirs_exist_ok=True)
    (specs / "_platform").mkdir()
    shutil.copy(PLATFORM_SPEC, specs / "_platform" / "v1.yaml")
    return specs


@pytest.fixture(scope="module")
def server(specs_dir: Path) -> Iterator[LocalServer]:
    with LocalServer(specs_dir) as local:
        yield local


@pytest.fixture
def fresh(specs_dir: Path) -> Iterator[LocalServer]:
    """A server of its own, for a test that counts everything the server ran."""
    with LocalServer(specs_dir) as local:
        yield local


def trust(server: LocalServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_file))


def queue_client(server: LocalServer) -> httpx.Client:
    """The queue host (root), with a key."""
    return httpx.Client(base_url=server.url, verify=trust(server), headers={"Authorization": "Key k"}, timeout=10)


def api_client(server: LocalServer) -> httpx.Client:
    """The Platform API (`/v1`), with a key."""
    return httpx.Client(
        base_url=f"{server.url}/v1", verify=trust(server), headers={"Authorization": "Key k"}, timeout=10
    )


@pytest.fixture(scope="module")
def fal(server: LocalServer) -> Iterator[httpx.Client]:
    with queue_client(server) as client:
        yield client


@pytest.fixture(scope="module")
def api(server: LocalServer) -> Iterator[httpx.Client]:
    with api_client(server) as client:
        yield client


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for a schema of the spec: local `$ref`s made absolute, resolved through the registry."""
    ref = schema.get("$ref")
    root = {"$ref": f"{SPEC_URI}{ref}"} if isinstance(ref, str) else {"$id": "urn:inline", **schema}
    return Draft202012Validator(root, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER)


def run(fal: httpx.Client, endpoint_id: str = ECHO, payload: dict[str, Any] | None = None) -> str:
    """Submit a request through the queue and wait for it to complete; its request id."""
    body = payload if payload is not None else ({"prompt": "a cat"} if endpoint_id == ECHO else {"text": "x"})
    submitted = fal.post(f"/{endpoint_id}", json=body).json()
    deadline = time.monotonic() + 10
    while fal.get(submitted["status_url"]).json()["status"] != "COMPLETED":
        assert time.monotonic() < deadline, "the request did not complete"
        time.sleep(0.01)
    request_id: str = submitted["request_id"]
    return request_id


def is_error(reply: httpx.Response, status: int, kind: str, *words: str) -> bool:
    """fal's `Error` shape, with `status`, `kind` and a message holding `words`."""
    body = reply.json()
    validator({"$ref": "#/components/schemas/Error"}).validate(body)
    message = body["error"]["message"]
    return reply.status_code == status and body["error"]["type"] == kind and all(w in message for w in words)


# -- requests built from the spec ---------------------------------------------------------------------------------------


def value_for(schema: dict[str, Any]) -> Any:
    """A valid value for a parameter: its example when valid, else a synthesized instance."""
    example = schema.get("example")
    if example is not None and SPEC.valid(schema, example):
        return example
    return SPEC.instance(schema)


def body_for(operation: Operation) -> Any:
    """A valid body for the operation: the request body's example when valid, else a synthesized one."""
    assert operation.body_schema is not None
    examples = [SPEC.resolve(operation.body_schema).get("example")]
    media = (DOCUMENT["paths"][operation.template][operation.method.lower()]["requestBody"]["content"]).get(
        operation.body_media, {}
    )
    examples.insert(0, media.get("example"))
    return next((e for e in examples if e is not None and SPEC.valid(operation.body_schema, e)), None) or SPEC.instance(
        operation.body_schema
    )


def existing(api: httpx.Client, fal: httpx.Client, name: str) -> dict[str, str]:
    """Path parameters naming something that exists, made fresh (so a delete in one test touches no other)."""
    if name == "key_id":
        return {"key_id": api.post("/keys", json={"alias": "conformance"}).json()["key_id"]}
    if name == "collection_id":
        return {"collection_id": api.post("/assets/collections", json={"name": "c"}).json()["collection"]["id"]}
    if name == "tag_id":
        return {"tag_id": api.post("/assets/tags", json={"name": "t"}).json()["tag"]["id"]}
    if name in ("username", "workflow_name"):
        made = api.post("/workflows", json=body_for(SPEC.operations["createWorkflow"])).json()["workflow"]
        return {"username": made["user_nickname"], "workflow_name": made["name"]}
    if name == "request_id":
        return {"request_id": run(fal)}
    return {}


def request_for(operation: Operation, api: httpx.Client, fal: httpx.Client) -> dict[str, Any]:
    """httpx arguments for a valid call: required parameters (endpoint ids name the served endpoints), a body."""
    path_values: dict[str, Any] = {}
    query: dict[str, Any] = {}
    for parameter in operation.parameters:
        if parameter.location == "path":
            path_values.setdefault(parameter.name, value_for(parameter.schema))
            path_values.update(existing(api, fal, parameter.name))
        elif parameter.location == "query" and parameter.required:
            query[parameter.name] = ECHO if parameter.name == "endpoint_id" else value_for(parameter.schema)
    url = operation.template.format(**{k: str(v) for k, v in path_values.items()})
    arguments: dict[str, Any] = {"method": operation.method, "url": url, "params": _params(query)}
    if operation.operation_id == "estimatePricing":
        arguments["json"] = {"estimate_type": "unit_price", "endpoints": {ECHO: {"unit_quantity": 2}}}
    elif operation.body_media == "multipart/form-data":
        arguments["files"] = {"file_upload": ("hello.txt", b"hello")}
    elif operation.body_schema is not None:
        arguments["json"] = body_for(operation)
    return arguments


def _params(query: dict[str, Any]) -> dict[str, Any]:
    def text(value: Any) -> Any:
        if isinstance(value, list):
            return [text(v) for v in value]
        return str(value).lower() if isinstance(value, bool) else str(value)

    return {k: text(v) for k, v in query.items()}


# -- conformance --------------------------------------------------------------------------------------------------------


def test_the_spec_has_every_operation_of_fals_platform_api() -> None:
    assert len(OPERATIONS) == 82
    assert DOCUMENT["info"]["x-fal-kind"] == "platform-api"


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_every_operation_answers_its_success_schema(
    operation_id: str, server: LocalServer, api: httpx.Client, fal: httpx.Client
) -> None:
    server.set_prices({ECHO: (0.25, "image")})
    if operation_id in ("listRequestsByEndpoint", "searchRequests", "getUsage", "getBillingEvents", "getAnalytics"):
        run(fal)  # something to report
    operation = SPEC.operations[operation_id]
    arguments = request_for(operation, api, fal)
    reply = api.request(**arguments)
    assert reply.status_code == operation.status, (operation_id, reply.status_code, reply.text[:500])
    assert "x-fal-request-id" in reply.headers
    if operation.media is None:
        assert reply.content == b""
        return
    assert reply.headers["content-type"].split(";")[0] == operation.media
    if operation.media == "application/json":
        assert operation.schema is not None
        validator(operation.schema).validate(reply.json())
    else:
        assert reply.content  # a small body of its type


def test_every_success_answer_is_json_validated_or_typed() -> None:
    """The numbers behind the conformance test above: every operation, and how its answer is checked."""
    json_answers = [o for o in SPEC.operations.values() if o.media == "application/json"]
    others = [o for o in SPEC.operations.values() if o.media not in (None, "application/json")]
    empty = [o for o in SPEC.operations.values() if o.media is None]
    assert (len(json_answers), len(others), len(empty)) == (68, 6, 8)
    assert all(o.schema is not None and "$ref" in o.schema for o in json_answers)


def test_requests_the_server_builds_from_the_spec_are_valid() -> None:
    """The bodies the conformance test sends conform to fal's body schemas (the check a recorded client request
    would go through)."""
    for operation in SPEC.operations.values():
        if operation.body_schema is not None and operation.body_media == "application/json":
            validator(operation.body_schema).validate(body_for(operation))


def test_recorded_requests_are_checked_against_the_spec() -> None:
    """The check the server runs, pointed at requests recorded without a server: what a client's Platform API calls
    go through once they exist (a mock transport records them as `httpx.Request`s)."""
    usage = httpx.Request("GET", "https://api.fal.ai/v1/models/usage", params={"expand": ["summary", "auth_method"]})
    checked = check_httpx_request(SPEC, usage)
    assert checked.operation.operation_id == "getUsage" and checked.query == {"expand": ["summary", "auth_method"]}
    created = check_httpx_request(SPEC, httpx.Request("POST", "https://api.fal.ai/v1/keys", json={"alias": "ci"}))
    assert created.operation.operation_id == "createApiKey" and created.body == {"alias": "ci"}
    deleted = httpx.Request(
        "DELETE", f"https://api.fal.ai/v1/models/requests/{'0' * 8}-0000-4000-8000-{'0' * 12}/payloads"
    )
    assert check_httpx_request(SPEC, deleted).path == {"request_id": str(deleted.url).split("/")[-2]}

    refusals = [
        (httpx.Request("POST", "https://api.fal.ai/v1/keys", json={"alias": 3}), 400, "alias"),
        (httpx.Request("GET", "https://api.fal.ai/v1/keys", params={"limit": 0}), 400, "'limit'"),
        (httpx.Request("GET", "https://api.fal.ai/v1/models/analytics"), 400, "'endpoint_id'"),
        (httpx.Request("POST", "https://api.fal.ai/v1/assets/tags", json={}), 422, "'name'"),
        (httpx.Request("GET", "https://api.fal.ai/v1/nowhere"), 404, "/v1/nowhere"),
        (httpx.Request("PUT", "https://api.fal.ai/v1/keys"), 405, "PUT"),
    ]
    for request, status, words in refusals:
        with pytest.raises(Refused) as refused:
            check_httpx_request(SPEC, request)
        assert (refused.value.status, words in refused.value.message) == (status, True), refused.value.message


# -- refusals -------------------------------------------------------------------------------------------------------------


def test_a_bad_parameter_is_refused_naming_it(api: httpx.Client) -> None:
    assert is_error(api.get("/keys", params={"limit": 0}), 400, "validation_error", "'limit'", "minimum")
    assert is_error(api.get("/keys", params={"limit": "many"}), 400, "validation_error", "'limit'")
    assert is_error(api.get("/models/requests/by-endpoint"), 400, "validation_error", "'endpoint_id'", "required")
    reply = api.get("/models/requests/by-endpoint", params={"endpoint_id": ECHO, "status": "fine"})
    assert is_error(reply, 400, "validation_error", "'status'")
    reply = api.get("/models/usage", params={"start": "yesterday"})
    assert is_error(reply, 400, "validation_error", "'start'")
    assert is_error(api.get("/keys", params={"cursor": "not a cursor"}), 400, "validation_error", "'cursor'")
    reply = api.delete("/models/requests/not-a-uuid/payloads")
    assert is_error(reply, 400, "validation_error", "'request_id'")


def test_a_bad_body_is_refused_naming_the_field(api: httpx.Client) -> None:
    assert is_error(api.post("/keys", json={}), 400, "validation_error", "body", "'alias'")
    assert is_error(api.post("/keys", json={"alias": ""}), 400, "validation_error", "body", "alias")
    reply = api.post("/assets/tags", json={"name": "x" * 51})  # the asset operations answer 422
    assert is_error(reply, 422, "validation_error", "body", "name")
    reply = api.post("/keys", content=b"{not json", headers={"content-type": "application/json"})
    assert is_error(reply, 400, "validation_error", "JSON")


def test_auth_is_required_where_the_spec_asks_for_a_key(server: LocalServer, api: httpx.Client) -> None:
    with httpx.Client(base_url=f"{server.url}/v1", verify=trust(server)) as anonymous:
        assert is_error(anonymous.get("/keys"), 401, "authorization_error")
        assert is_error(anonymous.get("/models/usage"), 401, "authorization_error")
        assert anonymous.get("/meta").status_code == 200  # the one operation without security
        assert anonymous.get("/models").status_code == 200  # the model search keeps its optional auth
    assert is_error(api.get("/no/such/thing"), 404, "not_found")
    assert api.put("/keys").status_code == 405


def test_without_the_spec_only_model_search_and_pricing_exist(local_server: LocalServer) -> None:
    with httpx.Client(base_url=local_server.url, verify=trust(local_server), headers={"Authorization": "Key k"}) as c:
        assert c.get("/v1/keys").status_code == 404
        assert c.get("/v1/models").status_code == 200
        assert c.get("/v1/models/pricing", params={"endpoint_id": ECHO}).status_code == 200


# -- state ------------------------------------------------------------------------------------------------------------------


def test_keys_are_created_listed_paged_and_deleted(api: httpx.Client) -> None:
    made = [api.post("/keys", json={"alias": f"key {i}"}) for i in range(3)]
    assert all(r.status_code == 201 for r in made)
    created = [r.json() for r in made]
    assert all(c["key"] == f"{c['key_id']}:{c['key_secret']}" for c in created)
    ids = {c["key_id"] for c in created}

    listed: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "expand": "creator_info", **({"cursor": cursor} if cursor else {})}
        body = api.get("/keys", params=params).json()
        listed += body["keys"]
        assert body["has_more"] == (body["next_cursor"] is not None) and len(body["keys"]) <= 2
        if not body["has_more"]:
            break
        cursor = body["next_cursor"]
    mine = {k["key_id"]: k for k in listed if k["key_id"] in ids}
    assert {k["alias"] for k in mine.values()} == {"key 0", "key 1", "key 2"}
    assert all(k["scope"] == "API" and "creator_nickname" in k for k in mine.values())

    gone = created[0]["key_id"]
    assert api.delete(f"/keys/{gone}").status_code == 204
    assert api.delete(f"/keys/{gone}").status_code == 204  # "deleted successfully (or already deleted)"
    assert gone not in {k["key_id"] for k in api.get("/keys", params={"limit": 100}).json()["keys"]}
    assert is_error(api.delete("/keys/never-made"), 404, "not_found", "never-made")


def test_requests_appear_in_history_usage_and_billing_with_units_and_cost(fresh: LocalServer) -> None:
    with queue_client(fresh) as fal, api_client(fresh) as api:
        check_history_usage_and_billing(fresh, fal, api)


def check_history_usage_and_billing(server: LocalServer, fal: httpx.Client, api: httpx.Client) -> None:
    """Two requests run through the queue, priced, then reported: a server of their own, so nothing else counts."""
    server.set_prices({ECHO: (0.25, "image"), FAST: {"unit_price": 0.5, "unit": "second", "billable_units": 3}})
    first, second = run(fal, ECHO), run(fal, FAST)
    since = {"start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))}

    history = api.get(
        "/models/requests/by-endpoint", params={"endpoint_id": f"{ECHO},{FAST}", "expand": "payloads", **since}
    ).json()
    items = {i["request_id"]: i for i in history["items"]}
    assert {first, second} <= set(items)
    assert items[first]["endpoint_id"] == ECHO and items[first]["status_code"] == 200
    assert items[first]["duration"] > 0 and items[first]["json_input"] == {"prompt": "a cat"}
    assert items[first]["json_output"]["images"]
    only_fast = api.get("/models/requests/by-endpoint", params={"endpoint_id": FAST, "request_id": second}).json()
    assert [i["request_id"] for i in only_fast["items"]] == [second]
    found = api.get("/models/requests/search", params={"query": "a cat"}).json()["results"]
    assert first in {r["request_id"] for r in found} and second not in {r["request_id"] for r in found}

    events = api.get("/models/billing-events", params={"request_id": [first, second]}).json()["billing_events"]
    by_id = {e["request_id"]: e for e in events}
    assert by_id[first]["output_units"] == 1 and by_id[first]["unit_price"] == 0.25
    assert by_id[first]["cost_total"] == 0.25 and by_id[first]["cost_estimate_nano_usd"] == 250_000_000
    assert by_id[second]["output_units"] == 3 and by_id[second]["cost_total"] == 1.5  # 3 units (its price entry's)
    assert by_id[second]["endpoint_id"] == FAST

    usage = api.get("/models/usage", params={"expand": ["summary", "time_series"], **since}).json()
    summary = {line["endpoint_id"]: line for line in usage["summary"]}
    assert summary[ECHO]["unit"] == "image" and summary[ECHO]["currency"] == "USD"
    assert summary[ECHO]["quantity"] == 1 and summary[ECHO]["cost_total"] == summary[ECHO]["cost"] == 0.25
    assert summary[FAST]["unit"] == "second" and summary[FAST]["quantity"] == 3 and summary[FAST]["cost_total"] == 1.5
    assert sum(line["cost_total"] for bucket in usage["time_series"] for line in bucket["results"]) == 1.75
    only_echo = api.get("/models/usage", params={"expand": "summary", "endpoint_id": ECHO, **since}).json()
    assert [line["endpoint_id"] for line in only_echo["summary"]] == [ECHO]
    later = {"start": "2999-01-01T00:00:00Z", "end": "2999-01-02"}
    assert api.get("/models/billing-events", params=later).json()["billing_events"] == []

    analytics = api.get(
        "/models/analytics",
        params={"endpoint_id": ECHO, "expand": ["summary", "request_count", "success_count", "p50_duration"], **since},
    ).json()
    assert analytics["summary"][0]["request_count"] == analytics["summary"][0]["success_count"] == 1
    assert analytics["summary"][0]["p50_duration"] > 0


def test_failed_requests_are_listed_but_not_billed(server: LocalServer, api: httpx.Client, fal: httpx.Client) -> None:
    server.behave(FAST, error="boom", times=1)
    failed = run(fal, FAST)
    item = api.get("/models/requests/by-endpoint", params={"endpoint_id": FAST, "request_id": failed}).json()["items"]
    assert item[0]["status_code"] == 500
    errors = api.get("/models/requests/by-endpoint", params={"endpoint_id": FAST, "status": "error"}).json()["items"]
    assert failed in {i["request_id"] for i in errors}
    assert api.get("/models/billing-events", params={"request_id": failed}).json()["billing_events"] == []


def test_a_request_is_billed_at_the_price_it_ran_at(fresh: LocalServer) -> None:
    """fal bills a request when it ends: a price set (or changed) later does not reprice it, in its result's units,
    its billing event or the usage."""
    with queue_client(fresh) as fal, api_client(fresh) as api:
        unpriced = run(fal, FAST)
        fresh.set_prices({FAST: {"unit_price": 0.5, "unit": "second", "billable_units": 3}})
        priced = run(fal, FAST)
        fresh.set_prices({FAST: (9.0, "second")})
        assert fal.get(f"/{FAST}/requests/{priced}").headers["x-fal-billable-units"] == "3"
        events = api.get("/models/billing-events", params={"request_id": [unpriced, priced]}).json()
        by_id = {e["request_id"]: e for e in events["billing_events"]}
        assert (by_id[unpriced]["unit_price"], by_id[unpriced]["output_units"]) == (0, 1)
        assert (by_id[priced]["unit_price"], by_id[priced]["output_units"], by_id[priced]["cost_total"]) == (
            0.5,
            3,
            1.5,
        )
        usage = api.get("/models/usage", params={"expand": "summary", "endpoint_id": FAST}).json()["summary"]
        assert sum(line["cost_total"] for line in usage) == 1.5


def test_a_sync_run_is_in_the_history_and_billed(fresh: LocalServer) -> None:
    """fal's request history holds every request, the run API's (`fal.run`) as the queue's."""
    fresh.set_prices({ECHO: (0.25, "image")})
    with queue_client(fresh) as fal, api_client(fresh) as api:
        ran = fal.post(f"/run/{ECHO}", json={"prompt": "a dog"})
        assert ran.status_code == 200 and ran.headers["x-fal-billable-units"] == "1"
        request_id = ran.headers["x-fal-request-id"]
        fresh.behave(ECHO, error="boom", times=1)
        failed = fal.post(f"/run/{ECHO}", json={"prompt": "a cat"})
        assert failed.status_code == 500
        history = api.get("/models/requests/by-endpoint", params={"endpoint_id": ECHO, "expand": "payloads"}).json()
        items = {i["request_id"]: i for i in history["items"]}
        assert items[request_id]["status_code"] == 200 and items[request_id]["json_input"] == {"prompt": "a dog"}
        assert items[request_id]["json_output"] == ran.json() and items[request_id]["duration"] > 0
        assert items[failed.headers["x-fal-request-id"]]["status_code"] == 500
        events = api.get("/models/billing-events", params={"endpoint_id": ECHO}).json()["billing_events"]
        assert [(e["request_id"], e["cost_total"]) for e in events] == [(request_id, 0.25)]  # the failed one is not
        fresh.behave(ECHO, queue_seconds=1.0, times=1)  # it cannot start within the caller's 0.2 s
        late = fal.post(f"/run/{ECHO}", json={"prompt": "a bird"}, headers={"X-Fal-Request-Timeout": "0.2"})
        assert late.status_code == 504
        history = api.get("/models/requests/by-endpoint", params={"endpoint_id": ECHO}).json()["items"]
        assert {i["request_id"]: i["status_code"] for i in history}[late.headers["x-fal-request-id"]] == 504


def test_usage_and_billing_filter_by_the_key_that_made_each_request(fresh: LocalServer) -> None:
    """An app watching one key's spend: each request records the id of the key it came with (`Key id:secret`)."""
    fresh.set_prices({ECHO: (0.25, "image")})
    with queue_client(fresh) as fal:
        fal.headers["Authorization"] = "Key ci:secret"
        mine = run(fal)
        fal.headers["Authorization"] = "Key other:secret"
        theirs = run(fal)
    with api_client(fresh) as api:
        events = api.get(
            "/models/billing-events", params={"api_key_id": "ci", "expand": "auth_method_structured"}
        ).json()
        assert [e["request_id"] for e in events["billing_events"]] == [mine]
        assert events["billing_events"][0]["auth_method_structured"]["api_key_id"] == "ci"
        both = api.get("/models/billing-events", params={"api_key_id": "ci,other"}).json()["billing_events"]
        assert {e["request_id"] for e in both} == {mine, theirs}
        usage = api.get("/models/usage", params={"expand": "summary", "api_key_id": "other"}).json()["summary"]
        assert [(line["quantity"], line["cost_total"]) for line in usage] == [(1, 0.25)]
        by_login = api.get("/models/billing-events", params={"login_username": "someone"}).json()["billing_events"]
        assert by_login == []  # requests made with a key have no login


def test_billing_events_are_paged_by_cursor(api: httpx.Client, fal: httpx.Client) -> None:
    made = {run(fal) for _ in range(3)}
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2, "request_id": sorted(made)}
    while True:
        body = api.get("/models/billing-events", params=params).json()
        seen += [e["request_id"] for e in body["billing_events"]]
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        params["cursor"] = body["next_cursor"]
    assert sorted(seen) == sorted(made) and len(seen) == 3


def test_deleted_payloads_are_gone(server: LocalServer, api: httpx.Client, fal: httpx.Client) -> None:
    request_id = run(fal)
    response_url = f"/fal-ai/test/requests/{request_id}"
    output = fal.get(response_url).json()
    file_url = output["images"][0]["url"]
    assert fal.get(file_url).status_code == 200

    reply = api.delete(f"/models/requests/{request_id}/payloads", headers={"Idempotency-Key": "once"})
    assert reply.status_code == 200
    assert reply.json()["cdn_delete_results"] == [{"link": file_url, "exception": None}]
    assert fal.get(response_url).status_code == 404  # the result is gone, as an expired one
    assert fal.get(f"{response_url}/status").status_code == 404
    assert fal.get(file_url).status_code == 404  # and so is its output file
    item = api.get(
        "/models/requests/by-endpoint", params={"endpoint_id": ECHO, "request_id": request_id, "expand": "payloads"}
    ).json()["items"][0]
    assert item["json_input"] is None and item["json_output"] is None and item["status_code"] == 200
    assert api.get("/models/billing-events", params={"request_id": request_id}).json()["billing_events"]  # billed

    again = api.delete(f"/models/requests/{request_id}/payloads", headers={"Idempotency-Key": "once"})
    assert again.json() == reply.json()  # the same key: the first answer
    assert api.delete(f"/models/requests/{request_id}/payloads").json() == {"cdn_delete_results": []}
    unknown = api.delete("/models/requests/00000000-0000-4000-8000-000000000000/payloads")
    assert is_error(unknown, 404, "not_found")


def test_workflows_collections_and_tags_are_kept(api: httpx.Client) -> None:
    workflow = body_for(SPEC.operations["createWorkflow"]) | {"name": "kept-flow", "title": "Kept"}
    made = api.post("/workflows", json=workflow).json()["workflow"]
    assert made["title"] == "Kept"
    assert "kept-flow" in {w["name"] for w in api.get("/workflows", params={"search": "kept"}).json()["workflows"]}
    assert api.get(f"/workflows/{made['user_nickname']}/kept-flow").json()["workflow"]["title"] == "Kept"
    assert is_error(api.get("/workflows/local/never-made"), 404, "not_found")

    collection = api.post("/assets/collections", json={"name": "Moodboard"}).json()["collection"]
    path = f"/assets/collections/{collection['id']}"
    assert api.get(path).json()["collection"]["name"] == "Moodboard"
    assert api.patch(path, json={"name": "Renamed"}).json()["collection"]["name"] == "Renamed"
    api.post(f"{path}/favorite")
    assert api.get(path).json()["collection"]["is_favorited"] is True
    assert collection["id"] in {c["id"] for c in api.get("/assets/collections").json()["collections"]}
    assert api.delete(path).status_code == 204
    assert is_error(api.get(path), 404, "not_found")

    tag = api.post("/assets/tags", json={"name": "sky"}).json()["tag"]
    assert api.patch(f"/assets/tags/{tag['id']}", json={"name": "sea"}).json()["tag"]["name"] == "sea"
    assert {"id": tag["id"], "name": "sea"}.items() <= next(
        t for t in api.get("/assets/tags").json()["tags"] if t["id"] == tag["id"]
    ).items()
    assert api.delete(f"/assets/tags/{tag['id']}").status_code == 204
    assert tag["id"] not in {t["id"] for t in api.get("/assets/tags").json()["tags"]}


def test_calls_are_counted_by_operation(server: LocalServer, api: httpx.Client) -> None:
    before = server.counters()["calls"].get("", {}).get("getMeta", 0)
    api.get("/meta")
    assert server.counters()["calls"][""]["getMeta"] == before + 1


# -- units ------------------------------------------------------------------------------------------------------------------


def test_units_come_from_the_result_else_one() -> None:
    endpoint = load_specs(SPECS_DIR)[ECHO]
    job = Job(endpoint, {}, Behaviour(), "https://127.0.0.1")
    job.state, job.status_code = "COMPLETED", 200
    assert billable_units(job) == 1.0
    job.result_headers = {"X-Fal-Billable-Units": "2.5"}
    assert billable_units(job) == 2.5
    billed = charge(job, Prices({ECHO: (0.1, "megapixel")}))
    assert billed is not None and (billed.unit, billed.cost) == ("megapixel", 0.25)
    assert charge(job, Prices()) is not None and charge(job, Prices()).cost == 0.0  # type: ignore[union-attr]
    job.status_code = 500
    assert charge(job, Prices()) is None
