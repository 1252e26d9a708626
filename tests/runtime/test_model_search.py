"""fal's model search, end to end over real HTTPS: `fal_runtime.platform` against the local server's `/v1/models`,
serving 1,100 generated specs so that every walk crosses many pages (fal's catalogue is over 1,200 endpoints).

Covers the three modes (list, find, search with category and status), the cursor walk, a 429 in the middle of a walk
(retried after Retry-After; nothing missed or repeated), malformed pages (ProtocolError naming the cursor), argument
checks that happen before any request, and where the key is (and is not) sent.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import fal_runtime
from fal_runtime import AsyncClient, Client, ProtocolError, RateLimitError, RetryPolicy, errors
from fal_runtime import _client as client_module
from fal_runtime.local import LocalServer
from fal_runtime.platform import (
    ModelEntry,
    ModelsPage,
    iter_models,
    iter_models_async,
    search_models,
    search_models_async,
)

ECHO_SPEC = Path(__file__).parent / "specs" / "fal-ai" / "test" / "echo.yaml"
COUNT = 1_100
CATEGORIES = ("text-to-image", "image-to-video", "text-to-speech")
ZEBRAS = (7, 77, 777)
KEY = "model-search-secret-key"
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)


def endpoint_id(i: int) -> str:
    return f"synth/model-{i:04d}"


def category(i: int) -> str:
    return CATEGORIES[i % len(CATEGORIES)]


def deprecated(i: int) -> bool:
    return i % 10 == 0


def spec(base: dict[str, Any], i: int) -> dict[str, Any]:
    """The echo fixture under a new id, with metadata varied by `i` (category, deprecation two ways, streaming)."""
    doc = copy.deepcopy(base)
    old, new = doc["info"]["x-fal-metadata"]["endpointId"], endpoint_id(i)
    doc["info"]["title"] = f"Queue OpenAPI for {new}"
    doc["info"]["description"] = "A striped ZeBrA of a model." if i in ZEBRAS else f"Synthetic endpoint number {i}."
    doc["info"]["x-fal-metadata"] = {
        "endpointId": new,
        "category": category(i),
        "displayName": "Quokka Painter" if i == 500 else f"Synthetic {i}",
        "thumbnailUrl": f"https://example.invalid/{i}.png",
    }
    doc["paths"] = {path.replace(f"/{old}", f"/{new}", 1): item for path, item in doc["paths"].items()}
    if deprecated(i):
        if i % 20 == 0:
            doc["info"]["x-fal-metadata"]["deprecated"] = True
        else:
            doc["paths"][f"/{new}"]["post"]["deprecated"] = True
    if i % 2:
        del doc["paths"][f"/{new}/stream"]
    return doc


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server with 1,100 endpoints (written as JSON, which the server reads as YAML)."""
    root = tmp_path_factory.mktemp("catalogue")
    base = yaml.safe_load(ECHO_SPEC.read_text())
    for i in range(COUNT):
        path = root / f"{endpoint_id(i)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(spec(base, i)))
    with LocalServer(root) as server:
        assert len(server.endpoints) == COUNT
        yield server


@pytest.fixture
def server(catalogue: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    """The catalogue with fresh counters and rules, FAL_API_HOST pointing at it and no key in the environment."""
    catalogue.reset()
    monkeypatch.setenv("FAL_API_HOST", catalogue.api_host)
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_QUEUE_RUN_HOST", "FAL_RUN_HOST", "FAL_REST_HOST"):
        monkeypatch.delenv(name, raising=False)
    return catalogue


def trust(server: LocalServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_file))


@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    with Client(verify=trust(server), retry=FAST) as c:
        yield c


@pytest.fixture
async def aclient(server: LocalServer) -> Any:
    async with AsyncClient(verify=trust(server), retry=FAST) as c:
        yield c


def model_calls(server: LocalServer) -> int:
    return int(server.counters()["calls"].get("", {}).get("models", 0))


def all_ids() -> list[str]:
    return [endpoint_id(i) for i in range(COUNT)]


