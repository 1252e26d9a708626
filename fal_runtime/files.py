"""Output files you can save: `download()` / `save(path)` (and async twins) on every generated file model.

Downloads stream to a temporary file beside the target and are renamed into place only when complete, so an
interrupted or rejected download leaves no partial file. A transient failure (a dropped connection, a timeout, 408,
429 or 5xx) starts the download again from the first byte, up to three more times, with the backoff and
`Retry-After` rules of the clients (`Core.retry_delay`). The declared size is checked before reading, the actual
size while reading, and the media type against what fal said the file is (`image/svg+xml` is not `image/png`). A name
fal gives is reduced to a bare file name (no directories, no `..`, short enough for any file system's 255-byte limit
with the temporary file's affixes), so `save(directory)` cannot write outside that directory; nor does it replace a
file there: a name already taken gets `-2`, `-3`, ... (`save` documents when a path is a directory, and `overwrite=`).
`timeout` bounds the whole download, retries and their waits included, not each read: a server dripping a byte at a
time cannot hold a download past it. A saved file gets the permissions of any new file (0666 less the umask), not the
temporary file's 0600. Downloads never carry the fal key: output URLs are public CDN links. They go through a
client's connection pool (the `client=` given, else the default one the call functions use), so saving several
outputs does not pay a TLS handshake for each.
"""

from __future__ import annotations

import base64
import binascii
import errno
import functools
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from fal_runtime import errors
from fal_runtime.errors import DownloadError as DownloadError  # defined in `errors`, importable from here too
from fal_runtime.errors import OutputExistsError as OutputExistsError
from fal_runtime.models import FalModel

if TYPE_CHECKING:
    from fal_runtime._client import AsyncClient, Client
    from fal_runtime._core import Reply

# Generated modules import this one: asyncio, httpx and the retry rules of `_core` load on the first download.
DEFAULT_MAX_BYTES = 2 * 1024**3
_CHUNK = 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
# The temporary file is ".{name}.{8 random}.part": 15 bytes on top of the name, within NAME_MAX (255) of every
# common file system. Safe names are ASCII, so characters are bytes.
_MAX_NAME = 255 - 15
# What os.link raises where a file system has no hard links: fall back to checking, then renaming.
_NO_LINKS = frozenset({errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK})
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})  # "some bytes": no claim to check
_MARKUP = ("+xml", "/xml", "/html", "/javascript")
_TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
}


_Mode = Literal["replace", "exclusive", "distinct"]
"""How a saved file takes its place: `replace` whatever is there, `exclusive`: only where nothing is (else
`OutputExistsError`), `distinct`: at the first free name of `name`, `name-2`, `name-3`, ..."""


class _Failed(Exception):
    """An attempt that failed in a way `Core.retry_delay` judges: an HTTP status or a transport error. Internal:
    never leaves this module (`_Attempts.delay` turns the last one into a `DownloadError`)."""

    def __init__(
        self, message: str, *, reply: Reply | None = None, failure: errors.TransportError | None = None
    ) -> None:
        super().__init__(message)
        self.reply, self.failure = reply, failure


class _Attempts:
    """Whether to try a download again, and after how long: the clients' rule for an idempotent GET, at most three
    more attempts within a minute, and all of them within the download's `timeout` (an overall deadline)."""

    def __init__(self, file: FalFile, timeout: float | None) -> None:
        from fal_runtime._core import Core, RetryPolicy

        retry = RetryPolicy(max_retries=3, base_delay=0.1, max_delay=2.0, total=60.0)
        self._core = Core(key="", environ={}, retry=retry)  # only its retry rules: downloads never carry the key
        self.file, self.timeout = file, timeout
        self.started, self.count = time.monotonic(), 0

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline); the timeout's `DownloadError` when none are."""
        if self.timeout is None:
            return None
        left = self.started + self.timeout - time.monotonic()
        if left <= 0:
            raise self.expired()
        return left

    def expired(self, failed: _Failed | None = None) -> DownloadError:
        last = f" (last attempt: {failed})" if failed is not None else ""
        within = f"did not finish within its {self.timeout or 0:g}-second timeout"
        return DownloadError(f"download of {self.file.url} {within}{last}")

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
        left = self.remaining()
        if left is not None and delay >= left:  # the next attempt could not even begin in time
            raise self.expired(failed) from None
        return delay


