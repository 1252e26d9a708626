"""Unit tests of the sans-IO core: no network, no clock, no randomness that the test does not choose."""

from __future__ import annotations

import email.utils
import json
from typing import Any

import pytest

from fal_runtime import errors
from fal_runtime._core import (
    Core,
    HandleData,
    Reply,
    RetryPolicy,
    app_root,
    base_url,
    option_headers,
    redact,
    resolve_key,
    retry_after,
)
from fal_runtime._sse import SSEDecoder
from fal_runtime._status import Completed, InProgress, LogEntry, LogWindow, Queued, parse_status
from fal_runtime._wait import DeadlineExpired, Subscription, Waiter

KEY = "key-id-1234:super-secret-value-5678"


def reply(code: int, body: Any = None, **headers: str) -> Reply:
    content = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return Reply(code, {k.replace("_", "-").lower(): v for k, v in headers.items()}, content)


def core(**kwargs: Any) -> Core:
    kwargs.setdefault("environ", {})
    return Core(**kwargs)


# URLs and headers.


def test_hosts_default_and_env_and_host_port() -> None:
    c = core()
    assert (c.queue_base, c.run_base) == ("https://queue.fal.run", "https://fal.run")
    c = core(environ={"FAL_QUEUE_RUN_HOST": "127.0.0.1:8443", "FAL_RUN_HOST": "localhost:9000/"})
    assert (c.queue_base, c.run_base) == ("https://127.0.0.1:8443", "https://localhost:9000")
    assert core(queue_host="http://h:1", environ={"FAL_QUEUE_RUN_HOST": "x"}).queue_base == "http://h:1"
    assert base_url(" https://a.b/ ") == "https://a.b"


def test_app_root() -> None:
    assert app_root("fal-ai/flux/dev/image-to-image") == "fal-ai/flux"
    assert app_root("bria/background/remove") == "bria/background"
    assert app_root("owner/alias") == "owner/alias"
    with pytest.raises(ValueError):
        app_root("lonely")


def test_submit_spec_carries_options() -> None:
    spec = core().submit(
        "fal-ai/flux/dev",
        {"prompt": "x"},
        {
            "webhook_url": "https://me.example/hook?a=1",
            "priority": "low",
            "hint": "lora-a",
            "start_timeout": 30,
            "headers": {"X-Extra": "1"},
        },
    )
    assert (spec.method, spec.url) == ("POST", "https://queue.fal.run/fal-ai/flux/dev")
    assert spec.params == {"fal_webhook": "https://me.example/hook?a=1"}
    assert spec.headers == {
        "X-Extra": "1",
        "X-Fal-Queue-Priority": "low",
        "X-Fal-Runner-Hint": "lora-a",
        "X-Fal-Request-Timeout": "30",
    }
    assert spec.json == {"prompt": "x"}
    assert "Authorization" not in spec.headers  # added at send time only


def test_option_validation() -> None:
    with pytest.raises(ValueError, match="start_timeout"):
        option_headers({"start_timeout": 1})
    with pytest.raises(ValueError, match="priority"):
        option_headers({"priority": "high"})
    assert option_headers({"start_timeout": 2.5}) == {"X-Fal-Request-Timeout": "2.5"}


def test_run_and_stream_specs() -> None:
    c = core()
    run = c.run("fal-ai/flux/dev", {}, {"timeout": 5})
    assert (run.method, run.url, run.timeout) == ("POST", "https://fal.run/fal-ai/flux/dev", 5)
    assert c.stream("fal-ai/any-llm", {}, {}).url == "https://fal.run/fal-ai/any-llm/stream"


def test_handle_urls_live_under_owner_alias() -> None:
    h = core().handle_for("fal-ai/flux/dev/image-to-image", "abc-123")
    assert h.status_url == "https://queue.fal.run/fal-ai/flux/requests/abc-123/status"
    assert h.response_url == "https://queue.fal.run/fal-ai/flux/requests/abc-123"
    assert h.cancel_url == "https://queue.fal.run/fal-ai/flux/requests/abc-123/cancel"
    c = core()
    assert c.status(h, logs=True).params == {"logs": "1"}
    assert c.status_stream(h, logs=False).url == h.status_url + "/stream"
    assert c.cancel(h).method == "PUT"


