"""Output files you can save: `download()` / `save(path)` (and async twins) on every generated file model.

Downloads stream to a temporary file beside the target and are renamed into place only when complete, so an
interrupted or rejected download leaves no partial file. A transient failure (a dropped connection, a timeout, 408,
429 or 5xx) starts the download again from the first byte, up to three more times, with the backoff and
`Retry-After` rules of the clients (`Core.retry_delay`). The declared size is checked before reading, the actual
size while reading, and the content type against what fal said the file is. A name fal gives is reduced to a bare
file name (no directories, no `..`), so `save(directory)` cannot write outside that directory. Downloads never
carry the fal key: output URLs are public CDN links. They go through a client's connection pool (the `client=` given,
else the default one the call functions use), so saving several outputs does not pay a TLS handshake for each.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from fal_runtime import errors
from fal_runtime.errors import FalError
from fal_runtime.models import FalModel

if TYPE_CHECKING:
    from fal_runtime._client import AsyncClient, Client
    from fal_runtime._core import Reply

# Generated modules import this one: asyncio, httpx and the retry rules of `_core` load on the first download.
DEFAULT_MAX_BYTES = 2 * 1024**3
_CHUNK = 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class DownloadError(FalError):
    """The file could not be fetched whole, or is not what fal said it is; nothing was written."""


class _Failed(DownloadError):
    """An attempt that failed in a way `Core.retry_delay` judges: an HTTP status or a transport error."""

    def __init__(self, message: str, *, reply: Reply | None = None, failure: errors.TransportError | None = None) -> None:
        super().__init__(message)
        self.reply, self.failure = reply, failure


class _Attempts:
    """Whether to try a download again, and after how long: the clients' rule for an idempotent GET, at most three
    more attempts within a minute."""

    def __init__(self) -> None:
        from fal_runtime._core import Core, RetryPolicy

        retry = RetryPolicy(max_retries=3, base_delay=0.1, max_delay=2.0, total=60.0)
        self._core = Core(key="", environ={}, retry=retry)  # only its retry rules: downloads never carry the key
        self.started, self.count = time.monotonic(), 0

    def delay(self, failed: _Failed) -> float:
        """Seconds to wait before the next attempt; the final `DownloadError` when there is to be none."""
        self.count += 1
        delay = self._core.retry_delay(
            "download", self.count, time.monotonic() - self.started, reply=failed.reply, failure=failed.failure,
            now_epoch=time.time(),
        )  # fmt: skip
        if delay is None:
            tries = f" (after {self.count} attempts)" if self.count > 1 else ""
            raise DownloadError(f"{failed}{tries}") from None
        return delay


class FalFile(FalModel):
    """Base of generated output file models (`File`, `Image`, `ImageFile`, ...)."""

    url: str

    def download(self, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0, client: Client | None = None) -> bytes:
        """The file's bytes, in memory. `client`: whose connections to use (default: the call functions' default)."""
        if self.url.startswith("data:"):
            return _check_size(_data_uri(self.url), max_bytes)
        chunks: list[bytes] = []
        self._fetch(_Sink(max_bytes, chunks.append, chunks.clear), timeout, client)
        return b"".join(chunks)

    def save(
        self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0, client: Client | None = None
    ) -> Path:
        """Write the file to `path` (a directory: under a safe name from fal's file name or URL); returns the path."""
        target = self._target(path)
        with _atomic(target) as handle:
            if self.url.startswith("data:"):
                handle.write(_check_size(_data_uri(self.url), max_bytes))
            else:
                self._fetch(_Sink(max_bytes, handle.write, lambda: _rewind(handle)), timeout, client)
        return target

    async def download_async(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0, client: AsyncClient | None = None
    ) -> bytes:
        if self.url.startswith("data:"):
            return _check_size(_data_uri(self.url), max_bytes)
        chunks: list[bytes] = []
        await self._fetch_async(_Sink(max_bytes, chunks.append, chunks.clear), timeout, client)
        return b"".join(chunks)

    async def save_async(
        self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0, client: AsyncClient | None = None
    ) -> Path:
        target = self._target(path)
        with _atomic(target) as handle:
            if self.url.startswith("data:"):
                handle.write(_check_size(_data_uri(self.url), max_bytes))
            else:
                await self._fetch_async(_Sink(max_bytes, handle.write, lambda: _rewind(handle)), timeout, client)
        return target

    def _fetch(self, sink: _Sink, timeout: float, client: Client | None) -> None:
        """Stream the file into `sink`, starting again after a transient failure as `_Attempts` decides."""
        from fal_runtime._client import default_client

        http = (client or default_client()).http
        attempts = _Attempts()
        while True:
            try:
                return _stream(http, self, sink, timeout)
            except _Failed as failed:
                delay = attempts.delay(failed)
            time.sleep(delay)

    async def _fetch_async(self, sink: _Sink, timeout: float, client: AsyncClient | None) -> None:
        import asyncio

        from fal_runtime._client import default_async_client

        attempts = _Attempts()
        async with (client or default_async_client()).connection() as http:
            while True:
                try:
                    return await _astream(http, self, sink, timeout)
                except _Failed as failed:
                    delay = attempts.delay(failed)
                await asyncio.sleep(delay)

    def safe_name(self) -> str:
        """A bare file name for this file: fal's `file_name`, else the URL's last segment, made safe."""
        raw = getattr(self, "file_name", None) or unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])
        name = _UNSAFE.sub("_", Path(str(raw).replace("\\", "/")).name).strip(" .")
        return name or "download"

    def _target(self, path: str | os.PathLike[str]) -> Path:
        """An existing directory, or a path written with a trailing separator (`"outputs/"`, created if missing),
        gets a safe name inside it; anything else is the file itself (its parent directories are created)."""
        text = os.fspath(path)
        target = Path(text)
        if text.endswith(("/", os.sep)) or target.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            return target / self.safe_name()
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


