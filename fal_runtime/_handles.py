"""Handles to submitted requests: status, result and cancel, typed by the endpoint's output model.

A handle is only an address (the URLs submit returned) plus the client's queue operations (`SyncQueue` /
`AsyncQueue`, whose documented methods it calls); `Endpoint.handle(request_id)` rebuilds one later, in another
process if need be, from the endpoint id and request id alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from fal_runtime._core import HandleData
from fal_runtime._status import CancelOutcome, Status
from fal_runtime._wait import Waiter

if TYPE_CHECKING:
    from fal_runtime._queue import AsyncQueue, SyncQueue

OutputT = TypeVar("OutputT", bound=BaseModel)


class _HandleBase(Generic[OutputT]):
    def __init__(self, data: HandleData, output: type[OutputT], poll_interval: float) -> None:
        self.data = data
        self.output = output
        self._poll_interval = poll_interval
        self._billable_units: float | None = None

    @property
    def billable_units(self) -> float | None:
        """What fal bills for this request, in the endpoint's billing unit (`x-fal-billable-units` on its result):
        None until `result()` has fetched the result, and None when fal sent no such header."""
        return self._billable_units

    @property
    def endpoint_id(self) -> str:
        return self.data.endpoint_id

    @property
    def request_id(self) -> str:
        return self.data.request_id

    @property
    def status_url(self) -> str:
        return self.data.status_url

    @property
    def response_url(self) -> str:
        return self.data.response_url

    @property
    def cancel_url(self) -> str:
        return self.data.cancel_url

    def _waiter(self, logs: bool) -> Waiter:
        return Waiter(logs=logs, poll_interval=self._poll_interval)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint_id!r}, request_id={self.request_id!r})"


class RequestHandle(_HandleBase[OutputT]):
    def __init__(self, queue: SyncQueue, data: HandleData, output: type[OutputT]) -> None:
        super().__init__(data, output, queue.poll_interval)
        self._queue = queue

    def status(self, *, logs: bool = False) -> Status:
        """The current status, once (logs as fal reports them: a window of recent lines)."""
        return self._queue.status(self.data, logs=logs)

    def iter_status(self, *, logs: bool = False) -> Iterator[Status]:
        """Each status until COMPLETED, each carrying only log lines not seen before; no call after COMPLETED."""
        return self._queue.watch(self.data, self._waiter(logs))

    def result(self) -> OutputT:
        """The output, waiting for completion first; raises the request's own error if it completed with one.
        Sets `billable_units`."""
        output, self._billable_units = self._queue.wait_result(self.data, self.output, self._waiter(False))
        return output

    def cancel(self) -> CancelOutcome:
        """Ask fal to cancel: "requested", "already_completed" (the result stands) or "not_found"."""
        return self._queue.cancel(self.data)


class AsyncRequestHandle(_HandleBase[OutputT]):
    def __init__(self, queue: AsyncQueue, data: HandleData, output: type[OutputT]) -> None:
        super().__init__(data, output, queue.poll_interval)
        self._queue = queue

    async def status(self, *, logs: bool = False) -> Status:
        """The current status, once (logs as fal reports them: a window of recent lines)."""
        return await self._queue.status(self.data, logs=logs)

    def iter_status(self, *, logs: bool = False) -> AsyncIterator[Status]:
        """Each status until COMPLETED, each carrying only log lines not seen before; no call after COMPLETED."""
        return self._queue.watch(self.data, self._waiter(logs))

    async def result(self) -> OutputT:
        """The output, waiting for completion first; raises the request's own error if it completed with one.
        Sets `billable_units`."""
        output, self._billable_units = await self._queue.wait_result(self.data, self.output, self._waiter(False))
        return output

    async def cancel(self) -> CancelOutcome:
        """Ask fal to cancel: "requested", "already_completed" (the result stands) or "not_found"."""
        return await self._queue.cancel(self.data)
