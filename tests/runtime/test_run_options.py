"""Per-call options as fal's clients send them, over real HTTPS to the local server (headers captured as they leave
the client): object lifetime on submit, run and uploads (fal-js `storageSettings`, fal-client `lifecycle`), `hint`
on run, `priority` and `hint` on submit and subscribe; the client-wide `object_lifetime`; argument checks before any
request. Then the two runtime bugs: the key in status logs and errors, and `RateLimitError.retry_after`. Last, fal's
backup domains (fal-client 1.0.3 `BackupDomainTransport`), with httpx.MockTransport: the local server cannot be
reached under two DNS names, nor refuse a connection on demand.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from tiny_http import TinyServer

from fal_runtime import AsyncClient, Client, Completed, RateLimitError, RetryPolicy, errors
from fal_runtime._core import backup_url, is_fal_origin
from fal_runtime.local import LocalServer

ECHO = "fal-ai/test/echo"
LIFECYCLE = "x-fal-object-lifecycle-preference"
KEY = "run-options-key-id:run-options-secret-0123456789"
NO_RETRY = RetryPolicy(max_retries=0)


class Anything(BaseModel):
    model_config = {"extra": "allow"}


class Recorder:
    """Every request the client sends: (method, url, headers), captured by an httpx event hook."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, httpx.URL, httpx.Headers]] = []

    def __call__(self, request: httpx.Request) -> None:
        self.requests.append((request.method, request.url, request.headers))

    async def hook(self, request: httpx.Request) -> None:
        self(request)

    def to(self, path_end: str, method: str = "POST") -> list[httpx.Headers]:
        return [h for m, u, h in self.requests if m == method and u.path.endswith(path_end)]


@pytest.fixture
def recorded(fal_env: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Client, Recorder]]:
    monkeypatch.setenv("FAL_REST_HOST", fal_env.base)
    fal_env.reset()
    recorder = Recorder()
    http = httpx.Client(
        verify=ssl.create_default_context(cafile=str(fal_env.ca_file)),
        event_hooks={"request": [recorder]},
        follow_redirects=True,
    )
    with Client(http_client=http, poll_interval=0.01) as client:
        yield client, recorder


def _lifetime(headers: httpx.Headers) -> Any:
    value = headers.get(LIFECYCLE)
    return None if value is None else json.loads(value)


def test_submit_sends_priority_hint_and_object_lifetime_as_fal_does(recorded: tuple[Client, Recorder]) -> None:
    client, recorder = recorded
    handle = client.submit(
        ECHO, {"prompt": "p"}, output=Anything, priority="low", hint="gpu-a", object_lifetime="1h", start_timeout=30
    )
    assert handle.result().model_extra
    (sent,) = recorder.to(f"/{ECHO}")
    assert sent["x-fal-queue-priority"] == "low"
    assert sent["x-fal-runner-hint"] == "gpu-a"
    assert sent[LIFECYCLE] == '{"expiration_duration_seconds": 3600}'  # fal-js: JSON.stringify of this object
    assert "x-fal-object-lifecycle" not in sent  # that one is for CDN uploads only
    assert sent["x-fal-request-timeout"] == "30"


def test_run_sends_hint_and_object_lifetime(recorded: tuple[Client, Recorder]) -> None:
    client, recorder = recorded
    client.run(ECHO, {"prompt": "p"}, output=Anything, hint="warm", object_lifetime=120)
    (sent,) = recorder.to(f"/run/{ECHO}")
    assert sent["x-fal-runner-hint"] == "warm"
    assert _lifetime(sent) == {"expiration_duration_seconds": 120}
    assert "x-fal-queue-priority" not in sent


def test_run_refuses_priority_before_sending(recorded: tuple[Client, Recorder], fal_env: LocalServer) -> None:
    client, recorder = recorded
    with pytest.raises(TypeError, match="priority"):
        client.run(ECHO, {"prompt": "p"}, output=Anything, priority="low")
    assert recorder.requests == []


def test_subscribe_sends_the_submit_options(recorded: tuple[Client, Recorder]) -> None:
    client, recorder = recorded
    client.subscribe(ECHO, {"prompt": "p"}, output=Anything, priority="normal", hint="h", object_lifetime="immediate")
    (sent,) = recorder.to(f"/{ECHO}")
    assert sent["x-fal-queue-priority"] == "normal"
    assert sent["x-fal-runner-hint"] == "h"
    assert _lifetime(sent) == {"expiration_duration_seconds": 60}  # fal's clients: "immediate" is a minute


