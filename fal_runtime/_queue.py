"""Queue operations: submit, status, result, cancel, watch and subscribe on queue.fal.run; run and stream on fal.run.

Each builds its request with `Core`, sends it through the transport, and lets `Core` read the reply; waiting for
completion asks `Waiter` (in `_wait`) what a status line or a poll means. `SyncQueue` and `AsyncQueue` are the same
operations, once blocking and once with `await`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel

from fal_runtime import errors
from fal_runtime._core import HandleData
from fal_runtime._handles import AsyncRequestHandle, RequestHandle
from fal_runtime._sse import SSEDecoder
from fal_runtime._status import CancelOutcome, Completed, Status
from fal_runtime._transport import AsyncTransport, SyncTransport, reply_head
from fal_runtime._wait import DeadlineExpired, Subscription, Waiter

OutputT = TypeVar("OutputT", bound=BaseModel)
logger = logging.getLogger("fal_runtime")

# The status stream failing in any of these ways means: poll instead.
_STREAM_FALLBACK = (errors.TransportError, errors.HTTPError, errors.ProtocolError)


class SyncQueue(SyncTransport):
    """The endpoint operations of `Client` (called by `Endpoint`) and of its handles (called by `RequestHandle`)."""

    # Operations on a submitted request.

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
                if not waiter.stream_usable(reply_head(response)):
                    raise errors.ProtocolError("status stream is not an event stream")
                lines = self._lines(response, waiter.check)
                for line in lines:
                    status = waiter.on_line(self._core.redact(line))  # logs and errors quote the runner
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
        for status in self._watch(handle, waiter):  # noqa: B007 - only the last status matters
            pass
        failed = isinstance(status, Completed) and status.error is not None
        return self._result(handle, output, failed=failed)

    # Endpoint operations.

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


class AsyncQueue(AsyncTransport):
    """The endpoint operations of `AsyncClient` and of its handles; see `SyncQueue`."""

    # Operations on a submitted request.

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
                if not waiter.stream_usable(reply_head(response)):
                    raise errors.ProtocolError("status stream is not an event stream")
                lines = self._lines(response, waiter.check)
                async for line in lines:
                    status = waiter.on_line(self._core.redact(line))  # logs and errors quote the runner
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
        async for status in self._watch(handle, waiter):  # noqa: B007 - only the last status matters
            pass
        failed = isinstance(status, Completed) and status.error is not None
        return await self._result(handle, output, failed=failed)

    # Endpoint operations.

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
