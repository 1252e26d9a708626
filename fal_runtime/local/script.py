"""What a test scripts, and what it asserts on afterwards.

Tests drive the server two ways — in-process through `LocalServer` (which holds a `Script`) and over HTTP through
`/_local/...` for clients running in other processes — so everything here is plain data behind one lock, safe to call
from the test's thread while the server's event loop reads it.

- A `Rule` is an HTTP-level fault or delay for one operation (submit, status, ...), for the next `times` calls.
- A `Behaviour` is what the "model" does with a job: how long it queues and runs, and whether it fails.
- `Counters` count calls per endpoint and operation, and accepted submits per idempotency fingerprint, so a test can
  assert that retries created no duplicate jobs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar, get_args

Op = Literal[
    "submit",
    "status",
    "status_stream",
    "result",
    "cancel",
    "run",
    "stream",
    "token",
    "upload",
    "upload_part",
    "download",
    "models",
    "pricing",
    "estimate",
]
Fault = Literal["429", "500", "502", "503", "504", "ingress-502", "user-timeout-504", "drop", "stall", "body"]
Phase = Literal["before", "after"]

OPS: tuple[str, ...] = get_args(Op)
FAULTS: tuple[str, ...] = get_args(Fault)
MAX_SECONDS = 60.0  # every scripted wait is capped: nothing the server does is unbounded


@dataclass
class Rule:
    """A fault and/or delay for calls of `op` on `endpoint_id` (None: any endpoint).

    `phase="after"` lets the operation take effect first (the job is created, the cancel applied) and only then
    answers with the fault: the ambiguous failure that tempts clients into duplicate submits.

    `nth` matches only the nth call of `op` on `endpoint_id` since the last reset ("the 3rd GET /v1/models"), so a
    fault can land in the middle of a sequence. Fault "body" answers 200 with `body` verbatim (a malformed page).
    """

    op: Op
    endpoint_id: str | None = None
    fault: Fault | None = None
    times: int | None = 1  # None: until reset
    phase: Phase = "before"
    delay: float = 0.0  # seconds before answering
    retry_after: float = 1.0  # the Retry-After of a 429
    stall_seconds: float = 5.0  # how long a "stall" holds the body after sending the headers
    nth: int | None = None  # only the nth call (1-based, counted per endpoint and op since reset); None: the next
    body: str = ""  # what fault "body" answers, as application/json

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {self.fault!r}")
        if self.phase not in ("before", "after"):
            raise ValueError(f"phase must be 'before' or 'after', got {self.phase!r}")
        if self.nth is not None and (not isinstance(self.nth, int) or self.nth < 1):
            raise ValueError(f"nth must be a positive integer, got {self.nth!r}")
        self.delay = _bounded(self.delay)
        self.stall_seconds = _bounded(self.stall_seconds)


@dataclass
class Behaviour:
    """How jobs of `endpoint_id` (None: any) behave, for the next `times` jobs (None: until reset).

    A failing job still reaches COMPLETED (fal has no FAILED status); its status carries `error`/`error_type` and its
    result call answers `status_code` with `{"detail": error, "error_type": error_type}`.
    """

    endpoint_id: str | None = None
    queue_seconds: float = 0.05
    run_seconds: float = 0.15
    error: str | None = None
    error_type: str = "internal_server_error"
    status_code: int = 500
    times: int | None = None

    def __post_init__(self) -> None:
        self.queue_seconds = _bounded(self.queue_seconds)
        self.run_seconds = _bounded(self.run_seconds)


def _bounded(seconds: float) -> float:
    return min(max(float(seconds), 0.0), MAX_SECONDS)


_Item = TypeVar("_Item", Rule, Behaviour)


def from_json(kind: type[_Item], body: Any) -> _Item:
    """A Rule or Behaviour from a `/_local/...` JSON body; unknown keys are an error, not silently ignored."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    known = {f.name for f in fields(kind)}
    unknown = set(body) - known
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
    return kind(**body)


@dataclass
class Counters:
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (endpoint id or "", op) → HTTP calls
    # Calls of (endpoint id or "", op) being answered right now, and the most at once: concurrency a test can see
    # without timing it.
    in_flight: Counter[tuple[str, str]] = field(default_factory=Counter)
    peak: Counter[tuple[str, str]] = field(default_factory=Counter)
    jobs: Counter[str] = field(default_factory=Counter)  # endpoint id → accepted submits (jobs created)
    runs: Counter[str] = field(default_factory=Counter)  # endpoint id → runs and streams answered
    fingerprints: Counter[str] = field(default_factory=Counter)  # idempotency fingerprint → accepted submits
    webhooks_delivered: int = 0
    webhooks_failed: int = 0
    key_on_cdn: int = 0  # CDN requests that carried a fal key: must stay 0
    key_on_models: int = 0  # model-search requests that carried a fal key (auth is optional there)


