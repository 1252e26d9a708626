"""What a newcomer runs into first (issue #21, items 9, 10, 12, 14): a local path given as a string, outputs saved
over each other, a missing CA file or extra answered with a traceback, and errors that do not say where they come
from. Everything speaks real HTTPS to a local server serving the committed specs."""

from __future__ import annotations

import ast
import base64
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest

import fal_runtime
from fal_runtime import Client, ConfigurationError, UnprocessableEntityError, _client
from fal_runtime.files import DownloadError, FalFile, OutputExistsError
from fal_runtime.local import LocalServer
from fal_runtime.local import __main__ as local_main
from fal_runtime.local import server as local_server_module
from generated.fal_ai import flux_general
from generated.fal_ai import stable_diffusion_v35_large as sd35
from generated.fal_ai.flux.dev import image_to_image as flux
from generated.fal_ai.flux_2.lora import edit as flux2

ROOT = Path(__file__).resolve().parents[2]
URL = "https://example.com/cat.png"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(ROOT / "specs") as running:
        yield running


@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    server.reset()
    ctx = ssl.create_default_context(cafile=server.ca_file)
    with Client("test-key", queue_host=server.base, run_host=server.run_host, rest_host=server.base, verify=ctx) as c:
        yield c


def _calls(server: LocalServer) -> dict[str, object]:
    calls: dict[str, object] = server.counters()["calls"]
    return calls


# Item 9: a str that is neither an http(s) URL nor a data URI is a local path typed as a string.


def test_a_path_in_a_string_is_refused_before_anything_is_sent(client: Client, server: LocalServer) -> None:
    with pytest.raises(
        pydantic.ValidationError, match=r"image_url\n.*'cat\.png' is not a URL.*pathlib\.Path\('cat\.png'\)"
    ):
        flux.subscribe(image_url="cat.png", prompt="x", client=client)
    with pytest.raises(pydantic.ValidationError, match=r"image_urls\.1\n.*pathlib\.Path\('photos/dog\.jpg'\)"):
        flux2.subscribe(image_urls=[URL, "photos/dog.jpg"], prompt="x", client=client)
    with pytest.raises(
        pydantic.ValidationError, match=r"controlnet\.control_image_url\n.*pathlib\.Path\('edges\.png'\)"
    ):
        sd35.subscribe(prompt="x", controlnet={"path": "w", "control_image_url": "edges.png"}, client=client)
    with pytest.raises(pydantic.ValidationError, match=r"ftp:// URL, which fal cannot fetch"):
        flux.subscribe(image_url="ftp://example.com/cat.png", prompt="x", client=client)
    with pytest.raises(ValueError, match=r"pathlib\.Path\('cat\.png'\)"):
        client.upload("cat.png")
    # A bare word is not a URL either ("cat", a file name without its extension, or a typo)
    with pytest.raises(pydantic.ValidationError, match=r"image_url\n.*'cat' is not a URL.*pathlib\.Path\('cat'\)"):
        flux.subscribe(image_url="cat", prompt="x", client=client)
    # where fal names presets (flux-general's control_method_url), the rest still are refused, with the presets named
    control = {"control_method_url": "canyn", "image_url": URL, "image_control_type": "spatial"}
    with pytest.raises(pydantic.ValidationError, match=r"'canyn' is not a URL(.|\n)*'canny', 'depth'"):
        flux_general.subscribe(prompt="x", easycontrols=[control], client=client)
    assert _calls(server) == {}  # nothing reached the server


def test_urls_data_uris_and_presets_are_still_sent_as_given(client: Client, server: LocalServer) -> None:
    for value in (URL, "HTTP://EXAMPLE.COM/A.PNG", "data:image/png;base64,iVBORw0KGgo="):
        flux.subscribe(image_url=value, prompt="x", client=client)
        assert server.inputs()[-1][1]["image_url"] == value
    assert client.upload(URL) == URL
    # flux-general's control_method_url also takes fal's presets ("canny", "depth", ...): its spec names them, so its
    # type does (`FileInput | ControlMethodUrl`)
    control = {"control_method_url": "canny", "image_url": URL, "image_control_type": "spatial"}
    flux_general.subscribe(prompt="x", easycontrols=[control], client=client)
    assert server.inputs()[-1][1]["easycontrols"][0]["control_method_url"] == "canny"


