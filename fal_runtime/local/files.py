"""The server's own little CDN: uploaded files, and the files model outputs point at.

It stands in for fal's storage (a token from `/storage/auth/token`, then `POST {base_url}/files/upload`) so that
uploads and output downloads work without the network. Files live in memory; the size of one upload is capped.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass

from .payloads import png

CDN_PREFIX = "/_local/cdn"
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
TOKEN_SECONDS = 3600


@dataclass(frozen=True)
class StoredFile:
    content_type: str
    data: bytes


class Files:
    """Files by their path under the CDN prefix, and the upload tokens handed out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {
            "outputs/image.png": StoredFile("image/png", png()),
            "outputs/file.bin": StoredFile("application/octet-stream", b"fal_runtime.local output\n"),
        }
        self._tokens: dict[str, float] = {}

    @staticmethod
    def output_path(content_type: str) -> str:
        """Where an output file of this content type points: an image for images, opaque bytes otherwise."""
        return "outputs/image.png" if content_type.startswith("image/") else "outputs/file.bin"

    def new_token(self) -> tuple[str, float]:
        token, expires = secrets.token_urlsafe(24), time.time() + TOKEN_SECONDS
        with self._lock:
            self._tokens[token] = expires
        return token, expires

    def token_valid(self, token: str) -> bool:
        with self._lock:
            return self._tokens.get(token, 0.0) > time.time()

    def put(self, name: str, data: bytes, content_type: str) -> str:
        safe_name = "".join(c for c in name if c.isalnum() or c in "._-") or "upload.bin"
        path = f"uploads/{uuid.uuid4().hex}/{safe_name}"
        with self._lock:
            self._files[path] = StoredFile(content_type, data)
        return path

    def get(self, path: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(path)