# -- the three modes ---------------------------------------------------------------------------------------------------


def test_list_walks_every_page(client: Client, server: LocalServer) -> None:
    ids = [entry.endpoint_id for entry in iter_models(limit=100, client=client)]
    assert ids == all_ids()  # all of them, once each, in the server's stable order
    assert model_calls(server) == 11


async def test_list_walks_every_page_async(aclient: AsyncClient, server: LocalServer) -> None:
    ids = [entry.endpoint_id async for entry in iter_models_async(client=aclient)]  # fal's default page size
    assert ids == all_ids()
    assert model_calls(server) == 22


def test_one_page_and_its_cursor(client: Client, server: LocalServer) -> None:
    first = search_models(limit=3, client=client)
    assert isinstance(first, ModelsPage)
    assert [m.endpoint_id for m in first.models] == all_ids()[:3]
    assert first.has_more and first.next_cursor == base64.b64encode(b"2").decode() == "Mg=="
    second = search_models(limit=3, cursor=first.next_cursor, client=client)
    assert [m.endpoint_id for m in second.models] == all_ids()[3:6]
    last = search_models(limit=100, cursor=base64.b64encode(b"11").decode(), client=client)
    assert len(last.models) == 100 and not last.has_more and last.next_cursor is None


def test_find_by_endpoint_ids(client: Client) -> None:
    wanted = [endpoint_id(10), endpoint_id(11), endpoint_id(500), "nobody/unknown"]
    page = search_models(endpoint_ids=wanted, client=client)
    by_id = {m.endpoint_id: m for m in page.models}
    assert sorted(by_id) == sorted(wanted[:3]) and not page.has_more
    ten, eleven, quokka = by_id[endpoint_id(10)], by_id[endpoint_id(11)], by_id[endpoint_id(500)]
    assert ten.metadata.status == "deprecated" and eleven.metadata.status == "active"
    assert ten.metadata.category == "image-to-video" and ten.metadata.display_name == "Synthetic 10"
    assert ten.metadata.stream_url is not None and ten.metadata.stream_url.endswith(f"/{endpoint_id(10)}/stream")
    assert eleven.metadata.stream_url is None  # its spec has no /stream path
    assert quokka.metadata.display_name == "Quokka Painter"
    assert ten.metadata.description == "Synthetic endpoint number 10."
    assert ten.metadata.thumbnail_url == "https://example.invalid/10.png" and ten.metadata.kind == "inference"
    assert ten.openapi is None  # only with expand


async def test_find_async(aclient: AsyncClient) -> None:
    page = await search_models_async(endpoint_ids=[endpoint_id(3)], client=aclient)
    assert [m.endpoint_id for m in page.models] == [endpoint_id(3)]


def test_search_matches_id_name_and_description_case_insensitively(client: Client) -> None:
    assert [m.endpoint_id for m in iter_models(query="ZEBRA", client=client)] == [endpoint_id(i) for i in ZEBRAS]
    assert [m.endpoint_id for m in iter_models(query="quokka", client=client)] == [endpoint_id(500)]
    assert [m.endpoint_id for m in iter_models(query="MODEL-0042", client=client)] == [endpoint_id(42)]
    assert list(iter_models(query="no such thing anywhere", client=client)) == []


@pytest.mark.parametrize("status", ["active", "deprecated", None])
def test_search_by_category_and_status(client: Client, status: Any) -> None:
    found = list(iter_models(category="image-to-video", status=status, limit=100, client=client))
    expected = [
        endpoint_id(i)
        for i in range(COUNT)
        if category(i) == "image-to-video" and (status is None or (status == "deprecated") == deprecated(i))
    ]
    assert [m.endpoint_id for m in found] == expected
    assert all(m.metadata.category == "image-to-video" for m in found)
    if status is not None:
        assert {m.metadata.status for m in found} == {status}


async def test_search_async(aclient: AsyncClient) -> None:
    found = [m.endpoint_id async for m in iter_models_async(query="zebra", status="active", client=aclient)]
    assert found == [endpoint_id(7), endpoint_id(77), endpoint_id(777)]


