"""`Client` and `AsyncClient`: the I/O loops around the sans-IO core.

Each operation builds its request with `Core`, sends it, turns the outcome into a `Reply` or an
`errors.TransportError`, and asks `Core` what it means: a result, an error to raise, or a retry after a delay.
Waiting for completion asks `Waiter` (in `_wait`) the same way. The two classes differ only in `await`; what they
share that touches httpx (options, timeouts, converting responses and exceptions) lives in `_ClientBase`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

import httpx
from httpx_sse import aconnect_sse, connect_sse
from pydantic import BaseModel

from fal_runtime import errors
from fal_runtime._core import Core, HandleData, Operation, Reply, RequestSpec, RetryPolicy
from fal_runtime._handles import AsyncRequestHandle, RequestHandle
from fal_runtime._sse import LineDecoder, SSEDecoder
from fal_runtime._status import CancelOutcome, Completed, Status
from fal_runtime._storage import MULTIPART_THRESHOLD, CdnToken, Storage, parts
from fal_runtime._wait import DRAIN_LINES, DeadlineExpired, Subscription, Waiter
from fal_runtime.inputs import Blob, data_uri, needs_sending, to_blob, validate

OutputT = TypeVar("OutputT", bound=BaseModel)
logger = logging.getLogger("fal_runtime")

_SHARD = 25  # connections per httpx pool in AsyncClient (see AsyncClient.__init__)
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # failed before a byte of the request left
_NOT_TRANSIENT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError)


class _ClientBase:
    def __init__(
        self,
        key: str | None = None,
        *,
        queue_host: str | None = None,
        run_host: str | None = None,
        rest_host: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        poll_interval: float = 0.5,
        verify: Any = True,
        inline_max_bytes: int = 0,
        upload_concurrency: int = 4,
    ) -> None:
        """`key` defaults to FAL_KEY (or FAL_KEY_ID:FAL_KEY_SECRET), read at the first request; the hosts to
        FAL_QUEUE_RUN_HOST / FAL_RUN_HOST, then queue.fal.run / fal.run (`host`, `host:port` or a URL).
        `timeout` bounds each read (a status stream sends a keep-alive every 15 s), `connect_timeout` each connect.
        `poll_interval` is used only when a status stream is unavailable. `verify` is httpx's (a CA file, an
        `ssl.SSLContext`, or False).

        File inputs that are not URLs (paths, bytes, file objects, PIL images) are sent inline as data URIs when
        they are at most `inline_max_bytes` long (0: never), else uploaded to fal's storage via `rest_host`
        (FAL_REST_HOST, then rest.fal.ai); a multipart upload sends up to `upload_concurrency` parts at once."""
        self._core = Core(key=key, queue_host=queue_host, run_host=run_host, rest_host=rest_host, retry=retry)
        self._storage = Storage(self._core)
        self._inline_max_bytes = inline_max_bytes
        self._upload_concurrency = max(1, upload_concurrency)
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._poll_interval = poll_interval
        self._verify = verify

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(queue={self._core.queue_base!r}, run={self._core.run_base!r})"

    def _headers(self, spec: RequestSpec) -> dict[str, str]:
        return self._core.headers(spec)

    def _timeout_for(self, spec: RequestSpec, remaining: float | None) -> httpx.Timeout:
        """The client's timeouts, shortened by the call's `timeout` option and the wait's deadline."""
        limit = min((t for t in (spec.timeout, remaining) if t is not None), default=None)
        if limit is None:
            return self._timeout
        limit = max(limit, 0.001)
        return httpx.Timeout(
            min(self._timeout.read or limit, limit),
            connect=min(self._timeout.connect or limit, limit),
        )

    def _inline_or_blob(self, value: Any) -> str | Blob:
        """A URL to send for a file-input value (as given, or a data URI), or the `Blob` still to upload."""
        if not needs_sending(value):
            return str(value)
        blob = to_blob(validate(value))
        inline = self._inline_max_bytes > 0 and blob.size <= self._inline_max_bytes  # 0: never, even an empty file
        return data_uri(blob) if inline else blob

    def _failure(self, exc: httpx.TransportError) -> errors.TransportError:
        """An httpx exception as ours, recording whether the request may have reached the server."""
        where = f"{exc.request.method} {exc.request.url}" if _has_request(exc) else "request"
        message = self._core.redact(f"{where}: {type(exc).__name__}: {exc}")
        if isinstance(exc, _NOT_SENT):
            if isinstance(exc, httpx.TimeoutException):
                return errors.TimeoutError(message, request_sent=False)
            return errors.ConnectionError(message)
        if isinstance(exc, httpx.TimeoutException):
            return errors.TimeoutError(message, request_sent=True)
        return errors.TransportError(message, request_sent=True, transient=not isinstance(exc, _NOT_TRANSIENT))

    def _retry_delay(
        self,
        op: Operation | None,
        spec: RequestSpec,
        attempt: int,
        started: float,
        *,
        reply: Reply | None = None,
        failure: errors.TransportError | None = None,
        remaining: float | None = None,
    ) -> float | None:
        if op is None:
            return None
        delay = self._core.retry_delay(
            op,
            attempt,
            time.monotonic() - started,
            reply=reply,
            failure=failure,
            now_epoch=time.time(),
            remaining=remaining,
        )
        if delay is not None:
            why = f"HTTP {reply.status_code}" if reply is not None else type(failure).__name__
            url = self._core.redact(spec.url)  # a status URL is the server's: it may echo anything
            logger.info("fal %s %s: %s; retry %d in %.2f s", spec.method, url, why, attempt, delay)
        return delay


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - httpx raises RuntimeError when the exception has no request
    except RuntimeError:
        return False
    return True


