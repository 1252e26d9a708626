"""Peer conformance: the official fal-client and our generated client, against the same local server, agree."""

from __future__ import annotations

import json
import re
import ssl
from pathlib import Path
from typing import Any

import pytest

from fal_runtime import Client
from fal_runtime.local import LocalServer

ROOT = Path(__file__).resolve().parents[2]
ARGS = {"prompt": "plush keychain", "image_url": "https://example.com/in.png"}


def _alike(output: Any) -> str:
    """An output with each file's own random URL segment blanked: every output file gets a URL of its own (as on
    fal's CDN), so two requests' outputs agree in everything but that."""
    return re.sub(r"/outputs/[0-9a-f]{32}/", "/outputs/*/", json.dumps(output.model_dump(mode="json")))


@pytest.fixture
def fal_client(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    import fal_client as official
    import fal_client.client as module

    monkeypatch.setenv("SSL_CERT_FILE", str(server.certificates.ca_file))
    monkeypatch.setattr(module, "QUEUE_URL_FORMAT", f"https://{server.base}/")  # read at its import: patch instead
    monkeypatch.setattr(module, "RUN_URL_FORMAT", f"https://{server.run_host}/")
    return official.SyncClient(key="test-key")


def test_both_clients_get_the_same_results(server: LocalServer, fal_client: Any) -> None:
    from generated.fal_ai import gemini_flash_edit as ep

    ctx = ssl.create_default_context(cafile=server.certificates.ca_file)
    with Client("test-key", queue_host=server.base, run_host=server.run_host, verify=ctx) as ours:
        server.reset()
        # Distinct prompts: the server counts identical bodies as duplicate submits.
        theirs_sub = fal_client.subscribe(ep.ENDPOINT_ID, arguments={**ARGS, "prompt": "theirs"})
        ours_sub = ep.subscribe(**{**ARGS, "prompt": "ours"}, client=ours)
        assert _alike(ep.Output.model_validate(theirs_sub)) == _alike(ours_sub)

        theirs_run = fal_client.run(ep.ENDPOINT_ID, arguments=ARGS)
        assert _alike(ep.Output.model_validate(theirs_run)) == _alike(ep.run(**ARGS, client=ours))

        handle = fal_client.submit(ep.ENDPOINT_ID, arguments={**ARGS, "prompt": "shared"})
        ours_view = ep.endpoint.handle(handle.request_id, client=ours)  # one request, read by both clients
        assert ep.Output.model_validate(handle.get()) == ours_view.result()

        counters = server.counters()
        assert counters["duplicate_submits"] == 0
        assert counters["submits"][ep.ENDPOINT_ID] == 3  # two subscribes and one submit: nobody sent twice
