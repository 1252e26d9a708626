"""`Client` and `AsyncClient`: the I/O loops around the sans-IO core.

Each method builds its request with `Core`, sends it, and hands the response back to `Core` for the verdict
(success, error, or retry after a delay). The two classes differ only in `await`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import httpx
from httpx_sse import aconnect_sse, connect_sse
from pydantic import BaseModel

from fal_runtime import errors
from fal_runtime._core import Core, HandleData, Operation, RequestSpec, RetryPolicy
from fal_runtime._handles import AsyncRequestHandle, RequestHandle
from fal_runtime._status import Completed, InProgress, LogWindow, Status, parse_status

OutputT = TypeVar("OutputT", bound=BaseModel)
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


def _output(model: type[OutputT] | None, data: Any) -> Any:
    return data if model is None else model.model_validate(data)


class _Base:
    def __init__(
        self,
        key: str | None = None,
        *,
        queue_host: str | None = None,
        run_host: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        poll_interval: float = 0.1,
        verify: Any = True,
    ) -> None:
        self._core = Core(key=key, queue_host=queue_host, run_host=run_host, retry=retry)
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._poll_interval = poll_interval
        self._verify = verify

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(queue={self._core.queue_base!r}, run={self._core.run_base!r})"

    def _headers(self, spec: RequestSpec) -> dict[str, str]:
        return {**self._core.auth_headers(), **spec.headers}


class Client(_Base):
    """A synchronous fal client. Thread-safe; reuse one per process."""

    def __init__(self, key: str | None = None, **kwargs: Any) -> None:
        super().__init__(key, **kwargs)
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(timeout=self._timeout, verify=self._verify, follow_redirects=True)
            return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, op: Operation, spec: RequestSpec, *, ok_error: bool = False) -> httpx.Response:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                response = self.http.request(spec.method, spec.url, headers=self._headers(spec), params=spec.params, json=spec.json)
            except httpx.TransportError as exc:
                delay = self._core.retry_delay(op, attempt, started, exc=exc)
                if delay is None:
                    raise self._core.transport_error(exc) from None
            else:
                if response.is_success or ok_error:
                    return response
                delay = self._core.retry_delay(op, attempt, started, response=response)
                if delay is None:
                    raise self._core.error_for(response)
            time.sleep(delay)
            attempt += 1

    def submit(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> RequestHandle[OutputT]:
        response = self._send("submit", self._core.submit(endpoint_id, payload, options))
        return RequestHandle(self, self._core.handle_from_submit(endpoint_id, response.json()), output)

    def get_handle(self, endpoint_id: str, request_id: str, *, output: type[OutputT]) -> RequestHandle[OutputT]:
        return RequestHandle(self, self._core.handle_for(endpoint_id, request_id), output)

    def status(self, handle: HandleData, *, logs: bool = False) -> Status:
        return parse_status(self._send("status", self._core.status(handle, logs=logs)).json())

    def result(self, handle: HandleData, output: type[OutputT] | None = None) -> Any:
        response = self._send("result", self._core.result(handle), ok_error=True)
        if not response.is_success:
            raise self._core.error_for(response, completed_with_error=True)
        return _output(output, response.json())

    def cancel(self, handle: HandleData) -> str:
        return str(self._send("cancel", self._core.cancel(handle), ok_error=True).json().get("status", "NOT_FOUND"))

    def iter_status(self, handle: HandleData, *, logs: bool = False, poll_interval: float | None = None) -> Iterator[Status]:
        """Status changes until COMPLETED: from the status stream, or by polling when it is unavailable."""
        spec = self._core.status_stream(handle, logs=logs)
        try:
            with connect_sse(self.http, spec.method, spec.url, headers=self._headers(spec), params=spec.params) as source:
                if source.response.is_success:
                    for event in source.iter_sse():
                        if not event.data:
                            continue
                        status = parse_status(event.json())
                        yield status
                        if isinstance(status, Completed):
                            return
        except (httpx.TransportError, ValueError):
            pass  # fall back to polling below
        while True:
            status = self.status(handle, logs=logs)
            yield status
            if isinstance(status, Completed):
                return
            time.sleep(poll_interval or self._poll_interval)

    def subscribe(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        callbacks = _Callbacks(options)
        handle = self.submit(endpoint_id, payload, output=output, **callbacks.submit_options)
        callbacks.enqueued(handle.request_id)
        deadline = callbacks.deadline()
        for status in self.iter_status(handle.data, logs=callbacks.with_logs, poll_interval=callbacks.poll_interval):
            callbacks.update(status)
            if deadline is not None and time.monotonic() > deadline and not isinstance(status, Completed):
                self.cancel(handle.data)
                raise errors.TimeoutError(f"client_timeout expired; request {handle.request_id} cancelled")
        return self.result(handle.data, output)  # type: ignore[no-any-return]

    def run(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        response = self._send("run", self._core.run(endpoint_id, payload, options))
        return output.model_validate(response.json())

    def stream(self, endpoint_id: str, payload: dict[str, Any], **options: Any) -> Iterator[dict[str, Any]]:
        spec = self._core.stream(endpoint_id, payload, options)
        with connect_sse(self.http, spec.method, spec.url, headers=self._headers(spec), json=spec.json) as source:
            if not source.response.is_success:
                source.response.read()
                raise self._core.error_for(source.response)
            for event in source.iter_sse():
                if event.data:
                    yield event.json()


class AsyncClient(_Base):
    """An asyncio fal client; reuse one per event loop."""

    def __init__(self, key: str | None = None, *, max_connections: int = 100, **kwargs: Any) -> None:
        super().__init__(key, **kwargs)
        self._limits = httpx.Limits(max_connections=max_connections)
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout, verify=self._verify, limits=self._limits, follow_redirects=True)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, op: Operation, spec: RequestSpec, *, ok_error: bool = False) -> httpx.Response:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                response = await self.http.request(spec.method, spec.url, headers=self._headers(spec), params=spec.params, json=spec.json)
            except httpx.TransportError as exc:
                delay = self._core.retry_delay(op, attempt, started, exc=exc)
                if delay is None:
                    raise self._core.transport_error(exc) from None
            else:
                if response.is_success or ok_error:
                    return response
                delay = self._core.retry_delay(op, attempt, started, response=response)
                if delay is None:
                    raise self._core.error_for(response)
            await asyncio.sleep(delay)
            attempt += 1

    async def submit(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> AsyncRequestHandle[OutputT]:
        response = await self._send("submit", self._core.submit(endpoint_id, payload, options))
        return AsyncRequestHandle(self, self._core.handle_from_submit(endpoint_id, response.json()), output)

    def get_handle(self, endpoint_id: str, request_id: str, *, output: type[OutputT]) -> AsyncRequestHandle[OutputT]:
        return AsyncRequestHandle(self, self._core.handle_for(endpoint_id, request_id), output)

    async def status(self, handle: HandleData, *, logs: bool = False) -> Status:
        return parse_status((await self._send("status", self._core.status(handle, logs=logs))).json())

    async def result(self, handle: HandleData, output: type[OutputT] | None = None) -> Any:
        response = await self._send("result", self._core.result(handle), ok_error=True)
        if not response.is_success:
            raise self._core.error_for(response, completed_with_error=True)
        return _output(output, response.json())

    async def cancel(self, handle: HandleData) -> str:
        return str((await self._send("cancel", self._core.cancel(handle), ok_error=True)).json().get("status", "NOT_FOUND"))

    async def iter_status(self, handle: HandleData, *, logs: bool = False, poll_interval: float | None = None) -> AsyncIterator[Status]:
        spec = self._core.status_stream(handle, logs=logs)
        try:
            async with aconnect_sse(self.http, spec.method, spec.url, headers=self._headers(spec), params=spec.params) as source:
                if source.response.is_success:
                    async for event in source.aiter_sse():
                        if not event.data:
                            continue
                        status = parse_status(event.json())
                        yield status
                        if isinstance(status, Completed):
                            return
        except (httpx.TransportError, ValueError):
            pass
        while True:
            status = await self.status(handle, logs=logs)
            yield status
            if isinstance(status, Completed):
                return
            await asyncio.sleep(poll_interval or self._poll_interval)

    async def subscribe(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        callbacks = _Callbacks(options)
        handle = await self.submit(endpoint_id, payload, output=output, **callbacks.submit_options)
        callbacks.enqueued(handle.request_id)
        deadline = callbacks.deadline()
        async for status in self.iter_status(handle.data, logs=callbacks.with_logs, poll_interval=callbacks.poll_interval):
            callbacks.update(status)
            if deadline is not None and time.monotonic() > deadline and not isinstance(status, Completed):
                await self.cancel(handle.data)
                raise errors.TimeoutError(f"client_timeout expired; request {handle.request_id} cancelled")
        return await self.result(handle.data, output)  # type: ignore[no-any-return]

    async def run(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        response = await self._send("run", self._core.run(endpoint_id, payload, options))
        return output.model_validate(response.json())

    async def stream(self, endpoint_id: str, payload: dict[str, Any], **options: Any) -> AsyncIterator[dict[str, Any]]:
        spec = self._core.stream(endpoint_id, payload, options)
        async with aconnect_sse(self.http, spec.method, spec.url, headers=self._headers(spec), json=spec.json) as source:
            if not source.response.is_success:
                await source.response.aread()
                raise self._core.error_for(source.response)
            async for event in source.aiter_sse():
                if event.data:
                    yield event.json()


class _Callbacks:
    """Subscribe's options that are not submit options: callbacks, logs and the client-side deadline."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.on_enqueue: Callable[[str], object] | None = options.pop("on_enqueue", None)
        self.on_queue_update: Callable[[Status], object] | None = options.pop("on_queue_update", None)
        self.with_logs = bool(options.pop("with_logs", False))
        self.client_timeout: float | None = options.pop("client_timeout", None)
        self.poll_interval: float | None = options.pop("poll_interval", None)
        self.submit_options = options
        self._logs = LogWindow()

    def enqueued(self, request_id: str) -> None:
        if self.on_enqueue is not None:
            self.on_enqueue(request_id)

    def deadline(self) -> float | None:
        return None if self.client_timeout is None else time.monotonic() + self.client_timeout

    def update(self, status: Status) -> None:
        if self.on_queue_update is None:
            return
        if isinstance(status, (InProgress, Completed)):
            status = dataclasses.replace(status, logs=self._logs.new(status.logs))
        self.on_queue_update(status)


_default: Client | None = None
_default_async: dict[int, AsyncClient] = {}


def default_client() -> Client:
    """The process-wide client configured from the environment (credentials are read at the first request)."""
    global _default
    if _default is None:
        _default = Client()
    return _default


def default_async_client() -> AsyncClient:
    """One default async client per running event loop (an httpx.AsyncClient cannot cross loops)."""
    loop = id(asyncio.get_running_loop()) if _running_loop() else 0
    if loop not in _default_async:
        _default_async[loop] = AsyncClient()
    return _default_async[loop]


def _running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
