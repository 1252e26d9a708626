"""Saving output files: over HTTPS from the local server, and the failures that must leave no file behind."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fal_runtime import AsyncClient, Client
from fal_runtime.files import DownloadError
from fal_runtime.local import LocalServer
from generated.fal_ai import gemini_flash_edit as gemini
from tests.e2e.conftest import connects

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def output(server: LocalServer, monkeypatch: pytest.MonkeyPatch, fresh_default_client: None) -> gemini.Output:
    monkeypatch.setenv("SSL_CERT_FILE", str(server.certificates.ca_file))  # downloads trust the local CA too
    ctx = ssl.create_default_context(cafile=server.certificates.ca_file)
    with Client("test-key", queue_host=server.base, run_host=server.run_host, verify=ctx) as client:
        return gemini.subscribe(prompt="save me", image_url="https://example.com/in.png", client=client)


def test_save_into_a_directory_and_download(output: gemini.Output, tmp_path: Path) -> None:
    saved = output.image.save(tmp_path)
    assert saved.parent == tmp_path and saved.read_bytes().startswith(PNG)
    assert output.image.download() == saved.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [saved.name]  # no temporary left


async def test_async_twins(output: gemini.Output, tmp_path: Path) -> None:
    saved = await output.image.save_async(tmp_path / "out.png")
    assert saved == tmp_path / "out.png" and (await output.image.download_async()) == saved.read_bytes()


def test_over_the_size_limit_leaves_nothing(output: gemini.Output, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="limit"):
        output.image.save(tmp_path, max_bytes=16)
    assert list(tmp_path.iterdir()) == []


class RawHTTP(str):
    """The URL of a real HTTP server on 127.0.0.1, with the number of requests it has answered."""

    requests = 0


def _raw_http(*replies: bytes) -> Iterator[RawHTTP]:
    """A real HTTP server on 127.0.0.1 answering the n-th request with the n-th reply (the last one from then on),
    then closing the connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()
    url = RawHTTP(f"http://127.0.0.1:{listener.getsockname()[1]}/files/out.png")

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(replies[min(url.requests, len(replies) - 1)])
                url.requests += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield url
    stop.set()
    thread.join(timeout=2)
    listener.close()


TRUNCATED = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n" + PNG + b"x" * 1000
WHOLE = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1008\r\n\r\n" + PNG + b"y" * 1000


@pytest.fixture
def broken_http() -> Iterator[RawHTTP]:
    """Promises 100 kB, sends 1 kB and drops the connection, every time."""
    yield from _raw_http(TRUNCATED)


@pytest.fixture
def flaky_http() -> Iterator[RawHTTP]:
    """Drops the connection mid-body once, then serves the whole file."""
    yield from _raw_http(TRUNCATED, WHOLE)


@pytest.fixture
def html_http() -> Iterator[str]:
    """Answers an image URL with an HTML error page (a CDN's or a proxy's)."""
    page = b"<html>Access denied</html>"
    yield from _raw_http(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page)
    )


def test_wrong_content_type_leaves_nothing(html_http: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="expected image/png, the server sent text/html"):
        gemini.File(url=html_http, content_type="image/png").save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_connection_dropped_mid_body_leaves_nothing(broken_http: RawHTTP, tmp_path: Path) -> None:
    image = gemini.File(url=broken_http, content_type="image/png")
    with pytest.raises(DownloadError, match=r"failed: RemoteProtocolError \(after 4 attempts\)"):
        image.save(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert broken_http.requests == 4  # the first attempt and three more


def test_a_retried_download_starts_again_from_the_first_byte(flaky_http: RawHTTP, tmp_path: Path) -> None:
    saved = gemini.File(url=flaky_http, content_type="image/png").save(tmp_path / "out.png")
    assert saved.read_bytes() == PNG + b"y" * 1000  # nothing of the dropped attempt's 1 kB is left in it
    assert flaky_http.requests == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_transient_failures_are_tried_again_over_https(
    output: gemini.Output, server: LocalServer, tmp_path: Path
) -> None:
    server.reset()
    server.script(op="download", fault="503")
    server.script(op="download", fault="drop")
    saved = output.image.save(tmp_path)
    assert saved.read_bytes().startswith(PNG) and server.counters()["calls"][""]["download"] == 3


async def test_transient_failures_are_tried_again_async(output: gemini.Output, server: LocalServer) -> None:
    server.reset()
    server.script(op="download", fault="502")
    assert (await output.image.download_async()).startswith(PNG)
    assert server.counters()["calls"][""]["download"] == 2


def test_a_missing_file_is_not_tried_again(output: gemini.Output, server: LocalServer, tmp_path: Path) -> None:
    server.reset()
    missing = gemini.File(url=output.image.url.rsplit("/", 1)[0] + "/missing.png", content_type="image/png")
    with pytest.raises(DownloadError, match=r"HTTP 404 fetching .*missing.png$"):
        missing.save(tmp_path)
    assert server.counters()["calls"][""]["download"] == 1 and list(tmp_path.iterdir()) == []


def test_server_given_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    data = "data:image/png;base64," + base64.b64encode(PNG).decode()
    evil = gemini.File(url=data, file_name="../../../etc/passwd")
    saved = evil.save(tmp_path)
    assert saved == tmp_path / "passwd" and saved.read_bytes() == PNG
    assert gemini.File(url="https://cdn.example/a/..%2F..%2Fx.png").safe_name() == "x.png"


def test_saving_several_outputs_reuses_a_connection(output: gemini.Output, server: LocalServer, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level("DEBUG", logger="httpcore")
    ctx = ssl.create_default_context(cafile=server.certificates.ca_file)
    with Client("test-key", verify=ctx) as client:
        saved = [output.image.save(tmp_path / f"{i}.png", client=client) for i in range(4)]
    assert connects(caplog) == 1 and len({p.read_bytes() for p in saved}) == 1
    for i in range(4):  # without client=: the default client's pool, opened at most once
        output.image.save(tmp_path / f"default-{i}.png")
    assert connects(caplog) <= 2


async def test_async_downloads_share_the_clients_pools(output: gemini.Output, server: LocalServer,
                                                       caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level("DEBUG", logger="httpcore")
    ctx = ssl.create_default_context(cafile=server.certificates.ca_file)
    async with AsyncClient("test-key", verify=ctx) as client:
        for _ in range(4):
            assert (await output.image.download_async(client=client)).startswith(PNG)
    assert connects(caplog) == 1
