"""The realtime token (and the key) never reach a log record or an exception, though it travels in the socket's URL.

websockets logs the handshake's request line (`GET /...?fal_jwt_token=...`) at DEBUG, and a gateway refusing a
handshake may echo the URL in its body (the local server does so on demand: `/_local/realtime` `{"refuse": status}`).
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from fal_runtime import AsyncClient, Client, errors
from fal_runtime._core import Core
from fal_runtime.local import LocalServer
from fal_runtime.realtime import RealtimeError, decode, encode

ECHO = "fal-ai/test/echo"
KEY = "test-key"  # what `fal_env` sets as FAL_KEY


@pytest.fixture
def server(fal_env: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
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


def _tokens(server: LocalServer) -> list[str]:
    """The tokens the server saw in handshakes' URLs."""
    return [parse_qs(s["query"])["fal_jwt_token"][0] for s in _control(server, "GET") if s["kind"] == "socket"]


def _fragments(secret: str) -> set[str]:
    """Every 8-character piece of a secret: a cut through an echo must not leave one behind either."""
    return {secret[i : i + 8] for i in range(len(secret) - 7)}


def _log_texts(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.msg!r} {r.args!r} {r.exc_text or ''}" for r in caplog.records) + caplog.text


def _traces(exc: BaseException) -> str:
    """What an exception (and those it was raised from) shows: str, repr, args and attributes."""
    texts, current = [], exc
    while current is not None:
        texts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__  # type: ignore[assignment]
    return "\n".join(texts)


def _assert_no_trace(text: str, *secrets: str) -> None:
    leaked = [f for s in secrets for f in _fragments(s) if f in text]
    assert not leaked, text[:2000]


def test_the_token_is_scrubbed_from_websockets_debug_log(server: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Client() as client, client.realtime(ECHO) as conn:
        conn.send({"prompt": "x"})
        assert conn.recv()["seed"] == 42
    [token] = _tokens(server)
    logged = _log_texts(caplog)
    assert "fal_jwt_token=[token]" in logged  # the request line was logged, without the token
    assert any(r.name == "websockets.client" for r in caplog.records)  # under websockets' own logger
    _assert_no_trace(logged, token)
    assert KEY not in logged


async def test_the_token_is_scrubbed_from_websockets_debug_log_async(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with AsyncClient() as client, client.realtime(ECHO) as conn:
        await conn.send({"prompt": "x"})
        assert (await conn.recv())["seed"] == 42
    [token] = _tokens(server)
    logged = _log_texts(caplog)
    assert "fal_jwt_token=[token]" in logged
    _assert_no_trace(logged, token)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_handshake_that_echoes_the_token_does_not_leak_it(
    server: LocalServer, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    _control(server, "POST", {"refuse": status})
    with Client() as client, pytest.raises(errors.AuthenticationError) as raised, client.realtime(ECHO):
        pass
    [token] = _tokens(server)  # refused at once: one token, one handshake
    assert raised.value.status_code == status
    assert "[token]" in str(raised.value)  # the echo is there, scrubbed
    _assert_no_trace(_traces(raised.value) + json.dumps(raised.value.detail), token)
    _assert_no_trace(_log_texts(caplog), token)


async def test_a_refused_handshake_that_echoes_the_token_does_not_leak_it_async(server: LocalServer) -> None:
    _control(server, "POST", {"refuse": 401})
    async with AsyncClient() as client:
        with pytest.raises(errors.AuthenticationError) as raised:
            async with client.realtime(ECHO):
                pass
    [token] = _tokens(server)
    assert "[token]" in str(raised.value)
    _assert_no_trace(_traces(raised.value), token)


def test_error_frames_are_scrubbed_of_the_token() -> None:
    token = "eyJhbGciOi.secret-token-value"
    frame = encode({"type": "x-fal-error", "error": "INTERNAL_ERROR", "reason": f"bad token {token} for {KEY}"})
    with pytest.raises(RealtimeError) as raised:
        decode(frame, Core(key=KEY), tokens=(token,))
    _assert_no_trace(_traces(raised.value) + json.dumps(raised.value.payload), token, KEY)
