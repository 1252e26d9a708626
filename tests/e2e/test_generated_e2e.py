"""The generated package end to end: typed call functions → fal_runtime → real HTTPS → the local fal server
serving the committed specs. No mocks: this is the path an app takes."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

import generated
from codegen.generation import loader
from codegen.spectools.importer import is_curated
from fal_runtime import AsyncClient, Client, Completed
from fal_runtime.local import LocalServer
from tests.e2e.conftest import connects

ROOT = Path(__file__).resolve().parents[2]
ALL_SPECS = loader.find_endpoint_spec_files(ROOT / "specs")  # not the Platform API's (`_platform/`)
SPEC_FILES = [p for p in ALL_SPECS if is_curated(p.read_text(encoding="utf-8"))]  # the seeds: every call path
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _input_schema(path: Path) -> tuple[str, dict[str, Any]]:
    spec = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    endpoint_id = spec["info"]["x-fal-metadata"]["endpointId"]
    ref = spec["paths"][f"/{endpoint_id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return endpoint_id, spec["components"]["schemas"][ref.rsplit("/", 1)[1]]


def _example(path: Path) -> tuple[str, dict[str, Any]]:
    endpoint_id, schema = _input_schema(path)
    return endpoint_id, schema["examples"][0]


def _from_field_examples(schema: dict[str, Any]) -> dict[str, Any] | None:
    """An input made of each field's first published example; None when a required field has none."""
    props = schema.get("properties") or {}
    arguments = {name: prop["examples"][0] for name, prop in props.items() if prop.get("examples")}
    return arguments if all(name in arguments for name in schema.get("required") or []) else None


@pytest.mark.parametrize(
    "spec_path", SPEC_FILES, ids=[p.relative_to(ROOT / "specs").with_suffix("").as_posix() for p in SPEC_FILES]
)
def test_subscribe_submit_and_run_return_typed_outputs(spec_path: Path, client: Client) -> None:
    endpoint_id, example = _example(spec_path)
    module = generated.load(endpoint_id)
    output = module.subscribe(**example, client=client)
    assert isinstance(output, module.Output)

    handle = module.submit(module.Input(**example), client=client)
    again = module.endpoint.handle(handle.request_id, client=client)  # rebuilt from the id alone
    assert isinstance(again.result(), module.Output)
    assert isinstance(handle.status(), Completed)

    assert isinstance(module.run(**example, client=client), module.Output)


@pytest.mark.slow
def test_every_catalogue_endpoint_answers_with_its_typed_output(server: LocalServer, client: Client) -> None:
    """Every endpoint whose required fields all have a published example: called through its generated module
    against the local server serving the whole catalogue, the output (made by the server from the spec) validates
    into the generated `Output`."""
    failures: dict[str, str] = {}
    called = 0
    server.reset()
    server.behave(queue_seconds=0, run_seconds=0)  # jobs that take no time: this is about shapes, not waiting
    for path in ALL_SPECS:
        endpoint_id, schema = _input_schema(path)
        arguments = schema["examples"][0] if schema.get("examples") else _from_field_examples(schema)
        if arguments is None:
            continue
        module = generated.load(endpoint_id)
        try:
            output = module.run(**arguments, client=client)
            assert isinstance(output, module.Output)
        except Exception as exc:
            failures[endpoint_id] = f"{type(exc).__name__}: {str(exc)[:300]}"
        called += 1
    server.reset()
    assert called > 1_100
    assert not failures, f"{len(failures)} endpoints failed: {sorted(failures.items())[:10]}"


@pytest.mark.parametrize("spec_path", SPEC_FILES[:4], ids=[p.stem for p in SPEC_FILES[:4]])
async def test_async_twins(spec_path: Path, async_client: AsyncClient) -> None:
    endpoint_id, example = _example(spec_path)
    module = generated.load(endpoint_id)
    assert isinstance(await module.subscribe_async(**example, client=async_client), module.Output)
    handle = await module.submit_async(**example, client=async_client)
    assert isinstance(await handle.result(), module.Output)
    assert isinstance(await module.run_async(**example, client=async_client), module.Output)


def test_streaming_endpoint_yields_events_ending_in_the_output(client: Client) -> None:
    from generated.fal_ai.flux_2.lora import edit

    _endpoint_id, example = _example(ROOT / "specs/fal-ai/flux-2/lora/edit.yaml")
    events = list(edit.stream(**example, client=client))
    assert len(events) >= 2
    assert all(isinstance(e, edit.OutputChunk) for e in events)
    # the last event carries the whole output
    edit.Output.model_validate(events[-1].model_dump(exclude_unset=True))