def _check_size(data: bytes, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise DownloadError(f"file is {len(data)} bytes, over the {max_bytes}-byte limit")
    return data


def _data_uri(url: str) -> bytes:
    header, _, payload = url.partition(",")
    try:
        return base64.b64decode(payload, validate=True) if header.endswith(";base64") else unquote(payload).encode()
    except (binascii.Error, ValueError):
        raise DownloadError("malformed data URI") from None


def _rewind(handle: IO[bytes]) -> None:
    handle.seek(0)
    handle.truncate()


class _Sink:
    """Where downloaded chunks go, counting them against the size limit (one decision for sync and async).
    `restart` empties it when a failed attempt is tried again."""

    def __init__(self, max_bytes: int, write: Callable[[bytes], object], restart: Callable[[], object]) -> None:
        self.max_bytes, self._write, self._restart, self._total = max_bytes, write, restart, 0

    def start(self) -> None:
        if self._total:
            self._restart()
        self._total = 0

    def expect(self, response: Any, file: FalFile) -> None:
        """Refuse before reading: an error status, a declared size over the limit, or the wrong content type."""
        if response.status_code != 200:
            from fal_runtime._core import Reply

            headers = {k.lower(): v for k, v in response.headers.items()}
            raise _Failed(f"HTTP {response.status_code} fetching {file.url}", reply=Reply(response.status_code, headers))
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise DownloadError(f"file is {declared} bytes, over the {self.max_bytes}-byte limit")
        expected = getattr(file, "content_type", None)
        got = response.headers.get("content-type", "").split(";")[0].strip()
        if expected and got and got != expected and got.split("/")[0] != expected.split("/")[0]:
            raise DownloadError(f"expected {expected}, the server sent {got}")

    def feed(self, chunk: bytes) -> None:
        self._total += len(chunk)
        if self._total > self.max_bytes:
            raise DownloadError(f"file exceeds the {self.max_bytes}-byte limit")
        self._write(chunk)


def _stream(http: Any, file: FalFile, sink: _Sink, timeout: float) -> None:
    import httpx

    sink.start()
    try:
        with http.stream("GET", file.url, timeout=timeout) as response:
            sink.expect(response, file)
            for chunk in response.iter_bytes(_CHUNK):
                sink.feed(chunk)
    except httpx.HTTPError as exc:
        raise _transport_failure(file, exc) from None


async def _astream(http: Any, file: FalFile, sink: _Sink, timeout: float) -> None:
    import httpx

    sink.start()
    try:
        async with http.stream("GET", file.url, timeout=timeout) as response:
            sink.expect(response, file)
            async for chunk in response.aiter_bytes(_CHUNK):
                sink.feed(chunk)
    except httpx.HTTPError as exc:
        raise _transport_failure(file, exc) from None


def _transport_failure(file: FalFile, exc: Exception) -> _Failed:
    import httpx

    message = f"download of {file.url} failed: {type(exc).__name__}"
    transient = isinstance(exc, httpx.TransportError) and not isinstance(exc, (httpx.UnsupportedProtocol, httpx.ProxyError))
    return _Failed(message, failure=errors.TransportError(message, request_sent=True, transient=transient))


@contextmanager
def _atomic(target: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside `target`, renamed over it only if the block completes; removed otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # here, not at import: it costs a generated module's import ~8 ms

    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