def test_submitted_prefers_returned_urls() -> None:
    body = {"request_id": "r1", "status_url": "https://q/x/status", "response_url": "https://q/x", "status": "IN_QUEUE"}
    h = core().submitted("fal-ai/flux/dev", reply(200, body))
    assert h == HandleData("fal-ai/flux/dev", "r1", "https://q/x/status", "https://q/x",
                           "https://queue.fal.run/fal-ai/flux/requests/r1/cancel")  # fmt: skip
    with pytest.raises(errors.ProtocolError):
        core().submitted("a/b", reply(200, {"nope": 1}))
    with pytest.raises(errors.ProtocolError):
        core().submitted("a/b", reply(200, b"<html>"))


# Credentials.


def test_key_resolution() -> None:
    assert resolve_key("k", {"FAL_KEY": "env"}) == "k"
    assert resolve_key(None, {"FAL_KEY": "env"}) == "env"
    assert resolve_key(None, {"FAL_KEY_ID": "id", "FAL_KEY_SECRET": "s"}) == "id:s"
    with pytest.raises(errors.MissingCredentialsError) as info:
        resolve_key(None, {"FAL_KEY_ID": "only-id"})
    assert isinstance(info.value, errors.FalError)


def test_key_read_lazily_at_first_request() -> None:
    environ: dict[str, str] = {}
    c = Core(environ=environ)  # no key yet: building a client must not fail
    environ["FAL_KEY"] = KEY
    assert c.auth_headers()["Authorization"] == f"Key {KEY}"


def test_key_never_in_repr_or_errors() -> None:
    c = core(key=KEY)
    c.auth_headers()
    assert KEY not in repr(c)
    echoed = reply(401, {"detail": f"invalid key {KEY}"}, x_fal_request_id="q")
    err = c.error_for(echoed)
    assert isinstance(err, errors.AuthenticationError)
    assert "super-secret-value-5678" not in str(err)
    assert "[redacted]" in str(err)
    assert redact("a super-secret-value-5678 b", KEY) == "a [redacted] b"
    assert redact("nothing", None) == "nothing"


# Status parsing and logs.


def test_parse_status() -> None:
    assert parse_status({"status": "IN_QUEUE", "queue_position": 3}) == Queued(3)
    assert parse_status({"status": "IN_QUEUE"}) == Queued(None)
    s = parse_status({"status": "IN_PROGRESS", "logs": [{"message": "hi", "level": "INFO", "timestamp": "t1"}]})
    assert s == InProgress((LogEntry("hi", "INFO", None, "t1"),))
    assert parse_status({"status": "IN_PROGRESS", "logs": None}) == InProgress(())
    done = parse_status({"status": "COMPLETED", "metrics": {"inference_time": 1.5}, "error": "boom", "error_type": "x"})
    assert done == Completed((), {"inference_time": 1.5}, "boom", "x")
    with pytest.raises(errors.ProtocolError):
        parse_status({"status": "FAILED"})
    with pytest.raises(errors.ProtocolError):
        parse_status(["nope"])


def test_log_window_dedups_by_timestamp_and_message() -> None:
    a, b, c = LogEntry("a", timestamp="1"), LogEntry("b", timestamp="2"), LogEntry("a", timestamp="3")
    w = LogWindow()
    assert w.new((a, b)) == (a, b)
    assert w.new((b, c)) == (c,)  # the window moved: b again, a new line with a's text at another time
    assert w.new((a, b, c)) == ()


def test_waiter_reports_only_new_logs() -> None:
    seen: list[Any] = []
    w = Waiter(poll_interval=0.1, on_queue_update=seen.append)
    log = {"message": "step 1", "level": "INFO", "timestamp": "t1"}
    w.seen(parse_status({"status": "IN_PROGRESS", "logs": [log]}))
    w.seen(parse_status({"status": "IN_PROGRESS", "logs": [log, {**log, "message": "step 2", "timestamp": "t2"}]}))
    assert [tuple(e.message for e in s.logs) for s in seen] == [("step 1",), ("step 2",)]


def test_waiter_deadline() -> None:
    now = [100.0]
    w = Waiter(poll_interval=1.0, client_timeout=2.5, clock=lambda: now[0])
    assert w.remaining() == 2.5 and w.poll_wait() == 1.0
    now[0] = 102.0
    assert w.poll_wait() == 0.5
    w.check()
    now[0] = 103.0
    with pytest.raises(DeadlineExpired):
        w.check()
    with pytest.raises(DeadlineExpired):
        w.on_line(": keep-alive")  # every stream line, keep-alives included, checks the deadline


