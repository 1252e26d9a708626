"""The sync and async clients over httpx.MockTransport: a scripted fake of fal's queue, no network.

These test the I/O loops (what is sent, how often, in what order); the rules themselves are tested in test_core.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from fal_runtime import (
    AsyncClient,
    Client,
    Completed,
    Endpoint,
    InProgress,
    Queued,
    RetryPolicy,
    Status,
    errors,
)

KEY = "test-key-id:test-key-secret-0123"
BASE = "https://queue.fal.run/fal-ai/flux/requests/r1"


class Input(BaseModel):
    prompt: str
    steps: int = 4
    client: str | None = None  # a field named like the `client=` keyword; the generator renames it `client_`


class Output(BaseModel):
    images: list[str]


ENDPOINT = Endpoint("fal-ai/flux/dev", Input, Output, streams=True, renamed={"client_": "client"})


def sse(*events: Any, comments: int = 1) -> bytes:
    lines = [": keep-alive\n\n"] * comments + [f"data: {json.dumps(e)}\n\n" for e in events]
    return "".join(lines).encode()


class FakeFal:
    """Just enough of fal's queue: scripted submit replies, a status stream (or none), polling, result, cancel."""

    def __init__(
        self,
        *,
        submit_replies: list[httpx.Response] | None = None,
        stream: bool = True,
        polls: list[dict[str, Any]] | None = None,
        result: httpx.Response | None = None,
        error: str | None = None,
    ) -> None:
        self.submit_replies = list(submit_replies or [])
        self.stream = stream
        done: dict[str, Any] = {"status": "COMPLETED", "metrics": {"inference_time": 0.1}}
        if error:
            done |= {"error": error, "error_type": "internal"}
        log = {"message": "step 1", "level": "INFO", "timestamp": "t1"}
        self.polls = polls if polls is not None else [
            {"status": "IN_QUEUE", "queue_position": 1},
            {"status": "IN_PROGRESS", "logs": [log]},
            {"status": "IN_PROGRESS", "logs": [log, {**log, "message": "step 2", "timestamp": "t2"}]},
            done,
        ]  # fmt: skip
        self.result = result or httpx.Response(200, json={"images": ["https://cdn/x.png"]})
        self.calls: list[str] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        call = f"{request.method} {request.url.host}{request.url.path}"
        self.calls.append(call)
        path = request.url.path
        if request.method == "POST" and request.url.host == "queue.fal.run":
            if self.submit_replies:
                return self.submit_replies.pop(0)
            body = {"request_id": "r1", "status_url": f"{BASE}/status", "response_url": BASE,
                    "cancel_url": f"{BASE}/cancel", "status": "IN_QUEUE", "queue_position": 1}  # fmt: skip
            return httpx.Response(200, json=body, headers={"x-fal-request-id": "r1"})
        if path.endswith("/status/stream"):
            if not self.stream:
                return httpx.Response(404, json={"detail": "Not Found"})
            return httpx.Response(200, content=sse(*self.polls), headers={"content-type": "text/event-stream"})
        if path.endswith("/status"):
            return httpx.Response(202, json=self.polls[0] if len(self.polls) == 1 else self.polls.pop(0))
        if path.endswith("/cancel"):
            return httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"})
        if path == "/fal-ai/flux/requests/r1":
            return self.result
        if request.url.host == "fal.run" and path.endswith("/stream"):
            return httpx.Response(200, content=sse({"delta": "a"}, {"delta": "b"}),
                                  headers={"content-type": "text/event-stream"})  # fmt: skip
        if request.url.host == "fal.run":
            return httpx.Response(200, json={"images": ["https://cdn/run.png"]})
        return httpx.Response(404, json={"detail": "Not Found"})


FAST = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.002)


def client(fake: FakeFal, **kwargs: Any) -> Client:
    return Client(KEY, http_client=httpx.Client(transport=httpx.MockTransport(fake)), retry=FAST,
                  poll_interval=0.001, **kwargs)  # fmt: skip


def aclient(fake: FakeFal, **kwargs: Any) -> AsyncClient:
    return AsyncClient(KEY, http_client=httpx.AsyncClient(transport=httpx.MockTransport(fake)), retry=FAST,
                       poll_interval=0.001, **kwargs)  # fmt: skip


