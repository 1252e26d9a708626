"""Uploads: file inputs that are not URLs, inlined as data URIs or sent to fal's CDN (one request, or multipart).

`Storage` (in `_storage`) builds the CDN requests and reads their replies; this module sends them with a cached CDN
token, renewed once when the CDN rejects it, and runs a multipart upload's parts concurrently (threads in
`SyncUploads`, tasks in `AsyncUploads`, at most `upload_concurrency` at once). A client holds one of them beside its
queue, both sending through the client's one transport.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fal_runtime._core import Core, Reply, RequestSpec, lifecycle_headers, lifetime_seconds
from fal_runtime._options import ObjectLifetime
from fal_runtime._storage import MULTIPART_THRESHOLD, CdnToken, Storage, parts
from fal_runtime._transport import AsyncTransport, SyncTransport
from fal_runtime.inputs import Blob, check_url, data_uri, needs_sending, to_blob, validate

T = TypeVar("T")


class _UploadSettings:
    def __init__(self, core: Core, inline_max_bytes: int, upload_concurrency: int) -> None:
        self._core = core
        self._storage = Storage(core)
        self._inline_max_bytes = inline_max_bytes
        self._upload_concurrency = max(1, upload_concurrency)
        self._token: CdnToken | None = None

    def _inline_or_blob(self, value: Any) -> str | Blob:
        """A URL to send for a file-input value (as given, or a data URI), or the `Blob` still to upload."""
        if not needs_sending(value):
            return check_url(value)  # a str: a URL or data URI as is; a local path in a str is an error, not a URL
        blob = to_blob(validate(value))
        inline = self._inline_max_bytes > 0 and blob.size <= self._inline_max_bytes  # 0: never, even an empty file
        return data_uri(blob) if inline else blob

    def _lifecycle(self, object_lifetime: ObjectLifetime | None) -> dict[str, str]:
        """The lifecycle headers of one upload: its own `object_lifetime`, else the client's (checked first)."""
        seconds = self._core.object_lifetime if object_lifetime is None else lifetime_seconds(object_lifetime)
        return lifecycle_headers(seconds, upload=True)


def _with_headers(spec: RequestSpec, headers: dict[str, str]) -> RequestSpec:
    return dataclasses.replace(spec, headers={**spec.headers, **headers}) if headers else spec


class SyncUploads(_UploadSettings):
    """`Client.upload` and `upload_all`: parts of a multipart upload go out from a thread pool."""

    def __init__(self, core: Core, transport: SyncTransport, inline_max_bytes: int, upload_concurrency: int) -> None:
        super().__init__(core, inline_max_bytes, upload_concurrency)
        self._transport = transport
        self._token_lock = threading.Lock()

    def upload(self, value: Any, *, object_lifetime: ObjectLifetime | None = None) -> str:
        """A URL fal can read for a file-input value: a str as given (an http(s) URL or data URI; any other string is a
        ValueError naming `pathlib.Path`); a path, bytes, binary file object or PIL image
        inlined as a data URI (up to `inline_max_bytes`) or uploaded to fal's storage (multipart above 100 MiB).

        `object_lifetime`: how long fal keeps an uploaded file, in seconds or as "immediate" (60 s), "1h", "1d",
        "7d", "30d", "1y" or "never" (fal's default retention); default: the client's `object_lifetime`. Sent as
        fal-client sends it, as `X-Fal-Object-Lifecycle` and `X-Fal-Object-Lifecycle-Preference` headers of
        `{"expiration_duration_seconds": N}` on the CDN upload. Checked before anything is read or sent."""
        lifecycle = self._lifecycle(object_lifetime)
        sent = self._inline_or_blob(value)
        if isinstance(sent, str):
            return sent
        if sent.size > MULTIPART_THRESHOLD:
            return self._upload_multipart(sent, lifecycle)
        data = sent.read()
        return self._cdn(
            lambda token: _with_headers(self._storage.upload_request(token, sent, data), lifecycle),
            self._storage.uploaded,
        )

    def upload_all(self, values: list[Any], *, object_lifetime: ObjectLifetime | None = None) -> list[str]:
        """`upload` of each value, one file after another."""
        self._lifecycle(object_lifetime)
        return [self.upload(value, object_lifetime=object_lifetime) for value in values]

    def _cdn_token(self, stale: CdnToken | None = None) -> CdnToken:
        """The cached CDN token, renewed when it is near expiry or when the CDN rejected `stale`."""
        with self._token_lock:
            token = self._token
            if token is None or token is stale or not token.fresh(time.time()):
                token = self._token = self._storage.token(self._transport.send("upload", self._storage.token_request()))
            return token

    def _cdn(self, build: Callable[[CdnToken], RequestSpec], read: Callable[[Reply], T]) -> T:
        """Send a CDN request with the cached token; once more with a new token if the CDN rejects it."""
        token = self._cdn_token()
        reply = self._transport.send("upload", build(token))
        if self._storage.rejected_token(reply):
            reply = self._transport.send("upload", build(self._cdn_token(stale=token)))
        return read(reply)

    def _upload_multipart(self, blob: Blob, lifecycle: dict[str, str] | None = None) -> str:
        storage = self._storage
        access_url, upload_id = self._cdn(
            lambda t: _with_headers(storage.multipart_request(t, blob), lifecycle or {}), storage.multipart_started
        )

        def put(part: tuple[int, int, int]) -> tuple[int, str]:
            n, offset, length = part
            data = blob.read_range(offset, length)  # read in the worker: at most `upload_concurrency` parts in memory
            return n, self._cdn(
                lambda t: storage.part_request(t, blob, access_url, upload_id, n, data),
                lambda r: storage.part_etag(r, n),
            )

        with ThreadPoolExecutor(self._upload_concurrency, thread_name_prefix="fal-upload") as pool:
            etags = dict(pool.map(put, parts(blob.size)))
        return self._cdn(
            lambda t: storage.complete_request(t, access_url, upload_id, etags),
            lambda r: storage.completed(r, access_url),
        )