class FalFile(FalModel):
    """Base of generated output file models (`File`, `Image`, `ImageFile`, ...)."""

    url: str

    def download(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float | None = 120.0, client: Client | None = None
    ) -> bytes:
        """The file's bytes, in memory. `timeout`: seconds for the whole download, retries included (not per read;
        None: no limit).
        `client`: whose connections to use (default: the call functions' default)."""
        if self.url.startswith("data:"):
            return _check_size(_data_uri(self.url), max_bytes)
        chunks: list[bytes] = []
        self._fetch(_Sink(max_bytes, chunks.append, chunks.clear), timeout, client)
        return b"".join(chunks)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float | None = 120.0,
        client: Client | None = None,
    ) -> Path:
        """Write the file and return the path it was written to.

        `path` is a directory when it is one already, when it is written with a trailing separator (`"outputs/"`), or
        when it does not exist and its name has no suffix (`Path("outputs")`, `"runs/cat"`): the directory is created
        if missing and the file goes inside it, under a safe name from fal's file name or URL. Otherwise `path` is the
        file itself (`"out.png"`; missing parent directories are created).

        `overwrite`: by default (None), saving into a directory never replaces a file: when the name is taken,
        `-2`, `-3`, ... goes before the extension (`image.png`, `image-2.png`), chosen atomically, so two outputs
        saved into one directory, even at once, keep both files. A file path is replaced, as `open(path, "wb")`
        replaces it. `overwrite=False` refuses to replace a file path that exists (`OutputExistsError`, raised
        before anything is downloaded); `overwrite=True` lets a save into a directory replace the file of that name.

        `timeout` bounds the whole download, retries included. A failure to write (a full disk, a name the file system
        refuses) is a `DownloadError` too, and leaves no file."""
        target, mode = self._target(path, overwrite)
        with _atomic(target, mode) as written:
            if self.url.startswith("data:"):
                written.handle.write(_check_size(_data_uri(self.url), max_bytes))
            else:
                handle = written.handle
                self._fetch(_Sink(max_bytes, handle.write, lambda: _rewind(handle)), timeout, client)
        return written.path

    async def download_async(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float | None = 120.0, client: AsyncClient | None = None
    ) -> bytes:
        if self.url.startswith("data:"):
            return _check_size(_data_uri(self.url), max_bytes)
        chunks: list[bytes] = []
        await self._fetch_async(_Sink(max_bytes, chunks.append, chunks.clear), timeout, client)
        return b"".join(chunks)

    async def save_async(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float | None = 120.0,
        client: AsyncClient | None = None,
    ) -> Path:
        """`save`, for asyncio (the same rules for directories and for files that exist)."""
        target, mode = self._target(path, overwrite)
        with _atomic(target, mode) as written:
            if self.url.startswith("data:"):
                written.handle.write(_check_size(_data_uri(self.url), max_bytes))
            else:
                handle = written.handle
                await self._fetch_async(_Sink(max_bytes, handle.write, lambda: _rewind(handle)), timeout, client)
        return written.path

    def _fetch(self, sink: _Sink, timeout: float | None, client: Client | None) -> None:
        """Stream the file into `sink`, starting again after a transient failure as `_Attempts` decides."""
        from fal_runtime._client import default_client

        http = (client or default_client()).http
        attempts = _Attempts(self, timeout)
        while True:
            try:
                return _stream(http, self, sink, attempts)
            except _Failed as failed:
                delay = attempts.delay(failed)
            time.sleep(delay)

    async def _fetch_async(self, sink: _Sink, timeout: float | None, client: AsyncClient | None) -> None:
        import asyncio

        from fal_runtime._client import default_async_client

        attempts = _Attempts(self, timeout)
        try:
            async with asyncio.timeout(timeout):  # the whole download: waiting for a connection, attempts, backoff
                async with (client or default_async_client()).connection() as http:
                    while True:
                        try:
                            return await _astream(http, self, sink, attempts)
                        except _Failed as failed:
                            delay = attempts.delay(failed)
                        await asyncio.sleep(delay)
        except TimeoutError:
            raise attempts.expired() from None

    def safe_name(self) -> str:
        """A bare file name for this file: fal's `file_name`, else the URL's last segment, made safe."""
        raw = getattr(self, "file_name", None) or unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])
        name = _UNSAFE.sub("_", Path(str(raw).replace("\\", "/")).name).strip(" .")
        if len(name) > _MAX_NAME:  # cut the stem, keep the extension
            suffix = Path(name).suffix if len(Path(name).suffix) <= 16 else ""
            name = name[: _MAX_NAME - len(suffix)].rstrip(" .") + suffix
        return name or "download"

    def _target(self, path: str | os.PathLike[str], overwrite: bool | None) -> tuple[Path, _Mode]:
        """Where to write, and how (see `save`): a directory (an existing one, a path with a trailing separator, or a
        missing path without a suffix; created if missing) gets a safe name inside it, taken anew when it exists;
        anything else is the file itself (its parent directories are created)."""
        text = os.fspath(path)
        target = Path(text)
        try:
            is_dir = target.is_dir() or text.endswith(("/", os.sep)) or (not target.exists() and not target.suffix)
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                return target / self.safe_name(), "replace" if overwrite else "distinct"
            if overwrite is False and target.exists():
                raise OutputExistsError(f"{target} exists: pass overwrite=True to replace it")
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if isinstance(exc, OutputExistsError):
                raise
            raise _write_error(target, exc) from exc
        return target, "exclusive" if overwrite is False else "replace"


