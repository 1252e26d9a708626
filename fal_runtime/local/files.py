"""The server's own little CDN: uploaded files, and the files model outputs point at.

It stands in for fal's storage (a token from `/storage/auth/token`, then `POST {base_url}/files/upload`, or the
multipart routes above 100 MiB) so that uploads and output downloads work without the network. Files live in
memory; the size of one upload, one part and one multipart file is capped.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .payloads import png

CDN_PREFIX = "/_local/cdn"
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # one request: a single upload or one part
MAX_MULTIPART_BYTES = 1024 * 1024 * 1024
TOKEN_SECONDS = 3600


class MultipartError(ValueError):
    """A multipart call the CDN refuses: unknown upload, missing or mismatched parts, too large."""


@dataclass
class _Multipart:
    name: str
    content_type: str
    parts: dict[int, tuple[str, bytes]]  # part number → (etag, bytes)


@dataclass(frozen=True)
class StoredFile:
    content_type: str
    data: bytes


# A 16×16 JPEG (made once with Pillow; the server needs no imaging library).
_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19i"
    "Z2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
    "Y2NjY2NjY2P/wAARCAAQABADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUF"
    "BAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVW"
    "V1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi"
    "4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAEC"
    "AxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVm"
    "Z2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq"
    "8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCSiiivGPWP/9k="
)


_OUTPUT_FILES = {
    "image.png": StoredFile("image/png", png()),
    "image.jpg": StoredFile("image/jpeg", _JPEG),
    "file.bin": StoredFile("application/octet-stream", b"fal_runtime.local output\n"),
}
# `outputs/<32 hex digits>/<name>`: every output file's own URL (see `Files.output_path`).
_OUTPUT_PATH = re.compile(r"outputs/[0-9a-f]{32}/(?P<name>[a-z]+\.[a-z]+)")


class Files:
    """Files by their path under the CDN prefix, and the upload tokens handed out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The fixed outputs also answer at `outputs/<name>`, as they did before each output got its own URL.
        self._files: dict[str, StoredFile] = {f"outputs/{name}": file for name, file in _OUTPUT_FILES.items()}
        self._tokens: dict[str, float] = {}
        self._multipart: dict[tuple[str, str], _Multipart] = {}  # (path, upload id) → parts received

    @staticmethod
    def output_path(content_type: str) -> str:
        """Where an output file of this content type points: a PNG or a JPEG when that is what the output says it
        is, opaque bytes otherwise (`application/octet-stream` claims no type, so a download checks nothing).

        Each call gives a new path, `outputs/<random>/image.png`, as fal's CDN gives every output file its own URL:
        two outputs never share one, so a client can tell them apart. The bytes are the same fixed file (nothing is
        stored per output, so a long-running server does not grow)."""
        media = content_type.split(";")[0].strip().lower()
        name = {"image/png": "image.png", "image/jpeg": "image.jpg", "image/jpg": "image.jpg"}.get(media, "file.bin")
        return f"outputs/{uuid.uuid4().hex}/{name}"

    def new_token(self) -> tuple[str, float]:
        token, expires = secrets.token_urlsafe(24), time.time() + TOKEN_SECONDS
        with self._lock:
            self._tokens[token] = expires
        return token, expires

    def token_valid(self, token: str) -> bool:
        with self._lock:
            return self._tokens.get(token, 0.0) > time.time()

    def put(self, name: str, data: bytes, content_type: str) -> str:
        path = _new_path(name)
        with self._lock:
            self._files[path] = StoredFile(content_type, data)
        return path

    def start_multipart(self, name: str, content_type: str) -> tuple[str, str]:
        """The path the file will have and the id of its upload."""
        path, upload_id = _new_path(name), uuid.uuid4().hex
        with self._lock:
            self._multipart[(path, upload_id)] = _Multipart(name, content_type, {})
        return path, upload_id

    def put_part(self, path: str, upload_id: str, number: int, data: bytes) -> str:
        """Store one part (a repeated part replaces the earlier one, as S3 does); its ETag."""
        etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
        with self._lock:
            upload = self._multipart.get((path, upload_id))
            if upload is None:
                raise MultipartError(f"unknown upload {upload_id}")
            if not 1 <= number <= 10_000:
                raise MultipartError(f"part number {number} out of range")
            upload.parts[number] = (etag, data)
            if sum(len(d) for _, d in upload.parts.values()) > MAX_MULTIPART_BYTES:
                del self._multipart[(path, upload_id)]
                raise MultipartError("file too large")
        return etag

    def complete(self, path: str, upload_id: str, parts: Any) -> None:
        """Join the listed parts in order; each must have been uploaded with the ETag given."""
        with self._lock:
            upload = self._multipart.get((path, upload_id))
            if upload is None:
                raise MultipartError(f"unknown upload {upload_id}")
            if not isinstance(parts, list) or not parts:
                raise MultipartError("expected a non-empty list of parts")
            chunks = []
            for expected, part in enumerate(parts, start=1):
                if not isinstance(part, dict) or part.get("partNumber") != expected:
                    raise MultipartError(f"part {expected} missing or out of order")
                etag, data = upload.parts.get(expected, (None, b""))
                if etag is None or part.get("etag") != etag:
                    raise MultipartError(f"part {expected} was not uploaded with ETag {part.get('etag')!r}")
                chunks.append(data)
            del self._multipart[(path, upload_id)]
            self._files[path] = StoredFile(upload.content_type, b"".join(chunks))

    def get(self, path: str) -> StoredFile | None:
        output = _OUTPUT_PATH.fullmatch(path)
        if output is not None:
            return _OUTPUT_FILES.get(output["name"])
        with self._lock:
            return self._files.get(path)

    def stored(self, url: str) -> bytes | None:
        """The bytes at a CDN URL of this server (any host part), or None."""
        _, sep, path = url.partition(f"{CDN_PREFIX}/files/")
        found = self.get(path) if sep else None
        return found.data if found is not None else None


def _new_path(name: str) -> str:
    safe_name = "".join(c for c in name if c.isalnum() or c in "._-") or "upload.bin"
    return f"uploads/{uuid.uuid4().hex}/{safe_name}"
