"""The fal-compatible HTTP app, one class per group of routes, in the order `LocalFal.app` mounts them:

- `PlatformRoutes`: fal's model search (`/v1/models`) and webhook signing keys (`/.well-known/jwks.json`);
- `StorageRoutes`: the upload token (`/storage/auth/token`) and the CDN (`/_local/cdn/files/...`);
- `ControlRoutes`: `/_local/...`, where tests script faults and read counters and webhooks;
- `RealtimeRoutes` (in `realtime.py`): realtime tokens (`POST /tokens/`) and sockets (`/run/<id>/realtime`);
- `RunRoutes`: the synchronous run host under `/run` (`POST /run/<id>`, `POST /run/<id>/stream`);
- `QueueRoutes`: the queue at the root (`POST /<id>`, then `/<app>/requests/<request_id>[/status[/stream]|/cancel]`).

`LocalFal` holds the state they share (endpoints, jobs, files, script, signing key).

One host serves both of fal's hosts: the queue at the root (`FAL_QUEUE_RUN_HOST=127.0.0.1:N`, as fal's
`queue.fal.run`) and the synchronous run host under `/run` (`FAL_RUN_HOST=127.0.0.1:N/run`, as `fal.run`). The two
cannot share the root because `POST /{endpoint_id}` means "submit" on one and "run" on the other.

Every fal route goes through `LocalFal.guarded`, which counts the call and applies whatever the test scripted for it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .faults import Stalled, error_response, fal_headers, fault_response
from .files import CDN_PREFIX, MAX_UPLOAD_BYTES, MultipartError
from .models_api import BadQuery, ModelsApi
from .payloads import input_errors, output_template, with_file_urls
from .platform_api import DeletableFiles, PlatformApi
from .pricing import Prices, PricingRoutes
from .realtime import RealtimeRoutes
from .script import Behaviour, Rule, Script, from_json
from .specs import JSON, ServedEndpoint
from .store import RESULT_TTL, Job, Store
from .webhooks import Signer, deliver

RUN_PREFIX = "/run"
MAX_BODY_BYTES = 32 * 1024 * 1024  # the largest submit, run or stream body (413 above)
MAX_JSON_DEPTH = 100  # the deepest JSON input (422 above): deeper ones would exhaust the validator's recursion
KEEPALIVE_SECONDS = 15.0
STREAM_PARTIALS = 2

_QUEUE_OPS = {
    ("GET", ""): "result",
    ("GET", "status"): "status",
    ("GET", "status/stream"): "status_stream",
    ("PUT", "cancel"): "cancel",
}


class Reject(Exception):
    """Raised inside a handler to answer with `response` at once (bad auth, bad input, unknown request)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _json(body: Any, status: int = 200, request_id: str | None = None, **headers: str) -> JSONResponse:
    return JSONResponse(body, status, {**fal_headers(request_id), **headers})


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data)}\n\n"