# Endpoint: arguments and options, before any network call.


def test_build_input_splits_fields_and_options() -> None:
    data, options = ENDPOINT.build_input(None, {"prompt": "p", "client_": "c", "priority": "low"})
    assert data == Input(prompt="p", client="c") and options == {"priority": "low"}
    assert ENDPOINT.payload(data) == {"prompt": "p", "client": "c"}  # unset defaults are not sent


def test_bad_arguments_fail_before_the_network() -> None:
    fake = FakeFal()
    c = client(fake)
    with pytest.raises(TypeError, match="unexpected"):
        ENDPOINT.submit(prompt="p", bogus=1, client=c)
    with pytest.raises(TypeError, match="not both"):
        ENDPOINT.submit(Input(prompt="p"), prompt="q", client=c)
    with pytest.raises(TypeError, match="on_enqueue"):
        ENDPOINT.run(prompt="p", on_enqueue=print, client=c)
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ENDPOINT.submit(prompt="p", steps="many", client=c)
    with pytest.raises(TypeError, match="does not stream"):
        Endpoint("a/b", Input, Output).stream(prompt="p", client=c, event=Output)
    assert fake.calls == []


# Sync.


def test_submit_status_result_cancel() -> None:
    fake = FakeFal(stream=False)
    handle = ENDPOINT.submit(prompt="p", client=client(fake), webhook_url="https://me/hook", priority="low",
                             hint="h", start_timeout=10, headers={"X-Extra": "1"})  # fmt: skip
    sent = fake.requests[0]
    assert sent.headers["authorization"] == f"Key {KEY}"
    assert sent.headers["x-fal-queue-priority"] == "low" and sent.headers["x-fal-runner-hint"] == "h"
    assert sent.headers["x-fal-request-timeout"] == "10" and sent.headers["x-extra"] == "1"
    assert sent.url.params["fal_webhook"] == "https://me/hook"
    assert json.loads(sent.content) == {"prompt": "p"}
    assert handle.request_id == "r1" and handle.status_url == f"{BASE}/status"
    assert handle.status() == Queued(1)
    assert fake.requests[-1].url.params["logs"] == "0"
    assert handle.result() == Output(images=["https://cdn/x.png"])
    assert handle.cancel() == "requested"


def test_subscribe_uses_the_status_stream_and_no_extra_calls() -> None:
    fake = FakeFal()
    updates: list[Status] = []
    enqueued: list[str] = []
    out = ENDPOINT.subscribe(prompt="p", client=client(fake), with_logs=True, on_enqueue=enqueued.append,
                             on_queue_update=updates.append)  # fmt: skip
    assert out == Output(images=["https://cdn/x.png"])
    assert enqueued == ["r1"]
    assert fake.calls == [
        "POST queue.fal.run/fal-ai/flux/dev",
        "GET queue.fal.run/fal-ai/flux/requests/r1/status/stream",
        "GET queue.fal.run/fal-ai/flux/requests/r1",
    ]
    assert fake.requests[1].url.params["logs"] == "1"
    assert [type(u) for u in updates] == [Queued, InProgress, InProgress, Completed]
    logs = [[e.message for e in u.logs] for u in updates if isinstance(u, InProgress)]
    assert logs == [["step 1"], ["step 2"]]  # de-duplicated


def test_subscribe_falls_back_to_polling() -> None:
    fake = FakeFal(stream=False)
    assert ENDPOINT.subscribe(prompt="p", client=client(fake)) == Output(images=["https://cdn/x.png"])
    assert fake.calls.count("GET queue.fal.run/fal-ai/flux/requests/r1/status") == 4  # none after COMPLETED
    assert fake.calls[-1] == "GET queue.fal.run/fal-ai/flux/requests/r1"


def test_completed_with_error_raises_the_result_error() -> None:
    failed = httpx.Response(
        500, json={"detail": "CUDA OOM", "error_type": "internal"}, headers={"x-fal-request-id": "r1"}
    )
    fake = FakeFal(error="CUDA OOM", result=failed)
    with pytest.raises(errors.RequestFailedError, match="CUDA OOM") as info:
        ENDPOINT.subscribe(prompt="p", client=client(fake))
    assert info.value.request_id == "r1"
    assert fake.calls.count("GET queue.fal.run/fal-ai/flux/requests/r1") == 1  # the stored outcome: not retried


