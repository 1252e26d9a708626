"""Webhook delivery, signed the way fal signs them, and the JWKS that verifies the signatures.

fal signs `"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256_hex(body)}"` with Ed25519 and publishes the public keys
at `/.well-known/jwks.json`; receivers (and our client's verifier) check against that. Each server makes its own key,
so a signature from one run never verifies against another. Deliveries only go to loopback addresses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import time
from ipaddress import ip_address
from urllib.parse import urlsplit

import httpx
from nacl.signing import SigningKey

from .script import Script
from .store import Job

USER_ID = "local-user"
ATTEMPTS = 3
TIMEOUT = httpx.Timeout(5.0)


class Signer:
    """This server's Ed25519 key: signs webhook bodies and publishes the public half as a JWKS."""

    def __init__(self) -> None:
        self._key = SigningKey.generate()
        self.kid = hashlib.sha256(bytes(self._key.verify_key)).hexdigest()[:16]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        x = base64.urlsafe_b64encode(bytes(self._key.verify_key)).rstrip(b"=").decode()
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def headers(self, request_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The X-Fal-Webhook-* headers for `body`."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        message = f"{request_id}\n{USER_ID}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        signature = self._key.sign(message).signature.hex()
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": USER_ID,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": signature,
        }


def webhook_body(job: Job) -> bytes:
    """fal's webhook payload: status OK with the output, or ERROR with the error body."""
    body: dict[str, object] = {"request_id": job.request_id, "gateway_request_id": job.gateway_request_id}
    if job.status_code == 200:
        body.update(status="OK", payload=job.body)
    else:
        body.update(status="ERROR", error=f"Invalid status code: {job.status_code}", payload=job.body)
    return json.dumps(body).encode()


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


async def deliver(job: Job, signer: Signer, script: Script, tls: ssl.SSLContext) -> None:
    """POST the signed webhook for a completed job, retrying a few times; count the outcome."""
    if job.webhook_url is None:
        return
    if not is_loopback(job.webhook_url):
        script.count_webhook(delivered=False)
        return
    body = webhook_body(job)
    async with httpx.AsyncClient(verify=tls, timeout=TIMEOUT) as client:
        for attempt in range(ATTEMPTS):
            headers = {"Content-Type": "application/json", **signer.headers(job.request_id, body)}
            try:
                reply = await client.post(job.webhook_url, content=body, headers=headers)
                if reply.status_code < 300:
                    script.count_webhook(delivered=True)
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2 * 2**attempt)
    script.count_webhook(delivered=False)
