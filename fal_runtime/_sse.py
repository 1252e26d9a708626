"""A line-at-a-time Server-Sent Events decoder (the subset fal sends: `data:` lines, comments, blank-line dispatch).

httpx-sse opens the streams (it sets `Accept` and `Cache-Control`), but its event iterator swallows comment lines,
and fal's status stream is mostly comments: a keep-alive every 15 s while a request runs. Decoding line by line here
hands every line back to the caller's loop, so a `client_timeout` is checked on each keep-alive instead of waiting for
the next real event, which may be minutes away.
"""

from __future__ import annotations


class SSEDecoder:
    """Feed lines without their terminator; `feed` returns an event's data when a blank line completes one."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if not line:
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None  # a comment: fal's keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None  # `event`, `id` and `retry` carry nothing fal uses

    def flush(self) -> str | None:
        """The last event of a stream that ended without its blank line."""
        return self.feed("")