def _reply(response: httpx.Response) -> Reply:
    """The core's view of a response whose body has been read."""
    return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)


# The status stream failing in any of these ways means: poll instead.
_STREAM_FALLBACK = (errors.TransportError, errors.HTTPError, errors.ProtocolError)
# Draining a completed status stream stops at any of these: the request is complete whatever happens there.
_DRAIN_ENDS = (errors.TransportError, errors.ProtocolError, DeadlineExpired)


class Client(_ClientBase):
    """A synchronous fal client. Thread-safe; reuse one per process (it keeps a connection pool)."""

    def __init__(
        self, key: str | None = None, *, http_client: httpx.Client | None = None, max_connections: int = 100, **kwargs: Any
    ) -> None:
        """See `_ClientBase.__init__` for the arguments; `max_connections` bounds the pool (threads beyond it wait
        for a connection); `http_client` replaces the httpx client (tests, proxies)."""
        super().__init__(key, **kwargs)
        # Every pooled connection is kept alive, as in AsyncClient: httpx keeps 20, so more threads paid handshakes.
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = http_client
        self._lock = threading.Lock()
        self._token: CdnToken | None = None
        self._token_lock = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    timeout=self._timeout, verify=self._verify, limits=self._limits, follow_redirects=True
                )
            return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Sending.

    def _send(self, op: Operation, spec: RequestSpec, *, remaining: float | None = None) -> Reply:
        """Send with retries as `Core.retry_delay` decides; the last reply, whatever its status."""
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            reply, failure = None, None
            try:
                response = self.http.request(
                    spec.method,
                    spec.url,
                    headers=self._headers(spec),
                    params=spec.params,
                    json=spec.json,
                    content=spec.content,
                    timeout=self._timeout_for(spec, remaining),
                )
                reply = _reply(response)
            except httpx.TransportError as exc:
                failure = self._failure(exc)
            delay = self._retry_delay(op, spec, attempt, started, reply=reply, failure=failure, remaining=remaining)
            if delay is None:
                if failure is not None:
                    raise failure
                assert reply is not None
                return reply
            time.sleep(delay)

    @contextmanager
    def _open_stream(
        self, op: Operation | None, spec: RequestSpec, *, remaining: float | None = None
    ) -> Iterator[httpx.Response]:
        """An open 2xx event stream, retried on opening as `Core.retry_delay` decides (never, for `op=None`)."""
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            reply, failure = None, None
            stack = ExitStack()
            try:
                source = stack.enter_context(
                    connect_sse(
                        self.http,
                        spec.method,
                        spec.url,
                        headers=self._headers(spec),
                        params=spec.params,
                        json=spec.json,
                        timeout=self._timeout_for(spec, remaining),
                    )
                )
            except httpx.TransportError as exc:
                failure = self._failure(exc)
            else:
                with stack:
                    if source.response.is_success:
                        yield source.response  # outside any `except`: the caller's errors pass through untouched
                        return
                    try:
                        source.response.read()
                        reply = _reply(source.response)
                    except httpx.TransportError as exc:
                        failure = self._failure(exc)
            delay = self._retry_delay(op, spec, attempt, started, reply=reply, failure=failure, remaining=remaining)
            if delay is None:
                if failure is not None:
                    raise failure
                assert reply is not None
                raise self._core.error_for(reply)
            time.sleep(delay)

    def _lines(self, response: httpx.Response, check: Callable[[], None] | None = None) -> Iterator[str]:
        """The body's lines; `check` runs on every chunk, so a deadline holds even while one line never ends."""
        decoder = LineDecoder()
        try:
            for chunk in response.iter_bytes():
                if check is not None:
                    check()
                yield from decoder.feed(chunk)
        except httpx.TransportError as exc:
            raise self._failure(exc) from None
        yield from decoder.flush()

    @staticmethod
    def _drain(lines: Iterator[str]) -> None:
        """Read a completed status stream on to its close (see `DRAIN_LINES`); a failure there changes nothing."""
        try:
            for _ in itertools.islice(lines, DRAIN_LINES):
                pass
        except _DRAIN_ENDS:
            pass

    # Operations on a submitted request (called by `RequestHandle`).

    def _status(self, handle: HandleData, *, logs: bool = False, remaining: float | None = None) -> Status:
        return self._core.parsed_status(self._send("status", self._core.status(handle, logs=logs), remaining=remaining))

    def _result(self, handle: HandleData, output: type[OutputT], *, failed: bool = False) -> OutputT:
        reply = self._send("failed_result" if failed else "result", self._core.result(handle))
        return output.model_validate(self._core.output_of(reply))

    def _cancel(self, handle: HandleData) -> CancelOutcome:
        return self._core.cancel_outcome(self._send("cancel", self._core.cancel(handle)))

    def _watch(self, handle: HandleData, waiter: Waiter) -> Iterator[Status]:
        """Status changes until COMPLETED: from the status stream, or by polling once it proves unavailable."""
        spec = self._core.status_stream(handle, logs=waiter.logs)
        try:
            with self._open_stream(None, spec, remaining=waiter.remaining()) as response:
                if not waiter.stream_usable(_reply_head(response)):
                    raise errors.ProtocolError("status stream is not an event stream")
                lines = self._lines(response, waiter.check)
                for line in lines:
                    status = waiter.on_line(line)
                    if status is not None:
                        yield status
                        if isinstance(status, Completed):
                            self._drain(lines)
                            return
        except _STREAM_FALLBACK as exc:
            logger.debug("fal status stream unavailable (%s); polling", type(exc).__name__)
        while True:
            waiter.check()
            status = waiter.seen(self._status(handle, logs=waiter.logs, remaining=waiter.remaining()))
            yield status
            if isinstance(status, Completed):
                return
            time.sleep(waiter.poll_wait())

    def _wait_result(self, handle: HandleData, output: type[OutputT], waiter: Waiter) -> OutputT:
        status: Status | None = None
        for status in self._watch(handle, waiter):
            pass
        failed = isinstance(status, Completed) and status.error is not None
        return self._result(handle, output, failed=failed)

    # Endpoint operations (called by `Endpoint`).

    def submit(
        self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any
    ) -> RequestHandle[OutputT]:
        """Queue a request; the handle reads its status, result, or cancels it. Retried only when provably unsent."""
        spec = self._core.submit(endpoint_id, payload, options)
        return RequestHandle(self, self._core.submitted(endpoint_id, self._send("submit", spec)), output)

    def get_handle(self, endpoint_id: str, request_id: str, *, output: type[OutputT]) -> RequestHandle[OutputT]:
        return RequestHandle(self, self._core.handle_for(endpoint_id, request_id), output)

    def subscribe(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        """Submit, wait for completion (status stream, else polling), return the result; see `SubscribeOptions`."""
        sub = Subscription(options, default_poll_interval=self._poll_interval)
        spec = self._core.submit(endpoint_id, payload, sub.submit_options)
        handle = self._core.submitted(endpoint_id, self._send("submit", spec, remaining=sub.waiter.remaining()))
        sub.enqueued(handle.request_id)
        try:
            return self._wait_result(handle, output, sub.waiter)
        except DeadlineExpired:
            raise sub.timeout_error(handle.request_id, cancelled=self._cancel_quietly(handle)) from None

    def _cancel_quietly(self, handle: HandleData) -> bool:
        try:
            return self._cancel(handle) != "not_found"
        except errors.FalError:
            return False

    def run(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        """One round trip to fal.run: no queue, no status, no server-side retries."""
        reply = self._send("run", self._core.run(endpoint_id, payload, options))
        return output.model_validate(self._core.output_of(reply))

    def stream(self, endpoint_id: str, payload: dict[str, Any], **options: Any) -> Iterator[dict[str, Any]]:
        """The events of a streaming endpoint, each a JSON object (the model's partial output)."""
        spec = self._core.stream(endpoint_id, payload, options)
        with self._open_stream("stream", spec) as response:
            decoder = SSEDecoder()
            for line in self._lines(response):
                data = decoder.feed(line)
                if data is not None:
                    yield self._core.stream_event(data)
            data = decoder.flush()
            if data is not None:
                yield self._core.stream_event(data)


    # Files.

    def upload(self, value: Any) -> str:
        """A URL fal can read for a file-input value: a str as given; a path, bytes, binary file object or PIL image
        inlined as a data URI (up to `inline_max_bytes`) or uploaded to fal's storage (multipart above 100 MiB)."""
        sent = self._inline_or_blob(value)
        if isinstance(sent, str):
            return sent
        if sent.size > MULTIPART_THRESHOLD:
            return self._upload_multipart(sent)
        data = sent.read()
        return self._cdn(lambda token: self._storage.upload_request(token, sent, data), self._storage.uploaded)

    def upload_all(self, values: list[Any]) -> list[str]:
        """`upload` of each value, one file after another."""
        return [self.upload(value) for value in values]

    def _cdn_token(self, stale: CdnToken | None = None) -> CdnToken:
        """The cached CDN token, renewed when it is near expiry or when the CDN rejected `stale`."""
        with self._token_lock:
            token = self._token
            if token is None or token is stale or not token.fresh(time.time()):
                token = self._token = self._storage.token(self._send("upload", self._storage.token_request()))
            return token

    def _cdn(self, build: Callable[[CdnToken], RequestSpec], read: Callable[[Reply], T]) -> T:
        """Send a CDN request with the cached token; once more with a new token if the CDN rejects it."""
        token = self._cdn_token()
        reply = self._send("upload", build(token))
        if self._storage.rejected_token(reply):
            reply = self._send("upload", build(self._cdn_token(stale=token)))
        return read(reply)

    def _upload_multipart(self, blob: Blob) -> str:
        storage = self._storage
        access_url, upload_id = self._cdn(lambda t: storage.multipart_request(t, blob), storage.multipart_started)

        def put(part: tuple[int, int, int]) -> tuple[int, str]:
            n, offset, length = part
            data = blob.read_range(offset, length)  # read in the worker: at most `upload_concurrency` parts in memory
            return n, self._cdn(
                lambda t: storage.part_request(t, blob, access_url, upload_id, n, data), lambda r: storage.part_etag(r, n)
            )

        with ThreadPoolExecutor(self._upload_concurrency, thread_name_prefix="fal-upload") as pool:
            etags = dict(pool.map(put, parts(blob.size)))
        return self._cdn(
            lambda t: storage.complete_request(t, access_url, upload_id, etags), lambda r: storage.completed(r, access_url)
        )


class AsyncClient(_ClientBase):
    """An asyncio fal client; reuse one per event loop (it keeps a connection pool bound to that loop)."""

    def __init__(
        self,
        key: str | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        max_connections: int = 100,
        **kwargs: Any,
    ) -> None:
        """See `_ClientBase.__init__` for the arguments; at most `max_connections` requests are in flight at once
        (a status stream holds its connection while it waits); `http_client` replaces the httpx client."""
        super().__init__(key, **kwargs)
        # Requests wait for a slot here rather than in httpcore's pool, whose scheduling is quadratic in the number
        # of waiting requests (1,000 concurrent subscribes spent seconds of CPU there).
        self._slots = asyncio.Semaphore(max_connections)
        # httpcore's pool bookkeeping also costs O(connections²) on every request start and end (encode/httpcore#1035,
        # unmerged), so the connections are split over pools of at most _SHARD; each request takes the least busy.
        count = 1 if http_client is not None else -(-max_connections // _SHARD)
        per = -(-max_connections // count)
        # Keep every pooled connection alive: the default keeps 20, so heavy concurrency paid a TLS handshake per call.
        self._limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
        self._shards: list[httpx.AsyncClient | None] = [http_client] if http_client is not None else [None] * count
        self._busy = [0] * count
        self._token: CdnToken | None = None
        self._token_lock = asyncio.Lock()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[httpx.AsyncClient]:
        """A slot, then the least busy pool (created on first use), both held until the request or stream closes.
        While a slot is free, some pool has a free connection, so nothing waits inside httpcore. Requests sent
        through it directly carry no credentials (output downloads use it)."""
        async with self._slots:
            i = min(range(len(self._busy)), key=self._busy.__getitem__)
            shard = self._shards[i]
            if shard is None:
                shard = self._shards[i] = httpx.AsyncClient(
                    timeout=self._timeout, verify=self._verify, limits=self._limits, follow_redirects=True
                )
            self._busy[i] += 1
            try:
                yield shard
            finally:
                self._busy[i] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            if shard is not None:
                await shard.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # Sending.

    async def _send(self, op: Operation, spec: RequestSpec, *, remaining: float | None = None) -> Reply:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            reply, failure = None, None
            try:
                async with self.connection() as http:
                    response = await http.request(
                        spec.method,
                        spec.url,
                        headers=self._headers(spec),
                        params=spec.params,
                        json=spec.json,
                        content=spec.content,
                        timeout=self._timeout_for(spec, remaining),
                    )
                reply = _reply(response)
            except httpx.TransportError as exc:
                failure = self._failure(exc)
            delay = self._retry_delay(op, spec, attempt, started, reply=reply, failure=failure, remaining=remaining)
            if delay is None:
                if failure is not None:
                    raise failure
                assert reply is not None
                return reply
            await asyncio.sleep(delay)

    @asynccontextmanager
    async def _open_stream(
        self, op: Operation | None, spec: RequestSpec, *, remaining: float | None = None
    ) -> AsyncIterator[httpx.Response]:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            reply, failure = None, None
            stack = AsyncExitStack()
            http = await stack.enter_async_context(self.connection())  # held while the stream is open
            try:
                source = await stack.enter_async_context(
                    aconnect_sse(
                        http,
                        spec.method,
                        spec.url,
                        headers=self._headers(spec),
                        params=spec.params,
                        json=spec.json,
                        timeout=self._timeout_for(spec, remaining),
                    )
                )
            except httpx.TransportError as exc:
                await stack.aclose()  # give the slot back
                failure = self._failure(exc)
            except BaseException:
                await stack.aclose()
                raise
            else:
                async with stack:
                    if source.response.is_success:
                        yield source.response
                        return
                    try:
                        await source.response.aread()
                        reply = _reply(source.response)
                    except httpx.TransportError as exc:
                        failure = self._failure(exc)
            delay = self._retry_delay(op, spec, attempt, started, reply=reply, failure=failure, remaining=remaining)
            if delay is None:
                if failure is not None:
                    raise failure
                assert reply is not None
                raise self._core.error_for(reply)
            await asyncio.sleep(delay)

    async def _lines(self, response: httpx.Response, check: Callable[[], None] | None = None) -> AsyncIterator[str]:
        decoder = LineDecoder()
        try:
            async for chunk in response.aiter_bytes():
                if check is not None:
                    check()
                for line in decoder.feed(chunk):
                    yield line
        except httpx.TransportError as exc:
            raise self._failure(exc) from None
        for line in decoder.flush():
            yield line

    @staticmethod
    async def _drain(lines: AsyncIterator[str]) -> None:
        try:
            for _ in range(DRAIN_LINES):
                await anext(lines)
        except (StopAsyncIteration, *_DRAIN_ENDS):
            pass

    # Operations on a submitted request (called by `AsyncRequestHandle`).

    async def _status(self, handle: HandleData, *, logs: bool = False, remaining: float | None = None) -> Status:
        spec = self._core.status(handle, logs=logs)
        return self._core.parsed_status(await self._send("status", spec, remaining=remaining))

    async def _result(self, handle: HandleData, output: type[OutputT], *, failed: bool = False) -> OutputT:
        reply = await self._send("failed_result" if failed else "result", self._core.result(handle))
        return output.model_validate(self._core.output_of(reply))

    async def _cancel(self, handle: HandleData) -> CancelOutcome:
        return self._core.cancel_outcome(await self._send("cancel", self._core.cancel(handle)))

    async def _watch(self, handle: HandleData, waiter: Waiter) -> AsyncIterator[Status]:
        spec = self._core.status_stream(handle, logs=waiter.logs)
        try:
            async with self._open_stream(None, spec, remaining=waiter.remaining()) as response:
                if not waiter.stream_usable(_reply_head(response)):
                    raise errors.ProtocolError("status stream is not an event stream")
                lines = self._lines(response, waiter.check)
                async for line in lines:
                    status = waiter.on_line(line)
                    if status is not None:
                        yield status
                        if isinstance(status, Completed):
                            await self._drain(lines)
                            return
        except _STREAM_FALLBACK as exc:
            logger.debug("fal status stream unavailable (%s); polling", type(exc).__name__)
        while True:
            waiter.check()
            status = waiter.seen(await self._status(handle, logs=waiter.logs, remaining=waiter.remaining()))
            yield status
            if isinstance(status, Completed):
                return
            await asyncio.sleep(waiter.poll_wait())

    async def _wait_result(self, handle: HandleData, output: type[OutputT], waiter: Waiter) -> OutputT:
        status: Status | None = None
        async for status in self._watch(handle, waiter):
            pass
        failed = isinstance(status, Completed) and status.error is not None
        return await self._result(handle, output, failed=failed)

    # Endpoint operations (called by `Endpoint`).

    async def submit(
        self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any
    ) -> AsyncRequestHandle[OutputT]:
        spec = self._core.submit(endpoint_id, payload, options)
        return AsyncRequestHandle(self, self._core.submitted(endpoint_id, await self._send("submit", spec)), output)

    def get_handle(self, endpoint_id: str, request_id: str, *, output: type[OutputT]) -> AsyncRequestHandle[OutputT]:
        return AsyncRequestHandle(self, self._core.handle_for(endpoint_id, request_id), output)

    async def subscribe(
        self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any
    ) -> OutputT:
        sub = Subscription(options, default_poll_interval=self._poll_interval)
        spec = self._core.submit(endpoint_id, payload, sub.submit_options)
        reply = await self._send("submit", spec, remaining=sub.waiter.remaining())
        handle = self._core.submitted(endpoint_id, reply)
        sub.enqueued(handle.request_id)
        try:
            return await self._wait_result(handle, output, sub.waiter)
        except DeadlineExpired:
            raise sub.timeout_error(handle.request_id, cancelled=await self._cancel_quietly(handle)) from None

    async def _cancel_quietly(self, handle: HandleData) -> bool:
        try:
            return await self._cancel(handle) != "not_found"
        except errors.FalError:
            return False

    async def run(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        reply = await self._send("run", self._core.run(endpoint_id, payload, options))
        return output.model_validate(self._core.output_of(reply))

    async def stream(self, endpoint_id: str, payload: dict[str, Any], **options: Any) -> AsyncIterator[dict[str, Any]]:
        spec = self._core.stream(endpoint_id, payload, options)
        async with self._open_stream("stream", spec) as response:
            decoder = SSEDecoder()
            async for line in self._lines(response):
                data = decoder.feed(line)
                if data is not None:
                    yield self._core.stream_event(data)
            data = decoder.flush()
            if data is not None:
                yield self._core.stream_event(data)


    # Files.

    async def upload(self, value: Any) -> str:
        """See `Client.upload`. Reading and encoding run in a worker thread, so the event loop never blocks on disk."""
        sent = await asyncio.to_thread(self._inline_or_blob, value)
        if isinstance(sent, str):
            return sent
        if sent.size > MULTIPART_THRESHOLD:
            return await self._upload_multipart(sent)
        data = await asyncio.to_thread(sent.read)
        return await self._cdn(lambda token: self._storage.upload_request(token, sent, data), self._storage.uploaded)

    async def upload_all(self, values: list[Any]) -> list[str]:
        """`upload` of each value, all files at once."""
        return await _all_or_nothing(self.upload(value) for value in values)

    async def _cdn_token(self, stale: CdnToken | None = None) -> CdnToken:
        async with self._token_lock:
            token = self._token
            if token is None or token is stale or not token.fresh(time.time()):
                token = self._token = self._storage.token(await self._send("upload", self._storage.token_request()))
            return token

    async def _cdn(self, build: Callable[[CdnToken], RequestSpec], read: Callable[[Reply], T]) -> T:
        token = await self._cdn_token()
        reply = await self._send("upload", build(token))
        if self._storage.rejected_token(reply):
            reply = await self._send("upload", build(await self._cdn_token(stale=token)))
        return read(reply)

    async def _upload_multipart(self, blob: Blob) -> str:
        storage = self._storage
        access_url, upload_id = await self._cdn(lambda t: storage.multipart_request(t, blob), storage.multipart_started)
        slots = asyncio.Semaphore(self._upload_concurrency)

        async def put(n: int, offset: int, length: int) -> tuple[int, str]:
            async with slots:  # bounds the parts in flight, and so the parts held in memory
                data = await asyncio.to_thread(blob.read_range, offset, length)
                etag = await self._cdn(
                    lambda t: storage.part_request(t, blob, access_url, upload_id, n, data),
                    lambda r: storage.part_etag(r, n),
                )
            return n, etag

        etags = dict(await _all_or_nothing(put(*part) for part in parts(blob.size)))
        return await self._cdn(
            lambda t: storage.complete_request(t, access_url, upload_id, etags), lambda r: storage.completed(r, access_url)
        )


async def _all_or_nothing(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """The results in order; when one fails, the others are cancelled before its error is raised (`gather` alone
    would leave them running, sending the rest of a file whose upload has already failed)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _reply_head(response: httpx.Response) -> Reply:
    """Status and headers of a streaming response, without reading its body."""
    return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()})


_default: Client | None = None
_default_lock = threading.Lock()
_default_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = weakref.WeakKeyDictionary()


def default_client() -> Client:
    """The process-wide client configured from the environment (credentials are read at the first request)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def default_async_client() -> AsyncClient:
    """One default async client per event loop: an httpx.AsyncClient's connections belong to the loop that made them."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("the default AsyncClient needs a running event loop; pass client=AsyncClient()") from None
    client = _default_async.get(loop)
    if client is None:
        client = _default_async[loop] = AsyncClient()
    return client

