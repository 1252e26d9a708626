"""File inputs that used to send the wrong bytes or fail with someone else's error: an empty file inlined although the
client never inlines, a `/proc` file whose `stat` size is 0, a file object already read to its end, and PIL images in
modes PNG cannot hold. Uploads go over real HTTPS to the local server's storage routes."""

from __future__ import annotations

import io
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from PIL import Image

from fal_runtime import AsyncClient, Client
from fal_runtime.local import LocalServer
from generated.fal_ai.flux.dev import image_to_image as flux


def _settings(server: LocalServer, **extra: Any) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=server.ca_file)
    return dict(queue_host=server.base, run_host=server.run_host, rest_host=server.base, verify=ctx, **extra)


@pytest.fixture
def client(local_server: LocalServer) -> Iterator[Client]:
    local_server.reset()
    with Client("test-key", **_settings(local_server)) as c:
        yield c


@pytest.fixture
async def async_client(local_server: LocalServer) -> AsyncIterator[AsyncClient]:
    local_server.reset()
    async with AsyncClient("test-key", **_settings(local_server)) as c:
        yield c


def test_inline_max_bytes_0_uploads_even_an_empty_file(
    client: Client, local_server: LocalServer, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for value in (b"", empty, io.BytesIO()):
        url = client.upload(value)
        assert url.startswith("https://") and local_server.stored_file(url) == b""


async def test_inline_max_bytes_0_uploads_an_empty_file_async(
    async_client: AsyncClient, local_server: LocalServer
) -> None:
    url = await async_client.upload(b"")
    assert url.startswith("https://") and local_server.stored_file(url) == b""


def test_a_positive_inline_max_bytes_still_inlines_an_empty_file(local_server: LocalServer) -> None:
    with Client("test-key", **_settings(local_server, inline_max_bytes=10)) as client:
        assert client.upload(b"").startswith("data:")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_file_whose_stat_size_is_0_sends_its_content(client: Client, local_server: LocalServer) -> None:
    path = Path("/proc/self/status")
    assert path.stat().st_size == 0
    stored = local_server.stored_file(client.upload(path))
    assert stored is not None and stored.startswith(b"Name:") and b"\nUmask:" in stored


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
async def test_a_file_whose_stat_size_is_0_sends_its_content_async(
    async_client: AsyncClient, local_server: LocalServer
) -> None:
    stored = local_server.stored_file(await async_client.upload(Path("/proc/self/status")))
    assert stored is not None and stored.startswith(b"Name:")


def test_a_file_object_read_to_its_end_is_an_error_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"p" * 100)
    with path.open("rb") as handle:
        handle.read()
        with pytest.raises(pydantic.ValidationError, match=r"image_url\n.*read to its end \(position 108\).*seek\(0\)"):
            flux.Input(prompt="p", image_url=handle)
        handle.seek(0)
        assert flux.Input(prompt="p", image_url=handle).image_url is handle
    with path.open("rb") as handle:
        pass
    with pytest.raises(pydantic.ValidationError, match=r"image_url\n.*closed"):
        flux.Input(prompt="p", image_url=handle)


def test_a_file_object_is_sent_from_its_position_and_never_as_0_bytes(
    client: Client, local_server: LocalServer
) -> None:
    data = io.BytesIO(b"header|body")
    data.read(7)
    assert local_server.stored_file(client.upload(data)) == b"body"  # what is left: what the caller handed over
    with pytest.raises(ValueError, match="read to its end"):
        client.upload(data)  # the first upload read it to its end
    assert local_server.stored_file(client.upload(io.BytesIO())) == b""  # empty from its start: an empty file


async def test_a_file_object_read_to_its_end_is_refused_async(async_client: AsyncClient) -> None:
    data = io.BytesIO(b"abc")
    data.read()
    with pytest.raises(ValueError, match="read to its end"):
        await async_client.upload(data)


def _stored_image(client: Client, server: LocalServer, image: Image.Image) -> Image.Image:
    stored = server.stored_file(client.upload(image))
    assert stored is not None and stored.startswith(b"\x89PNG")
    decoded = Image.open(io.BytesIO(stored))
    decoded.load()
    return decoded


def test_pil_images_in_modes_png_cannot_hold_are_converted(client: Client, local_server: LocalServer) -> None:
    small = _stored_image(client, local_server, Image.new("F", (4, 3), 128.0))
    assert small.mode == "L" and small.size == (4, 3) and small.getextrema() == (128, 128)
    deep = _stored_image(client, local_server, Image.new("I", (4, 3), 1000))
    assert deep.mode.startswith("I") and deep.getextrema() == (1000, 1000)  # 16-bit: no value lost
    assert _stored_image(client, local_server, Image.new("I;16L", (2, 2), 300)).getextrema() == (300, 300)
    cmyk = _stored_image(client, local_server, Image.new("CMYK", (2, 2), (0, 255, 255, 0)))
    assert cmyk.mode == "RGB" and cmyk.getpixel((0, 0)) == (255, 0, 0)
    assert _stored_image(client, local_server, Image.new("RGBa", (2, 2), (10, 20, 30, 255))).mode == "RGBA"


def test_a_pil_image_its_format_cannot_hold_falls_back_to_png(client: Client, local_server: LocalServer) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (3, 3), (1, 2, 3)).save(buffer, format="JPEG")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.putalpha(128)  # in place: the image still says it is a JPEG, which cannot hold alpha
    assert image.format == "JPEG" and image.mode == "RGBA"
    assert _stored_image(client, local_server, image).mode == "RGBA"
