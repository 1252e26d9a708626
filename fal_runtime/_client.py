"""`Client` and `AsyncClient`, and the process's default clients.

A client is assembled from three layers, each in its own module: `_transport` (the httpx pool and the send and
stream loops with retries), `_queue` (submit, status, result, cancel, watch, subscribe, run, stream) and `_uploads`
(data URIs, the CDN token, multipart). What a reply means is decided in `_core`, which does no I/O; the sync and
async classes of each layer differ only in `await`. This module holds the constructors and the public surface.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from typing import Self

import httpx

from fal_runtime._core import RetryPolicy
from fal_runtime._queue import AsyncQueue, SyncQueue
from fal_runtime._uploads import AsyncUploads, SyncUploads

__all__ = ["AsyncClient", "Client", "default_async_client", "default_client"]


class Client(SyncQueue, SyncUploads):
    """A synchronous fal client. Thread-safe; reuse one per process (it keeps a connection pool)."""

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
        verify: ssl.SSLContext | str | bool = True,
        inline_max_bytes: int = 0,
        upload_concurrency: int = 4,
        max_connections: int = 100,
        http_client: httpx.Client | None = None,
    ) -> None:
        """Configure a client: hosts are resolved now, the key at the first request; nothing is sent before it.

        Args:
            key: The fal API key. Defaults to the `FAL_KEY` environment variable, else `FAL_KEY_ID:FAL_KEY_SECRET`,
                read at the first request (so the environment may be set after construction). It is never shown
                in a repr, a log line or an error message.
            queue_host: The queue host (`host`, `host:port` or a URL). Defaults to `FAL_QUEUE_RUN_HOST`, else
                `queue.fal.run`.
            run_host: The synchronous run host used by `run` and `stream`. Defaults to `FAL_RUN_HOST`, else
                `fal.run`.
            rest_host: The REST host that issues CDN upload tokens. Defaults to
                `FAL_REST_HOST`, else `rest.fal.ai`.
            timeout: Seconds each read (and write) may wait; default 120. A status stream sends a keep-alive every
                15 s, so a long wait does not trip it.
            connect_timeout: Seconds each connection attempt may take; default 10.
            retry: How transient failures (transport errors, 408, 429, 5xx) are retried; default `RetryPolicy()`
                (5 retries, exponential backoff with jitter, 120 s in all). `RetryPolicy(max_retries=0)` disables
                retries. Submit, run and stream are retried only when fal provably started no work.
            poll_interval: Seconds between status polls; default 0.5. Used only when the status stream is
                unavailable.
            verify: TLS verification, as httpx takes it: True (the system's CA bundle, default), a CA file path, an
                `ssl.SSLContext`, or False to disable verification.
            inline_max_bytes: File inputs that are not URLs (paths, bytes, file objects, PIL images) of at most this
                many bytes are sent inline as data URIs; larger ones are uploaded to fal's storage. Default 0:
                always upload.
            upload_concurrency: Parts of one multipart upload (files above 100 MiB) sent at once; default 4.
            max_connections: Size of the connection pool; default 100. Threads beyond it wait for a connection.
            http_client: An `httpx.Client` to use instead of the client's own (proxies, tests). `verify` and
                `max_connections` do not apply to it (its own settings do); the timeouts do. `close()` closes it.
        """
        super().__init__(
            key,
            queue_host=queue_host,
            run_host=run_host,
            rest_host=rest_host,
            retry=retry,
            timeout=timeout,
            connect_timeout=connect_timeout,
            poll_interval=poll_interval,
            verify=verify,
        )
        self._init_pool(http_client, max_connections)
        self._init_uploads(inline_max_bytes, upload_concurrency)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(AsyncQueue, AsyncUploads):
    """An asyncio fal client; reuse one per event loop (it keeps a connection pool bound to that loop)."""

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
        verify: ssl.SSLContext | str | bool = True,
        inline_max_bytes: int = 0,
        upload_concurrency: int = 4,
        max_connections: int = 100,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        """Configure a client: hosts are resolved now, the key at the first request; nothing is sent before it.

        Args:
            key: The fal API key. Defaults to the `FAL_KEY` environment variable, else `FAL_KEY_ID:FAL_KEY_SECRET`,
                read at the first request (so the environment may be set after construction). It is never shown
                in a repr, a log line or an error message.
            queue_host: The queue host (`host`, `host:port` or a URL). Defaults to `FAL_QUEUE_RUN_HOST`, else
                `queue.fal.run`.
            run_host: The synchronous run host used by `run` and `stream`. Defaults to `FAL_RUN_HOST`, else
                `fal.run`.
            rest_host: The REST host that issues CDN upload tokens. Defaults to
                `FAL_REST_HOST`, else `rest.fal.ai`.
            timeout: Seconds each read (and write) may wait; default 120. A status stream sends a keep-alive every
                15 s, so a long wait does not trip it.
            connect_timeout: Seconds each connection attempt may take; default 10.
            retry: How transient failures (transport errors, 408, 429, 5xx) are retried; default `RetryPolicy()`
                (5 retries, exponential backoff with jitter, 120 s in all). `RetryPolicy(max_retries=0)` disables
                retries. Submit, run and stream are retried only when fal provably started no work.
            poll_interval: Seconds between status polls; default 0.5. Used only when the status stream is
                unavailable.
            verify: TLS verification, as httpx takes it: True (the system's CA bundle, default), a CA file path, an
                `ssl.SSLContext`, or False to disable verification.
            inline_max_bytes: File inputs that are not URLs (paths, bytes, file objects, PIL images) of at most this
                many bytes are sent inline as data URIs; larger ones are uploaded to fal's storage. Default 0:
                always upload.
            upload_concurrency: Parts of one multipart upload (files above 100 MiB) sent at once; default 4.
            max_connections: Requests in flight at once; default 100. A status stream holds its connection while it
                waits; requests beyond the limit wait for a free one.
            http_client: An `httpx.AsyncClient` to use instead of the client's own pools (proxies, tests).
                `verify` does not apply to it (its own setting does); the timeouts and `max_connections` do.
                `aclose()` closes it.
        """
        super().__init__(
            key,
            queue_host=queue_host,
            run_host=run_host,
            rest_host=rest_host,
            retry=retry,
            timeout=timeout,
            connect_timeout=connect_timeout,
            poll_interval=poll_interval,
            verify=verify,
        )
        self._init_pool(http_client, max_connections)
        self._init_uploads(inline_max_bytes, upload_concurrency)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


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
