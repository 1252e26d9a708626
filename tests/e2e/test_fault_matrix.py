"""Every scripted fault during submit, status, the status stream and result, against our client over real HTTPS:
the expected retries, the final outcome, zero duplicate submits and zero lost results (the server counts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fal_runtime import Client, RetryPolicy, errors
from fal_runtime.local import LocalServer
from generated.fal_ai.gemini_flash_edit import Output, endpoint

ROOT = Path(__file__).resolve().parents[2]
ARGS = {"prompt": "plush keychain", "image_url": "https://example.com/in.png"}
ID = endpoint.endpoint_id

# (op, fault, phase) → (outcome: None for a result or the error class, submits the server saw, calls of op made)
MATRIX = {
    ("submit", "429", "before"): (None, 1, 2),
    ("submit", "ingress-502", "before"): (None, 1, 2),  # fal never saw it: safe to resend
    ("submit", "500", "before"): (errors.ServerError, 0, 1),  # fal saw it: never resent
    ("submit", "502", "before"): (errors.ServerError, 0, 1),
    ("submit", "503", "before"): (errors.ServerError, 0, 1),
    ("submit", "504", "before"): (errors.ServerError, 0, 1),
    ("submit", "user-timeout-504", "before"): (errors.StartTimeoutError, 0, 1),
    ("submit", "drop", "after"): (errors.TransportError, 1, 1),  # accepted, then the answer was lost: not resent
    ("submit", "500", "after"): (errors.ServerError, 1, 1),
    ("submit", "stall", "after"): (errors.APITimeoutError, 1, 1),
    ("status", "429", "before"): (None, 1, None),
    ("status", "500", "before"): (None, 1, None),
    ("status", "ingress-502", "before"): (None, 1, None),
    ("status", "503", "before"): (None, 1, None),
    ("status", "drop", "before"): (None, 1, None),
    ("status", "stall", "before"): (None, 1, None),
    ("status_stream", "500", "before"): (None, 1, None),  # falls back to polling
    ("status_stream", "drop", "before"): (None, 1, None),
    ("status_stream", "stall", "before"): (None, 1, None),
    ("result", "429", "before"): (None, 1, 2),
    ("result", "500", "before"): (None, 1, 2),
    ("result", "502", "before"): (None, 1, 2),
    ("result", "ingress-502", "before"): (None, 1, 2),
    ("result", "drop", "before"): (None, 1, 2),
    ("result", "stall", "before"): (None, 1, 2),
}


@pytest.fixture
def client_options() -> dict[str, Any]:
    """Fast retries and a 1 s read timeout, so a stalled answer fails quickly (used by conftest's `client`)."""
    fast = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05, max_retry_after=2.0, total=20.0)
    return {"retry": fast, "timeout": 1.0}


@pytest.mark.parametrize(("op", "fault", "phase"), sorted(MATRIX), ids=["-".join(k) for k in sorted(MATRIX)])
def test_fault(op: str, fault: str, phase: str, server: LocalServer, client: Client) -> None:
    outcome, submits, calls = MATRIX[(op, fault, phase)]
    server.reset()
    server.behave(ID, queue_seconds=0.05, run_seconds=0.05)
    server.script(ID, op, fault, times=1, phase=phase, retry_after=0.1, stall_seconds=3.0)  # type: ignore[arg-type]
    if outcome is None:
        assert isinstance(endpoint.subscribe(client=client, **ARGS), Output)  # no result lost
    else:
        with pytest.raises(outcome):
            endpoint.subscribe(client=client, **ARGS)
    counters = server.counters()
    assert counters["duplicate_submits"] == 0, counters
    assert counters["submits"].get(ID, 0) == submits, counters
    if calls is not None:
        assert counters["calls"][ID][op] == calls, counters
