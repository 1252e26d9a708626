"""Downloads under hostile servers and file systems: an overall deadline against dripping servers, the exact media
type, server-given names at the file system's length limit, write failures, and the permissions of saved files.

Real HTTP throughout: the local HTTPS server (which can script faults on downloads) or, for what it cannot do (a
body dripped a byte at a time), a tiny server on 127.0.0.1 that stops by itself."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fal_runtime import AsyncClient, Client
from fal_runtime.files import DownloadError, FalFile
from fal_runtime.local import LocalServer

PNG = b"\x89PNG\r\n\x1a\n"


class File(FalFile):
    content_type: str | None = None
    file_name: str | None = None


def _serve(reply: list[tuple[float, bytes]]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering every request with `reply`: (seconds to wait, bytes to send) steps.
    Each connection ends when the steps do, so the server stops by itself whatever the client does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for wait, data in reply:
                if stop.wait(wait):
                    return
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/files/out.bin"
    stop.set()
    thread.join(timeout=2)
    listener.close()


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 40\r\n\r\n"


@pytest.fixture
def drip() -> Iterator[str]:
    """40 bytes, one every 0.1 s (4 s in all): every read gets a byte long before any per-read timeout."""
    yield from _serve([(0.0, HEAD)] + [(0.1, b"x")] * 40)


UNSIZED = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"


@pytest.fixture(params=[HEAD, UNSIZED], ids=["sized", "ended-by-close"])
def drip_then_stall(request: pytest.FixtureRequest) -> Iterator[str]:
    """5 bytes over 0.5 s, then nothing for 3 s, then the rest: the stall begins just before a 1 s deadline. Without
    a Content-Length, the body ends when the connection does: cutting it must not pass for the whole file."""
    yield from _serve([(0.0, request.param)] + [(0.1, b"x")] * 5 + [(3.0, b"x" * 35)])


def _elapsed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    with pytest.raises(DownloadError, match="did not finish within its 1-second timeout"):
        call()
    return time.monotonic() - started


def test_timeout_bounds_the_whole_download_not_each_read(drip: str, tmp_path: Path) -> None:
    assert _elapsed(lambda: File(url=drip).save(tmp_path, timeout=1.0)) < 1.6
    assert list(tmp_path.iterdir()) == []


def test_timeout_ends_a_read_blocked_past_the_deadline(drip_then_stall: str) -> None:
    assert _elapsed(lambda: File(url=drip_then_stall).download(timeout=1.0)) < 1.4


async def test_timeout_bounds_the_whole_download_async(drip: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DownloadError, match="did not finish within its 1-second timeout"):
        await File(url=drip).save_async(tmp_path, timeout=1.0)
    assert time.monotonic() - started < 1.6 and list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError, match="did not finish within"):
        await File(url=drip).download_async(timeout=0.5)


@pytest.fixture
def image_url(local_server: LocalServer) -> str:
    local_server.reset()
    return f"https://{local_server.base}/_local/cdn/files/outputs/image.png"


@pytest.fixture
def client(local_server: LocalServer) -> Iterator[Client]:
    with Client("test-key", verify=ssl.create_default_context(cafile=local_server.ca_file)) as c:
        yield c


def test_timeout_includes_the_wait_before_a_retry(local_server: LocalServer, image_url: str, client: Client) -> None:
    local_server.script(op="download", fault="429", retry_after=1.5)
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"did not finish within its 1-second timeout \(last attempt: HTTP 429"):
        File(url=image_url).download(timeout=1.0, client=client)
    assert time.monotonic() - started < 0.8  # it did not sleep 1.5 s only to be out of time


async def test_timeout_includes_the_wait_before_a_retry_async(local_server: LocalServer, image_url: str) -> None:
    local_server.script(op="download", fault="429", retry_after=1.5)
    async with AsyncClient("test-key", verify=ssl.create_default_context(cafile=local_server.ca_file)) as client:
        started = time.monotonic()
        with pytest.raises(DownloadError, match="did not finish within"):
            await File(url=image_url).download_async(timeout=1.0, client=client)
        assert time.monotonic() - started < 1.3
        assert (await File(url=image_url).download_async(timeout=None, client=client)).startswith(PNG)


def _typed(content_type: str) -> Iterator[str]:
    body = PNG + b"-" * 8
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    yield from _serve([(0.0, head + body)])


@pytest.fixture
def svg() -> Iterator[str]:
    yield from _typed("image/svg+xml")


@pytest.fixture
def png_with_parameters() -> Iterator[str]:
    yield from _typed("IMAGE/PNG; charset=binary")


@pytest.fixture
def generic() -> Iterator[str]:
    yield from _typed("application/octet-stream")


def test_a_subtype_of_the_same_type_is_refused(svg: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="expected image/png, the server sent image/svg\\+xml"):
        File(url=svg, content_type="image/png").save(tmp_path)
    assert list(tmp_path.iterdir()) == []


class DefaultedImage(FalFile):
    """fal's Image: its content type defaults to image/jpeg whether or not the file is one."""

    content_type: str | None = "image/jpeg"


