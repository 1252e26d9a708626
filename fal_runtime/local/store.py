"""The queue: jobs in memory, each moved IN_QUEUE → IN_PROGRESS → COMPLETED by its own asyncio task.

Every change to a job (state, queue position, a new log line) replaces its `changed` event, so its status stream can
wait for the next change instead of polling. Jobs never outlive their scripted (and capped) queue and run times, and a
completed job is forgotten `result_ttl` seconds later (fal keeps results about an hour): its status and result calls
then answer 404, as fal's do, and a long-running server does not grow without bound.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .script import Behaviour
from .specs import JSON, ServedEndpoint

LOG_WINDOW = 50  # fal's logs are a moving window, not the whole history
RUN_STEPS = 3
RESULT_TTL = 3600.0  # seconds a completed job's status and result stay available
HISTORY_LIMIT = 10_000  # the most requests the request history (Platform API) remembers: the oldest go first


@dataclass
class Job:
    """One queued request and everything its status and result calls report."""

    endpoint: ServedEndpoint
    payload: Any
    behaviour: Behaviour
    base_url: str  # scheme://host:port the client reached us at, for the *_url fields
    webhook_url: str | None = None
    start_timeout: float | None = None  # X-Fal-Request-Timeout: seconds the job may wait to start
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: str = "IN_QUEUE"
    logs: list[JSON] = field(default_factory=list)
    started: float | None = None
    inference_time: float | None = None
    status_code: int = 200
    body: Any = None  # the result call's body: the output, or fal's error body
    result_headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # replaced (and the old one set) on every change
    # Wall-clock times (epoch seconds) for the request history, usage and billing of the Platform API.
    sent_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    api_key_id: str | None = None  # the id of the key it came with (`Key id:secret`), for the usage's key filters
    payloads_deleted: bool = False  # `DELETE /v1/models/requests/{id}/payloads`: input and output are gone
    # Its endpoint's price entry when it ended ({} when unpriced): fal bills a request then, whatever the price later
    price: dict[str, Any] | None = None

    @property
    def gateway_request_id(self) -> str:
        return self.request_id

    def urls(self) -> dict[str, str]:
        """The *_url fields: under owner/alias only, as fal's queue answers."""
        base = f"{self.base_url}/{self.endpoint.app_root}/requests/{self.request_id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    def log(self, message: str, level: str = "INFO") -> None:
        stamp = datetime.now(UTC).isoformat()
        self.logs.append({"message": message, "level": level, "source": "user", "timestamp": stamp})
        del self.logs[:-LOG_WINDOW]


