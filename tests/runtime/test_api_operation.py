"""`fal_runtime.api.ApiOperation`: the runtime side of generated Platform API calls, with hand-written models (no
generated code exists yet), over real HTTP to `tiny_http` (the local server's Platform routes are not there yet).

Each test asserts the exact requests sent (method, path, query, headers, body), then what the caller gets back: the
answer validated into its model, bytes, None, or the error tree's exception.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from pydantic import Field
from tiny_http import Answer, Seen, TinyServer

from fal_runtime import ApiOperation, AsyncClient, Client, RetryPolicy, errors
from fal_runtime.models import FalModel

KEY = "api-operation-key-id:api-operation-secret-0123456789"
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)


class RequestParams(FalModel):
    request_id: str = Field(alias="request-id")
    endpoint_ids: list[str] | None = Field(default=None, alias="endpoint_id")
    with_logs: bool | None = Field(default=None, alias="logs")
    limit: int | None = None
    trace: str | None = Field(default=None, alias="X-Trace-Id")


class Usage(FalModel):
    request_id: str
    units: float
    kind: Literal["image", "video"]


class DeleteBody(FalModel):
    reason: str
    keep_logs: bool = Field(default=False, alias="keepLogs")
    note: str | None = None


class Done(FalModel):
    ok: bool


class ListParams(FalModel):
    limit: int | None = None
    cursor: str | None = None


class Item(FalModel):
    id: str


class ItemsPage(FalModel):
    items: list[Item] = Field(alias="things")
    next_cursor: str | None = None
    has_more: bool = False


GET_USAGE: ApiOperation[RequestParams, Usage] = ApiOperation(
    "GET",
    "/requests/{request-id}/usage",
    params=RequestParams,
    locations={
        "request-id": "path",
        "endpoint_id": "query",
        "logs": "query",
        "limit": "query",
        "X-Trace-Id": "header",
    },
    answer=Usage,
)
DELETE_REQUEST: ApiOperation[RequestParams, Done] = ApiOperation(
    "POST",
    "/requests/{request-id}/delete",
    params=RequestParams,
    locations={"request-id": "path"},
    answer=Done,
    body=DeleteBody,
    idempotency_key=True,
)
LIST_ITEMS: ApiOperation[ListParams, ItemsPage] = ApiOperation(
    "GET",
    "/items",
    params=ListParams,
    locations={"limit": "query", "cursor": "query"},
    answer=ItemsPage,
    pages=True,
    items="things",
)


def json_answer(body: Any, status: int = 200, **headers: str) -> Answer:
    return status, headers, json.dumps(body).encode()


class Script:
    """Answers in order, one per request (the last repeats)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)

    def __call__(self, method: str, path: str, auth: str) -> Answer:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> Iterator[TinyServer]:
    with TinyServer() as server:
        monkeypatch.setenv("FAL_API_HOST", server.url)
        for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
            monkeypatch.delenv(name, raising=False)
        yield server


@pytest.fixture
def client(tiny: TinyServer) -> Iterator[Client]:
    # The tiny server is a configured host (rest_host), so the key goes to it as it goes to api.fal.ai.
    with Client(KEY, rest_host=tiny.url, retry=FAST) as c:
        yield c


def only(tiny: TinyServer) -> Seen:
    assert len(tiny.requests) == 1, tiny.calls
    return tiny.requests[0]