class AsyncUploads(_UploadSettings):
    """`AsyncClient.upload` and `upload_all`: files and parts go out as concurrent tasks."""

    def __init__(self, core: Core, transport: AsyncTransport, inline_max_bytes: int, upload_concurrency: int) -> None:
        super().__init__(core, inline_max_bytes, upload_concurrency)
        self._transport = transport
        self._token_lock = asyncio.Lock()

    async def upload(self, value: Any, *, object_lifetime: ObjectLifetime | None = None) -> str:
        """See `Client.upload`. Reading and encoding run in a worker thread, so the event loop never blocks on disk."""
        lifecycle = self._lifecycle(object_lifetime)
        sent = await asyncio.to_thread(self._inline_or_blob, value)
        if isinstance(sent, str):
            return sent
        if sent.size > MULTIPART_THRESHOLD:
            return await self._upload_multipart(sent, lifecycle)
        data = await asyncio.to_thread(sent.read)
        return await self._cdn(
            lambda token: _with_headers(self._storage.upload_request(token, sent, data), lifecycle),
            self._storage.uploaded,
        )

    async def upload_all(self, values: list[Any], *, object_lifetime: ObjectLifetime | None = None) -> list[str]:
        """`upload` of each value, all files at once."""
        self._lifecycle(object_lifetime)
        return await _all_or_nothing(self.upload(value, object_lifetime=object_lifetime) for value in values)

    async def _cdn_token(self, stale: CdnToken | None = None) -> CdnToken:
        async with self._token_lock:
            token = self._token
            if token is None or token is stale or not token.fresh(time.time()):
                token = self._token = self._storage.token(
                    await self._transport.send("upload", self._storage.token_request())
                )
            return token

    async def _cdn(self, build: Callable[[CdnToken], RequestSpec], read: Callable[[Reply], T]) -> T:
        token = await self._cdn_token()
        reply = await self._transport.send("upload", build(token))
        if self._storage.rejected_token(reply):
            reply = await self._transport.send("upload", build(await self._cdn_token(stale=token)))
        return read(reply)

    async def _upload_multipart(self, blob: Blob, lifecycle: dict[str, str] | None = None) -> str:
        storage = self._storage
        access_url, upload_id = await self._cdn(
            lambda t: _with_headers(storage.multipart_request(t, blob), lifecycle or {}), storage.multipart_started
        )
        slots = asyncio.Semaphore(self._upload_concurrency)

        async def put(n: int, offset: int, length: int) -> tuple[int, str]:
            async with slots:  # bounds the parts in flight, and so the parts held in memory
                data = await asyncio.to_thread(blob.read_range, offset, length)
                etag = await self._cdn(
                    lambda t: storage.part_request(t, blob, access_url, upload_id, n, data),
                    lambda r: storage.part_etag(r, n),
                )
            return n, etag

        etags = dict(await _all_or_nothing(put(*part) for part in parts(blob.size)))
        return await self._cdn(
            lambda t: storage.complete_request(t, access_url, upload_id, etags),
            lambda r: storage.completed(r, access_url),
        )


async def _all_or_nothing(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """The results in order; when one fails, the others are cancelled before its error is raised (`gather` alone
    would leave them running, sending the rest of a file whose upload has already failed)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