def test_waiter_reads_status_stream_lines() -> None:
    w = Waiter(poll_interval=1.0)
    assert w.on_line(": ping") is None
    assert w.on_line('data: {"status": "IN_QUEUE", "queue_position": 0}') is None
    assert w.on_line("") == Queued(0)
    assert w.stream_usable(Reply(200, {"content-type": "text/event-stream; charset=utf-8"}))
    assert not w.stream_usable(Reply(200, {"content-type": "application/json"}))
    assert not w.stream_usable(Reply(404, {"content-type": "text/event-stream"}))


def test_subscription_splits_options() -> None:
    calls: list[str] = []
    options = {
        "priority": "low",
        "with_logs": True,
        "on_enqueue": calls.append,
        "poll_interval": 2,
        "client_timeout": 9,
    }
    sub = Subscription(options,
                       default_poll_interval=0.5)  # fmt: skip
    assert sub.submit_options == {"priority": "low"}
    assert sub.waiter.logs and sub.waiter.poll_interval == 2
    sub.enqueued("r1")
    assert calls == ["r1"]
    err = sub.timeout_error("r1", cancelled=True)
    assert isinstance(err, errors.APITimeoutError) and err.request_id == "r1" and err.cancelled


def test_sse_decoder() -> None:
    d = SSEDecoder()
    assert [d.feed(x) for x in [": c", "event: x", "data: a", "data:b", "id: 1", ""]] == [None] * 5 + ["a\nb"]
    assert d.feed("") is None
    d.feed("data: tail")
    assert d.flush() == "tail"


# Error mapping.


@pytest.mark.parametrize(
    ("r", "cls"),
    [
        (reply(422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}]}),
         errors.UnprocessableEntityError),
        (reply(401, {"detail": "bad key"}), errors.AuthenticationError),
        (reply(403, {"detail": "no"}), errors.AuthenticationError),
        (reply(404, {"detail": "Not Found"}), errors.NotFoundError),
        (reply(429, {"detail": "slow down"}), errors.RateLimitError),
        (reply(504, {"detail": "x", "error_type": "request_timeout"}, x_fal_request_timeout_type="user"),
         errors.StartTimeoutError),
        (reply(504, b"gateway timeout"), errors.ServerError),
        (reply(500, {"detail": "oops"}), errors.ServerError),
        (reply(400, {"detail": "bad"}), errors.HTTPError),
    ],
)  # fmt: skip
def test_error_mapping(r: Reply, cls: type[errors.HTTPError]) -> None:
    err = core().error_for(r)
    assert type(err) is cls
    assert isinstance(err, errors.FalError)
    assert err.status_code == r.status_code


def test_error_carries_fal_fields() -> None:
    r = reply(503, {"detail": "no runners", "error_type": "runner_scheduling_failure"}, x_fal_request_id="req-9")
    err = core().error_for(r)
    assert (err.request_id, err.error_type, err.detail) == ("req-9", "runner_scheduling_failure", "no runners")
    assert str(err) == "HTTP 503 (runner_scheduling_failure): no runners [request req-9]"
    header_only = core().error_for(reply(500, b"", x_fal_error_type="runner_disconnected"))
    assert header_only.error_type == "runner_disconnected"


def test_validation_error_exposes_field_errors() -> None:
    detail = [{"loc": ["body", "image_size", "width"], "msg": "too big", "type": "less_than_equal"}]
    err = core().error_for(reply(422, {"detail": detail}))
    assert isinstance(err, errors.UnprocessableEntityError)
    assert err.errors == detail
    assert "image_size.width: too big" in str(err)


def test_completed_with_error_raises_request_failed() -> None:
    c = core()
    with pytest.raises(errors.RequestFailedError, match="CUDA out of memory"):
        c.output_of(reply(500, {"detail": "CUDA out of memory", "error_type": "internal"}, x_fal_request_id="r"))
    with pytest.raises(errors.UnprocessableEntityError):
        c.output_of(reply(422, {"detail": [{"loc": ["body", "x"], "msg": "bad", "type": "t"}]}))
    assert c.output_of(reply(200, {"images": []})) == {"images": []}


@pytest.mark.parametrize(
    ("r", "outcome"),
    [
        (reply(200, {"status": "OK"}), "requested"),
        (reply(202, {"status": "CANCELLATION_REQUESTED"}), "requested"),
        (reply(400, {"status": "ALREADY_COMPLETED"}), "already_completed"),
        (reply(400, {"detail": "done"}), "already_completed"),
        (reply(404, {"status": "NOT_FOUND"}), "not_found"),
        (reply(404, b""), "not_found"),
    ],
)
def test_cancel_outcome(r: Reply, outcome: str) -> None:
    assert core().cancel_outcome(r) == outcome