def _media_type(value: str) -> str:
    """The comparable part of a content type: no parameters (`; charset=`), lower case, common aliases folded."""
    media = value.split(";")[0].strip().lower()
    return _TYPE_ALIASES.get(media, media)


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
            raise _Failed(
                f"HTTP {response.status_code} fetching {file.url}", reply=Reply(response.status_code, headers)
            )
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise DownloadError(f"file is {declared} bytes, over the {self.max_bytes}-byte limit")
        expected = _media_type(getattr(file, "content_type", None) or "")
        got = _media_type(response.headers.get("content-type", ""))
        if expected and got and got != expected and not {expected, got} & _GENERIC_TYPES:
            # A type fal only defaulted (its Image model says image/jpeg unless told otherwise, whatever the format)
            # allows another subtype of the same kind, but never markup, which can carry script (image/svg+xml).
            stated = "content_type" in file.model_fields_set
            if stated or got.split("/")[0] != expected.split("/")[0] or got.endswith(_MARKUP):
                raise DownloadError(f"expected {expected}, the server sent {got}")

    def feed(self, chunk: bytes) -> None:
        self._total += len(chunk)
        if self._total > self.max_bytes:
            raise DownloadError(f"file exceeds the {self.max_bytes}-byte limit")
        self._write(chunk)


def _stream(http: Any, file: FalFile, sink: _Sink, attempts: _Attempts) -> None:
    """One attempt. httpx's timeout bounds each read, so a watchdog ends the body's reads at the deadline."""
    import httpx

    sink.start()
    watchdog: _Watchdog | None = None
    try:
        with http.stream("GET", file.url, timeout=attempts.remaining()) as response:
            watchdog = _Watchdog(response, attempts.remaining())
            try:
                sink.expect(response, file)
                for chunk in response.iter_bytes(_CHUNK):
                    attempts.remaining()
                    sink.feed(chunk)
            finally:
                watchdog.stop()  # before the connection goes back to the pool
            if watchdog.fired:  # a body without a length ends quietly when its socket is shut: it may be cut short
                raise attempts.expired()
    except httpx.HTTPError as exc:
        if watchdog is not None and watchdog.fired:
            raise attempts.expired() from None
        raise _transport_failure(file, exc) from None


async def _astream(http: Any, file: FalFile, sink: _Sink, attempts: _Attempts) -> None:
    """One attempt (the caller's `asyncio.timeout` enforces the deadline)."""
    import httpx

    sink.start()
    try:
        async with http.stream("GET", file.url, timeout=attempts.remaining()) as response:
            sink.expect(response, file)
            async for chunk in response.aiter_bytes(_CHUNK):
                sink.feed(chunk)
    except httpx.HTTPError as exc:
        raise _transport_failure(file, exc) from None


class _Watchdog:
    """Shuts the connection's socket down when the deadline passes mid-body, waking a read blocked on a server that
    dripped its last byte just before it. HTTP/1 only: an HTTP/2 socket carries other requests too."""

    def __init__(self, response: Any, seconds: float | None) -> None:
        import socket
        import threading

        self.fired, self._done, self._lock = False, False, threading.Lock()
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None and response.http_version != "HTTP/2" else None
        self._timer: threading.Timer | None = None
        if seconds is not None and isinstance(sock, socket.socket):
            self._timer = threading.Timer(seconds, self._fire, (sock,))
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, sock: Any) -> None:
        import socket

        with self._lock:
            if self._done:
                return
            self.fired = True
            with suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: never touch a TLS socket's state

    def stop(self) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()