def test_client_timeout_cancels_server_side() -> None:
    fake = FakeFal(stream=False, polls=[{"status": "IN_PROGRESS", "logs": []}])
    with pytest.raises(errors.ClientTimeoutError) as info:
        ENDPOINT.subscribe(prompt="p", client=client(fake), client_timeout=0.05, poll_interval=0.01)
    assert info.value.request_id == "r1" and info.value.cancelled
    assert fake.calls[-1] == "PUT queue.fal.run/fal-ai/flux/requests/r1/cancel"


def test_submit_retried_only_when_provably_unsent() -> None:
    ingress = httpx.Response(503, text="upstream unavailable")
    fake = FakeFal(submit_replies=[ingress, httpx.Response(429, headers={"retry-after": "0"})])
    ENDPOINT.submit(prompt="p", client=client(fake))
    assert fake.calls.count("POST queue.fal.run/fal-ai/flux/dev") == 3

    from_fal = httpx.Response(503, json={"detail": "busy"}, headers={"x-fal-request-id": "r0"})
    fake = FakeFal(submit_replies=[from_fal])
    with pytest.raises(errors.ServerError) as info:
        ENDPOINT.submit(prompt="p", client=client(fake))
    assert info.value.request_id == "r0"
    assert fake.calls.count("POST queue.fal.run/fal-ai/flux/dev") == 1


def test_submit_not_resent_after_an_ambiguous_transport_error() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.ReadTimeout("read timed out", request=request)

    c = Client(KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler)), retry=FAST)
    with pytest.raises(errors.APITimeoutError) as info:
        ENDPOINT.submit(prompt="p", client=c)
    assert info.value.request_sent and calls == ["POST"]


def test_connection_refused_submit_is_retried() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.host}")
        raise httpx.ConnectError("refused", request=request)

    c = Client(KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler)), retry=FAST)
    with pytest.raises(errors.APIConnectionError):
        ENDPOINT.submit(prompt="p", client=c)
    # each attempt tries fal's backup domain once, as fal-client does; nothing was sent, so retrying is safe
    assert calls == ["POST queue.fal.run", "POST queue.falrun.com"] * (1 + FAST.max_retries)


def test_status_retried_on_5xx() -> None:
    fake = FakeFal(stream=False)
    flaky = [httpx.Response(502, headers={"x-fal-request-id": "r1"})]

    def handler(request: httpx.Request) -> httpx.Response:
        return flaky.pop() if flaky else fake(request)

    handle = ENDPOINT.handle(
        "r1", client=Client(KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler)), retry=FAST)
    )
    assert handle.status_url == f"{BASE}/status"  # rebuilt under owner/alias
    assert handle.status() == Queued(1)
    assert fake.calls == ["GET queue.fal.run/fal-ai/flux/requests/r1/status"]


def test_missing_key_is_our_error_and_key_not_leaked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeFal()
    c = Client(http_client=httpx.Client(transport=httpx.MockTransport(fake)))
    with pytest.raises(errors.MissingCredentialsError):
        ENDPOINT.submit(prompt="p", client=c)
    assert fake.calls == []
    keyed = client(fake)
    assert "secret" not in repr(keyed)


def test_run_and_stream() -> None:
    fake = FakeFal()
    c = client(fake)
    assert ENDPOINT.run(prompt="p", client=c, timeout=5) == Output(images=["https://cdn/run.png"])
    assert list(ENDPOINT.stream(prompt="p", client=c, event=Delta)) == [Delta(delta="a"), Delta(delta="b")]
    assert fake.calls == ["POST fal.run/fal-ai/flux/dev", "POST fal.run/fal-ai/flux/dev/stream"]


class Delta(BaseModel):
    delta: str | None = None


class Counted(BaseModel):
    delta: int


def test_a_stream_event_that_contradicts_its_model_is_a_protocol_error() -> None:
    c = client(FakeFal())
    with pytest.raises(errors.ProtocolError, match=r"does not match Counted: delta: Input should be a valid integer"):
        list(ENDPOINT.stream(prompt="p", client=c, event=Counted))