def test_client_default_lifetime_applies_and_a_call_overrides_it(
    fal_env: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAL_REST_HOST", fal_env.base)
    recorder = Recorder()
    http = httpx.Client(
        verify=ssl.create_default_context(cafile=str(fal_env.ca_file)), event_hooks={"request": [recorder]}
    )
    with Client(http_client=http, object_lifetime="1d") as client:
        client.submit(ECHO, {"prompt": "p"}, output=Anything)
        client.run(ECHO, {"prompt": "p"}, output=Anything)
        client.submit(ECHO, {"prompt": "p"}, output=Anything, object_lifetime=600)
        client.submit(ECHO, {"prompt": "p"}, output=Anything, object_lifetime="never")
        url = client.upload(b"hello")
    first, _, third, fourth = recorder.to(f"/{ECHO}")
    (run,) = recorder.to(f"/run/{ECHO}")
    assert _lifetime(first) == _lifetime(run) == {"expiration_duration_seconds": 86400}
    assert _lifetime(third) == {"expiration_duration_seconds": 600}
    assert LIFECYCLE not in fourth  # "never": fal's own retention, nothing sent (as fal-client)
    (upload,) = recorder.to("/files/upload")
    assert _lifetime(upload) == {"expiration_duration_seconds": 86400}
    assert fal_env.stored_file(url) == b"hello"


def test_upload_sends_both_lifecycle_headers_on_the_cdn_request_only(recorded: tuple[Client, Recorder]) -> None:
    client, recorder = recorded
    url = client.upload(b"data", object_lifetime="7d")
    (upload,) = recorder.to("/files/upload")
    expected = '{"expiration_duration_seconds": 604800}'
    assert upload[LIFECYCLE] == expected and upload["x-fal-object-lifecycle"] == expected  # fal-client sends both
    (token,) = recorder.to("/storage/auth/token")
    assert LIFECYCLE not in token
    assert url.startswith("https://")
    client.upload(b"plain")
    assert LIFECYCLE not in recorder.to("/files/upload")[1]  # no lifetime asked: nothing sent


def test_async_upload_and_submit_send_the_lifetime(fal_env: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_REST_HOST", fal_env.base)
    recorder = Recorder()

    async def go() -> None:
        http = httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=str(fal_env.ca_file)), event_hooks={"request": [recorder.hook]}
        )
        async with AsyncClient(http_client=http) as client:
            await client.upload_all([b"a", b"b"], object_lifetime=90)
            await client.submit(ECHO, {"prompt": "p"}, output=Anything, object_lifetime="30d", priority="low")

    asyncio.run(go())
    assert [_lifetime(h) for h in recorder.to("/files/upload")] == [{"expiration_duration_seconds": 90}] * 2
    (sent,) = recorder.to(f"/{ECHO}")
    assert _lifetime(sent) == {"expiration_duration_seconds": 2592000}
    assert sent["x-fal-queue-priority"] == "low"


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-5, ValueError), ("2h", ValueError), (True, TypeError), (1.5, TypeError), ([60], TypeError)],
)
def test_bad_lifetimes_are_refused_before_any_request(
    recorded: tuple[Client, Recorder], value: Any, error: type[Exception]
) -> None:
    client, recorder = recorded
    with pytest.raises(error, match="object_lifetime"):
        client.submit(ECHO, {"prompt": "p"}, output=Anything, object_lifetime=value)
    with pytest.raises(error, match="object_lifetime"):
        client.run(ECHO, {"prompt": "p"}, output=Anything, object_lifetime=value)
    with pytest.raises(error, match="object_lifetime"):
        client.upload(b"x", object_lifetime=value)
    with pytest.raises(error, match="object_lifetime"):
        Client(object_lifetime=value)
    assert recorder.requests == []


def test_bad_priority_is_refused_before_any_request(recorded: tuple[Client, Recorder]) -> None:
    client, recorder = recorded
    with pytest.raises(ValueError, match="priority"):
        client.submit(ECHO, {"prompt": "p"}, output=Anything, priority="high")
    assert recorder.requests == []


# The key in what a server says about a request (bug a).