class LocalFal:
    """The state of one server (endpoints, jobs, files, script, signing key) and what every route group shares:
    `guarded` for scripted faults, `accepted` for input checks, `output` for a model's answer."""

    def __init__(
        self,
        endpoints: Mapping[str, ServedEndpoint],
        script: Script,
        signer: Signer,
        tls: ssl.SSLContext,
        result_ttl: float = RESULT_TTL,
        max_body_bytes: int = MAX_BODY_BYTES,
        platform_spec: Path | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.models_api = ModelsApi(endpoints)
        self.prices = Prices()  # fal's pricing routes (`pricing.PricingRoutes`)
        self.max_body_bytes = max_body_bytes
        self.script = script
        self.signer = signer
        self.files = DeletableFiles()
        self.platform = PlatformApi(self, platform_spec)  # the rest of fal's Platform API, from its spec
        self.store = Store(
            lambda job: self.output(job.endpoint, job.base_url), self._completed, result_ttl, price_of=self.prices.get
        )
        self._tls = tls
        self._templates: dict[str, JSON] = {}  # made on an endpoint's first output: a catalogue starts in a second

    def app(self) -> Starlette:
        """The routes of every group; the queue's catch-all `/{path}` comes last, so it never hides the others."""
        routes = [
            *PlatformRoutes(self).routes(),
            *PricingRoutes(self).routes(),
            *self.platform.routes(),
            *StorageRoutes(self).routes(),
            *ControlRoutes(self).routes(),
            *RealtimeRoutes(self, RUN_PREFIX).routes(),
            *RunRoutes(self).routes(),
            *QueueRoutes(self).routes(),
        ]

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            await self.store.close()

        return Starlette(routes=routes, lifespan=lifespan)

    async def guarded(self, endpoint_id: str | None, op: str, produce: Callable[[], Awaitable[Response]]) -> Response:
        """Count the call, apply its scripted delay and fault, else answer with `produce()`."""
        rule = self.script.take_rule(endpoint_id, op)
        with self.script.answering(endpoint_id, op):
            if rule is not None and rule.delay:
                await asyncio.sleep(rule.delay)
            if rule is None or rule.fault is None:
                return await _answer(produce)
            if rule.fault == "stall":
                return Stalled(await _answer(produce), rule.stall_seconds)
            answer = await _answer(produce) if rule.phase == "after" else None
            return fault_response(rule, answer)

    async def accepted(self, request: Request, endpoint: ServedEndpoint) -> tuple[Any, bytes]:
        """A valid input whose files the "model" could read, as fal's runners fetch them: a link to this server's
        CDN must name a stored file and a data URI must decode; other URLs are taken on trust. Recorded for tests."""
        payload, raw = await _validated(request, endpoint, self.max_body_bytes)
        cdn = f"{_base(request)}{CDN_PREFIX}/files/"
        unreadable = [
            {"loc": ["body", *loc], "msg": "Could not download the file", "type": "file_download_error"}
            for loc, value in _strings(payload)
            if (value.startswith(cdn) and self.files.get(value[len(cdn) :]) is None)
            or (value.startswith("data:") and not _decodes(value))
        ]
        if unreadable:
            raise Reject(_json({"detail": unreadable}, 422))
        self.script.record_input(endpoint.id, payload)
        return payload, raw

    def output(self, endpoint: ServedEndpoint, base: str) -> JSON:
        """What the "model" answers: an output valid for the endpoint, its files served by this server's CDN."""
        template = self._templates.get(endpoint.id)
        if template is None:
            made = output_template(endpoint)
            if made is None:
                print(f"fal_runtime.local: {endpoint.id}: no output validates; answering {{}}", file=sys.stderr)
            template = self._templates[endpoint.id] = made or {}
        files = self.files
        result: JSON = with_file_urls(template, lambda ct: f"{base}{CDN_PREFIX}/files/{files.output_path(ct)}")
        return result

    async def _completed(self, job: Job) -> None:
        await deliver(job, self.signer, self.script, self._tls)


class QueueRoutes:
    """fal's queue host (queue.fal.run): submit, then status, status stream, result and cancel by request id."""

    def __init__(self, fal: LocalFal) -> None:
        self.fal = fal

    def routes(self) -> list[Route]:
        return [
            Route("/{path:path}", self.queue_host, methods=["GET", "POST", "PUT"]),
        ]

    async def queue_host(self, request: Request) -> Response:
        path = request.path_params["path"].strip("/")
        if request.method == "POST":
            endpoint = self.fal.endpoints.get(path)
            if endpoint is None:
                return _not_found(request)
            return await self.fal.guarded(endpoint.id, "submit", lambda: self.submit(request, endpoint))
        prefix, found, rest = path.partition("/requests/")
        request_id, _, tail = rest.partition("/")
        op = _QUEUE_OPS.get((request.method, tail))
        if not found or op is None:
            return _not_found(request)
        job = self.fal.store.jobs.get(request_id)
        if job is not None and prefix not in (job.endpoint.app_root, job.endpoint.id):
            job = None
        handlers = {
            "result": self.result,
            "status": self.status,
            "status_stream": self.status_stream,
            "cancel": self.cancel,
        }
        handler = handlers[op]
        return await self.fal.guarded(job.endpoint.id if job else None, op, lambda: handler(request, job, request_id))

    async def submit(self, request: Request, endpoint: ServedEndpoint) -> Response:
        _authorize(request)
        payload, raw = await self.fal.accepted(request, endpoint)
        webhook = request.query_params.get("fal_webhook")
        job = Job(
            endpoint,
            payload,
            self.fal.script.behaviour(endpoint.id),
            _base(request),
            webhook_url=webhook,
            start_timeout=_start_timeout(request),
            api_key_id=_key_id(request),
        )
        self.fal.store.submit(job)
        self.fal.script.count_job(endpoint.id, _fingerprint(request, endpoint, raw))
        body: JSON = {"request_id": job.request_id, **job.urls(), "status": "IN_QUEUE"}
        body["queue_position"] = self.fal.store.position(job)
        if webhook is not None:
            body["gateway_request_id"] = job.gateway_request_id
        return _json(body, 200, job.request_id)

    async def status(self, request: Request, job: Job | None, request_id: str) -> Response:
        _authorize(request)
        job = _known(job, request_id)
        body = self.fal.store.status(job, _flag(request.query_params.get("logs")))
        return _json(body, 200 if job.state == "COMPLETED" else 202, job.request_id)

    async def status_stream(self, request: Request, job: Job | None, request_id: str) -> Response:
        _authorize(request)
        known = _known(job, request_id)
        with_logs = _flag(request.query_params.get("logs"))

        async def events() -> AsyncIterator[str]:
            last: JSON | None = None
            while True:
                changed = known.changed  # taken before the snapshot, so no change can slip between
                status = self.fal.store.status(known, with_logs)
                if status != last:
                    yield _sse(status)
                    last = status
                if known.state == "COMPLETED":
                    return
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"

        headers = {**fal_headers(known.request_id), "Cache-Control": "no-cache"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def result(self, request: Request, job: Job | None, request_id: str) -> Response:
        _authorize(request)
        job = _known(job, request_id)
        if job.state != "COMPLETED":
            return _json({"detail": "Request is still in progress"}, 400, job.request_id)
        headers = dict(job.result_headers)
        if job.status_code < 400:  # what fal billed: its price entry's `billable_units` when it ended, else 1
            headers["x-fal-billable-units"] = str((job.price or {}).get("billable_units", 1))
        return _json(job.body, job.status_code, job.request_id, **headers)

    async def cancel(self, request: Request, job: Job | None, request_id: str) -> Response:
        _authorize(request)
        if job is None:
            return _json({"status": "NOT_FOUND"}, 404)
        outcome = self.fal.store.request_cancel(job)
        return _json({"status": outcome}, 202 if outcome == "CANCELLATION_REQUESTED" else 400, job.request_id)


class RunRoutes:
    """fal's synchronous host (fal.run), served under `/run`: one round trip, or an event stream of partial outputs."""

    def __init__(self, fal: LocalFal) -> None:
        self.fal = fal

    def routes(self) -> list[Route]:
        return [
            Route(f"{RUN_PREFIX}/{{path:path}}", self.run_host, methods=["POST"]),
        ]

    async def run_host(self, request: Request) -> Response:
        path = request.path_params["path"].strip("/")
        endpoint = self.fal.endpoints.get(path)
        if endpoint is not None:
            return await self.fal.guarded(endpoint.id, "run", lambda: self.run(request, endpoint))
        streaming = self.fal.endpoints.get(path.removesuffix("/stream")) if path.endswith("/stream") else None
        if streaming is None or not streaming.streams:
            return _not_found(request)
        return await self.fal.guarded(streaming.id, "stream", lambda: self.stream(request, streaming))

    async def run(self, request: Request, endpoint: ServedEndpoint) -> Response:
        """The run API: the answer in the response; the request in the history, billed as a queued one is."""
        _authorize(request)
        payload, _ = await self.fal.accepted(request, endpoint)
        self.fal.script.count_run(endpoint.id)
        behaviour = self.fal.script.behaviour(endpoint.id)
        job = Job(endpoint, payload, behaviour, _base(request), api_key_id=_key_id(request))
        self.fal.store.record_run(job)
        try:
            await self._work(behaviour, _start_timeout(request))
        except Reject as refused:  # it could not start in time: recorded, and answered under its request id
            self.fal.store.end_run(job, refused.response.status_code, None)
            refused.response.headers["x-fal-request-id"] = job.request_id
            raise
        except asyncio.CancelledError:  # the client went away: recorded as nginx's "client closed request"
            self.fal.store.end_run(job, 499, None)
            raise
        if behaviour.error is not None:
            body = {"detail": behaviour.error, "error_type": behaviour.error_type}
            self.fal.store.end_run(job, behaviour.status_code, body)
            return _json(body, behaviour.status_code, job.request_id)
        self.fal.store.end_run(job, 200, self.fal.output(endpoint, _base(request)))
        units = str((job.price or {}).get("billable_units", 1))  # as the result route
        return _json(job.body, 200, job.request_id, **{"x-fal-billable-units": units})

    async def stream(self, request: Request, endpoint: ServedEndpoint) -> Response:
        _authorize(request)
        await self.fal.accepted(request, endpoint)
        self.fal.script.count_run(endpoint.id)
        behaviour = self.fal.script.behaviour(endpoint.id)
        await self._work(behaviour, _start_timeout(request), run=False)
        if behaviour.error is not None:
            return _json({"detail": behaviour.error, "error_type": behaviour.error_type}, behaviour.status_code)
        output = self.fal.output(endpoint, _base(request))

        async def events() -> AsyncIterator[str]:
            for _ in range(STREAM_PARTIALS):
                yield _sse(output)
                await asyncio.sleep(behaviour.run_seconds / (STREAM_PARTIALS + 1))
            await asyncio.sleep(behaviour.run_seconds / (STREAM_PARTIALS + 1))
            yield _sse(output)

        return StreamingResponse(events(), media_type="text/event-stream", headers=fal_headers())

    async def _work(self, behaviour: Behaviour, start_timeout: float | None, run: bool = True) -> None:
        """Wait as the model would (queue, then run); a start deadline shorter than the queue wait answers 504."""
        if start_timeout is not None and behaviour.queue_seconds > start_timeout:
            await asyncio.sleep(start_timeout)
            raise Reject(
                _json(
                    {"detail": "Request timed out before it could start", "error_type": "request_timeout"},
                    504,
                    **{"X-Fal-Request-Timeout-Type": "user", "X-Fal-Error-Type": "request_timeout"},
                )
            )
        await asyncio.sleep(behaviour.queue_seconds + (behaviour.run_seconds if run else 0.0))


class StorageRoutes:
    """fal's storage: the upload token (rest.fal.ai) and the CDN's uploads, multipart uploads and downloads."""

    def __init__(self, fal: LocalFal) -> None:
        self.fal = fal

    def routes(self) -> list[Route]:
        multipart = f"{CDN_PREFIX}/files/{{path:path}}/multipart/{{upload_id}}"
        return [
            Route("/storage/auth/token", self.storage_token, methods=["POST"]),
            Route(f"{CDN_PREFIX}/files/upload", self.upload, methods=["POST"]),
            Route(f"{CDN_PREFIX}/files/upload/multipart", self.multipart_start, methods=["POST"]),
            Route(f"{multipart}/complete", self.multipart_complete, methods=["POST"]),
            Route(f"{multipart}/{{number:int}}", self.multipart_part, methods=["PUT"]),
            Route(f"{CDN_PREFIX}/files/{{path:path}}", self.download, methods=["GET"]),
        ]

    async def storage_token(self, request: Request) -> Response:
        async def produce() -> Response:
            _authorize(request)
            token, expires = self.fal.files.new_token()
            expires_at = datetime.fromtimestamp(expires, UTC).isoformat()
            body = {"token": token, "token_type": "Bearer", "base_url": f"{_base(request)}{CDN_PREFIX}"}
            return _json({**body, "expires_at": expires_at})

        return await self.fal.guarded(None, "token", produce)

    def _cdn_request(self, request: Request) -> None:
        """Every CDN call: note a fal key that reached the CDN (a client bug), then require a valid upload token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "key":
            self.fal.script.count_key_on_cdn()
        if scheme.lower() != "bearer" or not self.fal.files.token_valid(token):
            raise Reject(_json({"detail": "Invalid or expired upload token"}, 401))

    async def _cdn_body(self, request: Request) -> bytes:
        self._cdn_request(request)
        return await _capped_body(request, MAX_UPLOAD_BYTES, "File too large")

    async def upload(self, request: Request) -> Response:
        async def produce() -> Response:
            data = await self._cdn_body(request)
            name = request.headers.get("x-fal-file-name", "upload.bin")
            content_type = request.headers.get("content-type", "application/octet-stream")
            path = self.fal.files.put(name, data, content_type)
            return _json({"access_url": f"{_base(request)}{CDN_PREFIX}/files/{path}"})

        return await self.fal.guarded(None, "upload", produce)

    async def multipart_start(self, request: Request) -> Response:
        async def produce() -> Response:
            self._cdn_request(request)
            name = request.headers.get("x-fal-file-name", "upload.bin")
            path, upload_id = self.fal.files.start_multipart(
                name, request.headers.get("content-type", "application/octet-stream")
            )
            return _json({"access_url": f"{_base(request)}{CDN_PREFIX}/files/{path}", "uploadId": upload_id})

        return await self.fal.guarded(None, "upload", produce)

    async def multipart_part(self, request: Request) -> Response:
        async def produce() -> Response:
            data = await self._cdn_body(request)
            params = request.path_params
            try:
                etag = self.fal.files.put_part(params["path"], params["upload_id"], params["number"], data)
            except MultipartError as exc:
                raise Reject(_json({"detail": str(exc)}, 400)) from None
            return Response(status_code=200, headers={**fal_headers(), "ETag": etag})

        return await self.fal.guarded(None, "upload_part", produce)

    async def multipart_complete(self, request: Request) -> Response:
        async def produce() -> Response:
            self._cdn_request(request)
            try:
                body = await request.json()
                self.fal.files.complete(
                    request.path_params["path"], request.path_params["upload_id"], body.get("parts")
                )
            except (ValueError, AttributeError) as exc:
                raise Reject(_json({"detail": str(exc) or 'expected {"parts": [...]}'}, 400)) from None
            return _json({"ok": True})

        return await self.fal.guarded(None, "upload", produce)

    async def download(self, request: Request) -> Response:
        if request.headers.get("authorization", "").lower().startswith("key "):
            self.fal.script.count_key_on_cdn()

        async def produce() -> Response:
            stored = self.fal.files.get(request.path_params["path"])
            if stored is None:
                return _not_found(request)
            return Response(stored.data, media_type=stored.content_type)

        return await self.fal.guarded(None, "download", produce)


class PlatformRoutes:
    """fal's platform API: the model search (api.fal.ai/v1/models) and the webhook signing keys (JWKS)."""

    def __init__(self, fal: LocalFal) -> None:
        self.fal = fal

    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/jwks.json", self.jwks, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]

    async def models(self, request: Request) -> Response:
        """fal's model search (see `models_api`). Auth is optional, as on fal; a key that arrived is counted."""
        if request.headers.get("authorization", "").lower().startswith("key "):
            self.fal.script.count_key_on_models()

        async def produce() -> Response:
            try:
                return _json(self.fal.models_api.page(request.query_params, f"{_base(request)}{RUN_PREFIX}"))
            except BadQuery as exc:
                return error_response(400, "validation_error", str(exc))

        return await self.fal.guarded(None, "models", produce)

    async def jwks(self, request: Request) -> Response:
        return _json(self.fal.signer.jwks())


class ControlRoutes:
    """`/_local/...`: what tests use to script faults and behaviours, read counters and received webhooks, reset."""

    def __init__(self, fal: LocalFal) -> None:
        self.fal = fal

    def routes(self) -> list[Route]:
        return [
            Route("/_local/script", self.control_script, methods=["POST"]),
            Route("/_local/behave", self.control_behave, methods=["POST"]),
            Route("/_local/counters", self.control_counters, methods=["GET"]),
            Route("/_local/reset", self.control_reset, methods=["POST"]),
            Route("/_local/webhooks", self.webhook_sink, methods=["GET", "POST"]),
        ]

    async def control_script(self, request: Request) -> Response:
        return await _control(request, lambda body: self.fal.script.add_rule(from_json(Rule, body)))

    async def control_behave(self, request: Request) -> Response:
        return await _control(request, lambda body: self.fal.script.add_behaviour(from_json(Behaviour, body)))

    async def control_counters(self, request: Request) -> Response:
        return JSONResponse(self.fal.script.counters())

    async def control_reset(self, request: Request) -> Response:
        self.fal.script.reset()
        return JSONResponse({"ok": True})

    async def webhook_sink(self, request: Request) -> Response:
        """A webhook receiver on the server itself, so tests in any process can read what was delivered."""
        if request.method == "GET":
            return JSONResponse(self.fal.script.webhooks())
        raw = await request.body()
        self.fal.script.record_webhook({"headers": dict(request.headers), "body": raw.decode("utf-8", "replace")})
        return JSONResponse({"ok": True})


async def _answer(produce: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await produce()
    except Reject as rejected:
        return rejected.response


def _not_found(request: Request) -> Response:
    return _json({"detail": f"Path {request.url.path} not found"}, 404)


def _authorize(request: Request) -> None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "key" or not credentials.strip():
        raise Reject(_json({"detail": "Missing or malformed Authorization header (expected 'Key ...')"}, 401))


def _key_id(request: Request) -> str | None:
    """The id of the key a request came with: `Key <id>:<secret>` (a key without a secret names no id)."""
    _, _, credentials = request.headers.get("authorization", "").partition(" ")
    key_id, colon, _ = credentials.strip().partition(":")
    return key_id if colon and key_id else None


def _known(job: Job | None, request_id: str) -> Job:
    if job is None:
        raise Reject(_json({"detail": f"Request {request_id} not found"}, 404))
    return job


async def _capped_body(request: Request, limit: int, message: str) -> bytes:
    """The body, refused with 413 once it passes `limit` bytes. Content-Length is checked first, but a chunked body
    has none, so the bytes are also counted as they arrive: the cap holds whatever the client declares."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Reject(_json({"detail": message}, 413))
    received: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Reject(_json({"detail": message}, 413))
        received.append(chunk)
    return b"".join(received)


def _too_deep(value: Any, limit: int) -> bool:
    """Whether JSON containers nest more than `limit` deep (counted without recursion, so any depth is safe)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


async def _validated(request: Request, endpoint: ServedEndpoint, max_bytes: int = MAX_BODY_BYTES) -> tuple[Any, bytes]:
    """The JSON input and its raw bytes; a 422 in fal's shape when it is not JSON or not valid for the endpoint,
    413 when it is larger than `max_bytes`. Nesting deeper than MAX_JSON_DEPTH is refused before validation: the
    parser and the schema validator recurse per level, and a few thousand levels would crash them (a 500)."""
    raw = await _capped_body(request, max_bytes, f"Request body too large (limit {max_bytes} bytes)")
    too_deep = {
        "loc": ["body"],
        "msg": f"JSON nested too deeply (limit {MAX_JSON_DEPTH} levels)",
        "type": "json_invalid",
    }
    try:
        payload = json.loads(raw)
    except RecursionError:
        raise Reject(_json({"detail": [too_deep]}, 422)) from None
    except ValueError:
        raise Reject(
            _json({"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]}, 422)
        ) from None
    if _too_deep(payload, MAX_JSON_DEPTH):
        raise Reject(_json({"detail": [too_deep]}, 422))
    errors = input_errors(endpoint, payload)
    if errors:
        raise Reject(_json({"detail": errors}, 422))
    return payload, raw


def _strings(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string in a JSON value, with where it sits."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*loc, index))


def _decodes(uri: str) -> bool:
    head, sep, data = uri.partition(",")
    if not sep or not head.endswith(";base64"):
        return bool(sep)
    try:
        base64.b64decode(data, validate=True)
    except ValueError:
        return False
    return True


def _start_timeout(request: Request) -> float | None:
    value = request.headers.get("x-fal-request-timeout")
    try:
        return float(value) if value is not None else None
    except ValueError:
        raise Reject(_json({"detail": "X-Fal-Request-Timeout must be a number of seconds"}, 400)) from None


def _fingerprint(request: Request, endpoint: ServedEndpoint, raw: bytes) -> str:
    """What makes two submits "the same": an Idempotency-Key header when sent, else the endpoint and the body."""
    key = request.headers.get("idempotency-key")
    if key:
        return f"key:{key}"
    return "body:" + hashlib.sha256(endpoint.id.encode() + b"\n" + raw).hexdigest()


async def _control(request: Request, apply: Callable[[Any], None]) -> Response:
    try:
        apply(await request.json())
    except (ValueError, TypeError) as exc:
        return JSONResponse({"detail": str(exc)}, 400)
    return JSONResponse({"ok": True})
