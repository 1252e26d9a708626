"""The local fal server, spoken to over real HTTPS: with plain httpx (each route, each fault) and with the official
fal_client, unchanged, as a user's code would."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fal_client
import httpx
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from nacl.signing import VerifyKey

from fal_runtime.local import LocalServer
from fal_runtime.local.script import Fault
from fal_runtime.local.specs import load_specs

SPECS_DIR = Path(__file__).parent / "specs"
ECHO = "fal-ai/test/echo"
FAST = "fal-ai/test/echo/fast"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(local_server: LocalServer) -> LocalServer:
    """The session's server with no scripted rules, behaviours or counts left over from other tests."""
    local_server.reset()
    return local_server


@pytest.fixture
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, verify=trust(server), headers={"Authorization": "Key test-key"}, timeout=10
    ) as client:
        yield client


def trust(server: LocalServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_file))


def wait_for_webhooks(server: LocalServer, count: int = 1) -> list[dict[str, Any]]:
    """What the server's own sink received, once the delivery of `count` webhooks has been counted."""
    deadline = time.monotonic() + 10
    while sum(server.counters()["webhooks"].values()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.webhooks()


def output_validator(endpoint_id: str) -> Draft202012Validator:
    endpoint = load_specs(SPECS_DIR)[endpoint_id]
    return endpoint.validator(endpoint.output_schema)


def wait_completed(http: httpx.Client, status_url: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = http.get(status_url).json()
        if body["status"] == "COMPLETED":
            return body
        time.sleep(0.02)
    raise AssertionError("request did not complete")


def sse_data(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: ")]


# -- queue ------------------------------------------------------------------------------------------------------------


def test_submit_answers_fal_shape_with_urls_under_owner_alias(http: httpx.Client, server: LocalServer) -> None:
    reply = http.post(f"/{FAST}", json={"text": "hi"})
    assert reply.status_code == 200
    body = reply.json()
    assert reply.headers["x-fal-request-id"] == body["request_id"]
    assert body["status"] == "IN_QUEUE" and body["queue_position"] == 0
    base = f"{server.url}/fal-ai/test/requests/{body['request_id']}"
    assert (body["response_url"], body["status_url"], body["cancel_url"]) == (base, f"{base}/status", f"{base}/cancel")
    assert "gateway_request_id" not in body


def test_state_progression_with_logs_and_metrics(http: httpx.Client, server: LocalServer) -> None:
    server.behave(ECHO, queue_seconds=0.3, run_seconds=0.3, times=1)
    submitted = http.post(f"/{ECHO}", json={"prompt": "a cat"}).json()
    seen: list[str] = []
    while True:
        reply = http.get(submitted["status_url"], params={"logs": 1})
        body = reply.json()
        seen.append(body["status"])
        if body["status"] == "COMPLETED":
            assert reply.status_code == 200
            break
        assert reply.status_code == 202
        time.sleep(0.02)
    assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert body["metrics"]["inference_time"] > 0
    assert {"message", "level", "source", "timestamp"} <= set(body["logs"][0])
    assert http.get(submitted["status_url"], params={"logs": 0}).json()["logs"] is None


def test_queue_positions_count_down(http: httpx.Client, server: LocalServer) -> None:
    server.behave(FAST, queue_seconds=0.4, times=3)
    positions = [http.post(f"/{FAST}", json={"text": str(i)}).json()["queue_position"] for i in range(3)]
    assert positions == [0, 1, 2]


def test_result_validates_and_its_files_are_served(http: httpx.Client) -> None:
    for endpoint_id in (ECHO, FAST):  # ECHO answers its schema example, FAST a synthesized output
        payload = {"prompt": "x"} if endpoint_id == ECHO else {"text": "x"}
        submitted = http.post(f"/{endpoint_id}", json=payload).json()
        wait_completed(http, submitted["status_url"])
        reply = http.get(submitted["response_url"])
        assert reply.status_code == 200 and "x-fal-request-id" in reply.headers
        output = reply.json()
        output_validator(endpoint_id).validate(output)
        url = output["images"][0]["url"] if endpoint_id == ECHO else output["file"]["url"]
        download = http.get(url)
        assert download.status_code == 200 and download.content
    assert http.get(output["file"]["url"].replace("file.bin", "image.png")).content.startswith(b"\x89PNG")


def test_completed_results_expire_after_the_ttl() -> None:
    """As fal keeps results about an hour, the server forgets a completed request `result_ttl` seconds later."""
    with LocalServer(SPECS_DIR, result_ttl=0.5) as short:
        with httpx.Client(base_url=short.url, verify=trust(short), headers={"Authorization": "Key k"}) as http:
            submitted = http.post(f"/{FAST}", json={"text": "x"}).json()
            wait_completed(http, submitted["status_url"])
            assert http.get(submitted["response_url"]).status_code == 200
            deadline = time.monotonic() + 5
            while http.get(submitted["status_url"]).status_code != 404 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert http.get(submitted["status_url"]).status_code == 404
            assert http.get(submitted["response_url"]).status_code == 404
            assert http.get(submitted["response_url"]).json()["detail"]


def test_result_before_completion_is_400(http: httpx.Client, server: LocalServer) -> None:
    server.behave(ECHO, queue_seconds=1, times=1)
    submitted = http.post(f"/{ECHO}", json={"prompt": "x"}).json()
    reply = http.get(submitted["response_url"])
    assert reply.status_code == 400 and isinstance(reply.json()["detail"], str)


def test_full_endpoint_id_is_accepted_in_request_urls(http: httpx.Client) -> None:
    submitted = http.post(f"/{FAST}", json={"text": "x"}).json()
    assert (
        http.get(f"/{FAST}/requests/{submitted['request_id']}/status").json()["request_id"] == submitted["request_id"]
    )
    assert http.get(f"/fal-ai/other/requests/{submitted['request_id']}/status").status_code == 404


def test_prefix_endpoints_are_told_apart(http: httpx.Client) -> None:
    assert http.post(f"/{ECHO}", json={"text": "x"}).status_code == 422  # ECHO wants a prompt
    assert http.post(f"/{FAST}", json={"text": "x"}).status_code == 200


def test_status_stream_sends_each_change_then_closes(http: httpx.Client, server: LocalServer) -> None:
    server.behave(ECHO, queue_seconds=0.2, run_seconds=0.3, times=1)
    submitted = http.post(f"/{ECHO}", json={"prompt": "x"}).json()
    with http.stream("GET", submitted["status_url"] + "/stream", params={"logs": 1}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = sse_data(reply)
    states = [e["status"] for e in events]
    assert states[0] == "IN_QUEUE" and states[-1] == "COMPLETED" and "IN_PROGRESS" in states
    assert all(a != b for a, b in itertools.pairwise(events))  # one event per change
    assert len(events[-1]["logs"]) >= 2


def test_cancel_outcomes(http: httpx.Client, server: LocalServer) -> None:
    server.behave(ECHO, queue_seconds=5, times=1)
    queued = http.post(f"/{ECHO}", json={"prompt": "x"}).json()
    reply = http.put(queued["cancel_url"])
    assert (reply.status_code, reply.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    status = wait_completed(http, queued["status_url"], timeout=2)
    assert status["error_type"] == "request_cancelled"
    assert http.get(queued["response_url"]).status_code == 400

    reply = http.put(queued["cancel_url"])
    assert (reply.status_code, reply.json()) == (400, {"status": "ALREADY_COMPLETED"})
    reply = http.put("/fal-ai/test/requests/no-such-request/cancel")
    assert (reply.status_code, reply.json()) == (404, {"status": "NOT_FOUND"})


def test_failure_completes_with_error_and_result_returns_it(http: httpx.Client, server: LocalServer) -> None:
    server.behave(FAST, error="CUDA out of memory", error_type="runner_oom", status_code=503, times=1)
    submitted = http.post(f"/{FAST}", json={"text": "x"}).json()
    status = wait_completed(http, submitted["status_url"])
    assert (status["error"], status["error_type"]) == ("CUDA out of memory", "runner_oom")
    reply = http.get(submitted["response_url"])
    assert reply.status_code == 503
    assert reply.json() == {"detail": "CUDA out of memory", "error_type": "runner_oom"}


# -- validation, unknown routes, auth -----------------------------------------------------------------------------------


def test_invalid_input_is_422_in_fal_shape(http: httpx.Client) -> None:
    reply = http.post(f"/{ECHO}", json={"num_images": 9, "extra": 1})
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert {"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"} in detail
    assert any(d["loc"] == ["body", "num_images"] and d["type"] == "less_than_equal" for d in detail)
    assert all(set(d) == {"loc", "msg", "type"} for d in detail)
    reply = http.post(f"/run/{ECHO}", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 422 and reply.json()["detail"][0]["type"] == "json_invalid"


def test_unknown_endpoints_are_404(http: httpx.Client) -> None:
    for method, path in [
        ("POST", "/fal-ai/nope"),
        ("POST", "/run/fal-ai/nope"),
        ("POST", f"/run/{FAST}/stream"),  # FAST does not stream
        ("GET", "/fal-ai/test/nothing-here"),
    ]:
        reply = http.request(method, path, json={})
        assert reply.status_code == 404, path
        assert isinstance(reply.json()["detail"], str) and "x-fal-request-id" in reply.headers
    reply = http.get("/fal-ai/test/requests/unknown/status")
    assert reply.status_code == 404 and "unknown" in reply.json()["detail"]


def test_missing_key_is_401(server: LocalServer) -> None:
    reply = httpx.post(f"{server.url}/{FAST}", json={"text": "x"}, verify=trust(server))
    assert reply.status_code == 401


# -- run host -----------------------------------------------------------------------------------------------------------


def test_run_answers_output_in_one_round_trip(http: httpx.Client) -> None:
    reply = http.post(f"/run/{ECHO}", json={"prompt": "x"})
    assert reply.status_code == 200 and "x-fal-request-id" in reply.headers
    output_validator(ECHO).validate(reply.json())


def test_run_failure_answers_the_error(http: httpx.Client, server: LocalServer) -> None:
    server.behave(ECHO, error="bad prompt", error_type="content_policy", status_code=422, times=1)
    reply = http.post(f"/run/{ECHO}", json={"prompt": "x"})
    assert (reply.status_code, reply.json()["error_type"]) == (422, "content_policy")


def test_start_timeout_is_a_user_504(http: httpx.Client, server: LocalServer) -> None:
    server.behave(ECHO, queue_seconds=3, times=2)
    reply = http.post(f"/run/{ECHO}", json={"prompt": "x"}, headers={"X-Fal-Request-Timeout": "0.2"})
    assert reply.status_code == 504 and reply.headers["x-fal-request-timeout-type"] == "user"
    submitted = http.post(f"/{ECHO}", json={"prompt": "x"}, headers={"X-Fal-Request-Timeout": "0.2"}).json()
    assert wait_completed(http, submitted["status_url"])["error_type"] == "request_timeout"
    result = http.get(submitted["response_url"])
    assert result.status_code == 504 and result.headers["x-fal-request-timeout-type"] == "user"


def test_stream_sends_partials_then_the_final_output(http: httpx.Client) -> None:
    with http.stream("POST", f"/run/{ECHO}/stream", json={"prompt": "x"}) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        events = sse_data(reply)
    assert len(events) == 3
    for event in events:
        output_validator(ECHO).validate(event)


# -- webhooks -----------------------------------------------------------------------------------------------------------


def test_webhook_is_delivered_and_its_signature_verifies_against_the_jwks(
    http: httpx.Client, server: LocalServer
) -> None:
    submitted = http.post(f"/{FAST}", params={"fal_webhook": server.webhook_url}, json={"text": "x"}).json()
    assert submitted["gateway_request_id"]
    [received] = wait_for_webhooks(server)
    assert server.counters()["webhooks"] == {"delivered": 1, "failed": 0}
    headers, raw = received["headers"], received["body"].encode()
    body = json.loads(raw)
    assert body["request_id"] == submitted["request_id"] and body["status"] == "OK"
    output_validator(FAST).validate(body["payload"])

    assert abs(int(headers["x-fal-webhook-timestamp"]) - time.time()) < 300
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(raw).hexdigest(),
        ]
    ).encode()
    [key] = http.get("/.well-known/jwks.json").json()["keys"]
    assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
    public = VerifyKey(base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4)))
    public.verify(message, bytes.fromhex(headers["x-fal-webhook-signature"]))


def test_failed_job_webhook_reports_error(http: httpx.Client, server: LocalServer) -> None:
    server.behave(FAST, error="boom", times=1)
    http.post(f"/{FAST}", params={"fal_webhook": server.webhook_url}, json={"text": "x"})
    body = json.loads(wait_for_webhooks(server)[0]["body"])
    assert body["status"] == "ERROR" and body["payload"]["detail"] == "boom" and "500" in body["error"]


# -- faults -------------------------------------------------------------------------------------------------------------


def test_429_carries_retry_after_and_request_id(http: httpx.Client, server: LocalServer) -> None:
    server.script(ECHO, "submit", "429", retry_after=2)
    reply = http.post(f"/{ECHO}", json={"prompt": "x"})
    assert reply.status_code == 429 and reply.headers["retry-after"] == "2" and "x-fal-request-id" in reply.headers
    assert server.counters()["submits"] == {}  # refused: no job
    assert http.post(f"/{ECHO}", json={"prompt": "x"}).status_code == 200  # times=1: used up


@pytest.mark.parametrize("code", ["500", "502", "503", "504"])
def test_platform_errors_come_from_fal(http: httpx.Client, server: LocalServer, code: Fault) -> None:
    server.script(None, "status", code)  # None: any endpoint
    submitted = http.post(f"/{FAST}", json={"text": "x"}).json()
    reply = http.get(submitted["status_url"])
    assert reply.status_code == int(code) and "x-fal-request-id" in reply.headers
    assert reply.json()["error_type"] == reply.headers["x-fal-error-type"]


def test_ingress_502_has_no_request_id(http: httpx.Client, server: LocalServer) -> None:
    server.script(ECHO, "run", "ingress-502")
    reply = http.post(f"/run/{ECHO}", json={"prompt": "x"})
    assert reply.status_code == 502 and "x-fal-request-id" not in reply.headers and "nginx" in reply.text


def test_drop_closes_the_connection_without_a_response(http: httpx.Client, server: LocalServer) -> None:
    server.script(None, "result", "drop")  # an unknown request has no endpoint: only a None rule matches
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/fal-ai/test/requests/anything")
    assert http.get("/.well-known/jwks.json").status_code == 200  # the server is fine


def test_stall_holds_the_body_until_the_client_times_out(http: httpx.Client, server: LocalServer) -> None:
    server.script(FAST, "submit", "stall", stall_seconds=2)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        http.post(f"/{FAST}", json={"text": "x"}, timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_fault_after_the_operation_creates_the_job(http: httpx.Client, server: LocalServer) -> None:
    server.script(FAST, "submit", "ingress-502", phase="after")
    assert http.post(f"/{FAST}", json={"text": "same"}).status_code == 502
    assert http.post(f"/{FAST}", json={"text": "same"}).status_code == 200  # a naive retry
    counters = server.counters()
    assert counters["submits"] == {FAST: 2} and counters["duplicate_submits"] == 1
    assert counters["calls"][FAST]["submit"] == 2


def test_idempotency_key_is_the_fingerprint(http: httpx.Client, server: LocalServer) -> None:
    http.post(f"/{FAST}", json={"text": "a"}, headers={"Idempotency-Key": "k1"})
    http.post(f"/{FAST}", json={"text": "b"}, headers={"Idempotency-Key": "k2"})
    assert server.counters()["duplicate_submits"] == 0


def test_delay_and_times_none(http: httpx.Client, server: LocalServer) -> None:
    server.script(FAST, "submit", delay=0.3, times=None)
    for _ in range(2):
        started = time.monotonic()
        assert http.post(f"/{FAST}", json={"text": "x"}).status_code == 200
        assert time.monotonic() - started >= 0.3


def test_http_control_routes(http: httpx.Client, server: LocalServer) -> None:
    assert http.post("/_local/script", json={"endpoint_id": ECHO, "op": "run", "fault": "503"}).json() == {"ok": True}
    assert http.post("/_local/behave", json={"endpoint_id": FAST, "error": "no", "times": 1}).status_code == 200
    assert http.post(f"/run/{ECHO}", json={"prompt": "x"}).status_code == 503
    assert http.post(f"/run/{FAST}", json={"text": "x"}).status_code == 500
    counters = http.get("/_local/counters").json()
    assert counters["calls"][ECHO]["run"] == 1 and counters["runs"] == {FAST: 1}
    assert http.post("/_local/script", json={"op": "nope"}).status_code == 400
    assert http.post("/_local/script", json={"op": "run", "bogus": 1}).status_code == 400
    assert http.post("/_local/reset").status_code == 200
    assert http.get("/_local/counters").json()["calls"] == {}


# -- storage ------------------------------------------------------------------------------------------------------------


def test_storage_token_upload_and_download(http: httpx.Client) -> None:
    token = http.post("/storage/auth/token", params={"storage_type": "fal-cdn-v3"}, json={}).json()
    assert set(token) == {"token", "token_type", "base_url", "expires_at"}
    auth = {"Authorization": f"{token['token_type']} {token['token']}"}
    upload = http.post(
        f"{token['base_url']}/files/upload",
        content=b"hello",
        headers={**auth, "Content-Type": "text/plain", "X-Fal-File-Name": "hi.txt"},
    )
    access_url = upload.json()["access_url"]
    assert access_url.endswith("/hi.txt")
    download = http.get(access_url)
    assert download.content == b"hello" and download.headers["content-type"].startswith("text/plain")
    bad = http.post(f"{token['base_url']}/files/upload", content=b"x", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


# -- the official fal_client, unchanged ---------------------------------------------------------------------------------


@pytest.fixture
def fal(fal_env: LocalServer) -> fal_client.SyncClient:
    fal_env.reset()
    return fal_client.SyncClient(key="test-key")


def test_fal_client_submit_status_result(fal: fal_client.SyncClient) -> None:
    handle = fal.submit(FAST, {"text": "x"})
    assert isinstance(handle.status(), (fal_client.Queued, fal_client.InProgress, fal_client.Completed))
    output = handle.get()
    output_validator(FAST).validate(output)
    assert fal.result(FAST, handle.request_id) == output
    assert isinstance(fal.status(FAST, handle.request_id, with_logs=True), fal_client.Completed)


def test_fal_client_subscribe_reports_queue_updates(fal: fal_client.SyncClient) -> None:
    updates: list[Any] = []
    output = fal.subscribe(ECHO, {"prompt": "x"}, with_logs=True, on_queue_update=updates.append)
    output_validator(ECHO).validate(output)
    assert isinstance(updates[-1], fal_client.Completed)


def test_fal_client_cancel(fal: fal_client.SyncClient, fal_env: LocalServer) -> None:
    fal_env.behave(ECHO, queue_seconds=5, times=1)
    handle = fal.submit(ECHO, {"prompt": "x"})
    handle.cancel()
    with pytest.raises(fal_client.client.FalClientHTTPError) as raised:
        handle.get()
    assert raised.value.status_code == 400


def test_fal_client_run_and_stream(fal: fal_client.SyncClient) -> None:
    output_validator(ECHO).validate(fal.run(ECHO, {"prompt": "x"}))
    events = list(fal.stream(ECHO, {"prompt": "x"}))
    assert len(events) == 3


def test_fal_client_surfaces_422(fal: fal_client.SyncClient) -> None:
    with pytest.raises(fal_client.client.FalClientHTTPError) as raised:
        fal.run(ECHO, {"num_images": 2})
    assert raised.value.status_code == 422


def test_fal_client_retries_refusals_without_duplicates(fal: fal_client.SyncClient, fal_env: LocalServer) -> None:
    fal_env.script(ECHO, "submit", "429", retry_after=0)
    fal_env.script(ECHO, "status", "ingress-502")
    fal_env.script(ECHO, "result", "drop")
    fal.subscribe(ECHO, {"prompt": "x"})
    counters = fal_env.counters()
    assert counters["submits"] == {ECHO: 1} and counters["duplicate_submits"] == 0
    assert counters["calls"][ECHO]["submit"] == 2 and counters["calls"][ECHO]["result"] == 2


def test_fal_client_duplicates_an_ambiguous_submit(fal: fal_client.SyncClient, fal_env: LocalServer) -> None:
    """fal's known bug, visible in the counters: the job was created, the answer lost, the client submitted again."""
    fal_env.script(ECHO, "submit", "ingress-502", phase="after")
    fal.subscribe(ECHO, {"prompt": "x"})
    assert fal_env.counters()["duplicate_submits"] == 1


@pytest.mark.slow
def test_command_line_server_with_a_fresh_fal_client(tmp_path: Path) -> None:
    """`python -m fal_runtime.local` prints one line when ready, and fal_client works with only the environment set."""
    ca_file = tmp_path / "ca.pem"
    command = [sys.executable, "-m", "fal_runtime.local", "--port", "0", "--ca-file", str(ca_file)]
    command += ["--specs", str(SPECS_DIR)]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        assert line.startswith("listening on https://127.0.0.1:")
        base = line.removeprefix("listening on https://")
        env = {**os.environ, "FAL_KEY": "k", "FAL_QUEUE_RUN_HOST": base, "FAL_RUN_HOST": f"{base}/run"}
        env["SSL_CERT_FILE"] = str(ca_file)
        script = (
            "import fal_client, json; "
            f"print(json.dumps([fal_client.subscribe({FAST!r}, {{'text': 'x'}}), fal_client.run({ECHO!r}, {{'prompt': 'y'}})]))"
        )
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        fast, echo = json.loads(done.stdout)
        output_validator(FAST).validate(fast)
        output_validator(ECHO).validate(echo)
    finally:
        server.terminate()
        server.wait(10)
    assert server.returncode == 0