def _status_server(server: TinyServer, body: dict[str, Any], *, stream: bool) -> None:
    def route(method: str, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
        assert auth == f"Key {KEY}"
        if path.endswith("/status/stream"):
            if not stream:
                return 404, {}, b'{"detail": "no stream"}'
            return 200, {"content-type": "text/event-stream"}, f"data: {json.dumps(body)}\n\n".encode()
        if path.endswith("/status"):
            return 200, {"x-fal-request-id": "r1"}, json.dumps(body).encode()
        if method == "POST":
            return 200, {}, b'{"request_id": "r1"}'
        return 500, {"x-fal-request-id": "r1"}, json.dumps({"detail": f"crashed with {KEY}"}).encode()

    server.route = route


LEAKY = {
    "status": "COMPLETED",
    "logs": [{"message": f"env FAL_KEY={KEY}", "level": "INFO", "timestamp": "t1"}],
    "error": f"runner failed: Authorization: Key {KEY}",
    "error_type": "runner_error",
}


@pytest.mark.parametrize("stream", [False, True], ids=["polled", "status-stream"])
def test_status_logs_and_error_text_never_carry_the_key(stream: bool) -> None:
    seen: list[Any] = []
    with TinyServer() as server:
        _status_server(server, LEAKY, stream=stream)
        client = Client(KEY, queue_host=server.url, retry=NO_RETRY, poll_interval=0.01)
        handle = client.submit(ECHO, {"prompt": "p"}, output=Anything)
        status = handle.status(logs=True)
        with pytest.raises(errors.RequestFailedError) as failed:
            client.subscribe(ECHO, {"prompt": "p"}, output=Anything, with_logs=True, on_queue_update=seen.append)
    for got in (status, *seen):
        assert isinstance(got, Completed)
        text = repr(got)
        assert "run-options-secret" not in text and "run-options-key-id" not in text
        assert got.logs[0].message == "env FAL_KEY=[redacted]"
        assert got.error == "runner failed: Authorization: Key [redacted]"
    assert KEY not in str(failed.value) and "run-options-secret" not in repr(failed.value.detail)


# Retry-After on RateLimitError (bug b).


def test_rate_limit_error_carries_retry_after(fal_env: LocalServer) -> None:
    fal_env.reset()
    fal_env.script(ECHO, "submit", "429", retry_after=7)
    with Client(retry=NO_RETRY) as client, pytest.raises(RateLimitError) as raised:
        client.submit(ECHO, {"prompt": "p"}, output=Anything)
    assert raised.value.retry_after == 7.0
    assert fal_env.counters()["submits"] == {}


def test_rate_limit_error_without_retry_after_has_none() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"detail": "slow down"}, headers={"x-fal-request-id": "r"})

    client = Client(KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler)), retry=NO_RETRY)
    with pytest.raises(RateLimitError) as raised:
        client.submit(ECHO, {"prompt": "p"}, output=Anything)
    assert raised.value.retry_after is None


# fal's backup domains.

SUBMITTED = {
    "request_id": "r1",
    "status_url": "https://queue.fal.run/fal-ai/test/requests/r1/status",
    "response_url": "https://queue.fal.run/fal-ai/test/requests/r1",
    "cancel_url": "https://queue.fal.run/fal-ai/test/requests/r1/cancel",
}


class Network:
    """A MockTransport where some hosts refuse connections (or fail after sending); records (host, auth) per try."""

    def __init__(self, down: set[str], *, after_send: frozenset[str] = frozenset(), status: int | None = None) -> None:
        self.down, self.after_send, self.status = down, after_send, status
        self.calls: list[tuple[str, str, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls.append((request.method, f"{host}{request.url.path}", request.headers.get("authorization")))
        if host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if host in self.after_send:
            raise httpx.ReadError("connection reset", request=request)
        if self.status is not None:
            return httpx.Response(self.status, json={"detail": "unavailable"})
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"status": "COMPLETED"}, headers={"x-fal-request-id": "r1"})
        if request.method == "POST" and "queue" in host:
            return httpx.Response(200, json=SUBMITTED, headers={"x-fal-request-id": "r1"})
        return httpx.Response(200, json={"ok": True}, headers={"x-fal-request-id": "r1"})

    def client(self, **kwargs: Any) -> Client:
        kwargs.setdefault("retry", NO_RETRY)
        return Client(KEY, http_client=httpx.Client(transport=httpx.MockTransport(self)), **kwargs)