def test_expand_inlines_each_openapi_document(client: Client, server: LocalServer) -> None:
    page = search_models(endpoint_ids=[endpoint_id(1), endpoint_id(2)], expand=["openapi-3.0"], client=client)
    for entry in page.models:
        assert entry.openapi == server.endpoints[entry.endpoint_id].document
        assert f"/{entry.endpoint_id}" in entry.openapi["paths"]


def test_default_client_reads_the_environment(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """No client passed: the runtime's default client, trusting SSL_CERT_FILE as every client does."""
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    monkeypatch.setattr(client_module, "_default", None)
    try:
        page = fal_runtime.search_models(endpoint_ids=[endpoint_id(5)])
        assert [m.endpoint_id for m in page.models] == [endpoint_id(5)]
    finally:
        if client_module._default is not None:
            client_module._default.close()


async def test_default_async_client_reads_the_environment(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    monkeypatch.setattr(client_module, "_default_async", weakref.WeakKeyDictionary())
    try:
        found = [m.endpoint_id async for m in fal_runtime.iter_models_async(endpoint_ids=[endpoint_id(6)])]
        assert found == [endpoint_id(6)]
    finally:
        for default in list(client_module._default_async.values()):
            await default.aclose()


# -- faults ------------------------------------------------------------------------------------------------------------


def test_a_429_mid_walk_is_retried_after_retry_after(client: Client, server: LocalServer) -> None:
    server.script(op="models", fault="429", nth=3, retry_after=1)
    started = time.monotonic()
    ids = [entry.endpoint_id for entry in iter_models(limit=100, client=client)]
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured, not the 10 ms backoff
    assert ids == all_ids() and len(set(ids)) == COUNT
    assert model_calls(server) == 12  # 11 pages + the refused one


async def test_a_429_mid_walk_is_retried_async(aclient: AsyncClient, server: LocalServer) -> None:
    server.script(op="models", fault="429", nth=5, retry_after=1)
    server.script(op="models", fault="503", nth=9)
    ids = [entry.endpoint_id async for entry in iter_models_async(limit=100, client=aclient)]
    assert ids == all_ids()
    assert model_calls(server) == 13


def test_a_429_that_persists_is_a_rate_limit_error(client: Client, server: LocalServer) -> None:
    server.script(op="models", fault="429", times=None, retry_after=0)
    with pytest.raises(RateLimitError):
        search_models(client=client)
    assert model_calls(server) == FAST.max_retries + 1


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("<html>upstream error</html>", "not JSON"),
        ('{"models": {"endpoint_id": "x/y"}, "has_more": false}', "'models' list"),
        ('[{"endpoint_id": "x/y"}]', "'models' list"),
        ('{"models": [{"endpoint_id": "a/b"}, {"metadata": {}}], "has_more": false}', "entry 1 has no string"),
        ('{"models": [{"endpoint_id": 42}], "has_more": false}', "entry 0 has no string"),
        ('{"models": [{"endpoint_id": "a/b", "metadata": "oops"}], "has_more": false}', "metadata"),
    ],
)
def test_a_malformed_page_is_a_protocol_error_naming_its_cursor(
    client: Client, server: LocalServer, body: str, complaint: str
) -> None:
    server.script(op="models", fault="body", nth=2, body=body)
    with pytest.raises(ProtocolError) as caught:
        list(iter_models(limit=100, client=client))
    message = str(caught.value)
    assert "cursor 'Mg=='" in message and complaint in message


async def test_a_malformed_page_async(aclient: AsyncClient, server: LocalServer) -> None:
    server.script(op="models", fault="body", nth=1, body="not json at all")
    with pytest.raises(ProtocolError, match=r"first page .*not JSON"):
        await search_models_async(client=aclient)