def test_validation_error_from_run() -> None:
    detail = [{"loc": ["body", "prompt"], "msg": "too long", "type": "value_error"}]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"detail": detail}, headers={"x-fal-request-id": "q"})

    c = Client(KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler)), retry=FAST)
    with pytest.raises(errors.UnprocessableEntityError) as info:
        ENDPOINT.run(prompt="p", client=c)
    assert info.value.errors == detail


def test_iter_status_and_handle_repr() -> None:
    fake = FakeFal()
    handle = ENDPOINT.handle("r1", client=client(fake))
    assert [type(s) for s in handle.iter_status()] == [Queued, InProgress, InProgress, Completed]
    assert repr(handle) == "RequestHandle('fal-ai/flux/dev', request_id='r1')"


# Async: the same operations through the async client.


async def test_async_operations() -> None:
    fake = FakeFal()
    c = aclient(fake)
    handle = await ENDPOINT.submit_async(prompt="p", client=c)
    assert await handle.status() == Queued(1)
    assert await handle.result() == Output(images=["https://cdn/x.png"])
    assert await handle.cancel() == "requested"
    updates: list[Status] = []
    out = await ENDPOINT.subscribe_async(prompt="p", client=c, on_queue_update=updates.append)
    assert out.images == ["https://cdn/x.png"] and isinstance(updates[-1], Completed)
    assert (await ENDPOINT.run_async(prompt="p", client=c)).images == ["https://cdn/run.png"]
    assert [e async for e in ENDPOINT.stream_async(prompt="p", client=c, event=Delta)] == [
        Delta(delta="a"),
        Delta(delta="b"),
    ]
    rebuilt = ENDPOINT.handle_async("r1", client=aclient(FakeFal()))
    assert [type(s) async for s in rebuilt.iter_status()] == [Queued, InProgress, InProgress, Completed]


async def test_async_polling_fallback_and_timeout() -> None:
    fake = FakeFal(stream=False)
    assert (await ENDPOINT.subscribe_async(prompt="p", client=aclient(fake))).images == ["https://cdn/x.png"]
    fake = FakeFal(stream=False, polls=[{"status": "IN_QUEUE", "queue_position": 5}])
    with pytest.raises(errors.ClientTimeoutError):
        await ENDPOINT.subscribe_async(prompt="p", client=aclient(fake), client_timeout=0.05)
    assert fake.calls[-1].startswith("PUT")


def test_default_client_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from fal_runtime import _client

    monkeypatch.setattr(_client, "_default", None)
    monkeypatch.setenv("FAL_QUEUE_RUN_HOST", "127.0.0.1:8443")
    default = _client.default_client()
    assert default is _client.default_client()
    assert "https://127.0.0.1:8443" in repr(default)


def test_real_connection_refused_maps_to_unsent_connection_error() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on once this socket closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = Client(KEY, queue_host=f"http://127.0.0.1:{port}", retry=RetryPolicy(max_retries=1, base_delay=0.001))
    with pytest.raises(errors.APIConnectionError) as info:
        ENDPOINT.submit(prompt="p", client=c)
    assert not info.value.request_sent
    assert KEY not in str(info.value) and "test-key-secret" not in str(info.value)


# Constructors: every argument is spelled out, so a misspelt one fails at once, and in the type checker.


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_a_misspelt_constructor_argument_is_a_type_error(cls: type[Client | AsyncClient]) -> None:
    with pytest.raises(TypeError, match="timout"):
        cls(timout=5)  # type: ignore[call-arg]


@pytest.mark.slow
def test_mypy_rejects_a_misspelt_constructor_argument(tmp_path: Path) -> None:
    import mypy.api

    snippet = tmp_path / "snippet.py"
    snippet.write_text("from fal_runtime import AsyncClient, Client\n\nClient(timout=5)\nAsyncClient(retyr=None)\n")
    out, _, status = mypy.api.run(["--strict", "--cache-dir", str(tmp_path / "cache"), str(snippet)])
    assert status == 1, out
    assert 'Unexpected keyword argument "timout" for "Client"' in out, out
    assert 'Unexpected keyword argument "retyr" for "AsyncClient"' in out, out
