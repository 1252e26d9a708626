"""Failing fast (issue #21, item 13): what cannot heal is not retried, and a refused connection is reported in about a
second, over real sockets: a port nothing listens on, the local server without its CA, a certificate for another
host. A connection that is cut while it is being set up (a blip) is still retried as before."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from pydantic import BaseModel

from fal_runtime import APIConnectionError, AsyncClient, Client, RetryPolicy
from fal_runtime._core import Core
from fal_runtime.files import DownloadError, FalFile
from fal_runtime.local import LocalServer

ECHO = "fal-ai/test/echo"
INPUT = {"prompt": "x"}


def _connects(caplog: pytest.LogCaptureFixture) -> int:
    """TCP connections httpcore attempted while `caplog` listened at DEBUG on the `httpcore` logger."""
    return sum(
        1
        for r in caplog.records
        if r.name == "httpcore.connection" and r.getMessage().startswith("connect_tcp.started")
    )


@pytest.fixture
def refused_port() -> int:
    """A port on 127.0.0.1 that refuses connections: bound (so it was free), then closed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def _timed(call: Callable[[], Any]) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        call()
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("op", ["submit", "run", "status"])
def test_a_refused_port_is_reported_within_3_seconds(refused_port: int, op: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level("DEBUG", logger="httpcore")
    host = f"127.0.0.1:{refused_port}"
    with Client("test-key", queue_host=host, run_host=host) as client:  # the default RetryPolicy
        calls: dict[str, Callable[[], Any]] = {
            "submit": lambda: client.submit(ECHO, INPUT, output=BaseModel),
            "run": lambda: client.run(ECHO, INPUT, output=BaseModel),
            "status": lambda: client.get_handle(ECHO, "req-1", output=BaseModel).status(),
        }
        error, elapsed = _timed(calls[op])
    assert isinstance(error, APIConnectionError) and error.refused and not error.request_sent
    assert "Connection refused" in str(error)
    assert _connects(caplog) == 1 + RetryPolicy().refused_retries == 3  # before: 6 attempts, 15 to 20 s
    assert elapsed < 3.0


async def test_a_refused_port_is_reported_within_3_seconds_async(refused_port: int,
                                                                 caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level("DEBUG", logger="httpcore")
    host = f"127.0.0.1:{refused_port}"
    started = time.monotonic()
    async with AsyncClient("test-key", queue_host=host, run_host=host) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.submit(ECHO, INPUT, output=BaseModel)
    assert caught.value.refused and time.monotonic() - started < 3.0
    assert _connects(caplog) == 3


def test_refused_retries_is_a_setting(refused_port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="httpcore")
    host = f"127.0.0.1:{refused_port}"
    with Client("test-key", queue_host=host, retry=RetryPolicy(refused_retries=0)) as client:
        with pytest.raises(APIConnectionError):
            client.submit(ECHO, INPUT, output=BaseModel)
    assert _connects(caplog) == 1
    caplog.clear()
    policy = RetryPolicy(refused_retries=4, base_delay=0.01)
    with Client("test-key", queue_host=host, retry=policy) as client:
        with pytest.raises(APIConnectionError):
            client.submit(ECHO, INPUT, output=BaseModel)
    assert _connects(caplog) == 5


@pytest.fixture
def cut_during_setup() -> Iterator[str]:
    """A real listener that accepts each connection and closes it at once, before TLS: a connect failure that is
    not a refusal (a blip on the way, a load balancer dropping a connection)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


def test_a_connection_cut_during_setup_is_still_retried(cut_during_setup: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level("DEBUG", logger="httpcore")
    policy = RetryPolicy(max_retries=4, base_delay=0.01)  # more than refused_retries: the refusal rule is not used
    with Client("test-key", queue_host=cut_during_setup, retry=policy) as client:
        with pytest.raises(APIConnectionError) as caught:
            client.submit(ECHO, INPUT, output=BaseModel)
    assert not caught.value.refused and caught.value.transient
    assert _connects(caplog) == 5


def test_a_certificate_failure_is_not_retried(local_server: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    """The local server's certificate, checked against the system's CAs (its own CA not given)."""
    caplog.set_level("DEBUG", logger="httpcore")
    local_server.reset()
    with Client("test-key", queue_host=local_server.base, run_host=local_server.run_host) as client:
        error, elapsed = _timed(lambda: client.run(ECHO, INPUT, output=BaseModel))
    assert isinstance(error, APIConnectionError) and error.transient is False and not error.refused
    assert "CERTIFICATE_VERIFY_FAILED" in str(error) and "not retried" in str(error)
    assert _connects(caplog) == 1 and elapsed < 1.0  # before: 6 attempts, 12 to 20 s
    assert local_server.counters()["calls"] == {}


async def test_a_certificate_failure_is_not_retried_async(local_server: LocalServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level("DEBUG", logger="httpcore")
    started = time.monotonic()
    async with AsyncClient("test-key", queue_host=local_server.base) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.submit(ECHO, INPUT, output=BaseModel)
    assert caught.value.transient is False and time.monotonic() - started < 1.0
    assert _connects(caplog) == 1


@pytest.fixture
def other_hosts_certificate() -> Iterator[tuple[str, ssl.SSLContext]]:
    """A TLS server on 127.0.0.1 whose certificate (from a CA the client trusts) names another host."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("elsewhere.example").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                conn.settimeout(2)
                server_context.wrap_socket(conn, server_side=True).close()
            except OSError:
                conn.close()  # the client refused the certificate, as it should

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}", client_context
    stop.set()
    thread.join()
    listener.close()


def test_a_host_name_mismatch_is_not_retried(other_hosts_certificate: tuple[str, ssl.SSLContext],
                                             caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level("DEBUG", logger="httpcore")
    host, trusting = other_hosts_certificate
    with Client("test-key", queue_host=host, verify=trusting) as client:
        error, elapsed = _timed(lambda: client.submit(ECHO, INPUT, output=BaseModel))
    assert isinstance(error, APIConnectionError) and error.transient is False
    assert "mismatch" in str(error).lower() or "doesn't match" in str(error)
    assert _connects(caplog) == 1 and elapsed < 1.0


def test_a_download_from_an_untrusted_server_is_not_retried(local_server: LocalServer) -> None:
    local_server.reset()
    file = FalFile(url=f"{local_server.url}/_local/cdn/files/outputs/image.png")
    with Client("test-key") as client:  # the system's CAs: the local server's certificate fails verification
        error, elapsed = _timed(lambda: file.download(client=client))
    assert isinstance(error, DownloadError) and "certificate failed verification" in str(error)
    assert "attempts" not in str(error) and elapsed < 1.0


def test_the_core_rule() -> None:
    """Sans-IO: a refused connection gets `refused_retries` retries, a non-transient failure none."""
    core = Core(key="k", environ={})

    def delay(failure: APIConnectionError, attempt: int) -> float | None:
        return core.retry_delay("submit", attempt, 0.0, failure=failure, now_epoch=0.0, jitter=lambda: 0.5)

    refused = APIConnectionError("refused", refused=True)
    assert [delay(refused, n) for n in (1, 2, 3)] == [0.5, 1.0, None]
    assert delay(APIConnectionError("cert", transient=False), 1) is None
    assert delay(APIConnectionError("blip"), 3) == 2.0  # other connect failures: every retry