def _transport_failure(file: FalFile, exc: Exception) -> _Failed:
    """A failed attempt as the clients judge one: a certificate that fails verification is never tried again, a
    refused connection only `RetryPolicy.refused_retries` times."""
    import httpx

    from fal_runtime._transport import certificate_failure, connection_refused

    message = f"download of {file.url} failed: {type(exc).__name__}"
    failure: errors.TransportError
    if certificate_failure(exc):
        message += f" (the server's certificate failed verification, not retried: {exc})"
        failure = errors.APIConnectionError(message, transient=False)
    elif isinstance(exc, httpx.ConnectError) and connection_refused(exc):
        failure = errors.APIConnectionError(message, refused=True)
    else:
        transient = isinstance(exc, httpx.TransportError) and not isinstance(
            exc, (httpx.UnsupportedProtocol, httpx.ProxyError)
        )
        failure = errors.TransportError(message, request_sent=True, transient=transient)
    return _Failed(message, failure=failure)


class _Written:
    """The temporary file being written, and (once the block completes) the path it was given."""

    def __init__(self, handle: IO[bytes], path: Path) -> None:
        self.handle, self.path = handle, path


@contextmanager
def _atomic(target: Path, mode: _Mode = "replace") -> Iterator[_Written]:
    """A temporary file beside `target`, given its name (see `_Mode`) only if the block completes; removed otherwise.
    A failure to write is a `DownloadError` (the caller asked for a file and did not get one)."""
    import tempfile  # here, not at import: it costs a generated module's import ~8 ms

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # The prefix is cut so that even a 255-byte target name leaves room for the affixes.
        fd, name = tempfile.mkstemp(prefix=f".{target.name[:_MAX_NAME]}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise _write_error(target, exc) from exc
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            written = _Written(handle, target)
            yield written
            if hasattr(os, "fchmod"):  # mkstemp made it 0600; a saved file is as private as any other new file
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
        written.path = _place(temp, target, mode)
    except BaseException as exc:
        with suppress(OSError):
            temp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputExistsError):
            raise _write_error(target, exc) from exc
        raise


_MAX_COPIES = 10_000


def _place(temp: Path, target: Path, mode: _Mode) -> Path:
    """Give the complete temporary file its name; the path it got."""
    if mode == "replace":
        os.replace(temp, target)
        return target
    if mode == "exclusive":
        if not _claim(temp, target):
            raise OutputExistsError(f"{target} exists: pass overwrite=True to replace it")
        return target
    stem, suffix = (target.stem, target.suffix) if len(target.suffix) <= 16 else (target.name, "")
    for n in range(1, _MAX_COPIES + 1):
        counter = f"-{n}" if n > 1 else ""
        # Shortened so that the name with its counter stays within `_MAX_NAME`, as every name `safe_name` gives.
        candidate = target.with_name(stem[: _MAX_NAME - len(counter) - len(suffix)] + counter + suffix)
        if _claim(temp, candidate):
            return candidate
    raise OutputExistsError(f"{target} and {_MAX_COPIES - 1} numbered copies of it exist")


def _claim(temp: Path, target: Path) -> bool:
    """Give `temp` the name `target` unless a file has it (atomically, by a hard link: a concurrent save of the same
    name gets False); False when one has."""
    try:
        os.link(temp, target)
    except FileExistsError:
        return False
    except (AttributeError, NotImplementedError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in _NO_LINKS:
            raise
        # A file system without hard links (FAT, some network shares): not atomic, but never replaces knowingly.
        if os.path.lexists(target):
            return False
        os.replace(temp, target)
        return True
    temp.unlink()
    return True


def _write_error(target: Path, exc: OSError) -> DownloadError:
    return DownloadError(f"could not write {target}: {exc.strerror or exc}")


@functools.cache
def _umask() -> int:
    """The process's umask, read once: from /proc where it can be (Linux 4.7+), since setting it to read it races
    with other threads creating files; else set briefly to 0o077, so a racing thread's file is only more private."""
    with suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
