"""The runtime behind the generated clients: fal's queue protocol over httpx, sync and async.

`import fal_runtime` is cheap: the HTTP stack (httpx and the clients) loads on first use of a name that needs it,
so importing a generated endpoint module does not pay for httpx until the first request.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fal_runtime import errors
from fal_runtime._endpoint import Endpoint
from fal_runtime._options import OPTION_NAMES, RunOptions, StreamOptions, SubmitOptions, SubscribeOptions
from fal_runtime.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ClientTimeoutError,
    FalError,
    HTTPError,
    MissingCredentialsError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    RequestFailedError,
    ServerError,
    StartTimeoutError,
    TransportError,
    UnprocessableEntityError,
)

if TYPE_CHECKING:
    from fal_runtime._client import AsyncClient, Client
    from fal_runtime._core import RetryPolicy
    from fal_runtime._handles import AsyncRequestHandle, RequestHandle
    from fal_runtime._status import CancelOutcome, Completed, InProgress, LogEntry, Queued, Status
    from fal_runtime.platform import (
        ModelEntry,
        ModelMetadata,
        ModelsPage,
        iter_models,
        iter_models_async,
        search_models,
        search_models_async,
    )

# Names whose modules import httpx, or are only needed once a request is made: loaded on first access.
_LAZY = {
    "Client": "fal_runtime._client",
    "AsyncClient": "fal_runtime._client",
    "RetryPolicy": "fal_runtime._core",
    "RequestHandle": "fal_runtime._handles",
    "AsyncRequestHandle": "fal_runtime._handles",
    **dict.fromkeys(("CancelOutcome", "Completed", "InProgress", "LogEntry", "Queued", "Status"), "fal_runtime._status"),
    **dict.fromkeys(
        (
            "ModelEntry",
            "ModelMetadata",
            "ModelsPage",
            "iter_models",
            "iter_models_async",
            "search_models",
            "search_models_async",
        ),
        "fal_runtime.platform",
    ),
}

__all__ = [
    "OPTION_NAMES",
    "APIConnectionError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncRequestHandle",
    "AuthenticationError",
    "CancelOutcome",
    "Client",
    "ClientTimeoutError",
    "Completed",
    "Endpoint",
    "FalError",
    "HTTPError",
    "InProgress",
    "LogEntry",
    "MissingCredentialsError",
    "ModelEntry",
    "ModelMetadata",
    "ModelsPage",
    "NotFoundError",
    "ProtocolError",
    "Queued",
    "RateLimitError",
    "RequestFailedError",
    "RequestHandle",
    "RetryPolicy",
    "RunOptions",
    "ServerError",
    "StartTimeoutError",
    "Status",
    "StreamOptions",
    "SubmitOptions",
    "SubscribeOptions",
    "TransportError",
    "UnprocessableEntityError",
    "errors",
    "iter_models",
    "iter_models_async",
    "search_models",
    "search_models_async",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fal_runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