def test_a_get_fills_path_query_and_headers_and_validates_the_answer(tiny: TinyServer, client: Client) -> None:
    tiny.route = Script(json_answer({"request_id": "a/b c", "units": 2.5, "kind": "image"}))
    arguments = RequestParams.model_validate(
        {"request-id": "a/b c", "endpoint_id": ["fal-ai/x", "fal-ai/y"], "logs": False, "limit": 3, "X-Trace-Id": "t1"}
    )
    usage = GET_USAGE.call(arguments, client=client)
    assert usage == Usage(request_id="a/b c", units=2.5, kind="image")
    seen = only(tiny)
    assert (seen.method, seen.path) == ("GET", "/v1/requests/a%2Fb%20c/usage")
    assert seen.query == {"endpoint_id": ["fal-ai/x", "fal-ai/y"], "logs": ["false"], "limit": ["3"]}
    assert seen.headers["x-trace-id"] == "t1"
    assert seen.headers["authorization"] == f"Key {KEY}"
    assert "idempotency-key" not in seen.headers and seen.body == b""


def test_parameters_left_unset_are_not_sent(tiny: TinyServer, client: Client) -> None:
    tiny.route = Script(json_answer({"request_id": "r", "units": 1, "kind": "video"}))
    GET_USAGE.call(RequestParams.model_validate({"request-id": "r", "logs": True}), client=client)
    seen = only(tiny)
    assert seen.query == {"logs": ["true"]} and "x-trace-id" not in seen.headers


def test_a_get_is_retried_like_a_status_call_honouring_retry_after(tiny: TinyServer, client: Client) -> None:
    tiny.route = Script(
        json_answer({"detail": "slow down"}, 429, **{"retry-after": "1"}),
        json_answer({"detail": "bad gateway"}, 502),
        json_answer({"request_id": "r", "units": 1, "kind": "image"}),
    )
    started = time.monotonic()
    GET_USAGE.call({"request-id": "r"}, client=client)
    assert time.monotonic() - started >= 0.9  # the 429's Retry-After, not the 10 ms backoff
    assert tiny.calls == ["GET /v1/requests/r/usage"] * 3


def test_a_write_with_an_idempotency_key_sends_the_body_and_one_key_across_its_retries(
    tiny: TinyServer, client: Client
) -> None:
    tiny.route = Script(json_answer({"detail": "unavailable"}, 503), json_answer({"ok": True}))
    done = DELETE_REQUEST.call({"request-id": "r-1"}, DeleteBody(reason="gdpr"), client=client)
    assert done == Done(ok=True)
    first, second = tiny.requests
    assert (first.method, first.path, first.query) == ("POST", "/v1/requests/r-1/delete", {})
    assert json.loads(first.body) == {"reason": "gdpr", "keepLogs": False}  # wire names, no None
    assert first.headers["content-type"] == "application/json"
    key = first.headers["idempotency-key"]
    assert uuid.UUID(key).version == 4
    assert second.headers["idempotency-key"] == key and second.body == first.body
    tiny.route = Script(json_answer({"ok": True}))
    DELETE_REQUEST.call({"request-id": "r-1"}, {"reason": "again"}, client=client)
    assert tiny.requests[2].headers["idempotency-key"] != key  # a new call, a new key


def test_a_write_without_an_idempotency_key_is_not_sent_twice(tiny: TinyServer, client: Client) -> None:
    plain: ApiOperation[RequestParams, Done] = ApiOperation(
        "POST", "/requests/{request-id}/delete", params=RequestParams, locations={"request-id": "path"}, answer=Done,
        body=DeleteBody,
    )  # fmt: skip
    tiny.route = Script(json_answer({"detail": "unavailable"}, 503), json_answer({"ok": True}))
    with pytest.raises(errors.ServerError):
        plain.call({"request-id": "r"}, {"reason": "x"}, client=client)
    assert len(tiny.requests) == 1 and "idempotency-key" not in tiny.requests[0].headers
    tiny.route = Script(json_answer({"detail": "busy"}, 429, **{"retry-after": "0"}), json_answer({"ok": True}))
    assert plain.call({"request-id": "r"}, {"reason": "x"}, client=client) == Done(ok=True)  # a 429 refused it
    assert len(tiny.requests) == 3


