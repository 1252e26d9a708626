"""File inputs end to end: every accepted form, through the generated functions, uploaded over real HTTPS to the
local server's storage routes, which then checks the model could read what it was given."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from PIL import Image
from pydantic_core import PydanticSerializationError

from fal_runtime import AsyncClient, Client, ServerError, UnprocessableEntityError
from fal_runtime._storage import MULTIPART_THRESHOLD, PART_SIZE
from fal_runtime.local import LocalServer
from generated.fal_ai.flux.dev import image_to_image as flux
from generated.fal_ai.flux_2.lora import edit as flux2
from tests.e2e.conftest import client_settings

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
URL = "https://example.com/cat.png"


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    return path


def _pil() -> Image.Image:
    return Image.new("RGB", (7, 5), (200, 10, 30))


def _uploaded(expected: bytes, name: str | None = None) -> Callable[[bytes | None, str], None]:
    def check(stored: bytes | None, url: str) -> None:
        assert stored == expected, f"the server's copy of {url} differs"
        if name:
            assert url.endswith("/" + name)

    return check


def _image_check(stored: bytes | None, url: str) -> None:
    assert stored is not None
    with Image.open(io.BytesIO(stored)) as image:
        assert image.format == "PNG" and image.size == (7, 5) and image.getpixel((3, 3)) == (200, 10, 30)


def _as_is(expected: str) -> Callable[[bytes | None, str], None]:
    def check(stored: bytes | None, url: str) -> None:
        assert url == expected and stored is None

    return check


# Each form: a factory for the value (a fresh file object per use), and a check of what the model received.
FORMS: dict[str, tuple[Callable[[Path], Any], Callable[[bytes | None, str], None]]] = {
    "url": (lambda p: URL, _as_is(URL)),
    "data-uri": (lambda p: "data:image/png;base64,iVBORw0KGgo=", _as_is("data:image/png;base64,iVBORw0KGgo=")),
    "path": (lambda p: p, _uploaded(PNG, "photo.png")),
    "bytes": (lambda p: PNG, _uploaded(PNG, "file.png")),
    "bytearray": (lambda p: bytearray(PNG), _uploaded(PNG)),
    "file-object": (lambda p: p.open("rb"), _uploaded(PNG, "photo.png")),
    "bytesio": (lambda p: io.BytesIO(PNG), _uploaded(PNG)),
    "pil-image": (lambda p: _pil(), _image_check),
}


def _sent(server: LocalServer, field: str) -> Any:
    _endpoint_id, payload = server.inputs()[-1]
    return payload[field]


@pytest.mark.parametrize("form", FORMS)
def test_each_form_sync(form: str, client: Client, server: LocalServer, png_file: Path) -> None:
    make, check = FORMS[form]
    output = flux.subscribe(image_url=make(png_file), prompt=f"sync {form}", client=client)
    assert isinstance(output, flux.Output)
    url = _sent(server, "image_url")
    check(server.stored_file(url), url)
    assert server.counters()["key_on_cdn"] == 0


@pytest.mark.parametrize("form", FORMS)
async def test_each_form_async(form: str, async_client: AsyncClient, server: LocalServer, png_file: Path) -> None:
    make, check = FORMS[form]
    output = await flux.subscribe_async(image_url=make(png_file), prompt=f"async {form}", client=async_client)
    assert isinstance(output, flux.Output)
    url = _sent(server, "image_url")
    check(server.stored_file(url), url)


async def test_a_list_of_mixed_forms_uploads_concurrently_in_order(
    async_client: AsyncClient, server: LocalServer, png_file: Path
) -> None:
    server.script(op="upload", delay=0.4, times=None)  # each upload is answered after 0.4 s: both are in flight
    values = [_pil(), URL, b"GIF89a" + b"\0" * 20]  # the endpoint takes at most 3
    await flux2.subscribe_async(image_urls=values, prompt="mixed", client=async_client)
    sent = _sent(server, "image_urls")
    assert sent[0].endswith("/image.png") and sent[1] == URL and sent[2].endswith("/file.gif")
    assert (server.stored_file(sent[2]) or b"").startswith(b"GIF89a")
    counters = server.counters()
    assert counters["calls"][""]["upload"] == 2
    # Seen by the server, not timed (a loaded machine made a 0.75 s bound flaky): one after the other gives 1.
    assert counters["peak_concurrent_calls"][""]["upload"] == 2, "the two uploads were not made concurrently"


def test_sync_list_and_the_token_is_fetched_once(client: Client, server: LocalServer, png_file: Path) -> None:
    flux2.subscribe(image_urls=(png_file, PNG), prompt="tuple", client=client)
    flux.subscribe(image_url=PNG, prompt="again", client=client)
    calls = server.counters()["calls"][""]
    assert calls["token"] == 1 and calls["upload"] == 3


def test_small_files_are_inlined_below_the_threshold(server: LocalServer, png_file: Path) -> None:
    server.reset()
    with Client("test-key", **client_settings(server, inline_max_bytes=len(PNG))) as client:
        flux.subscribe(image_url=png_file, prompt="inline", client=client)
        sent = _sent(server, "image_url")
        assert sent == "data:image/png;base64," + base64.b64encode(PNG).decode()
        flux.subscribe(image_url=PNG + b"!", prompt="one byte over", client=client)
        assert _sent(server, "image_url").startswith(f"https://{server.base}/")
    assert server.counters()["calls"][""] == {"token": 1, "upload": 1}


def test_a_bad_value_fails_before_any_network_call(client: Client, server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="is not a file"):
        flux.subscribe(image_url=tmp_path / "missing.png", prompt="x", client=client)
    with pytest.raises(pydantic.ValidationError, match="binary mode"):
        flux.subscribe(image_url=io.StringIO("text"), prompt="x", client=client)
    with pytest.raises(pydantic.ValidationError, match="not int"):
        flux2.subscribe(image_urls=[URL, 3], prompt="x", client=client)  # type: ignore[list-item]
    assert server.counters()["calls"] == {}


def test_a_local_file_never_reaches_json_unsent(png_file: Path) -> None:
    """Should a local file ever skip the upload, serializing it fails instead of sending fal its path's text."""
    arguments = flux.Input(image_url=png_file, prompt="x")
    assert arguments.model_dump()["image_url"] == png_file  # Python mode keeps the value
    with pytest.raises(PydanticSerializationError, match="must be uploaded first"):
        arguments.model_dump(mode="json")