def test_a_defaulted_type_accepts_another_subtype_but_never_markup(
    image_url: str, client: Client, svg: str, tmp_path: Path
) -> None:
    assert DefaultedImage(url=image_url).download(client=client).startswith(PNG)  # fal did not say jpeg: a default
    with pytest.raises(DownloadError, match="expected image/jpeg, the server sent image/png"):
        DefaultedImage(url=image_url, content_type="image/jpeg").download(client=client)  # fal said jpeg
    with pytest.raises(DownloadError, match="the server sent image/svg\\+xml"):
        DefaultedImage(url=svg).save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_media_type_ignores_parameters_case_and_aliases(png_with_parameters: str, generic: str) -> None:
    assert File(url=png_with_parameters, content_type="image/png").download().startswith(PNG)
    assert File(url=png_with_parameters, content_type="application/octet-stream").download().startswith(PNG)
    assert File(url=generic, content_type="image/png").download().startswith(PNG)  # the server makes no claim
    assert File(url=png_with_parameters).download().startswith(PNG)  # fal made none


def test_a_255_character_server_name_is_shortened_keeping_its_extension(image_url: str, client: Client,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    for length in (250, 253, 255):
        name = "n" * (length - 4) + ".png"
        saved = File(url=image_url, file_name=name).save(tmp_path, client=client)
        assert saved.parent == tmp_path and saved.suffix == ".png" and saved.read_bytes().startswith(PNG)
        assert len(saved.name) + len(".") + len(".12345678.part") <= 255
    # The same shortened name each time: taken, so the next saves get `-2`, `-3` (still within the limit), never
    # replacing the first; and no temporary left.
    names = sorted(p.name for p in tmp_path.iterdir())
    stem = "n" * (255 - 15 - 4)
    assert names == sorted([f"{stem}.png", f"{stem[:-2]}-2.png", f"{stem[:-2]}-3.png"])


def test_a_name_the_file_system_refuses_is_a_download_error(image_url: str, client: Client, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="could not write"):
        File(url=image_url).save(tmp_path / ("x" * 300 + ".png"), client=client)
    with pytest.raises(DownloadError, match="could not write"):
        File(url=image_url).save(tmp_path / ("d" * 300) / "out.png", client=client)
    assert list(tmp_path.iterdir()) == []


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_saved_file_has_the_umask_permissions(image_url: str, client: Client, tmp_path: Path) -> None:
    expected = 0o666 & ~_current_umask()
    if expected == 0o600:
        pytest.skip("this umask gives new files 0600 anyway")
    saved = File(url=image_url).save(tmp_path / "out.png", client=client)
    assert saved.stat().st_mode & 0o777 == expected
    data = File(url="data:image/png;base64,iVBORw0KGgo=").save(tmp_path)
    assert data.stat().st_mode & 0o777 == expected


def test_the_deadline_ends_a_stalled_body_over_tls(local_server: LocalServer, image_url: str, client: Client) -> None:
    local_server.script(op="download", fault="stall", stall_seconds=3.0)
    assert _elapsed(lambda: File(url=image_url).download(timeout=1.0, client=client)) < 1.4
    assert File(url=image_url).download(client=client).startswith(PNG)  # the pool is still usable
    assert File(url=image_url).download(client=client, timeout=None).startswith(PNG)  # None: no limit, as before