def test_protocol_error_is_redacted_and_bounded(server: LocalServer) -> None:
    server.script(op="models", fault="body", nth=1, body=f"echoing {KEY} " + "x" * 100_000)
    with (
        Client(KEY, queue_host=server.base, verify=trust(server), retry=FAST) as keyed,
        pytest.raises(ProtocolError) as caught,
    ):
        search_models(client=keyed)
    message = str(caught.value)
    assert KEY not in message and "[redacted]" in message and len(message) < 600


def test_a_walk_that_would_loop_forever_is_a_protocol_error(client: Client, server: LocalServer) -> None:
    looping = {"models": [{"endpoint_id": "a/b"}], "has_more": True, "next_cursor": "Mg=="}
    server.script(op="models", fault="body", nth=2, body=json.dumps(looping))
    with pytest.raises(ProtocolError, match="already visited"):
        list(iter_models(limit=100, client=client))
    server.reset()
    server.script(op="models", fault="body", nth=1, body=json.dumps({**looping, "next_cursor": None}))
    with pytest.raises(ProtocolError, match="next_cursor is missing"):
        list(iter_models(client=client))


def test_unknown_fields_are_kept(client: Client, server: LocalServer) -> None:
    page = {
        "models": [{"endpoint_id": "a/b", "metadata": {"status": "sunset", "brand_new": 1}, "extra": True}],
        "has_more": False,
        "next_cursor": None,
        "total": 1,
    }
    server.script(op="models", fault="body", nth=1, body=json.dumps(page))
    result = search_models(client=client)
    entry = result.models[0]
    assert isinstance(entry, ModelEntry) and entry.metadata.status == "sunset"
    assert entry.metadata.model_extra == {"brand_new": 1} and entry.model_extra == {"extra": True}


# -- arguments -----------------------------------------------------------------------------------------------------------


BAD_ARGUMENTS: list[dict[str, Any]] = [
    {"endpoint_ids": [f"o/a{i}" for i in range(51)]},
    {"endpoint_ids": "fal-ai/flux/dev"},  # one string is a Sequence[str] of characters: refused
    {"endpoint_ids": ["fal-ai/flux/dev", ""]},
    {"limit": 0},
    {"limit": -5},
    {"limit": True},
    {"limit": 2.5},
    {"status": "retired"},
    {"expand": "openapi-3.0"},
    {"query": 42},
]


@pytest.mark.parametrize("arguments", BAD_ARGUMENTS)
def test_bad_arguments_fail_before_any_request(client: Client, server: LocalServer, arguments: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        search_models(**arguments, client=client)
    with pytest.raises((ValueError, TypeError)):
        iter_models(**arguments, client=client)  # at the call, not at the first next()
    assert model_calls(server) == 0


@pytest.mark.parametrize("arguments", BAD_ARGUMENTS)
async def test_bad_arguments_fail_before_any_request_async(
    aclient: AsyncClient, server: LocalServer, arguments: dict[str, Any]
) -> None:
    with pytest.raises((ValueError, TypeError)):
        await search_models_async(**arguments, client=aclient)
    with pytest.raises((ValueError, TypeError)):
        iter_models_async(**arguments, client=aclient)
    assert model_calls(server) == 0


def test_the_wrong_kind_of_client_is_refused(aclient: AsyncClient, client: Client) -> None:
    with pytest.raises(TypeError):
        search_models(client=aclient)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        iter_models_async(client=client)  # type: ignore[arg-type]


# -- the key -------------------------------------------------------------------------------------------------------------


def test_no_key_is_fine(client: Client, server: LocalServer) -> None:
    assert search_models(limit=1, client=client).models
    assert server.counters()["key_on_models"] == 0


def test_the_key_never_reaches_a_host_that_is_not_fals(server: LocalServer) -> None:
    """FAL_API_HOST points at 127.0.0.1 while the client's own hosts are fal's: the search works, keyless."""
    with Client(KEY, verify=trust(server), retry=FAST) as keyed:
        assert [m.endpoint_id for m in iter_models(endpoint_ids=[endpoint_id(1)], client=keyed)] == [endpoint_id(1)]
    assert server.counters()["key_on_models"] == 0


async def test_the_key_never_reaches_a_host_that_is_not_fals_async(server: LocalServer) -> None:
    async with AsyncClient(KEY, verify=trust(server), retry=FAST) as keyed:
        assert (await search_models_async(limit=2, client=keyed)).models
    assert server.counters()["key_on_models"] == 0


def test_the_key_goes_to_a_host_the_client_was_configured_with(server: LocalServer) -> None:
    """As with FAL_QUEUE_RUN_HOST today: the host a client is configured for is trusted with its key."""
    with Client(KEY, queue_host=server.base, verify=trust(server), retry=FAST) as keyed:
        search_models(limit=1, client=keyed)
    assert server.counters()["key_on_models"] == 1


def test_the_key_goes_to_fals_own_api_host() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"models": [], "has_more": False, "next_cursor": None})

    transport = httpx.MockTransport(handler)
    with Client(KEY, http_client=httpx.Client(transport=transport)) as mocked, pytest.MonkeyPatch.context() as patch:
        patch.delenv("FAL_API_HOST", raising=False)
        search_models(endpoint_ids=["a/b", "c/d"], expand=["openapi-3.0"], limit=5, client=mocked)
    (request,) = seen
    # The request is built by the generated operation, in the order fal's spec lists the parameters.
    assert str(request.url).split("?")[0] == "https://api.fal.ai/v1/models"
    assert sorted(request.url.params.multi_items()) == [
        ("endpoint_id", "a/b"), ("endpoint_id", "c/d"), ("expand", "openapi-3.0"), ("limit", "5")
    ]  # fmt: skip
    assert request.headers["authorization"] == f"Key {KEY}"


