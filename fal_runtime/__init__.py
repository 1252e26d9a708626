"""The runtime behind the generated clients: fal's queue protocol over httpx, sync and async.

`import fal_runtime` is cheap: the HTTP stack (httpx and the clients) loads on first use of a name that needs it,
so importing a generated endpoint module does not pay for httpx until the first request, and `Endpoint` (pydantic)
loads when a generated module asks for it, so tools reading `fal_runtime.queue_document` pay for neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fal_runtime import errors
from fal_runtime._options import (
    OPTION_NAMES,
    ObjectLifetime,
    RunOptions,
    StreamOptions,
    SubmitOptions,
    SubscribeOptions,
)
from fal_runtime.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ClientTimeoutError,
    ConfigurationError,
    DownloadError,
    FalError,
    HTTPError,
    MissingCredentialsError,
    NotFoundError,
    OutputExistsError,
    ProtocolError,
    RateLimitError,
    RealtimeConnectionClosed,
    RealtimeError,
    RequestFailedError,
    ServerError,
    StartTimeoutError,
    TransportError,
    UnknownEndpointError,
    UnprocessableEntityError,
    WebhookVerificationError,
)

if TYPE_CHECKING:
    from fal_runtime._client import AsyncClient, Client
    from fal_runtime._core import ApiReply, RetryPolicy
    from fal_runtime._endpoint import Endpoint
    from fal_runtime._handles import AsyncRequestHandle, RequestHandle
    from fal_runtime._status import CancelOutcome, Completed, InProgress, LogEntry, Queued, Status
    from fal_runtime.api import ApiOperation
    from fal_runtime.platform import (
        CostEstimate,
        EndpointPrice,
        ModelEntry,
        ModelMetadata,
        ModelsPage,
        PricesPage,
        estimate_cost,
        estimate_cost_async,
        get_pricing,
        get_pricing_async,
        iter_models,
        iter_models_async,
        search_models,
        search_models_async,
    )
    from fal_runtime.realtime import (
        AsyncRealtimeConnection,
        AsyncTypedRealtimeConnection,
        RealtimeConnection,
        RealtimeOptions,
        TypedRealtimeConnection,
        realtime_connect,
        realtime_connect_async,
    )

# Names whose modules import httpx, or are only needed once a request is made: loaded on first access.
_LAZY = {
    "Endpoint": "fal_runtime._endpoint",
    "Client": "fal_runtime._client",
    "AsyncClient": "fal_runtime._client",
    "RetryPolicy": "fal_runtime._core",
    "ApiReply": "fal_runtime._core",
    "ApiOperation": "fal_runtime.api",
    "RequestHandle": "fal_runtime._handles",
    "AsyncRequestHandle": "fal_runtime._handles",
    **dict.fromkeys(
        ("CancelOutcome", "Completed", "InProgress", "LogEntry", "Queued", "Status"), "fal_runtime._status"
    ),
    **dict.fromkeys(
        (
            "CostEstimate",
            "EndpointPrice",
            "PricesPage",
            "estimate_cost",
            "estimate_cost_async",
            "get_pricing",
            "get_pricing_async",
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
    # websockets and msgpack: only realtime apps need them.
    **dict.fromkeys(
        (
            "AsyncRealtimeConnection",
            "AsyncTypedRealtimeConnection",
            "RealtimeConnection",
            "RealtimeOptions",
            "TypedRealtimeConnection",
            "realtime_connect",
            "realtime_connect_async",
        ),
        "fal_runtime.realtime",
    ),
}

__all__ = [
    "OPTION_NAMES",
    "APIConnectionError",
    "APITimeoutError",
    "ApiOperation",
    "ApiReply",
    "AsyncClient",
    "AsyncRealtimeConnection",
    "AsyncRequestHandle",
    "AsyncTypedRealtimeConnection",
    "AuthenticationError",
    "CancelOutcome",
    "Client",
    "ClientTimeoutError",
    "Completed",
    "ConfigurationError",
    "CostEstimate",
    "DownloadError",
    "Endpoint",
    "EndpointPrice",
    "FalError",
    "HTTPError",
    "InProgress",
    "LogEntry",
    "MissingCredentialsError",
    "ModelEntry",
    "ModelMetadata",
    "ModelsPage",
    "NotFoundError",
    "ObjectLifetime",
    "OutputExistsError",
    "PricesPage",
    "ProtocolError",
    "Queued",
    "RateLimitError",
    "RealtimeConnection",
    "RealtimeConnectionClosed",
    "RealtimeError",
    "RealtimeOptions",
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
    "TypedRealtimeConnection",
    "UnknownEndpointError",
    "UnprocessableEntityError",
    "WebhookVerificationError",
    "errors",
    "estimate_cost",
    "estimate_cost_async",
    "get_pricing",
    "get_pricing_async",
    "iter_models",
    "iter_models_async",
    "realtime_connect",
    "realtime_connect_async",
    "search_models",
    "search_models_async",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fal_runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