class Script:
    """The rules, behaviours, counters and received webhooks of one server; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._behaviours: list[Behaviour] = []
        self._counters = Counters()
        self._webhooks: list[dict[str, Any]] = []
        self._inputs: list[tuple[str, Any]] = []

    def add_rule(self, rule: Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def add_behaviour(self, behaviour: Behaviour) -> None:
        with self._lock:
            self._behaviours.append(behaviour)

    def reset(self) -> None:
        """Forget rules, behaviours, counters and received webhooks (jobs already running are left alone)."""
        with self._lock:
            self._rules.clear()
            self._behaviours.clear()
            self._counters = Counters()
            self._webhooks.clear()
            self._inputs.clear()

    def take_rule(self, endpoint_id: str | None, op: str) -> Rule | None:
        """Count this call and return the first rule that matches it, using up one of its `times`."""
        with self._lock:
            key = (endpoint_id or "", op)
            self._counters.calls[key] += 1
            count = self._counters.calls[key]
            return _take(
                self._rules, lambda r: r.op == op and r.endpoint_id in (None, endpoint_id) and r.nth in (None, count)
            )

    @contextmanager
    def answering(self, endpoint_id: str | None, op: str) -> Iterator[None]:
        """Around the answer to one call: counts it among those in flight (and their peak) until it is answered."""
        key = (endpoint_id or "", op)
        with self._lock:
            c = self._counters
            c.in_flight[key] += 1
            c.peak[key] = max(c.peak[key], c.in_flight[key])
        try:
            yield
        finally:
            with self._lock:
                self._counters.in_flight[key] -= 1

    def behaviour(self, endpoint_id: str) -> Behaviour:
        """The behaviour for a new job of `endpoint_id`: the first matching one (using up one of its `times`)."""
        with self._lock:
            found = _take(self._behaviours, lambda b: b.endpoint_id in (None, endpoint_id))
        return found if found is not None else Behaviour()

    def count_job(self, endpoint_id: str, fingerprint: str) -> None:
        with self._lock:
            self._counters.jobs[endpoint_id] += 1
            self._counters.fingerprints[fingerprint] += 1

    def count_run(self, endpoint_id: str) -> None:
        with self._lock:
            self._counters.runs[endpoint_id] += 1

    def count_webhook(self, delivered: bool) -> None:
        with self._lock:
            if delivered:
                self._counters.webhooks_delivered += 1
            else:
                self._counters.webhooks_failed += 1

    def count_key_on_cdn(self) -> None:
        with self._lock:
            self._counters.key_on_cdn += 1

    def count_key_on_models(self) -> None:
        with self._lock:
            self._counters.key_on_models += 1

    def record_webhook(self, received: dict[str, Any]) -> None:
        with self._lock:
            self._webhooks.append(received)

    def record_input(self, endpoint_id: str, payload: Any) -> None:
        with self._lock:
            self._inputs.append((endpoint_id, payload))

    def inputs(self) -> list[tuple[str, Any]]:
        """(endpoint id, JSON input) of every accepted submit, run and stream, oldest first."""
        with self._lock:
            return list(self._inputs)

    def webhooks(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._webhooks)

    def counters(self) -> dict[str, Any]:
        """A JSON-ready snapshot: calls (and the most answered at once) per endpoint and op, jobs and runs per
        endpoint, duplicate submits."""
        with self._lock:
            c = self._counters
            calls: dict[str, dict[str, int]] = {}
            for (endpoint_id, op), n in sorted(c.calls.items()):
                calls.setdefault(endpoint_id, {})[op] = n
            peak: dict[str, dict[str, int]] = {}
            for (endpoint_id, op), n in sorted(c.peak.items()):
                peak.setdefault(endpoint_id, {})[op] = n
            return {
                "calls": calls,
                "peak_concurrent_calls": peak,
                "submits": dict(c.jobs),
                "runs": dict(c.runs),
                "fingerprints": dict(c.fingerprints),
                "duplicate_submits": sum(n - 1 for n in c.fingerprints.values() if n > 1),
                "webhooks": {"delivered": c.webhooks_delivered, "failed": c.webhooks_failed},
                "key_on_cdn": c.key_on_cdn,
                "key_on_models": c.key_on_models,
                "rules_pending": [asdict(r) for r in self._rules],
            }


def _take(items: list[_Item], matches: Callable[[_Item], bool]) -> _Item | None:
    for index, item in enumerate(items):
        if matches(item):
            if item.times is not None:
                item.times -= 1
                if item.times <= 0:
                    del items[index]
            return item
    return None