def test_the_platform_error_body_becomes_the_exception_message(tiny: TinyServer, client: Client) -> None:
    error = {"type": "not_found", "message": "Request r-9 not found", "docs_url": "https://docs.fal.ai/x",
             "request_id": "req-123"}  # fmt: skip
    tiny.route = Script(json_answer({"error": error}, 404))
    with pytest.raises(errors.NotFoundError) as raised:
        GET_USAGE.call({"request-id": "r-9"}, client=client)
    assert "Request r-9 not found" in str(raised.value)
    assert raised.value.error_type == "not_found" and raised.value.request_id == "req-123"
    assert raised.value.__notes__ == ["(fal Platform API: GET /v1/requests/{request-id}/usage)"]
    tiny.route = Script(json_answer({"error": {"type": "authorization_error", "message": "Bad key"}}, 401))
    with pytest.raises(errors.AuthenticationError, match="Bad key"):
        GET_USAGE.call({"request-id": "r-9"}, client=client)


def test_an_answer_that_does_not_validate_is_a_protocol_error_naming_the_operation(
    tiny: TinyServer, client: Client
) -> None:
    tiny.route = Script(json_answer({"request_id": "r", "units": "many", "kind": "audio"}))
    with pytest.raises(errors.ProtocolError) as raised:
        GET_USAGE.call({"request-id": "r"}, client=client)
    assert "GET /v1/requests/{request-id}/usage" in str(raised.value) and "Usage" in str(raised.value)
    assert "units" in str(raised.value) and "kind" in str(raised.value)
    tiny.route = Script((200, {}, b"<html>"))
    with pytest.raises(errors.ProtocolError, match="not JSON"):
        GET_USAGE.call({"request-id": "r"}, client=client)


def test_empty_answers_are_none_and_other_media_types_bytes(tiny: TinyServer, client: Client) -> None:
    delete: ApiOperation[RequestParams, None] = ApiOperation(
        "DELETE", "/requests/{request-id}", params=RequestParams, locations={"request-id": "path"}, answer=None
    )
    tiny.route = Script((204, {}, b""))
    assert delete.call({"request-id": "r"}, client=client) is None
    assert tiny.requests[-1].method == "DELETE"
    export: ApiOperation[RequestParams, bytes] = ApiOperation(
        "GET", "/requests/{request-id}/export", params=RequestParams, locations={"request-id": "path"}, answer=bytes,
        answer_type="application/zip",
    )  # fmt: skip
    tiny.route = Script((200, {"content-type": "application/zip"}, b"PK\x03\x04zip"))
    assert export.call({"request-id": "r"}, client=client) == b"PK\x03\x04zip"


def test_every_answer_is_capped_by_max_bytes(tiny: TinyServer, client: Client) -> None:
    def endless() -> Iterator[bytes]:
        yield b'{"request_id": "'
        while True:
            yield b"x" * 65536

    tiny.route = lambda method, path, auth: (200, {}, endless())
    capped: ApiOperation[RequestParams, Usage] = ApiOperation(
        "GET", "/requests/{request-id}/usage", params=RequestParams, locations={"request-id": "path"}, answer=Usage,
        max_bytes=1_000_000,
    )  # fmt: skip
    with pytest.raises(errors.ProtocolError, match=r"max_bytes \(1,000,000 bytes\)"):
        capped.call({"request-id": "r"}, client=client)
    with pytest.raises(errors.ProtocolError, match=r"max_bytes \(100,000 bytes\)"):
        GET_USAGE.call({"request-id": "r"}, client=client, max_bytes=100_000)
    assert len(tiny.requests) == 2  # never retried


def page(ids: list[str], cursor: str | None) -> Answer:
    return json_answer({"things": [{"id": i} for i in ids], "next_cursor": cursor, "has_more": cursor is not None})


