"""Realtime apps end to end: real WebSockets over TLS (the local CA) against the local server's token route and socket.

The server records every token request and handshake it sees (`/_local/realtime`), so the tests assert on what
reached it: the key on the token request only, the token alone in the socket's URL, a new token per reconnect.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import BaseModel, Field, ValidationError

from fal_runtime import AsyncClient, Client, Endpoint, RetryPolicy, errors
from fal_runtime._core import Core
from fal_runtime.local import LocalServer
from fal_runtime.local.realtime import credential_digest
from fal_runtime.realtime import (
    RealtimeConnectionClosed,
    RealtimeError,
    decode,
    encode,
    socket_url,
    token_alias,
)

ROOT = Path(__file__).resolve().parents[2]
ECHO = "fal-ai/test/echo"
KEY = "test-key"  # what `fal_env` sets as FAL_KEY
TEMPLATE_PROMPT = "an example"  # the prompt of the echo spec's output example, which the server answers


class Image(BaseModel):
    url: str


class EchoInput(BaseModel):
    prompt: str = Field(min_length=1)
    num_images: int = Field(default=1, ge=1, le=4)


class EchoOutput(BaseModel):
    images: list[Image]
    prompt: str
    seed: int


class VideoOutput(BaseModel):
    video: Image


ECHO_ENDPOINT = Endpoint(ECHO, EchoInput, EchoOutput)


@pytest.fixture
def server(fal_env: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """`fal_env` plus the REST host (tokens come from it), with the realtime records and the script cleared."""
    monkeypatch.setenv("FAL_REST_HOST", fal_env.base)
    fal_env.reset()
    _control(fal_env, "DELETE")
    yield fal_env
    fal_env.reset()
    _control(fal_env, "DELETE")


def _control(server: LocalServer, method: str, body: dict[str, Any] | None = None) -> Any:
    tls = ssl.create_default_context(cafile=str(server.ca_file))
    response = httpx.request(method, f"{server.url}/_local/realtime", json=body, verify=tls)
    response.raise_for_status()
    return response.json()


def _seen(server: LocalServer, kind: str) -> list[dict[str, Any]]:
    return [r for r in _control(server, "GET") if r["kind"] == kind]


def _tokens_in_sockets(server: LocalServer) -> list[str]:
    return [parse_qs(s["query"])["fal_jwt_token"][0] for s in _seen(server, "socket")]


def _assert_key_only_on_token_requests(server: LocalServer, tokens: int) -> None:
    requests = _seen(server, "token")
    assert [r["authorization"] for r in requests] == [credential_digest(f"Key {KEY}")] * tokens
    assert all(KEY not in json.dumps(r) for r in requests)
    assert [json.loads(r["body"]) for r in requests] == [{"allowed_apps": ["test"], "token_expiration": 120}] * tokens
    sockets = _seen(server, "socket")
    assert len(sockets) == tokens
    for seen in sockets:
        assert seen["path"] == f"/run/{ECHO}/realtime"
        assert set(parse_qs(seen["query"])) == {"fal_jwt_token"}
        assert "authorization" not in seen["headers"]
        assert KEY not in json.dumps(seen)


def test_round_trip_sends_the_key_to_the_rest_host_and_only_a_token_to_the_socket(server: LocalServer) -> None:
    with Client() as client, client.realtime(ECHO) as conn:
        conn.send({"prompt": "a fox", "num_images": 2})
        answer = conn.recv()
        assert KEY not in repr(conn) and "token" not in repr(conn)
    assert answer["prompt"] == TEMPLATE_PROMPT and answer["seed"] == 42
    assert answer["images"][0]["url"].startswith(server.url)
    assert server.inputs() == [(ECHO, {"prompt": "a fox", "num_images": 2})]  # decoded from msgpack as sent
    _assert_key_only_on_token_requests(server, tokens=1)


async def test_round_trip_async_and_iteration_ends_at_a_normal_close(server: LocalServer) -> None:
    _control(server, "POST", {"close_after": 2, "close_code": 1000})
    async with AsyncClient() as client, client.realtime(ECHO) as conn:
        await conn.send({"prompt": "one"})
        await conn.send({"prompt": "two"})
        answers = [answer async for answer in conn]  # ends when the server closes normally after two answers
    assert [a["prompt"] for a in answers] == [TEMPLATE_PROMPT] * 2
    assert [payload["prompt"] for _, payload in server.inputs()] == ["one", "two"]
    _assert_key_only_on_token_requests(server, tokens=1)


def test_an_invalid_input_raises_fals_error_and_the_next_send_reconnects(server: LocalServer) -> None:
    with Client() as client, client.realtime(ECHO) as conn:
        conn.send({"prompt": ""})
        with pytest.raises(RealtimeError) as raised:
            conn.recv()
        assert raised.value.error == "INTERNAL_ERROR" and "prompt" in raised.value.reason
        assert raised.value.payload["type"] == "x-fal-error"
        with pytest.raises(RealtimeConnectionClosed) as closed:  # fal's app template closes after an error
            conn.recv()
        assert closed.value.code == 1000
        conn.send({"prompt": "valid"})
        assert conn.recv()["seed"] == 42
    tokens = _tokens_in_sockets(server)
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    _assert_key_only_on_token_requests(server, tokens=2)


def test_a_server_close_loses_the_pending_answer_and_reconnects_with_a_fresh_token(server: LocalServer) -> None:
    _control(server, "POST", {"close_after": 1, "close_code": 1011})
    with Client() as client, client.realtime(ECHO) as conn:
        conn.send({"prompt": "first"})
        assert conn.recv()["prompt"] == TEMPLATE_PROMPT
        with pytest.raises(RealtimeConnectionClosed) as closed:
            conn.recv()
        assert closed.value.code == 1011 and KEY not in str(closed.value)
        conn.send({"prompt": "second"})
        assert conn.recv()["seed"] == 42
    tokens = _tokens_in_sockets(server)
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert [payload["prompt"] for _, payload in server.inputs()] == ["first", "second"]
    _assert_key_only_on_token_requests(server, tokens=2)


async def test_a_server_close_reconnects_with_a_fresh_token_async(server: LocalServer) -> None:
    _control(server, "POST", {"close_after": 1, "close_code": 1001})
    answers = []
    async with AsyncClient() as client, client.realtime(ECHO) as conn:
        await conn.send({"prompt": "first"})
        with pytest.raises(RealtimeConnectionClosed) as closed:  # a close other than 1000 ends iteration with an error
            async for answer in conn:
                answers.append(answer)
        assert closed.value.code == 1001 and len(answers) == 1
        await conn.send({"prompt": "second"})
        assert (await conn.recv())["seed"] == 42
    tokens = _tokens_in_sockets(server)
    assert len(tokens) == 2 and tokens[0] != tokens[1]


def test_recv_times_out_and_the_connection_stays_usable(server: LocalServer) -> None:
    with Client() as client, client.realtime(ECHO, recv_timeout=0.2) as conn:
        with pytest.raises(errors.APITimeoutError, match=r"no realtime answer within 0\.2 s"):
            conn.recv()
        conn.send({"prompt": "late"})
        assert conn.recv(timeout=10)["seed"] == 42
    assert len(_seen(server, "socket")) == 1


def test_a_refused_handshake_is_raised_at_once(server: LocalServer) -> None:
    with Client() as client, pytest.raises(errors.NotFoundError) as raised, client.realtime("fal-ai/test/nope"):
        pass
    assert raised.value.status_code == 404 and KEY not in str(raised.value)
    assert len(_seen(server, "token")) == 1  # a 404 is not retried


def test_opening_is_retried_within_the_retry_policy_with_a_new_token_each_time(server: LocalServer) -> None:
    with socket.socket() as unused:  # a port nothing listens on: every handshake fails to connect
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    retry = RetryPolicy(max_retries=2, base_delay=0.01)
    with Client(run_host=f"127.0.0.1:{closed_port}/run", retry=retry) as client:
        with pytest.raises(errors.APIConnectionError) as raised, client.realtime(ECHO):
            pass
    assert KEY not in str(raised.value) and "fal_jwt_token" not in str(raised.value)
    assert len(_seen(server, "token")) == 3


def test_a_failed_token_request_is_retried(server: LocalServer) -> None:
    server.script(None, "token", "500")
    with Client(retry=RetryPolicy(max_retries=2, base_delay=0.01)) as client, client.realtime(ECHO) as conn:
        conn.send({"prompt": "x"})
        assert conn.recv()["seed"] == 42
    assert len(_seen(server, "token")) == 2 and len(_seen(server, "socket")) == 1


def test_a_closed_connection_cannot_be_used(server: LocalServer) -> None:
    with Client() as client:
        conn = client.realtime(ECHO)
        with pytest.raises(RealtimeConnectionClosed, match="not connected"):
            conn.recv()  # nothing is open before the first send
        conn.close()
        with pytest.raises(RealtimeConnectionClosed, match="closed"):
            conn.send({"prompt": "x"})
    assert _seen(server, "token") == []


def test_endpoint_realtime_validates_inputs_and_types_answers(server: LocalServer) -> None:
    with Client() as client, ECHO_ENDPOINT.realtime(client=client) as conn:
        conn.send(prompt="keywords")
        conn.send(EchoInput(prompt="model"))
        conn.send({"prompt": "dict"})
        answers = [conn.recv() for _ in range(3)]
        with pytest.raises(ValidationError):
            conn.send(prompt="x", num_images=9)  # refused before anything is sent
        with pytest.raises(TypeError, match="no call option"):
            conn.send(prompt="x", timeout=3)
    assert all(isinstance(a, EchoOutput) and a.seed == 42 for a in answers)
    assert [payload for _, payload in server.inputs()] == [
        {"prompt": "keywords"},
        {"prompt": "model"},
        {"prompt": "dict"},
    ]


def test_endpoint_realtime_answer_not_matching_output_is_a_protocol_error(server: LocalServer) -> None:
    wrong = Endpoint(ECHO, EchoInput, VideoOutput)
    with Client() as client, wrong.realtime(client=client) as conn:
        conn.send(prompt="x")
        with pytest.raises(errors.ProtocolError) as raised:
            conn.recv()
    assert str(raised.value) == "a realtime answer does not match VideoOutput: video: Field required"


async def test_endpoint_realtime_async(server: LocalServer) -> None:
    async with AsyncClient() as client, ECHO_ENDPOINT.realtime_async(client=client) as conn:
        await conn.send(prompt="async")
        answer = await conn.recv()
        with pytest.raises(ValidationError):
            await conn.send(prompt="")
    assert isinstance(answer, EchoOutput) and answer.prompt == TEMPLATE_PROMPT
    assert server.inputs() == [(ECHO, {"prompt": "async"})]


def test_readme_realtime_block_runs_against_the_local_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's realtime block, unchanged, against a local server serving its endpoint, through the environment."""
    import fal_runtime._client as client_module

    (tmp_path / "fal-ai").mkdir()
    (tmp_path / "fal-ai" / "fast-lcm-diffusion.yaml").write_text(
        (ROOT / "specs/fal-ai/fast-lcm-diffusion.yaml").read_text()
    )
    section = (ROOT / "README.md").read_text().split("## Realtime", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    with LocalServer(tmp_path) as local:
        for name, value in [
            ("FAL_KEY", KEY),
            ("FAL_QUEUE_RUN_HOST", local.base),
            ("FAL_RUN_HOST", local.run_host),
            ("FAL_REST_HOST", local.base),
            ("SSL_CERT_FILE", str(local.ca_file)),
        ]:
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(client_module, "_default", None)  # the default client reads this environment afresh
        exec(compile(block.group(1), "README.md", "exec"), {})
        inputs = local.inputs()
    url, seed = capsys.readouterr().out.split()
    assert url.startswith(local.url) and int(seed) >= 0
    assert inputs == [
        ("fal-ai/fast-lcm-diffusion", {"prompt": "a red fox", "num_inference_steps": 4}),
        ("fal-ai/fast-lcm-diffusion", {"prompt": "a red fox, at night"}),
    ]


# The protocol's pure parts, as fal-client and fal-js build them.


@pytest.mark.parametrize(
    ("endpoint_id", "path", "alias", "url"),
    [
        ("fal-ai/fast-lcm-diffusion", None, "fast-lcm-diffusion", "wss://fal.run/fal-ai/fast-lcm-diffusion/realtime"),
        ("fal-ai/flux/dev", None, "flux", "wss://fal.run/fal-ai/flux/dev/realtime"),
        ("fal-ai/app/realtime", None, "app", "wss://fal.run/fal-ai/app/realtime"),  # not added twice
        ("fal-ai/app", "/ws", "app", "wss://fal.run/fal-ai/app/ws"),
        ("workflows/me/flow", None, "flow", "wss://fal.run/workflows/me/flow/realtime"),
        ("110602490-lcm", None, "lcm", "wss://fal.run/110602490/lcm/realtime"),  # the legacy id form
    ],
)
def test_socket_url_and_token_alias(endpoint_id: str, path: str | None, alias: str, url: str) -> None:
    assert token_alias(endpoint_id) == alias
    assert socket_url("https://fal.run", endpoint_id, path, "t.k/n", None) == f"{url}?fal_jwt_token=t.k%2Fn"
    assert socket_url("http://127.0.0.1:9/run", endpoint_id, path, "t", 4).startswith("ws://127.0.0.1:9/run/")
    assert socket_url("http://h", endpoint_id, path, "t", 4).endswith("?fal_jwt_token=t&max_buffering=4")


def test_frames_are_decoded_as_fal_clients_do() -> None:
    core = Core(key=KEY)
    assert decode(encode({"image": b"\x89PNG", "n": 1}), core) == {"image": b"\x89PNG", "n": 1}
    assert decode('{"seed": 1}', core) == {"seed": 1}
    assert decode('{"type": "x-fal-message", "action": "timings"}', core) is None
    assert decode(encode({"type": "x-fal-error", "error": "TIMEOUT", "reason": "idle"}), core) is None
    with pytest.raises(RealtimeError, match="Unauthorized") as raised:
        decode('{"status": "error", "error": "Unauthorized"}', core)
    assert raised.value.error == "Unauthorized"
    with pytest.raises(RealtimeError) as raised:
        decode(json.dumps({"type": "x-fal-error", "error": "INTERNAL_ERROR", "reason": f"echo {KEY}-secret"}), core)
    assert KEY not in str(raised.value) and KEY not in json.dumps(raised.value.payload)
    for frame in ("not json", encode({"x": 1})[:-1], "[1, 2]"):
        with pytest.raises(errors.ProtocolError):
            decode(frame, core)


def test_options_are_checked_before_any_request() -> None:
    with Client(KEY) as client:
        with pytest.raises(ValueError, match="max_buffering"):
            client.realtime(ECHO, max_buffering=61)
        with pytest.raises(ValueError, match="endpoint id"):
            client.realtime("no-slash")
