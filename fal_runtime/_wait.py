"""The decisions of waiting for a queued request, shared by the sync and async clients.

Waiting means: read the status stream (`{status_url}/stream`) line by line, or poll the status URL when the
stream is unavailable; hand each status to `on_queue_update` with only the log lines not seen before; stop at
COMPLETED without any further status call; and give up when `client_timeout` expires. The clients run the loops
(one with `time.sleep`, one with `await asyncio.sleep`); every choice inside the loops is made here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from fal_runtime import errors
from fal_runtime._core import Reply, is_event_stream
from fal_runtime._sse import SSEDecoder
from fal_runtime._status import Completed, InProgress, LogWindow, Status, parse_status

# After COMPLETED fal closes the status stream (fal-js waits for that close before it returns the result). Reading
# on to the close, a few lines at most, lets the stream's connection go back to the pool: stopping at COMPLETED
# would drop it, and the result call would pay a new TCP and TLS handshake.
DRAIN_LINES = 16

_SUBSCRIBE_ONLY = ("on_enqueue", "on_queue_update", "with_logs", "client_timeout", "poll_interval")


class DeadlineExpired(Exception):
    """Internal: `client_timeout` ran out while waiting. Subscribe turns it into `errors.ClientTimeoutError`."""


class Waiter:
    """One wait for completion: log de-duplication, the callback, the poll interval and the deadline."""

    def __init__(
        self,
        *,
        logs: bool = False,
        poll_interval: float,
        client_timeout: float | None = None,
        on_queue_update: Callable[[Status], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, not {poll_interval!r}")
        if client_timeout is not None and not client_timeout > 0:
            raise ValueError(f"client_timeout must be positive, not {client_timeout!r}")
        self.logs = logs
        self.poll_interval = poll_interval
        self.client_timeout = client_timeout
        self._on_queue_update = on_queue_update
        self._clock = clock
        self._deadline = None if client_timeout is None else clock() + client_timeout
        self._window = LogWindow()
        self._decoder = SSEDecoder()

    def remaining(self) -> float | None:
        """Seconds left before `client_timeout`, None without one; never negative."""
        return None if self._deadline is None else max(0.0, self._deadline - self._clock())

    def check(self) -> None:
        """Raise `DeadlineExpired` once the deadline has passed; called before every wait and on every stream line."""
        if self._deadline is not None and self._clock() >= self._deadline:
            raise DeadlineExpired

    def poll_wait(self) -> float:
        """How long to sleep before the next poll: the interval, cut short by the deadline."""
        remaining = self.remaining()
        return self.poll_interval if remaining is None else min(self.poll_interval, remaining)

    def seen(self, status: Status) -> Status:
        """The status with only the logs not reported before (fal's logs are a moving window), after the callback."""
        if isinstance(status, (InProgress, Completed)):
            status = dataclasses.replace(status, logs=self._window.new(status.logs))
        if self._on_queue_update is not None:
            self._on_queue_update(status)
        return status

    # The status stream.

    @staticmethod
    def stream_usable(reply: Reply) -> bool:
        """A 2xx event stream; anything else (an old gateway, a proxy, an error) means: poll instead."""
        return reply.ok and is_event_stream(reply)

    def on_line(self, line: str) -> Status | None:
        """Feed one line of the status stream; a status when it completes an event. Checks the deadline first."""
        self.check()
        data = self._decoder.feed(line)
        if data is None:
            return None
        try:
            return self.seen(parse_status(json.loads(data)))
        except ValueError:
            # Not quoted: the waiter holds no key to redact with (the stream falls back to polling on this error).
            raise errors.ProtocolError(f"unreadable status-stream event ({len(data)} characters)") from None


class Subscription:
    """Subscribe's options split in two: those sent with the submit, and those that shape the wait."""

    def __init__(self, options: Mapping[str, Any], *, default_poll_interval: float) -> None:
        self.submit_options = {k: v for k, v in options.items() if k not in _SUBSCRIBE_ONLY}
        self._on_enqueue: Callable[[str], object] | None = options.get("on_enqueue")
        self.waiter = Waiter(
            logs=bool(options.get("with_logs", False)),
            poll_interval=options.get("poll_interval") or default_poll_interval,
            client_timeout=options.get("client_timeout"),
            on_queue_update=options.get("on_queue_update"),
        )

    def enqueued(self, request_id: str) -> None:
        if self._on_enqueue is not None:
            self._on_enqueue(request_id)

    def timeout_error(self, request_id: str, *, cancelled: bool) -> errors.ClientTimeoutError:
        outcome = "cancelled" if cancelled else "could not be cancelled; it may still run"
        return errors.ClientTimeoutError(
            f"client_timeout of {self.waiter.client_timeout} s expired; request {request_id} {outcome}",
            request_id=request_id,
            cancelled=cancelled,
        )