def test_a_bare_name_of_an_existing_file_is_a_path(client: Client, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat").write_bytes(PNG)
    with pytest.raises(pydantic.ValidationError, match=r"pathlib\.Path\('cat'\)"):
        flux.subscribe(image_url="cat", prompt="x", client=client)


def test_the_local_server_answers_a_path_with_fals_422(client: Client, server: LocalServer) -> None:
    """A client that does not validate (fal_client, curl) sends the string: the server refuses it as fal does."""
    http = client.http
    auth = {"Authorization": "Key test-key"}
    for url in (f"{server.url}/fal-ai/flux/dev/image-to-image", f"{server.url}/run/fal-ai/flux/dev/image-to-image"):
        answer = http.post(url, json={"image_url": "cat.png", "prompt": "x"}, headers=auth)
        assert answer.status_code == 422
        (detail,) = answer.json()["detail"]
        assert detail["loc"] == ["body", "image_url"] and detail["type"] == "file_download_error"
        assert "'cat.png' is not a URL" in detail["msg"]
    answer = http.post(f"{server.url}/fal-ai/flux-2/lora/edit", json={"image_urls": [URL, "b.png"], "prompt": "x"},
                       headers=auth)  # fmt: skip
    assert answer.status_code == 422 and [d["loc"] for d in answer.json()["detail"]] == [["body", "image_urls", 1]]
    answer = http.post(f"{server.url}/fal-ai/flux/dev/image-to-image", json={"image_url": "cat", "prompt": "x"},
                       headers=auth)  # fmt: skip
    assert answer.status_code == 422 and answer.json()["detail"][0]["type"] == "file_download_error"
    preset = {"prompt": "x", "easycontrols": [{"control_method_url": "depth", "image_url": URL,
                                               "image_control_type": "spatial"}]}  # fmt: skip
    assert http.post(f"{server.url}/fal-ai/flux-general", json=preset, headers=auth).status_code == 200
    preset["easycontrols"][0]["control_method_url"] = "dpeth"  # type: ignore[index]
    assert http.post(f"{server.url}/fal-ai/flux-general", json=preset, headers=auth).status_code == 422
    nested = {"prompt": "x", "controlnet": {"path": "w", "control_image_url": "edges.png"}}
    answer = http.post(f"{server.url}/fal-ai/stable-diffusion-v35-large", json=nested, headers=auth)
    assert answer.status_code == 422
    assert [d["loc"] for d in answer.json()["detail"]] == [["body", "controlnet", "control_image_url"]]
    # What the client maps it to, and that a URL in the same place is accepted.
    with pytest.raises(UnprocessableEntityError, match="image_url: Failed to download the file"):
        client.run("fal-ai/flux/dev/image-to-image", {"image_url": "cat.png", "prompt": "x"}, output=flux.Output)
    ok = http.post(f"{server.url}/fal-ai/flux/dev/image-to-image", json={"image_url": URL, "prompt": "x"}, headers=auth)
    assert ok.status_code == 200
    assert server.counters()["submits"] == {"fal-ai/flux/dev/image-to-image": 1, "fal-ai/flux-general": 1}


# Item 10: saving outputs.


class Named(FalFile):
    """An output file as fal describes one (`File`): a URL, and a name."""

    file_name: str | None = None


def _data_file(content: bytes = PNG, name: str | None = "image.png") -> Named:
    return Named(url="data:image/png;base64," + base64.b64encode(content).decode(), file_name=name)


def test_every_output_gets_its_own_url_from_the_local_server(client: Client) -> None:
    first = flux.run(image_url=URL, prompt="one", client=client)
    second = flux.run(image_url=URL, prompt="two", client=client)
    urls = {first.images[0].url, second.images[0].url}
    assert len(urls) == 2  # as fal's CDN: a random path segment per file
    for url in urls:
        assert client.http.get(url).content.startswith(b"\xff\xd8\xff")  # each one serves the file


def test_two_outputs_saved_into_one_directory_keep_both(client: Client, tmp_path: Path) -> None:
    images = [flux.run(image_url=URL, prompt=f"n{i}", client=client).images[0] for i in range(2)]
    assert images[0].safe_name() == images[1].safe_name()  # fal names every image alike
    saved = [image.save(tmp_path, client=client) for image in images]
    assert [p.name for p in saved] == ["image.jpg", "image-2.jpg"]
    assert all(p.read_bytes().startswith(b"\xff\xd8\xff") for p in saved)


def test_a_missing_directory_named_without_a_suffix_is_a_directory(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    first = _data_file(b"first").save(outputs)
    second = _data_file(b"second").save(outputs)  # before: a file named `outputs`, then overwritten
    assert outputs.is_dir() and first == outputs / "image.png" and second == outputs / "image-2.png"
    assert (first.read_bytes(), second.read_bytes()) == (b"first", b"second")
    assert _data_file(b"third").save(str(tmp_path / "more") + "/") == tmp_path / "more" / "image.png"


def test_a_file_path_is_replaced_unless_overwrite_is_false(tmp_path: Path, server: LocalServer,
                                                           client: Client) -> None:  # fmt: skip
    target = tmp_path / "out.png"
    assert _data_file(b"old").save(target) == target
    assert _data_file(b"new").save(target) == target and target.read_bytes() == b"new"  # existing callers
    image = flux.run(image_url=URL, prompt="x", client=client).images[0]
    server.reset()
    with pytest.raises(OutputExistsError, match=r"out\.png exists: pass overwrite=True") as caught:
        image.save(target, overwrite=False, client=client)
    assert isinstance(caught.value, FileExistsError) and isinstance(caught.value, DownloadError)
    assert target.read_bytes() == b"new" and _calls(server) == {}  # refused before downloading anything
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary left
    assert _data_file(b"fresh").save(tmp_path / "other.png", overwrite=False).read_bytes() == b"fresh"


def test_overwrite_true_replaces_the_same_name_in_a_directory(tmp_path: Path) -> None:
    _data_file(b"one").save(tmp_path)
    assert _data_file(b"two").save(tmp_path, overwrite=True) == tmp_path / "image.png"
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == ["image.png"] and (tmp_path / "image.png").read_bytes() == b"two"
    )


async def test_saves_at_once_into_one_directory_all_get_a_name(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def save(i: int) -> None:
        try:
            _data_file(str(i).encode()).save(tmp_path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    saved = await _data_file(b"async").save_async(tmp_path)
    assert not errors and saved.name == "image-9.png"
    assert sorted(p.read_bytes() for p in tmp_path.iterdir()) == sorted(
        [str(i).encode() for i in range(8)] + [b"async"]
    )


# Item 12: one line instead of a traceback.


def test_ssl_cert_file_naming_a_missing_file_is_one_typed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                server: LocalServer) -> None:  # fmt: skip
    missing = tmp_path / "nowhere" / "ca.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    with pytest.raises(ConfigurationError, match=rf"SSL_CERT_FILE names a CA file that does not exist: '{missing}'"):
        Client("test-key", queue_host=server.base)
    monkeypatch.setattr(_client, "_default", None)  # the default client reads the environment afresh
    monkeypatch.setenv("FAL_QUEUE_RUN_HOST", server.base)
    monkeypatch.setenv("FAL_KEY", "test-key")
    server.reset()
    with pytest.raises(ConfigurationError, match="SSL_CERT_FILE") as caught:
        flux.subscribe(image_url=URL, prompt="x")
    assert len(str(caught.value).splitlines()) == 1 and _calls(server) == {}
    with pytest.raises(ConfigurationError, match=r"verify= names a CA file that does not exist"):
        Client("test-key", verify=str(missing))
    assert Client("test-key", verify=False) is not None  # SSL_CERT_FILE only matters when the bundle is used


def test_a_ca_file_that_holds_no_certificate_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path, server: LocalServer) -> None:  # fmt: skip
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(junk))
    server.reset()
    with (
        Client("test-key", queue_host=server.base) as client,
        pytest.raises(ConfigurationError, match="cannot be loaded"),
    ):
        flux.submit(image_url=URL, prompt="x", client=client)
    assert _calls(server) == {}