def test_the_server_refuses_a_file_it_does_not_hold(client: Client, server: LocalServer) -> None:
    missing = f"https://{server.base}/_local/cdn/files/uploads/nothing/here.png"
    with pytest.raises(UnprocessableEntityError, match="image_url: Could not download the file"):
        flux.subscribe(image_url=missing, prompt="x", client=client)


# Multipart: a file over 100 MiB, written on the fly (never committed), sent in 10 MiB parts.


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    path = tmp_path_factory.mktemp("big") / "big.mp4"
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        block = os.urandom(1024 * 1024)
        for i in range(MULTIPART_THRESHOLD // len(block) + 5):  # 105 MiB: 11 parts, the last one short
            chunk = block[i:] + block[:i]
            handle.write(chunk)
            digest.update(chunk)
        tail = b"end of the big file"
        handle.write(tail)
        digest.update(tail)
    yield path, digest.hexdigest()
    path.unlink()


def _parts(path: Path) -> int:
    return -(-path.stat().st_size // PART_SIZE)


def test_multipart_upload_sync_retries_a_failed_part(
    client: Client, server: LocalServer, big_file: tuple[Path, str]
) -> None:
    path, digest = big_file
    server.script(op="upload_part", fault="503")  # the first part sent fails once
    server.script(op="upload_part", fault="drop")  # and the next one loses its connection
    flux.subscribe(image_url=path, prompt="big, sync", client=client)
    url = _sent(server, "image_url")
    assert url.endswith("/big.mp4")
    assert hashlib.sha256(server.stored_file(url) or b"").hexdigest() == digest
    calls = server.counters()["calls"][""]
    assert calls["upload_part"] == _parts(path) + 2  # each failed part was sent once more, nothing else
    assert calls["upload"] == 2  # start and complete
    assert server.counters()["key_on_cdn"] == 0


async def test_multipart_upload_async_through_a_generated_call(
    async_client: AsyncClient, server: LocalServer, big_file: tuple[Path, str]
) -> None:
    path, digest = big_file
    server.script(op="upload_part", fault="500")
    with path.open("rb") as handle:  # a file object, read part by part
        await flux.subscribe_async(image_url=handle, prompt="big", client=async_client)
    url = _sent(server, "image_url")
    assert url.endswith("/big.mp4")
    assert hashlib.sha256(server.stored_file(url) or b"").hexdigest() == digest
    assert server.counters()["calls"][""]["upload_part"] == _parts(path) + 1


# Files nested in input models (fal's `ControlNet.control_image_url`, `IPAdapter.image_url`): a module generated from
# an inline spec of that shape, served by its own local server.

NESTED_ID = "fal-ai/test/nested-files"


@pytest.fixture(scope="module")
def nested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LocalServer]]:
    import importlib
    import sys

    from codegen.generation.pipeline import generate
    from tests.codegen.conftest import mini_spec, write_specs

    root = tmp_path_factory.mktemp("nested")
    spec = mini_spec(
        NESTED_ID,
        {"prompt": {"type": "string"}, "controlnets": {"type": "array", "items": {"$ref": "#/components/schemas/ControlNet"}}},
        required=["prompt"],
        extra_schemas={"ControlNet": {"type": "object", "required": ["control_image_url"], "properties": {
            "control_image_url": {"type": "string"}, "mask_url": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "scale": {"type": "number"}}}},
    )  # fmt: skip
    specs = write_specs(root / "specs", [spec])
    generate(specs, root / "nested_pkg")
    sys.path.insert(0, str(root))
    try:
        with LocalServer(specs) as running:
            yield importlib.import_module("nested_pkg").load(NESTED_ID), running
    finally:
        sys.path.remove(str(root))