class Store:
    """All jobs of one server by request id, and the tasks advancing them."""

    def __init__(
        self,
        output_for: Callable[[Job], JSON],
        on_complete: Callable[[Job], Coroutine[Any, Any, None]],
        result_ttl: float = RESULT_TTL,
        price_of: Callable[[str], dict[str, Any] | None] = lambda endpoint_id: None,
    ) -> None:
        self.jobs: dict[str, Job] = {}
        # Every request submitted, newest last, kept after `jobs` forgets it: the Platform API's request history.
        self.history: deque[Job] = deque(maxlen=HISTORY_LIMIT)
        self.result_ttl = result_ttl
        self._queued: dict[str, list[Job]] = {}  # per endpoint, in submit order: what queue positions count
        self._output_for = output_for
        self._on_complete = on_complete
        self._price_of = price_of  # an endpoint's price entry now (a copy)
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, job: Job) -> Job:
        self.jobs[job.request_id] = job
        self.history.append(job)
        self._queued.setdefault(job.endpoint.id, []).append(job)
        task = asyncio.get_running_loop().create_task(self._advance(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._notify(job)
        return job

    def position(self, job: Job) -> int:
        """0-based: how many jobs of the same endpoint that are still queued were submitted before this one."""
        queued = self._queued.get(job.endpoint.id, [])
        return queued.index(job) if job in queued else 0

    def status(self, job: Job, with_logs: bool) -> JSON:
        status: JSON = {"status": job.state, "request_id": job.request_id, **job.urls()}
        status["logs"] = list(job.logs) if with_logs else None
        if job.state == "IN_QUEUE":
            status["queue_position"] = self.position(job)
        elif job.state == "COMPLETED":
            status["metrics"] = {"inference_time": job.inference_time}
            if job.error is not None:
                status["error"] = job.error
                status["error_type"] = job.error_type
        return status

    def delete_payloads(self, job: Job) -> None:
        """Forget a completed job's input and output: its status and result answer 404 from now on, as an expired
        one's do; the request history keeps its ids, times and status."""
        job.payloads_deleted = True
        job.payload = None
        job.body = None
        self.jobs.pop(job.request_id, None)

    def request_cancel(self, job: Job) -> str:
        """fal's cancel outcome: ALREADY_COMPLETED, or CANCELLATION_REQUESTED (the job then completes cancelled)."""
        if job.state == "COMPLETED":
            return "ALREADY_COMPLETED"
        job.cancel.set()
        return "CANCELLATION_REQUESTED"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _notify(self, job: Job) -> None:
        """Wake the status streams of `job` only: one global event would wake every stream on every change,
        which is quadratic with many requests in flight."""
        changed, job.changed = job.changed, asyncio.Event()
        changed.set()

    def _leave_queue(self, job: Job) -> None:
        """`job` left the queue: every job queued behind it moved up one place."""
        queued = self._queued.get(job.endpoint.id, [])
        if job in queued:
            index = queued.index(job)
            del queued[index]
            for behind in queued[index:]:
                self._notify(behind)

    async def _advance(self, job: Job) -> None:
        behaviour = job.behaviour
        queue_wait = behaviour.queue_seconds
        timed_out = job.start_timeout is not None and queue_wait > job.start_timeout
        if job.start_timeout is not None:
            queue_wait = min(queue_wait, job.start_timeout)
        if await self._wait(job, queue_wait):
            self._complete_cancelled(job)
            return
        if timed_out:
            job.result_headers = {"X-Fal-Request-Timeout-Type": "user", "X-Fal-Error-Type": "request_timeout"}
            self._complete(job, 504, "Request timed out before it could start", "request_timeout")
            return
        job.state, job.started, job.started_at = "IN_PROGRESS", time.monotonic(), time.time()
        self._leave_queue(job)
        job.log(f"Starting {job.endpoint.id}")
        self._notify(job)
        for step in range(1, RUN_STEPS + 1):
            if await self._wait(job, behaviour.run_seconds / RUN_STEPS):
                self._complete_cancelled(job)
                return
            job.log(f"step {step}/{RUN_STEPS}")
            self._notify(job)
        if behaviour.error is not None:
            job.log(behaviour.error, "ERROR")
            self._complete(job, behaviour.status_code, behaviour.error, behaviour.error_type)
        else:
            job.body = self._output_for(job)
            self._complete(job, 200)

    async def _wait(self, job: Job, seconds: float) -> bool:
        """Sleep `seconds`, or less if the job is cancelled meanwhile; True when it was."""
        try:
            await asyncio.wait_for(job.cancel.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _complete_cancelled(self, job: Job) -> None:
        self._complete(job, 400, "Request was cancelled", "request_cancelled")

    def record_run(self, job: Job) -> None:
        """A request of the run API (`fal.run`), started now: no queue and no result to fetch later, but in the request
        history (and billed) as a queued one is; `end_run` ends it."""
        job.state, job.started, job.started_at = "IN_PROGRESS", time.monotonic(), time.time()
        self.history.append(job)

    def end_run(self, job: Job, status_code: int, body: Any) -> None:
        self._end(job, status_code)
        job.body = body

    def _end(self, job: Job, status_code: int, error: str | None = None, error_type: str | None = None) -> None:
        job.state, job.status_code, job.ended_at = "COMPLETED", status_code, time.time()
        job.price = self._price_of(job.endpoint.id) or {}
        job.inference_time = None if job.started is None else round(time.monotonic() - job.started, 4)
        if error is not None:
            job.error, job.error_type = error, error_type
            job.body = {"detail": error, "error_type": error_type}

    def _complete(self, job: Job, status_code: int, error: str | None = None, error_type: str | None = None) -> None:
        self._end(job, status_code, error, error_type)
        self._leave_queue(job)
        self._notify(job)
        loop = asyncio.get_running_loop()
        loop.call_later(self.result_ttl, self.jobs.pop, job.request_id, None)
        task = loop.create_task(self._on_complete(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
