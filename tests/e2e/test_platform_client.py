"""The generated Platform API client (`generated.platform`) against the local server, over HTTPS.

Every one of the 82 operations is called through its generated function with valid arguments built from fal's spec;
the server checks each request against fal's parameter and body schemas (a non-conforming one would be refused with
fal's 400/422), and the client validates each answer into its generated model. Then what an app watching its fal
bill does: keys, request history, usage and billing events, deleted payloads; and a wrong argument fails before
anything is sent."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

import generated.platform as platform
from fal_runtime import AsyncClient, Client, HTTPError
from fal_runtime.local import LocalServer
from fal_runtime.local.platform_schema import PlatformSpec

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_SPEC = ROOT / "specs" / "_platform" / "v1.yaml"
SCHNELL = "fal-ai/flux/schnell"
DOCUMENT: dict[str, Any] = yaml.load(PLATFORM_SPEC.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
SPEC = PlatformSpec(DOCUMENT)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    specs = tmp_path_factory.mktemp("specs")
    (specs / "fal-ai/flux").mkdir(parents=True)
    shutil.copy(ROOT / "specs" / f"{SCHNELL}.yaml", specs / f"{SCHNELL}.yaml")
    (specs / "_platform").mkdir()
    shutil.copy(PLATFORM_SPEC, specs / "_platform" / "v1.yaml")
    with LocalServer(
        specs, prices={SCHNELL: {"unit_price": 0.003, "unit": "megapixels", "currency": "USD", "billable_units": 2.0}}
    ) as s:
        yield s


@pytest.fixture
def client(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.setenv("FAL_API_HOST", server.api_host)
    with Client(key="k:s", queue_host=server.base, run_host=server.run_host, rest_host=server.base,
                verify=str(server.ca_file)) as made:  # fmt: skip
        yield made


def functions() -> list[str]:
    return sorted(n for n in platform.__all__ if not n.endswith("_async") and not n.startswith("iter_"))


def operation_of(name: str) -> Any:
    module = importlib.import_module(f"generated.platform.{platform._MODULES[name]}")
    return getattr(module, f"_{name.upper()}")


def arguments_for(name: str, client: Client) -> dict[str, Any]:
    """Keyword arguments for a valid call: required parameters and a body, from fal's spec (its examples when they
    validate, else minimal instances); path parameters name things that exist."""
    operation = operation_of(name)
    spec_op = next(o for o in SPEC.operations.values() if o.template == operation.path and o.method == operation.method)
    wire_values: dict[str, Any] = {}
    for parameter in spec_op.parameters:
        if parameter.location == "header":
            continue
        if parameter.location == "path" or parameter.required:
            value = parameter.schema.get("example")
            wire_values[parameter.name] = value if value is not None and SPEC.valid(parameter.schema, value) else (
                SPEC.instance(parameter.schema))  # fmt: skip
    if "endpoint_id" in wire_values:
        wire_values["endpoint_id"] = [SCHNELL] if isinstance(wire_values["endpoint_id"], list) else SCHNELL
    wire_values.update(existing(spec_op.template, client))
    kwargs = {f.alias or attr: attr for attr, f in operation.params.model_fields.items()}
    arguments = {kwargs.get(wire, wire): value for wire, value in wire_values.items() if wire in kwargs}
    if operation.body is not None:
        body = body_for(name, spec_op)
        if operation.body_type == "multipart/form-data":
            arguments["file_upload"] = b"hello"
        elif "body" in inspect.signature(getattr(platform, name)).parameters:
            arguments["body"] = operation.body.model_validate(body)
        else:
            fields = operation.body.model_fields
            arguments.update({attr: body[f.alias or attr] for attr, f in fields.items() if (f.alias or attr) in body})
    return arguments


def body_for(name: str, spec_op: Any) -> Any:
    if name == "estimate_pricing":
        return {"estimate_type": "unit_price", "endpoints": {SCHNELL: {"unit_quantity": 2}}}
    media = DOCUMENT["paths"][spec_op.template][spec_op.method.lower()]["requestBody"]["content"][spec_op.body_media]
    for example in (media.get("example"), SPEC.resolve(spec_op.body_schema).get("example")):
        if example is not None and SPEC.valid(spec_op.body_schema, example):
            return example
    return SPEC.instance(spec_op.body_schema)


def existing(template: str, client: Client) -> dict[str, Any]:
    """Path parameters naming something the server holds, made through the generated client itself."""
    found: dict[str, Any] = {}
    if "{key_id}" in template:
        found["key_id"] = platform.create_api_key(alias="conformance", client=client).key_id
    if "{collection_id}" in template:
        found["collection_id"] = platform.create_asset_collection(name="c", client=client).collection.id
    if "{tag_id}" in template:
        found["tag_id"] = platform.create_asset_tag(name="t", client=client).tag.id
    if "{request_id}" in template:
        found["request_id"] = run_one(client)
    return found


def run_one(client: Client) -> str:
    from generated.fal_ai.flux import schnell

    handle = schnell.submit(prompt="a fox", client=client)
    handle.result()
    return handle.request_id


@pytest.mark.parametrize("name", functions())
def test_every_operation_is_called_through_its_generated_function(name: str, client: Client) -> None:
    arguments = arguments_for(name, client)
    if "username" in arguments:  # a workflow that exists: the server knows the one it made
        made = platform.create_workflow(**arguments_for("create_workflow", client), client=client).workflow
        arguments.update(username=made.user_nickname, workflow_name=made.name)
    answer = getattr(platform, name)(**arguments, client=client)
    operation = operation_of(name)
    if operation.answer is not None:
        assert isinstance(answer, pydantic.BaseModel) or operation.answer is bool  # validated into its model
    elif operation.answer_type != "application/json":
        assert isinstance(answer, bytes) and answer
    else:
        assert answer is None


def test_there_is_a_function_for_each_of_fals_operations() -> None:
    assert len(functions()) == len(SPEC.operations) == 82
    paged = [n for n in platform.__all__ if n.startswith("iter_") and not n.endswith("_async")]
    assert "iter_api_keys" in paged and "iter_requests_by_endpoint" in paged and "iter_billing_events" in paged


def test_keys_are_created_listed_and_deleted(client: Client) -> None:
    made = platform.create_api_key(alias="ci key", client=client)
    assert made.key == f"{made.key_id}:{made.key_secret}"
    assert made.key_id in [k.key_id for k in platform.iter_api_keys(limit=1, client=client)]  # across pages
    platform.delete_api_key(key_id=made.key_id, client=client)
    assert made.key_id not in [k.key_id for k in platform.list_api_keys(client=client).keys]


def test_a_request_shows_in_history_usage_and_billing_with_its_units_and_cost(client: Client) -> None:
    request_id = run_one(client)
    history = platform.list_requests_by_endpoint(endpoint_id=SCHNELL, client=client)
    mine = next(r for r in history.items if str(r.request_id) == request_id)  # a UUID, as fal's schema says
    assert mine.status_code == 200 and mine.duration is not None and mine.duration >= 0
    events = list(platform.iter_billing_events(endpoint_id=SCHNELL, client=client))
    event = next(e for e in events if str(e.request_id) == request_id)
    assert (event.output_units, event.unit_price) == (2.0, 0.003)
    assert event.cost_total == pytest.approx(0.006)
    usage = platform.get_usage(endpoint_id=[SCHNELL], expand=["summary"], client=client)
    assert usage.summary and sum(line.quantity for line in usage.summary) >= 2.0


def test_deleted_payloads_are_gone(client: Client) -> None:
    request_id = run_one(client)
    platform.delete_request_payloads(request_id=request_id, client=client)
    from generated.fal_ai.flux import schnell

    with pytest.raises(HTTPError):
        schnell.endpoint.handle(request_id, client=client).result()


def test_a_wrong_argument_fails_before_anything_is_sent(client: Client, server: LocalServer) -> None:
    before = server.counters()["calls"]
    with pytest.raises(pydantic.ValidationError):
        platform.get_usage(limit=0, client=client)  # limit: at least 1
    with pytest.raises(pydantic.ValidationError):
        platform.create_api_key(alias="", client=client)  # alias: 1 to 255 characters
    assert server.counters()["calls"] == before


def test_the_async_twins_and_iterators(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_API_HOST", server.api_host)

    async def main() -> list[str]:
        async with AsyncClient(key="k:s", queue_host=server.base, verify=str(server.ca_file)) as client:
            made = await platform.create_api_key_async(alias="async", client=client)
            seen = [k.key_id async for k in platform.iter_api_keys_async(client=client)]
            await platform.delete_api_key_async(key_id=made.key_id, client=client)
            assert made.key_id in seen
            return seen

    assert asyncio.run(main())


def test_importing_the_package_imports_no_module_of_it() -> None:
    import subprocess
    import sys

    code = (
        "import sys, generated.platform; print(sorted(m for m in sys.modules if m.startswith('generated.platform.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
    started = time.perf_counter()
    assert platform.get_usage.__module__ == "generated.platform.models"
    assert time.perf_counter() - started < 5


def test_the_readme_block_runs_unchanged(server: LocalServer, client: Client, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """The README's Platform API block, as written, through the environment's default client."""
    import fal_runtime._client as client_module

    request_id = run_one(client)
    environment = {"FAL_KEY": "k:s", "FAL_QUEUE_RUN_HOST": server.base, "FAL_API_HOST": server.api_host,
                   "SSL_CERT_FILE": str(server.ca_file)}  # as the README's offline section sets it  # fmt: skip
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(client_module, "_default", None)  # the default client reads this environment afresh
    section = (ROOT / "README.md").read_text().split("## Cost, usage and keys", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    assert request_id in capsys.readouterr().out
    assert namespace["usage"].summary
    assert namespace["key"].key_id in [k.key_id for k in platform.iter_api_keys(client=client)]