def _nested_call(module: Any, png_file: Path) -> dict[str, Any]:
    return {"prompt": "nested", "controlnets": [
        module.ControlNet(control_image_url=png_file, mask_url=PNG, scale=0.5),
        module.ControlNet(control_image_url=URL),
    ]}  # fmt: skip


def _check_nested(server: LocalServer, arguments: dict[str, Any], png_file: Path) -> None:
    _endpoint_id, payload = server.inputs()[-1]
    first, second = payload["controlnets"]
    assert server.stored_file(first["control_image_url"]) == PNG and first["control_image_url"].endswith("/photo.png")
    assert server.stored_file(first["mask_url"]) == PNG and first["scale"] == 0.5
    assert second == {"control_image_url": URL}
    assert arguments["controlnets"][0].control_image_url == png_file  # the caller's models are left as they were


def test_nested_file_inputs_sync(nested: tuple[Any, LocalServer], png_file: Path) -> None:
    module, server = nested
    server.reset()
    arguments = _nested_call(module, png_file)
    with Client("test-key", **client_settings(server)) as client:
        module.subscribe(client=client, **arguments)
    _check_nested(server, arguments, png_file)
    assert server.counters()["calls"][""]["upload"] == 2


def test_a_subclassed_input_model_still_uploads(client: Client, server: LocalServer, png_file: Path) -> None:
    class MyInput(flux.Input):
        pass

    flux.subscribe(MyInput(image_url=png_file, prompt="subclass"), client=client)
    assert server.stored_file(_sent(server, "image_url")) == PNG


async def test_nested_file_inputs_async(nested: tuple[Any, LocalServer], png_file: Path) -> None:
    module, server = nested
    server.reset()
    arguments = _nested_call(module, png_file)
    async with AsyncClient("test-key", **client_settings(server)) as client:
        await module.subscribe_async(client=client, **arguments)
    _check_nested(server, arguments, png_file)
    assert server.counters()["calls"][""]["upload"] == 2
    with pytest.raises(pydantic.ValidationError, match="is not a file"):  # checked at any depth, before any call
        module.ControlNet(control_image_url=png_file.with_name("missing.png"))


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_part_that_fails_for_good_stops_the_rest(
    mode: str, server: LocalServer, big_file: tuple[Path, str]
) -> None:
    """Once one part has failed for good, the parts not yet sent are not sent: the upload has failed anyway."""
    from fal_runtime import RetryPolicy

    path, _ = big_file
    server.reset()
    server.script(op="upload_part", fault="500", times=None)
    settings = client_settings(server, retry=RetryPolicy(max_retries=0))
    if mode == "sync":
        with Client("test-key", **settings) as client, pytest.raises(ServerError):
            client.upload(path)
    else:
        async with AsyncClient("test-key", **settings) as aclient:
            with pytest.raises(ServerError):
                await aclient.upload(path)
            await asyncio.sleep(0.5)  # the client is still open: parts left running in the background would go out
    sent = server.counters()["calls"][""]["upload_part"]
    assert sent < _parts(path), f"{sent} of {_parts(path)} parts were sent after the first failed for good"