def test_a_configuration_error_is_a_fal_error_and_missing_credentials_one_too() -> None:
    assert issubclass(ConfigurationError, fal_runtime.FalError)
    assert issubclass(fal_runtime.MissingCredentialsError, ConfigurationError)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    return captured.err


def test_the_server_command_without_its_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed: importing it raises ModuleNotFoundError
    assert local_main.main(["--port", "0"]) == 2
    line = _one_line(capsys)
    assert "uvicorn is not installed" in line and "pip install 'fal-typed[local]'" in line
    with pytest.raises(local_server_module.MissingExtraError, match=r"pip install 'fal-typed\[local\]'"):
        LocalServer(ROOT / "specs")


def test_the_server_command_without_specs_names_the_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert local_main.main(["--specs", str(tmp_path / "nothing")]) == 2
    assert "no specs directory at" in _one_line(capsys)
    assert local_main.main(["--specs", str(tmp_path)]) == 2  # a directory, but no spec in it
    assert "--specs DIR" in _one_line(capsys)
    # An installed wheel: the default (specs/ beside the package) does not exist.
    monkeypatch.setattr(local_main, "default_specs_dir", lambda: tmp_path / "site-packages" / "specs")
    assert local_main.main([]) == 2
    assert "--specs DIR" in _one_line(capsys)
    with pytest.raises(FileNotFoundError, match="no specs directory"):
        LocalServer(tmp_path / "nothing")