async def test_streaming_async(async_client: AsyncClient) -> None:
    from generated.fal_ai.flux_2.lora import edit

    _, example = _example(ROOT / "specs/fal-ai/flux-2/lora/edit.yaml")
    events = [e async for e in edit.stream_async(**example, client=async_client)]
    assert all(isinstance(e, edit.OutputChunk) for e in events)
    edit.Output.model_validate(events[-1].model_dump(exclude_unset=True))


def test_bad_argument_never_reaches_the_server(server: LocalServer, client: Client) -> None:
    from generated.fal_ai.flux.dev import image_to_image

    server.reset()
    with pytest.raises(pydantic.ValidationError):
        image_to_image.subscribe(
            image_url="https://example.com/a.png", prompt="x", num_inference_steps="many", client=client
        )  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="unexpected keyword"):
        image_to_image.subscribe(image_url="https://example.com/a.png", prompt="x", nope=1, client=client)  # type: ignore[call-overload]
    counters = server.counters()
    assert counters["submits"] == {} and "fal-ai/flux/dev/image-to-image" not in counters["calls"], counters


def test_readme_example_runs(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first Python block, unchanged, against the local server through the environment."""
    import fal_runtime._client as client_module

    monkeypatch.setenv("FAL_KEY", "test-key")
    monkeypatch.setenv("FAL_QUEUE_RUN_HOST", server.base)
    monkeypatch.setenv("FAL_RUN_HOST", server.run_host)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.certificates.ca_file))
    monkeypatch.setattr(client_module, "_default", None)  # the default client reads this environment afresh
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert block is not None
    exec(compile(block.group(1), "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("https://127.0.0.1:")


def test_readme_local_file_example_runs(server: LocalServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The README's local-file block, unchanged: the file is uploaded, the model gets its URL, the output is saved."""
    import fal_runtime._client as client_module

    for name, value in {
        "FAL_KEY": "test-key",
        "FAL_QUEUE_RUN_HOST": server.base,
        "FAL_RUN_HOST": server.run_host,
        "FAL_REST_HOST": server.base,
        "SSL_CERT_FILE": str(server.certificates.ca_file),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(client_module, "_default", None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n a cat")
    server.reset()
    section = (ROOT / "README.md").read_text().split("### Local files as inputs", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    exec(compile(block.group(1), "README.md", "exec"), {})
    _endpoint_id, payload = server.inputs()[-1]
    assert server.stored_file(payload["image_url"]) == b"\x89PNG\r\n\x1a\n a cat"
    assert [p.suffix for p in (tmp_path / "outputs").iterdir()] == [".jpg"]  # the output says image/jpeg


def test_status_logs_and_cancel(server: LocalServer, client: Client) -> None:
    from fal_runtime import InProgress, Queued
    from generated.fal_ai import gemini_flash_edit as ep

    server.behave(ep.ENDPOINT_ID, queue_seconds=0.3, run_seconds=0.6, times=2)
    slow = ep.submit(prompt="first of two", image_url="https://example.com/a.png", client=client)
    assert isinstance(slow.status(), Queued)
    seen = list(slow.iter_status(logs=True))
    assert isinstance(seen[-1], Completed) and any(isinstance(s, InProgress) for s in seen)
    assert any(entry.message for entry in seen[-1].logs)

    queued = ep.submit(prompt="second of two", image_url="https://example.com/b.png", client=client)
    assert queued.cancel() == "requested"
    assert ep.endpoint.handle(slow.request_id, client=client).cancel() == "already_completed"
    assert ep.endpoint.handle("no-such-request", client=client).cancel() == "not_found"


async def test_status_and_cancel_async(server: LocalServer, async_client: AsyncClient) -> None:
    from generated.fal_ai import gemini_flash_edit as ep

    server.behave(ep.ENDPOINT_ID, queue_seconds=0.3, run_seconds=0.3, times=1)
    handle = await ep.submit_async(prompt="async cancel", image_url="https://example.com/c.png", client=async_client)
    assert (await handle.status()).__class__.__name__ == "Queued"
    assert await handle.cancel() == "requested"


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    """`app` served by uvicorn over HTTP on 127.0.0.1, as a webhook receiver would be."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


def test_readme_webhook_receiver_runs(
    server: LocalServer, client: Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's FastAPI receiver, unchanged, on a real port: the local server delivers a signed webhook to it,
    the receiver fetches the local server's keys (its JWKS on FAL_REST_HOST) and prints the typed event; a forged
    delivery gets a 400."""
    import time

    import httpx

    from fal_runtime.local.webhooks import Signer
    from generated.fal_ai.flux.dev import image_to_image as flux

    monkeypatch.setenv("FAL_REST_HOST", server.base)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.certificates.ca_file))
    section = (ROOT / "README.md").read_text().split("## Webhooks you can trust", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    with _serving(namespace["app"]) as receiver:
        handle = flux.submit(image_url="https://example.com/in.png", prompt="tell me when done",
                             webhook_url=f"{receiver}/fal/webhook", client=client)  # fmt: skip
        deadline = time.monotonic() + 10
        printed = ""
        while handle.request_id not in printed and time.monotonic() < deadline:
            time.sleep(0.05)
            printed += capsys.readouterr().out
        assert f"{handle.request_id} OK images=[Image(" in printed
        body = b'{"request_id": "forged", "status": "OK", "payload": {}}'
        forged = httpx.post(f"{receiver}/fal/webhook", content=body, headers=Signer().headers("forged", body))
        assert forged.status_code == 400 and "signature" in forged.text


async def test_concurrent_subscribes_stay_within_max_connections(server: LocalServer) -> None:
    """80 subscribes through `max_connections=30`: at most 30 connections reach the server, and more than one of the
    client's 15-connection pools carries them (a request never waits inside httpcore while a slot is free)."""
    import asyncio

    from generated.fal_ai import gemini_flash_edit as ep

    server.behave(ep.ENDPOINT_ID, queue_seconds=0.0, run_seconds=0.3, times=80)  # streams hold their connection
    baseline = server.open_connections()  # other tests' idle keep-alive connections
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, server.open_connections() - baseline)
            await asyncio.sleep(0.005)

    ctx = ssl.create_default_context(cafile=server.certificates.ca_file)
    async with AsyncClient(
        "test-key", queue_host=server.base, run_host=server.run_host, verify=ctx, max_connections=30
    ) as c:
        watcher = asyncio.create_task(watch())
        try:
            outputs = await asyncio.gather(*(
                ep.subscribe_async(prompt=f"concurrent {i}", image_url="https://example.com/a.png", client=c) for i in range(80)
            ))  # fmt: skip
        finally:
            watcher.cancel()
    assert len(outputs) == 80 and all(isinstance(o, ep.Output) for o in outputs)
    assert 15 < peak <= 30, f"peak {peak} connections"


def test_sequential_subscribes_reuse_one_connection(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    """The status stream is read on to its close after COMPLETED, so its connection serves the result call and the
    next subscribe: one TCP and TLS handshake for five subscribes, not one each."""
    from generated.fal_ai import gemini_flash_edit as ep

    caplog.set_level("DEBUG", logger="httpcore")
    for i in range(5):
        ep.subscribe(prompt=f"reuse {i}", image_url="https://example.com/a.png", client=client)
    assert connects(caplog) == 1


async def test_sequential_subscribes_reuse_one_connection_async(
    async_client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    from generated.fal_ai import gemini_flash_edit as ep

    caplog.set_level("DEBUG", logger="httpcore")
    for i in range(5):
        await ep.subscribe_async(prompt=f"reuse async {i}", image_url="https://example.com/a.png", client=async_client)
    assert connects(caplog) == 1


def test_threads_share_the_sync_pool_without_reconnecting(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    """30 threads, three subscribes each, one `Client`: every connection is kept alive for the next call, so no more
    connections are ever opened than threads run at once (httpx alone keeps 20 and reconnects the rest)."""
    from concurrent.futures import ThreadPoolExecutor

    from generated.fal_ai import gemini_flash_edit as ep

    server.behave(ep.ENDPOINT_ID, queue_seconds=0.0, run_seconds=0.1, times=90)
    caplog.set_level("DEBUG", logger="httpcore")
    ctx = ssl.create_default_context(cafile=server.certificates.ca_file)
    with Client("test-key", queue_host=server.base, run_host=server.run_host, verify=ctx) as c:

        def three(i: int) -> None:
            for n in range(3):
                ep.subscribe(prompt=f"thread {i} call {n}", image_url="https://example.com/a.png", client=c)

        with ThreadPoolExecutor(30) as pool:
            list(pool.map(three, range(30)))
    assert 0 < connects(caplog) <= 30


def test_a_realtime_endpoint_module_opens_a_typed_connection(server: LocalServer, client: Client) -> None:
    from generated.fal_ai.flux_2.klein import realtime_ as klein

    assert {"realtime", "realtime_async"} <= set(klein.__all__)
    with klein.realtime(client=client) as conn:
        conn.send(image_url="data:image/jpeg;base64,/9j/4AAQ", num_inference_steps=2)
        assert isinstance(conn.recv(), klein.Output)
        with pytest.raises(pydantic.ValidationError):  # checked before anything is sent
            conn.send(image_url="data:image/jpeg;base64,/9j/4AAQ", num_inference_steps=99)
    assert not hasattr(generated.load("fal-ai/flux/dev"), "realtime")  # only apps published as `.../realtime`