def test_cancel_error() -> None:
    with pytest.raises(errors.AuthenticationError):
        core().cancel_outcome(reply(401, {"detail": "no"}))


# Retry-After.


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after("7", now_epoch=0) == 7.0
    assert retry_after(" 1.5 ", now_epoch=0) == 1.5
    assert retry_after(None, now_epoch=0) is None
    assert retry_after("soon", now_epoch=0) is None
    assert retry_after("inf", now_epoch=0) is None
    assert retry_after("-3", now_epoch=0) == 0.0
    now = 1_700_000_000.0
    assert retry_after(email.utils.formatdate(now + 30, usegmt=True), now_epoch=now) == pytest.approx(30)
    assert retry_after(email.utils.formatdate(now - 30, usegmt=True), now_epoch=now) == 0.0


# Retry decisions.


def delay(op: Any, attempt: int = 1, elapsed: float = 0.0, *, policy: RetryPolicy | None = None,
          remaining: float | None = None, jitter: float = 0.5, **kw: Any) -> float | None:  # fmt: skip
    return core(retry=policy).retry_delay(op, attempt, elapsed, now_epoch=0, remaining=remaining,
                                          jitter=lambda: jitter, **kw)  # fmt: skip


def sent(**kw: Any) -> errors.TransportError:
    return errors.TransportError("reset", request_sent=True, **kw)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    p = RetryPolicy(max_retries=10, base_delay=0.5, max_delay=4.0, total=1e9)
    r = reply(503)
    assert [delay("status", n, policy=p, reply=r) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert delay("status", 1, policy=p, reply=r, jitter=0.0) == 0.25  # jitter spans 0.5x..1.5x
    assert delay("status", 1, policy=p, reply=r, jitter=0.999) == pytest.approx(0.7495)


def test_retries_bounded_in_count_total_time_and_deadline() -> None:
    p = RetryPolicy(max_retries=3, base_delay=1.0, max_delay=1.0, total=10.0)
    r = reply(503)
    assert delay("status", 3, policy=p, reply=r) == 1.0
    assert delay("status", 4, policy=p, reply=r) is None
    assert delay("status", 1, 9.5, policy=p, reply=r) is None  # would start after `total`
    assert delay("status", 1, policy=p, reply=r, remaining=0.5) is None  # past the caller's deadline


def test_retry_after_wins_and_is_capped() -> None:
    p = RetryPolicy(max_retry_after=20.0, total=100.0)
    assert delay("status", policy=p, reply=reply(429, retry_after="3")) == 3.0
    assert delay("status", policy=p, reply=reply(503, retry_after="3600")) == 20.0
    assert delay("status", policy=RetryPolicy(total=10.0), reply=reply(429, retry_after="30")) is None


@pytest.mark.parametrize("op", ["status", "result", "cancel"])
@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_idempotent_calls_retry_transient_statuses(op: str, code: int) -> None:
    assert delay(op, reply=reply(code, x_fal_request_id="r")) is not None


@pytest.mark.parametrize("op", ["status", "result", "cancel"])
def test_idempotent_calls_retry_transport_errors(op: str) -> None:
    assert delay(op, failure=sent()) is not None
    assert delay(op, failure=errors.APITimeoutError("read", request_sent=True)) is not None
    assert delay(op, failure=errors.APIConnectionError("refused")) is not None
    assert delay(op, failure=sent(transient=False)) is None


@pytest.mark.parametrize("code", [200, 202, 400, 401, 404, 422])
def test_final_statuses_not_retried(code: int) -> None:
    assert delay("status", reply=reply(code)) is None


@pytest.mark.parametrize("op", ["submit", "run", "stream"])
def test_work_creating_calls_retry_only_when_provably_unsent(op: str) -> None:
    # Provably never reached fal: safe.
    assert delay(op, failure=errors.APIConnectionError("refused")) is not None
    assert delay(op, failure=errors.APITimeoutError("connect", request_sent=False)) is not None
    assert delay(op, reply=reply(429, x_fal_request_id="r")) is not None
    for code in (502, 503, 504):
        assert delay(op, reply=reply(code)) is not None  # the ingress answered
    # May have reached fal: never sent twice.
    assert delay(op, failure=sent()) is None
    assert delay(op, failure=errors.APITimeoutError("read", request_sent=True)) is None
    for code in (502, 503, 504):
        assert delay(op, reply=reply(code, x_fal_request_id="r")) is None
    assert delay(op, reply=reply(500)) is None
    assert delay(op, reply=reply(408)) is None


@pytest.mark.parametrize("op", ["submit", "run", "status", "result", "cancel"])
def test_user_start_timeout_never_retried(op: str) -> None:
    assert delay(op, reply=reply(504, x_fal_request_timeout_type="user")) is None


def test_failed_result_is_the_outcome_not_a_glitch() -> None:
    assert delay("failed_result", reply=reply(500, x_fal_request_id="r")) is None
    assert delay("failed_result", reply=reply(503, x_fal_request_id="r")) is None
    assert delay("failed_result", reply=reply(503)) is not None  # ingress
    assert delay("failed_result", reply=reply(429, x_fal_request_id="r")) is not None


# Requests that are not endpoint calls (`Client.api_request`).


def test_reads_retry_like_status_calls_and_writes_only_when_they_never_arrived() -> None:
    for code in (408, 429, 500, 502, 503, 504):
        assert delay("read", reply=reply(code)) is not None
    assert delay("read", failure=sent()) is not None
    assert delay("write", failure=errors.APIConnectionError("refused")) is not None  # nothing was sent
    assert delay("write", reply=reply(429)) is not None  # refused
    for code in (408, 500, 502, 503, 504):  # no ingress rule: a Platform API answer may lack x-fal-request-id
        assert delay("write", reply=reply(code)) is None
    assert delay("write", failure=sent()) is None
    assert delay("write", failure=errors.APITimeoutError("read", request_sent=True)) is None


def test_api_request_picks_the_retry_rules_the_url_and_the_key() -> None:
    c = core(key=KEY, environ={"FAL_API_HOST": "127.0.0.1:9"})
    op, spec = c.api_request("get", "/models", params={"endpoint_id": ["a", "b"]})
    assert (op, spec.method, spec.url, spec.params) == (
        "read",
        "GET",
        "https://127.0.0.1:9/v1/models",
        {"endpoint_id": ["a", "b"]},
    )
    assert c.api_request("POST", "/x")[0] == "write"
    assert c.api_request("POST", "/x", headers={"idempotency-key": "k"})[0] == "read"
    assert c.api_request("POST", "/x", idempotent=True)[0] == "read"
    assert c.api_request("GET", "/x", idempotent=False)[0] == "write"
    assert c.api_request("GET", "https://rest.fal.ai/tokens/")[1].url == "https://rest.fal.ai/tokens/"
    assert core(environ={}).api_url("/models") == "https://api.fal.ai/v1/models"
    assert core(environ={}).api_request("GET", "/m", auth="optional")[1].credentials is False
    assert c.api_request("GET", "/m", auth="optional")[1].credentials is True
    assert c.api_request("GET", "/m", auth="none")[1].credentials is False
    with pytest.raises(errors.MissingCredentialsError):
        core(environ={}).api_request("GET", "/m")
    with pytest.raises(ValueError, match="auth"):
        c.api_request("GET", "/m", auth="sometimes")  # type: ignore[arg-type]


def test_a_platform_api_error_body_is_read() -> None:
    body = {
        "error": {"type": "rate_limited", "message": "Too many requests", "docs_url": "https://d", "request_id": "q"}
    }
    error = core(key=KEY).error_for(reply(429, body, retry_after="3"), now_epoch=0)
    assert isinstance(error, errors.RateLimitError) and error.retry_after == 3
    assert (error.error_type, error.request_id, error.detail) == ("rate_limited", "q", "Too many requests")
    assert str(error) == "HTTP 429 (rate_limited): Too many requests [request q]"
    echoed = {"error": {"type": "x", "message": f"bad key {KEY}"}}
    assert KEY not in str(core(key=KEY).error_for(reply(401, echoed)))
    # fal's queue body is read as before.
    assert core().error_for(reply(400, {"detail": "nope", "error_type": "bad"})).detail == "nope"


def test_billable_units() -> None:
    units = Core.billable_units
    assert units(reply(200, {})) is None
    assert units(reply(200, {}, x_fal_billable_units="2.5")) == 2.5
    assert units(reply(200, {}, x_fal_billable_units="4")) == 4.0
    for bad in ("", "many", "nan", "inf", "-1"):
        assert units(reply(200, {}, x_fal_billable_units=bad)) is None
    assert str(units(reply(200, {}, x_fal_billable_units="-0"))) == "0.0"
