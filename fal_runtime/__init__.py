"""The runtime behind the generated clients: fal's queue protocol over httpx, sync and async.

`import fal_runtime` is cheap: the HTTP stack (httpx and the clients) loads on first use of a name that needs it,
so importing a generated endpoint module does not pay for httpx until the first request.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fal_runtime._endpoint import Endpoint
from fal_runtime._options import OPTION_NAMES, RunOptions, StreamOptions, SubmitOptions, SubscribeOptions
from fal_runtime._status import Completed, InProgress, LogEntry, Queued, Status

if TYPE_CHECKING:
    from fal_runtime import errors
    from fal_runtime._client import AsyncClient, Client
    from fal_runtime._core import RetryPolicy
    from fal_runtime._handles import AsyncRequestHandle, RequestHandle
    from fal_runtime.errors import FalError

_LAZY = {
    "Client": "fal_runtime._client",
    "AsyncClient": "fal_runtime._client",
    "RetryPolicy": "fal_runtime._core",
    "RequestHandle": "fal_runtime._handles",
    "AsyncRequestHandle": "fal_runtime._handles",
    "FalError": "fal_runtime.errors",
    "errors": "fal_runtime.errors",
}

__all__ = [
    "OPTION_NAMES", "AsyncClient", "AsyncRequestHandle", "Client", "Completed", "Endpoint", "FalError", "InProgress",
    "LogEntry", "Queued", "RequestHandle", "RetryPolicy", "RunOptions", "Status", "StreamOptions", "SubmitOptions",
    "SubscribeOptions", "errors",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fal_runtime' has no attribute {name!r}")
    value = importlib.import_module(module)
    return value if name == "errors" else getattr(value, name)
