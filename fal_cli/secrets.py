"""Scrubbing the API key from server text the command line prints (log lines, status errors).

The runtime redacts the key from its error messages and statuses, but not from an output, and a model may echo
anything (its own environment included). So everything the command prints that came from the server goes through
`scrub`, with the runtime's own rule.
"""

from __future__ import annotations

import os

from fal_runtime._core import redact, resolve_key
from fal_runtime.errors import MissingCredentialsError


def scrub(text: str) -> str:
    """`text` with the configured key (as the runtime resolves it) and its secret half replaced by `[redacted]`."""
    try:
        key = resolve_key(None, os.environ)
    except MissingCredentialsError:  # no key configured: nothing to hide
        return text
    return redact(text, key)
