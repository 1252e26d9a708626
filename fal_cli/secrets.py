"""Scrubbing the API key from server text the command line prints (log lines, status errors).

The runtime redacts the key from its error messages, but status events pass log lines and a completed request's
error through as fal sent them, and a model may echo anything (its own environment included). So everything the
command prints that came from the server goes through `scrub`.
"""

from __future__ import annotations

import os

_MIN_SECRET = 8  # shorter values would scrub ordinary words


def _secrets() -> list[str]:
    key, key_id, secret = (os.environ.get(n, "") for n in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"))
    found = {key, *key.split(":")[1:], secret, f"{key_id}:{secret}" if key_id and secret else ""}
    return sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` with every form of the configured key replaced by `[redacted]`."""
    for secret in _secrets():
        text = text.replace(secret, "[redacted]")
    return text
