"""Output files you can save: `download()` / `save(path)` (and async twins) on every generated file model.

Downloads stream to a temporary file beside the target and are renamed into place only when complete, so an
interrupted or rejected download leaves no partial file. The declared size is checked before reading, the actual
size while reading, and the content type against what fal said the file is. A name fal gives is reduced to a bare
file name (no directories, no `..`), so `save(directory)` cannot write outside that directory. Downloads never
carry the fal key: output URLs are public CDN links.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from fal_runtime.errors import FalError
from fal_runtime.models import FalModel

DEFAULT_MAX_BYTES = 2 * 1024**3
_CHUNK = 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class DownloadError(FalError):
    """The file could not be fetched whole, or is not what fal said it is; nothing was written."""


class FalFile(FalModel):
    """Base of generated output file models (`File`, `Image`, `ImageFile`, ...)."""

    url: str

    def download(self, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0) -> bytes:
        """The file's bytes, in memory."""
        if self.url.startswith("data:"):
            return _check_size(_data_uri(self.url), max_bytes)
        import httpx

        chunks: list[bytes] = []
        with httpx.Client(timeout=timeout, follow_redirects=True) as http:
            _stream(http, self, _Sink(max_bytes, chunks.append))
        return b"".join(chunks)

    def save(self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0) -> Path:
        """Write the file to `path` (a directory: under a safe name from fal's file name or URL); returns the path."""
        target = self._target(path)
        with _atomic(target) as handle:
            if self.url.startswith("data:"):
                handle.write(_check_size(_data_uri(self.url), max_bytes))
            else:
                import httpx

                with httpx.Client(timeout=timeout, follow_redirects=True) as http:
                    _stream(http, self, _Sink(max_bytes, handle.write))
        return target

    async def download_async(self, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0) -> bytes:
        if self.url.startswith("data:"):
            return _check_size(_data_uri(self.url), max_bytes)
        import httpx

        chunks: list[bytes] = []
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as http:
            await _astream(http, self, _Sink(max_bytes, chunks.append))
        return b"".join(chunks)

    async def save_async(self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0) -> Path:
        target = self._target(path)
        with _atomic(target) as handle:
            if self.url.startswith("data:"):
                handle.write(_check_size(_data_uri(self.url), max_bytes))
            else:
                import httpx

                async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as http:
                    await _astream(http, self, _Sink(max_bytes, handle.write))
        return target

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


class _Sink:
    """Where downloaded chunks go, counting them against the size limit (one decision for sync and async)."""

    def __init__(self, max_bytes: int, write: Callable[[bytes], object]) -> None:
        self.max_bytes, self._write, self._total = max_bytes, write, 0

    def expect(self, response: Any, file: FalFile) -> None:
        """Refuse before reading: an error status, a declared size over the limit, or the wrong content type."""
        if response.status_code != 200:
            raise DownloadError(f"HTTP {response.status_code} fetching {file.url}")
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


def _stream(http: Any, file: FalFile, sink: _Sink) -> None:
    import httpx

    try:
        with http.stream("GET", file.url) as response:
            sink.expect(response, file)
            for chunk in response.iter_bytes(_CHUNK):
                sink.feed(chunk)
    except httpx.HTTPError as exc:
        raise DownloadError(f"download of {file.url} failed: {type(exc).__name__}") from None


async def _astream(http: Any, file: FalFile, sink: _Sink) -> None:
    import httpx

    try:
        async with http.stream("GET", file.url) as response:
            sink.expect(response, file)
            async for chunk in response.aiter_bytes(_CHUNK):
                sink.feed(chunk)
    except httpx.HTTPError as exc:
        raise DownloadError(f"download of {file.url} failed: {type(exc).__name__}") from None


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
