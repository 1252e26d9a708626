"""The sans-IO half of uploads to fal's storage: requests to build and replies to read, for both clients.

1. A CDN token: `POST {rest}/storage/auth/token?storage_type=fal-cdn-v3` with the fal key. It is cached until
   shortly before it expires, and dropped when the CDN rejects it.
2. Up to `MULTIPART_THRESHOLD`: one `POST {base_url}/files/upload` with the bytes.
3. Above it: `POST {base_url}/files/upload/multipart`, then `PUT {access_url}/multipart/{id}/{n}` per part (read
   the ETag), then `POST {access_url}/multipart/{id}/complete` with the parts in order.

CDN requests carry only the token (`RequestSpec.credentials=False`): the fal key goes to fal's API hosts and nowhere
else, whatever host a token names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from fal_runtime import errors
from fal_runtime._core import Core, Reply, RequestSpec
from fal_runtime.inputs import Blob

MULTIPART_THRESHOLD = 100 * 1024 * 1024
PART_SIZE = 10 * 1024 * 1024
TOKEN_MARGIN = 60.0  # seconds: a token this close to expiry is renewed first, so it cannot expire mid-upload


@dataclass(frozen=True)
class CdnToken:
    token: str
    token_type: str
    base_url: str
    expires_at: float  # unix seconds

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - TOKEN_MARGIN

    def header(self) -> dict[str, str]:
        return {"Authorization": f"{self.token_type} {self.token}"}


def parts(size: int, part_size: int = PART_SIZE) -> list[tuple[int, int, int]]:
    """(part number from 1, offset, length) of each part of a multipart upload."""
    return [(n + 1, offset, min(part_size, size - offset)) for n, offset in enumerate(range(0, size, part_size))]


class Storage:
    """Requests and replies of the upload protocol, for one client's `Core` (its REST host and error mapping)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def token_request(self) -> RequestSpec:
        url = f"{self._core.rest_base}/storage/auth/token"
        return RequestSpec("POST", url, {"Accept": "application/json"}, {"storage_type": "fal-cdn-v3"}, {})

    def token(self, reply: Reply) -> CdnToken:
        data = self._core.json_of(reply)
        try:
            expires = data["expires_at"]
            expires_at = (
                float(expires) if isinstance(expires, (int, float)) else datetime.fromisoformat(expires).timestamp()
            )
            token = CdnToken(str(data["token"]), str(data["token_type"]), str(data["base_url"]).rstrip("/"), expires_at)
        except (KeyError, TypeError, ValueError):
            raise errors.ProtocolError("unexpected storage token response from fal") from None
        if not token.base_url.startswith(("https://", "http://")):
            raise errors.ProtocolError(
                f"storage token names an unusable upload URL: {self._core.redact(token.base_url)[:100]!r}"
            )
        return token

    @staticmethod
    def _cdn(
        method: str,
        url: str,
        token: CdnToken,
        headers: dict[str, str],
        *,
        content: bytes | None = None,
        json: object = None,
    ) -> RequestSpec:
        return RequestSpec(method, url, {**headers, **token.header()}, json=json, content=content, credentials=False)

    def upload_request(self, token: CdnToken, blob: Blob, data: bytes) -> RequestSpec:
        headers = {"Content-Type": blob.content_type, "X-Fal-File-Name": _header_name(blob.file_name)}
        return self._cdn("POST", f"{token.base_url}/files/upload", token, headers, content=data)

    def uploaded(self, reply: Reply) -> str:
        return self._access_url(self._core.json_of(reply))

    def multipart_request(self, token: CdnToken, blob: Blob) -> RequestSpec:
        headers = {"Content-Type": blob.content_type, "X-Fal-File-Name": _header_name(blob.file_name)}
        return self._cdn("POST", f"{token.base_url}/files/upload/multipart", token, headers)

    def multipart_started(self, reply: Reply) -> tuple[str, str]:
        data = self._core.json_of(reply)
        upload_id = data.get("uploadId") if isinstance(data, dict) else None
        if not isinstance(upload_id, str) or not upload_id:
            raise errors.ProtocolError("multipart upload started without an uploadId")
        return self._access_url(data), upload_id

    def part_request(
        self, token: CdnToken, blob: Blob, access_url: str, upload_id: str, n: int, data: bytes
    ) -> RequestSpec:
        url = f"{access_url}/multipart/{quote(upload_id, safe='')}/{n}"
        headers = {"Content-Type": blob.content_type, "Accept-Encoding": "identity"}  # identity: keep the ETag
        return self._cdn("PUT", url, token, headers, content=data)

    def part_etag(self, reply: Reply, n: int) -> str:
        if not reply.ok:
            raise self._core.error_for(reply)
        etag = reply.headers.get("etag")
        if not etag:
            raise errors.ProtocolError(f"multipart upload part {n} was accepted without an ETag")
        return etag

    def complete_request(self, token: CdnToken, access_url: str, upload_id: str, etags: dict[int, str]) -> RequestSpec:
        body = {"parts": [{"partNumber": n, "etag": etags[n]} for n in sorted(etags)]}
        url = f"{access_url}/multipart/{quote(upload_id, safe='')}/complete"
        return self._cdn("POST", url, token, {"Accept": "application/json"}, json=body)

    def completed(self, reply: Reply, access_url: str) -> str:
        if not reply.ok:
            raise self._core.error_for(reply)
        return access_url

    @staticmethod
    def rejected_token(reply: Reply) -> bool:
        """The CDN refused the token (expired or revoked early): fetch a new one and send once more."""
        return reply.status_code in (401, 403)

    @staticmethod
    def _access_url(data: object) -> str:
        url = data.get("access_url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise errors.ProtocolError("upload answered without an access_url")
        return url


def _header_name(name: str) -> str:
    """A file name as a header value: latin-1 only (httpx rejects anything else), never a newline."""
    cleaned = "".join(c if 32 <= ord(c) < 127 else "_" for c in name).strip()
    return cleaned or "file"