# -- the server's side of the API ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=ten",
        "cursor=!!!",
        f"cursor={base64.b64encode(b'0').decode()}",
        f"cursor={base64.b64encode(b'-1').decode()}",
        f"cursor={base64.b64encode(b'two').decode()}",
        "status=retired",
        "expand=everything",
        "&".join(f"endpoint_id=o/a{i}" for i in range(51)),
    ],
)
def test_the_server_refuses_bad_parameters_with_400(server: LocalServer, query: str) -> None:
    reply = httpx.get(f"{server.url}/v1/models?{query}", verify=trust(server))
    error = reply.json()["error"]  # fal's `Error` shape, as the Platform API's document gives it for every 4xx
    assert reply.status_code == 400 and error["type"] == "validation_error" and error["message"] and error["request_id"]


def test_the_server_pages_past_the_end_as_empty(server: LocalServer) -> None:
    cursor = base64.b64encode(b"99").decode()
    reply = httpx.get(f"{server.url}/v1/models", params={"cursor": cursor}, verify=trust(server))
    assert reply.json() == {"models": [], "next_cursor": None, "has_more": False}


def test_the_session_server_serves_its_specs(local_server: LocalServer) -> None:
    reply = httpx.get(f"{local_server.url}/v1/models", verify=trust(local_server))
    models = {m["endpoint_id"]: m for m in reply.json()["models"]}
    assert set(models) == set(local_server.endpoints)
    echo = models["fal-ai/test/echo"]["metadata"]
    assert echo["category"] == "text-to-image" and echo["status"] == "active" and "stream_url" in echo


def test_errors_are_fal_errors() -> None:
    assert issubclass(ProtocolError, errors.FalError)


def test_nth_rules_over_http(server: LocalServer) -> None:
    """Other processes script the same faults through `/_local/script`: the 2nd GET /v1/models answers 429."""
    with httpx.Client(base_url=server.url, verify=trust(server)) as http:
        rule = {"op": "models", "fault": "429", "nth": 2, "retry_after": 3}
        assert http.post("/_local/script", json=rule).status_code == 200
        assert http.post("/_local/script", json={**rule, "nth": 0}).status_code == 400
        assert http.get("/v1/models", params={"limit": 1}).status_code == 200
        refused = http.get("/v1/models", params={"limit": 1})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
        assert http.get("/v1/models", params={"limit": 1}).status_code == 200