def test_backup_domain_is_tried_once_when_fal_run_cannot_be_reached() -> None:
    net = Network({"queue.fal.run", "fal.run"})
    client = net.client(backup_hosts=True)
    handle = client.submit(ECHO, {"prompt": "p"}, output=Anything)
    assert isinstance(handle.status(), Completed)  # the status URL fal returned falls back too
    client.run(ECHO, {"prompt": "p"}, output=Anything)
    assert [c[1] for c in net.calls] == [
        f"queue.fal.run/{ECHO}",
        f"queue.falrun.com/{ECHO}",
        "queue.fal.run/fal-ai/test/requests/r1/status",
        "queue.falrun.com/fal-ai/test/requests/r1/status",
        f"fal.run/{ECHO}",
        f"falrun.com/{ECHO}",
    ]
    assert {auth for *_, auth in net.calls} == {f"Key {KEY}"}  # only fal's own hosts ever saw the key


def test_when_the_backup_is_down_too_the_primary_error_stands_and_retries_repeat_both() -> None:
    net = Network({"queue.fal.run", "queue.falrun.com"})
    client = net.client(backup_hosts=True, retry=RetryPolicy(max_retries=1, base_delay=0.001, max_delay=0.001))
    with pytest.raises(errors.APIConnectionError, match=r"queue\.fal\.run/"):
        client.submit(ECHO, {"prompt": "p"}, output=Anything)
    assert [c[1].split("/")[0] for c in net.calls] == ["queue.fal.run", "queue.falrun.com"] * 2


def test_no_backup_after_the_request_was_sent_or_answered() -> None:
    sent = Network(set(), after_send={"queue.fal.run"})
    with pytest.raises(errors.TransportError):
        sent.client(backup_hosts=True).submit(ECHO, {"prompt": "p"}, output=Anything)
    assert [c[1] for c in sent.calls] == [f"queue.fal.run/{ECHO}"]  # the job may exist: never sent twice
    answered = Network(set(), status=503)
    with pytest.raises(errors.ServerError):
        answered.client(backup_hosts=True).submit(ECHO, {"prompt": "p"}, output=Anything)
    assert [c[1] for c in answered.calls] == [f"queue.fal.run/{ECHO}"]


def test_no_backup_when_turned_off_nor_for_configured_hosts() -> None:
    off = Network({"queue.fal.run"})
    with pytest.raises(errors.APIConnectionError):
        off.client(backup_hosts=False).submit(ECHO, {"prompt": "p"}, output=Anything)
    assert len(off.calls) == 1
    for host in ("queue.example.test", "127.0.0.1:8443", "http://queue.fal.run", "https://queue.fal.run:8443"):
        net = Network({"queue.example.test", "127.0.0.1", "queue.fal.run"})
        with pytest.raises(errors.APIConnectionError):
            net.client(backup_hosts=True, queue_host=host).submit(ECHO, {"prompt": "p"}, output=Anything)
        assert len(net.calls) == 1, host
        assert not any("falrun" in c[1] for c in net.calls)


def test_async_backup_and_key_stay_on_fal_hosts() -> None:
    net = Network({"queue.fal.run"})

    async def go() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(net))
        async with AsyncClient(KEY, http_client=http, retry=NO_RETRY, backup_hosts=True) as client:
            await client.submit(ECHO, {"prompt": "p"}, output=Anything)

    asyncio.run(go())
    assert [(c[1].split("/")[0], c[2]) for c in net.calls] == [
        ("queue.fal.run", f"Key {KEY}"),
        ("queue.falrun.com", f"Key {KEY}"),
    ]


def test_backup_urls_and_key_hosts() -> None:
    assert backup_url("https://queue.fal.run/a/b?x=1") == "https://queue.falrun.com/a/b?x=1"
    assert backup_url("https://fal.run/a") == "https://falrun.com/a"
    for url in ("https://rest.fal.ai/x", "http://fal.run/a", "https://fal.run:444/a", "https://evil.fal.run/a",
                "https://u:p@fal.run/a", "https://fal.run.evil.test/a"):  # fmt: skip
        assert backup_url(url) is None, url
    assert is_fal_origin("https://queue.falrun.com/x") and is_fal_origin("https://falrun.com/x")
    assert not is_fal_origin("https://falrun.com.evil.test/x") and not is_fal_origin("https://notfalrun.com/x")
    assert not is_fal_origin("http://queue.falrun.com/x")
