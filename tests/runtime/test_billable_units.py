"""`x-fal-billable-units` (issue #23 item 5): fal sends it with a request's result; handles expose `billable_units`
(a float, None when fal sent none) once the result is fetched, sync and async. End to end against the local server,
which sends it on the result (and run) routes: 1 by default, or the `billable_units` of the endpoint's price entry
(`set_prices({id: {"unit_price": ..., "unit": ..., "billable_units": N}})`). A server that sends none (tiny_http)
leaves it None.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator

import httpx
import pytest
from pydantic import BaseModel
from tiny_http import TinyServer

from fal_runtime import AsyncClient, Client, RequestFailedError, RetryPolicy
from fal_runtime.local import LocalServer

ECHO = "fal-ai/test/echo"
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)


class Anything(BaseModel):
    model_config = {"extra": "allow"}


@pytest.fixture
def server(fal_env: LocalServer) -> Iterator[LocalServer]:
    fal_env.reset()
    yield fal_env
    fal_env.reset()
    fal_env.set_prices({}, replace=True)


def test_a_handle_has_the_billable_units_once_the_result_is_fetched(server: LocalServer) -> None:
    with Client(retry=FAST) as client:
        handle = client.submit(ECHO, {"prompt": "p"}, output=Anything)
        assert handle.billable_units is None  # nothing fetched yet
        handle.result()
        assert handle.billable_units == 1.0 and isinstance(handle.billable_units, float)  # the server's default
        server.set_prices({ECHO: {"unit_price": 0.025, "unit": "megapixels", "billable_units": 2.5}})
        again = client.get_handle(ECHO, handle.request_id, output=Anything)
        again.result()
        assert again.billable_units == 1.0  # billed when it ended, before the price was set
        priced = client.submit(ECHO, {"prompt": "p"}, output=Anything)
        priced.result()
        assert priced.billable_units == 2.5


def test_a_failed_request_has_none(server: LocalServer) -> None:
    server.behave(ECHO, error="boom", status_code=500, times=1)
    with Client(retry=FAST) as client:
        handle = client.submit(ECHO, {"prompt": "p"}, output=Anything)
        with pytest.raises(RequestFailedError):
            handle.result()
        assert handle.billable_units is None


def test_the_async_handle(server: LocalServer) -> None:
    server.set_prices({ECHO: {"unit_price": 0.5, "unit": "seconds", "billable_units": 12}})

    async def main() -> tuple[float | None, float | None]:
        async with AsyncClient(retry=FAST) as client:
            handle = await client.submit(ECHO, {"prompt": "p"}, output=Anything)
            before = handle.billable_units
            await handle.result()
            return before, handle.billable_units

    assert asyncio.run(main()) == (None, 12.0)


def test_the_local_server_sends_it_on_the_run_route(server: LocalServer) -> None:
    server.set_prices({ECHO: {"unit_price": 0.1, "unit": "images", "billable_units": 4}})
    verify = ssl.create_default_context(cafile=str(server.ca_file))
    with httpx.Client(verify=verify) as http:
        answer = http.post(
            f"https://{server.run_host}/{ECHO}", json={"prompt": "p"}, headers={"Authorization": "Key k"}
        )
    assert answer.status_code == 200 and answer.headers["x-fal-billable-units"] == "4"


def test_none_when_fal_sends_none_or_nonsense() -> None:
    units = iter(["", "-1", "nan", "3"])

    def route(method: str, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/status"):
            return 200, {}, json.dumps({"status": "COMPLETED"}).encode()
        if path.endswith("/status/stream"):
            return 404, {}, b'{"detail": "no stream"}'
        value = next(units)
        return 200, {"x-fal-billable-units": value} if value else {}, b'{"images": []}'

    with TinyServer() as tiny, Client("k", queue_host=tiny.url, retry=FAST, poll_interval=0.01) as client:
        tiny.route = route
        seen = []
        for _ in range(4):
            handle = client.get_handle("owner/app", "r-1", output=Anything)
            handle.result()
            seen.append(handle.billable_units)
    assert seen == [None, None, None, 3.0]