def test_iterate_follows_the_cursor_and_yields_each_item(tiny: TinyServer, client: Client) -> None:
    tiny.route = Script(page(["a", "b"], "c1"), page(["c"], "c2"), page(["d"], None))
    items = list(LIST_ITEMS.iterate({"limit": 2}, client=client))
    assert items == [Item(id="a"), Item(id="b"), Item(id="c"), Item(id="d")]
    assert [r.query for r in tiny.requests] == [
        {"limit": ["2"]},
        {"limit": ["2"], "cursor": ["c1"]},
        {"limit": ["2"], "cursor": ["c2"]},
    ]
    whole: ApiOperation[ListParams, ItemsPage] = ApiOperation(
        "GET", "/items", params=ListParams, locations={"limit": "query", "cursor": "query"}, answer=ItemsPage,
        pages=True,
    )  # fmt: skip
    tiny.route = Script(page(["a"], "c1"), page(["b"], None))
    assert [len(p.items) for p in whole.iterate({}, client=client)] == [1, 1]


def test_iterate_refuses_a_repeated_cursor_and_caps_the_pages(tiny: TinyServer, client: Client) -> None:
    tiny.route = Script(page(["a"], "c1"), page(["b"], "c1"))
    with pytest.raises(errors.ProtocolError, match="already visited"):
        list(LIST_ITEMS.iterate({}, client=client))
    counter = iter(range(10**6))
    tiny.route = lambda method, path, auth: page(["x"], f"c{next(counter)}")
    capped: ApiOperation[ListParams, ItemsPage] = ApiOperation(
        "GET", "/items", params=ListParams, locations={"limit": "query", "cursor": "query"}, answer=ItemsPage,
        pages=True, items="things", max_pages=5,
    )  # fmt: skip
    with pytest.raises(errors.ProtocolError, match=r"max_pages \(5\)"):
        list(capped.iterate({}, client=client))
    tiny.route = Script(json_answer({"things": [], "has_more": True}))
    with pytest.raises(errors.ProtocolError, match="no next_cursor"):
        list(LIST_ITEMS.iterate({}, client=client))


def test_arguments_are_checked_before_anything_is_sent(tiny: TinyServer, client: Client) -> None:
    with pytest.raises(ValueError, match="path parameter 'request-id' is empty"):
        GET_USAGE.call({"request-id": ""}, client=client)
    with pytest.raises(TypeError, match="takes no body"):
        GET_USAGE.call({"request-id": "r"}, Done(ok=True), client=client)
    with pytest.raises(TypeError, match="does not answer in pages"):
        GET_USAGE.iterate({"request-id": "r"}, client=client)
    with pytest.raises(TypeError, match="AsyncClient"):
        GET_USAGE.call({"request-id": "r"}, client=AsyncClient(KEY))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no 'path' location"):
        ApiOperation("GET", "/x/{id}", params=ListParams, locations={}, answer=None)
    assert tiny.requests == []


def test_a_required_key_is_checked_before_sending(tiny: TinyServer) -> None:
    with Client(rest_host=tiny.url, retry=FAST) as keyless:
        with pytest.raises(errors.MissingCredentialsError):
            GET_USAGE.call({"request-id": "r"}, client=keyless)
    assert tiny.requests == []


def test_the_async_twins(tiny: TinyServer) -> None:
    async def main() -> tuple[Done, list[Item]]:
        async with AsyncClient(KEY, rest_host=tiny.url, retry=FAST) as aclient:
            tiny.route = Script(json_answer({"detail": "unavailable"}, 503), json_answer({"ok": True}))
            done = await DELETE_REQUEST.call_async({"request-id": "r"}, {"reason": "x"}, client=aclient)
            tiny.route = Script(page(["a"], "c1"), page(["b"], None))
            items = [item async for item in LIST_ITEMS.iterate_async({}, client=aclient)]
            return done, items

    done, items = asyncio.run(main())
    assert done == Done(ok=True) and items == [Item(id="a"), Item(id="b")]
    first, second, *pages = tiny.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert [p.query for p in pages] == [{}, {"cursor": ["c1"]}]
