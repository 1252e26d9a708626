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
import tempfile
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
            _stream(http, self, max_bytes, chunks.append)
        return b"".join(chunks)

    def save(self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0) -> Path:
        """Write the file to `path` (a directory: under a safe name from fal's file name or URL); returns the path."""
        target = self._target(Path(path))
        if self.url.startswith("data:"):
            data = _check_size(_data_uri(self.url), max_bytes)
            return _atomic(target, lambda f: f.write(data))
        import httpx

        with httpx.Client(timeout=timeout, follow_redirects=True) as http:
            return _atomic(target, lambda f: _stream(http, self, max_bytes, f.write))

    async def download_async(self, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0) -> bytes:
        if self.url.startswith("data:"):
            return _check_size(_data_uri(self.url), max_bytes)
        import httpx

        chunks: list[bytes] = []
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as http:
            await _astream(http, self, max_bytes, chunks.append)
        return b"".join(chunks)

    async def save_async(self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 120.0) -> Path:
        target = self._target(Path(path))
        if self.url.startswith("data:"):
            data = _check_size(_data_uri(self.url), max_bytes)
            return _atomic(target, lambda f: f.write(data))
        import httpx

        handle, temp = _temp_beside(target)
        try:
            with handle:
                async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as http:
                    await _astream(http, self, max_bytes, handle.write)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return target

    def safe_name(self) -> str:
        """A bare file name for this file: fal's `file_name`, else the URL's last segment, made safe."""
        raw = getattr(self, "file_name", None) or unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])
        name = _UNSAFE.sub("_", Path(str(raw).replace("\\", "/")).name).strip(" .")
        return name or "download"

    def _target(self, path: Path) -> Path:
        return path / self.safe_name() if path.is_dir() else path


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


def _expect(response: Any, file: FalFile, max_bytes: int) -> None:
    if response.status_code != 200:
        raise DownloadError(f"HTTP {response.status_code} fetching {file.url}")
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise DownloadError(f"file is {declared} bytes, over the {max_bytes}-byte limit")
    expected = getattr(file, "content_type", None)
    got = response.headers.get("content-type", "").split(";")[0].strip()
    if expected and got and got != expected and got.split("/")[0] != expected.split("/")[0]:
        raise DownloadError(f"expected {expected}, the server sent {got}")


def _stream(http: Any, file: FalFile, max_bytes: int, sink: Any) -> None:
    import httpx

    try:
        with http.stream("GET", file.url) as response:
            _expect(response, file, max_bytes)
            total = 0
            for chunk in response.iter_bytes(_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise DownloadError(f"file exceeds the {max_bytes}-byte limit")
                sink(chunk)
    except httpx.HTTPError as exc:
        raise DownloadError(f"download of {file.url} failed: {type(exc).__name__}") from None


async def _astream(http: Any, file: FalFile, max_bytes: int, sink: Any) -> None:
    import httpx

    try:
        async with http.stream("GET", file.url) as response:
            _expect(response, file, max_bytes)
            total = 0
            async for chunk in response.aiter_bytes(_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise DownloadError(f"file exceeds the {max_bytes}-byte limit")
                sink(chunk)
    except httpx.HTTPError as exc:
        raise DownloadError(f"download of {file.url} failed: {type(exc).__name__}") from None


def _temp_beside(target: Path) -> tuple[IO[bytes], Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    return os.fdopen(fd, "wb"), Path(name)


def _atomic(target: Path, write: Any) -> Path:
    handle, temp = _temp_beside(target)
    try:
        with handle:
            write(handle)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target