@pytest.mark.slow
def test_python_m_fal_runtime_local_without_the_extra_prints_one_line(tmp_path: Path) -> None:
    """The real command, in a Python where none of the extra's modules can be imported."""
    blocked = ", ".join(repr(m) for m in local_server_module.EXTRA_MODULES)
    code = (
        f"import runpy, sys\nfor m in ({blocked},): sys.modules[m] = None\n"
        "sys.argv = ['fal_runtime.local', '--port', '0']\nrunpy.run_module('fal_runtime.local', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "python -m fal_runtime.local: the local fal server needs the 'local' extra (starlette is not installed): "
        "pip install 'fal-typed[local]'"
    ]


# Item 14: errors that say where they come from.


def test_a_validation_error_names_the_endpoint(client: Client) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        flux.subscribe(image_url=URL, prompt="x", strength="strong", client=client)
    assert caught.value.title == "fal-ai/flux/dev/image-to-image Input"
    assert str(caught.value).startswith("1 validation error for fal-ai/flux/dev/image-to-image Input\nstrength\n")
    assert caught.value.errors()[0]["loc"] == ("strength",)
    with pytest.raises(pydantic.ValidationError, match=r"^1 validation error for fal-ai/flux-2/lora/edit Input"):
        flux2.run({"prompt": "x", "image_urls": 3}, client=client)  # type: ignore[arg-type]  # a dict, validated


def test_a_misspelt_keyword_gets_a_suggestion(client: Client) -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'promt' \(did you mean 'prompt'\?\)"):
        flux.subscribe(image_url=URL, promt="x", client=client)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"'strenght' \(did you mean 'strength'\?\), 'zzz'$"):
        flux.subscribe(image_url=URL, prompt="x", strenght=0.5, zzz=1, client=client)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"'start_timout' \(did you mean 'start_timeout'\?\)"):
        flux.subscribe(image_url=URL, prompt="x", start_timout=5, client=client)  # type: ignore[call-overload]


def test_file_inputs_are_typed_without_pillow() -> None:
    """`FileInput` names no PIL type (a type checker without Pillow saw the whole union as partially unknown): a
    PIL image is an `ImageLike`, a protocol. `test_pil_images_satisfy_image_like` checks Pillow's class fits it."""
    tree = ast.parse((ROOT / "fal_runtime" / "inputs.py").read_text())
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    assert not any(name.split(".")[0] == "PIL" for name in imported)


@pytest.mark.slow
def test_pil_images_satisfy_image_like(tmp_path: Path) -> None:
    from mypy import api

    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "from PIL import Image\n"
        "from fal_runtime.inputs import FileInput, ImageLike\n"
        "from generated.fal_ai.flux.dev import image_to_image as flux\n"
        "image: ImageLike = Image.new('RGB', (1, 1))\n"
        "value: FileInput = Image.new('RGB', (1, 1))\n"
        "flux.Input(image_url=Image.new('RGB', (1, 1)), prompt='x')\n"
    )
    out, err, status = api.run(["--strict", "--no-incremental", "--follow-imports=silent", str(snippet)])
    assert status == 0, out + err
