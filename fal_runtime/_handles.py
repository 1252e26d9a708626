"""Handles to submitted requests: status, result and cancel, typed by the endpoint's output model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Generic, Literal, TypeVar, cast

from pydantic import BaseModel

from fal_runtime._core import HandleData
from fal_runtime._status import Status

if TYPE_CHECKING:
    from fal_runtime._client import AsyncClient, Client

OutputT = TypeVar("OutputT", bound=BaseModel)
CancelOutcome = Literal["CANCELLATION_REQUESTED", "ALREADY_COMPLETED", "NOT_FOUND", "OK"]


class _HandleBase(Generic[OutputT]):
    def __init__(self, data: HandleData, output: type[OutputT]) -> None:
        self.data = data
        self.output = output

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data.endpoint_id!r}, request_id={self.request_id!r})"


class RequestHandle(_HandleBase[OutputT]):
    def __init__(self, client: Client, data: HandleData, output: type[OutputT]) -> None:
        super().__init__(data, output)
        self._client = client

    def status(self, *, logs: bool = False) -> Status:
        return self._client.status(self.data, logs=logs)

    def iter_status(self, *, logs: bool = False) -> Iterator[Status]:
        """Status changes until the request completes."""
        return self._client.iter_status(self.data, logs=logs)

    def result(self) -> OutputT:
        """The output (waiting for completion first); raises the request's error if it failed."""
        for _ in self.iter_status():
            pass
        return cast(OutputT, self._client.result(self.data, self.output))

    def cancel(self) -> CancelOutcome:
        return cast(CancelOutcome, self._client.cancel(self.data))


class AsyncRequestHandle(_HandleBase[OutputT]):
    def __init__(self, client: AsyncClient, data: HandleData, output: type[OutputT]) -> None:
        super().__init__(data, output)
        self._client = client

    async def status(self, *, logs: bool = False) -> Status:
        return await self._client.status(self.data, logs=logs)

    def iter_status(self, *, logs: bool = False) -> AsyncIterator[Status]:
        return self._client.iter_status(self.data, logs=logs)

    async def result(self) -> OutputT:
        async for _ in self.iter_status():
            pass
        return cast(OutputT, await self._client.result(self.data, self.output))

    async def cancel(self) -> CancelOutcome:
        return cast(CancelOutcome, await self._client.cancel(self.data))
