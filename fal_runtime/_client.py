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
from typing import TYPE_CHECKING, Self, Unpack

import httpx

from fal_runtime._core import RetryPolicy
from fal_runtime._options import ObjectLifetime
from fal_runtime._queue import AsyncQueue, SyncQueue
from fal_runtime._uploads import AsyncUploads, SyncUploads

if TYPE_CHECKING:
    from fal_runtime.realtime import AsyncRealtimeConnection, RealtimeConnection, RealtimeOptions

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
        object_lifetime: ObjectLifetime | None = None,
        backup_hosts: bool = True,
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
                (5 retries, exponential backoff with jitter, 120 s in all; a refused connection 2 retries, so it is
                reported within about 2 s; a certificate that fails verification none). `RetryPolicy(max_retries=0)`
                disables retries. Submit, run and stream are retried only when fal provably started no work.
            poll_interval: Seconds between status polls; default 0.5. Used only when the status stream is
                unavailable.
            verify: TLS verification, as httpx takes it: True (the system's CA bundle, default, or the file
                `SSL_CERT_FILE` names), a CA file path, an `ssl.SSLContext`, or False to disable verification. A CA
                file that does not exist is a `ConfigurationError` naming it, raised here, before any request.
            inline_max_bytes: File inputs that are not URLs (paths, bytes, file objects, PIL images) of at most this
                many bytes are sent inline as data URIs; larger ones are uploaded to fal's storage. Default 0:
                always upload.
            upload_concurrency: Parts of one multipart upload (files above 100 MiB) sent at once; default 4.
            max_connections: Size of the connection pool; default 100. Threads beyond it wait for a connection.
            http_client: An `httpx.Client` to use instead of the client's own (proxies, tests). `verify` and
                `max_connections` do not apply to it (its own settings do); the timeouts do. `close()` closes it.
            object_lifetime: How long fal keeps files, by default: uploads (`upload`, file inputs) and the outputs of
                `submit`, `subscribe` and `run`. Seconds (> 0) or "immediate" (60 s), "1h", "1d", "7d", "30d",
                "1y", "never" (fal's own retention). Default None: nothing is sent and fal's retention applies. A
                call's own `object_lifetime` wins. Checked here: ValueError/TypeError for anything else.
            backup_hosts: Default True, as fal-client 1.0.3 always does: when a connection to `fal.run`
                or `queue.fal.run` cannot be established (nothing was sent), the same request goes once to
                `falrun.com` / `queue.falrun.com`, fal's backup domain, before the usual retry rules apply, and
                connecting to either is capped at 5 s. Only those two exact hosts: a configured host (`queue_host`,
                `FAL_QUEUE_RUN_HOST`, ...) never falls back, and the key goes to no other host.
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
            object_lifetime=object_lifetime,
            backup_hosts=backup_hosts,
        )
        self._init_pool(http_client, max_connections)
        self._init_uploads(inline_max_bytes, upload_concurrency)

    def realtime(self, endpoint_id: str, **options: Unpack[RealtimeOptions]) -> RealtimeConnection:
        """A connection to a realtime app over fal's WebSocket protocol (see `fal_runtime.realtime`), opened by
        `with` (or the first `send`). The key only buys a short-lived token from the REST host; the socket's URL
        carries that token, never the key.

        Options:
            path: The app's WebSocket route; default `/realtime` (not added when `endpoint_id` ends with it).
            max_buffering: How many inputs fal may queue for the app (1 to 60); default: the app's own setting.
            token_expiration: Seconds the token stays valid; default 120. A reconnect always fetches a new one.
            open_timeout: Seconds each handshake may take; default 90, as fal-client (a cold app starts first).
            recv_timeout: Seconds each `recv` waits for an answer; default: this client's `timeout`; `float("inf")`
                waits for ever.
            max_message_bytes: The largest answer accepted; default 64 MiB; None: no limit.
        """
        from fal_runtime.realtime import RealtimeConnection

        return RealtimeConnection(self, endpoint_id, **options)

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
        object_lifetime: ObjectLifetime | None = None,
        backup_hosts: bool = True,
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
                (5 retries, exponential backoff with jitter, 120 s in all; a refused connection 2 retries, so it is
                reported within about 2 s; a certificate that fails verification none). `RetryPolicy(max_retries=0)`
                disables retries. Submit, run and stream are retried only when fal provably started no work.
            poll_interval: Seconds between status polls; default 0.5. Used only when the status stream is
                unavailable.
            verify: TLS verification, as httpx takes it: True (the system's CA bundle, default, or the file
                `SSL_CERT_FILE` names), a CA file path, an `ssl.SSLContext`, or False to disable verification. A CA
                file that does not exist is a `ConfigurationError` naming it, raised here, before any request.
            inline_max_bytes: File inputs that are not URLs (paths, bytes, file objects, PIL images) of at most this
                many bytes are sent inline as data URIs; larger ones are uploaded to fal's storage. Default 0:
                always upload.
            upload_concurrency: Parts of one multipart upload (files above 100 MiB) sent at once; default 4.
            max_connections: Requests in flight at once; default 100. A status stream holds its connection while it
                waits; requests beyond the limit wait for a free one.
            http_client: An `httpx.AsyncClient` to use instead of the client's own pools (proxies, tests).
                `verify` does not apply to it (its own setting does); the timeouts and `max_connections` do.
                `aclose()` closes it.
            object_lifetime: How long fal keeps files, by default: uploads (`upload`, file inputs) and the outputs of
                `submit`, `subscribe` and `run`. Seconds (> 0) or "immediate" (60 s), "1h", "1d", "7d", "30d",
                "1y", "never" (fal's own retention). Default None: nothing is sent and fal's retention applies. A
                call's own `object_lifetime` wins. Checked here: ValueError/TypeError for anything else.
            backup_hosts: Default True, as fal-client 1.0.3 always does: when a connection to `fal.run`
                or `queue.fal.run` cannot be established (nothing was sent), the same request goes once to
                `falrun.com` / `queue.falrun.com`, fal's backup domain, before the usual retry rules apply, and
                connecting to either is capped at 5 s. Only those two exact hosts: a configured host (`queue_host`,
                `FAL_QUEUE_RUN_HOST`, ...) never falls back, and the key goes to no other host.
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
            object_lifetime=object_lifetime,
            backup_hosts=backup_hosts,
        )
        self._init_pool(http_client, max_connections)
        self._init_uploads(inline_max_bytes, upload_concurrency)

    def realtime(self, endpoint_id: str, **options: Unpack[RealtimeOptions]) -> AsyncRealtimeConnection:
        """`Client.realtime` for asyncio: use the connection with `async with` (or open it by the first `send`)."""
        from fal_runtime.realtime import AsyncRealtimeConnection

        return AsyncRealtimeConnection(self, endpoint_id, **options)

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
