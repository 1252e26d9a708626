"""A CA file given as a path: httpx deprecates `verify=<str>` (and warns on every client made with one), so the runtime
hands httpx an `SSLContext` trusting that file instead."""

from __future__ import annotations

import warnings

from fal_runtime import AsyncClient, Client
from fal_runtime.local import LocalServer


def test_a_ca_path_makes_no_deprecation_warning(local_server: LocalServer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Client(key="k:s", queue_host=local_server.base, verify=str(local_server.ca_file)) as client:
            reply = client.api_request("GET", f"{local_server.url}/v1/models", auth="optional")
    assert reply.ok


async def test_the_async_client_too(local_server: LocalServer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with AsyncClient(key="k:s", queue_host=local_server.base, verify=str(local_server.ca_file)) as client:
            reply = await client.api_request("GET", f"{local_server.url}/v1/models", auth="optional")
    assert reply.ok
