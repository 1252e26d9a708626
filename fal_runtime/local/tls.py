"""A throwaway certificate authority for the local server.

fal is only ever spoken to over HTTPS, so the local server is HTTPS too: clients exercise their real TLS path and
only need `SSL_CERT_FILE` (or `verify=`) pointed at this CA. trustme makes a fresh CA per server, so nothing
long-lived or trusted system-wide is ever created.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Certificates:
    """Where the CA (for clients) and the server's key + chain (for uvicorn) were written."""

    ca_file: Path
    server_pem: Path

    def client_context(self) -> ssl.SSLContext:
        """An SSL context trusting only this CA: how the server reaches itself (webhooks to its own sink)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def issue(ca_file: Path, workdir: Path) -> Certificates:
    """Make a CA, write it to `ca_file`, and issue a certificate for 127.0.0.1 and localhost into `workdir`."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(ca_file))
    server_pem = workdir / "server.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    return Certificates(ca_file=ca_file, server_pem=server_pem)
