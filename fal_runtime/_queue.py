"""Queue operations: submit, status, result, cancel, watch and subscribe on queue.fal.run; run and stream on fal.run.

Each builds its request with `Core`, sends it through the client's transport, and lets `Core` read the reply; waiting
for completion asks `Waiter` (in `_wait`) what a status line or a poll means. `SyncQueue` and `AsyncQueue` are the same
operations, once blocking and once with `await`: a client holds one (its collaborator, not a base class) and so does
every handle it returns, which calls `status`, `watch`, `wait_result` and `cancel` here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel

from fal_runtime import errors
from fal_runtime._core import Core, HandleData
from fal_runtime._handles import AsyncRequestHandle, RequestHandle
from fal_runtime._sse import SSEDecoder
from fal_runtime._status import CancelOutcome, Completed, Status
from fal_runtime._transport import AsyncTransport, SyncTransport, reply_head
from fal_runtime._wait import DeadlineExpired, Subscription, Waiter

OutputT = TypeVar("OutputT", bound=BaseModel)
logger = logging.getLogger("fal_runtime")

# The status stream failing in any of these ways means: poll instead.
_STREAM_FALLBACK = (errors.TransportError, errors.HTTPError, errors.ProtocolError)


class SyncQueue:
    """The endpoint operations of `Client` (called by `Endpoint`) and of its handles (called by `RequestHandle`)."""

    def __init__(self, core: Core, transport: SyncTransport, poll_interval: float) -> None:
        self._core = core
        self._transport = transport
        self.poll_interval = poll_interval  # the client's default seconds between status polls

    # Operations on a submitted request.

    def status(self, handle: HandleData, *, logs: bool = False, remaining: float | None = None) -> Status:
        """The request's status, once; `remaining`: the caller's deadline, which shortens the timeouts."""
        spec = self._core.status(handle, logs=logs)
        return self._core.parsed_status(self._transport.send("status", spec, remaining=remaining))

    def result(
        self, handle: HandleData, output: type[OutputT], *, failed: bool = False
    ) -> tuple[OutputT, float | None]:
        """The output of a completed request, and the billable units fal sent with it (None: none sent)."""
        reply = self._transport.send("failed_result" if failed else "result", self._core.result(handle))
        return output.model_validate(self._core.output_of(reply)), self._core.billable_units(reply)

    def cancel(self, handle: HandleData) -> CancelOutcome:
        """Ask fal to cancel: "requested", "already_completed" or "not_found"."""
        return self._core.cancel_outcome(self._transport.send("cancel", self._core.cancel(handle)))

    def watch(self, handle: HandleData, waiter: Waiter) -> Iterator[Status]:
        """Status changes until COMPLETED: from the status stream, or by polling once it proves unavailable."""
        spec = self._core.status_stream(handle, logs=waiter.logs)
        try:
            with self._transport.open_stream(None, spec, remaining=waiter.remaining()) as response:
                if not waiter.stream_usable(reply_head(response)):
                    raise errors.ProtocolError("status stream is not an event stream")
                lines = self._transport.lines(response, waiter.check)
                for line in lines:
                    status = waiter.on_line(self._core.redact(line))  # logs and errors quote the runner
                    if status is not None:
                        yield status
                        if isinstance(status, Completed):
                            self._transport.drain(lines)
                            return
        except _STREAM_FALLBACK as exc:
            logger.debug("fal status stream unavailable (%s); polling", type(exc).__name__)
        while True:
            waiter.check()
            status = waiter.seen(self.status(handle, logs=waiter.logs, remaining=waiter.remaining()))
            yield status
            if isinstance(status, Completed):
                return
            time.sleep(waiter.poll_wait())

    def wait_result(self, handle: HandleData, output: type[OutputT], waiter: Waiter) -> tuple[OutputT, float | None]:
        """Wait for completion (`watch`), then `result`."""
        status: Status | None = None
        for status in self.watch(handle, waiter):  # noqa: B007 - only the last status matters
            pass
        failed = isinstance(status, Completed) and status.error is not None
        return self.result(handle, output, failed=failed)

    # Endpoint operations.

    def submit(
        self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any
    ) -> RequestHandle[OutputT]:
        """Queue a request; the handle reads its status, result, or cancels it. Retried only when provably unsent."""
        spec = self._core.submit(endpoint_id, payload, options)
        return RequestHandle(self, self._core.submitted(endpoint_id, self._transport.send("submit", spec)), output)

    def get_handle(self, endpoint_id: str, request_id: str, *, output: type[OutputT]) -> RequestHandle[OutputT]:
        """The handle of a request submitted earlier, from its endpoint id and request id alone."""
        return RequestHandle(self, self._core.handle_for(endpoint_id, request_id), output)

    def subscribe(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        """Submit, wait for completion (status stream, else polling), return the result; see `SubscribeOptions`."""
        sub = Subscription(options, default_poll_interval=self.poll_interval)
        spec = self._core.submit(endpoint_id, payload, sub.submit_options)
        reply = self._transport.send("submit", spec, remaining=sub.waiter.remaining())
        handle = self._core.submitted(endpoint_id, reply)
        sub.enqueued(handle.request_id)
        try:
            return self.wait_result(handle, output, sub.waiter)[0]
        except DeadlineExpired:
            raise sub.timeout_error(handle.request_id, cancelled=self._cancel_quietly(handle)) from None

    def _cancel_quietly(self, handle: HandleData) -> bool:
        try:
            return self.cancel(handle) != "not_found"
        except errors.FalError:
            return False

    def run(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        """One round trip to fal.run: no queue, no status, no server-side retries."""
        reply = self._transport.send("run", self._core.run(endpoint_id, payload, options))
        return output.model_validate(self._core.output_of(reply))

    def stream(self, endpoint_id: str, payload: dict[str, Any], **options: Any) -> Iterator[dict[str, Any]]:
        """The events of a streaming endpoint, each a JSON object (the model's partial output)."""
        spec = self._core.stream(endpoint_id, payload, options)
        with self._transport.open_stream("stream", spec) as response:
            decoder = SSEDecoder()
            for line in self._transport.lines(response):
                data = decoder.feed(line)
                if data is not None:
                    yield self._core.stream_event(data)
            data = decoder.flush()
            if data is not None:
                yield self._core.stream_event(data)


class AsyncQueue:
    """The endpoint operations of `AsyncClient` and of its handles; see `SyncQueue`."""

    def __init__(self, core: Core, transport: AsyncTransport, poll_interval: float) -> None:
        self._core = core
        self._transport = transport
        self.poll_interval = poll_interval

    # Operations on a submitted request.

    async def status(self, handle: HandleData, *, logs: bool = False, remaining: float | None = None) -> Status:
        """The request's status, once; `remaining`: the caller's deadline, which shortens the timeouts."""
        spec = self._core.status(handle, logs=logs)
        return self._core.parsed_status(await self._transport.send("status", spec, remaining=remaining))

    async def result(
        self, handle: HandleData, output: type[OutputT], *, failed: bool = False
    ) -> tuple[OutputT, float | None]:
        """The output of a completed request, and the billable units fal sent with it (None: none sent)."""
        reply = await self._transport.send("failed_result" if failed else "result", self._core.result(handle))
        return output.model_validate(self._core.output_of(reply)), self._core.billable_units(reply)

    async def cancel(self, handle: HandleData) -> CancelOutcome:
        """Ask fal to cancel: "requested", "already_completed" or "not_found"."""
        return self._core.cancel_outcome(await self._transport.send("cancel", self._core.cancel(handle)))

    async def watch(self, handle: HandleData, waiter: Waiter) -> AsyncIterator[Status]:
        """Status changes until COMPLETED: from the status stream, or by polling once it proves unavailable."""
        spec = self._core.status_stream(handle, logs=waiter.logs)
        try:
            async with self._transport.open_stream(None, spec, remaining=waiter.remaining()) as response:
                if not waiter.stream_usable(reply_head(response)):
                    raise errors.ProtocolError("status stream is not an event stream")
                lines = self._transport.lines(response, waiter.check)
                async for line in lines:
                    status = waiter.on_line(self._core.redact(line))  # logs and errors quote the runner
                    if status is not None:
                        yield status
                        if isinstance(status, Completed):
                            await self._transport.drain(lines)
                            return
        except _STREAM_FALLBACK as exc:
            logger.debug("fal status stream unavailable (%s); polling", type(exc).__name__)
        while True:
            waiter.check()
            status = waiter.seen(await self.status(handle, logs=waiter.logs, remaining=waiter.remaining()))
            yield status
            if isinstance(status, Completed):
                return
            await asyncio.sleep(waiter.poll_wait())

    async def wait_result(
        self, handle: HandleData, output: type[OutputT], waiter: Waiter
    ) -> tuple[OutputT, float | None]:
        """Wait for completion (`watch`), then `result`."""
        status: Status | None = None
        async for status in self.watch(handle, waiter):  # noqa: B007 - only the last status matters
            pass
        failed = isinstance(status, Completed) and status.error is not None
        return await self.result(handle, output, failed=failed)

    # Endpoint operations.

    async def submit(
        self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any
    ) -> AsyncRequestHandle[OutputT]:
        spec = self._core.submit(endpoint_id, payload, options)
        return AsyncRequestHandle(
            self, self._core.submitted(endpoint_id, await self._transport.send("submit", spec)), output
        )

    def get_handle(self, endpoint_id: str, request_id: str, *, output: type[OutputT]) -> AsyncRequestHandle[OutputT]:
        """The handle of a request submitted earlier, from its endpoint id and request id alone."""
        return AsyncRequestHandle(self, self._core.handle_for(endpoint_id, request_id), output)

    async def subscribe(
        self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any
    ) -> OutputT:
        sub = Subscription(options, default_poll_interval=self.poll_interval)
        spec = self._core.submit(endpoint_id, payload, sub.submit_options)
        reply = await self._transport.send("submit", spec, remaining=sub.waiter.remaining())
        handle = self._core.submitted(endpoint_id, reply)
        sub.enqueued(handle.request_id)
        try:
            return (await self.wait_result(handle, output, sub.waiter))[0]
        except DeadlineExpired:
            raise sub.timeout_error(handle.request_id, cancelled=await self._cancel_quietly(handle)) from None

    async def _cancel_quietly(self, handle: HandleData) -> bool:
        try:
            return await self.cancel(handle) != "not_found"
        except errors.FalError:
            return False

    async def run(self, endpoint_id: str, payload: dict[str, Any], *, output: type[OutputT], **options: Any) -> OutputT:
        reply = await self._transport.send("run", self._core.run(endpoint_id, payload, options))
        return output.model_validate(self._core.output_of(reply))

    async def stream(self, endpoint_id: str, payload: dict[str, Any], **options: Any) -> AsyncIterator[dict[str, Any]]:
        spec = self._core.stream(endpoint_id, payload, options)
        async with self._transport.open_stream("stream", spec) as response:
            decoder = SSEDecoder()
            async for line in self._transport.lines(response):
                data = decoder.feed(line)
                if data is not None:
                    yield self._core.stream_event(data)
            data = decoder.flush()
            if data is not None:
                yield self._core.stream_event(data)
