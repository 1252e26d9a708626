"""A line-at-a-time Server-Sent Events decoder (the subset fal sends: `data:` lines, comments, blank-line dispatch).

httpx-sse opens the streams (it sets `Accept` and `Cache-Control`), but its event iterator swallows comment lines,
and fal's status stream is mostly comments: a keep-alive every 15 s while a request runs. Decoding line by line here
hands every line back to the caller's loop, so a `client_timeout` is checked on each keep-alive instead of waiting for
the next real event, which may be minutes away.

Lines are split here too (`LineDecoder`), from the body's chunks, not by httpx: its line iterator buffers a line
without limit and yields nothing until the line ends, so a server sending one endless line held the caller past its
deadline and grew memory without bound. Both decoders cap what they hold (`MAX_LINE`, `MAX_EVENT`).
"""

from __future__ import annotations

import re

from fal_runtime.errors import ProtocolError

MAX_LINE = 1 << 20
"""Bytes in one line: fal's events are one `data:` line of JSON, far below this; an image inlined as a data URI fits."""
MAX_EVENT = 16 << 20
"""Characters of data in one event (its `data:` lines together)."""

_EOL = re.compile(rb"\r\n|\r|\n")


class LineDecoder:
    """Feed the body's chunks; `feed` returns the lines they complete (without terminators), as UTF-8 text.

    A line is refused with `ProtocolError` as soon as more than `max_line` bytes of it are held, whether or not its
    end has arrived.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max_line = max_line
        self._partial = bytearray()
        self._after_cr = False  # the last chunk ended in CR: a LF opening the next one belongs to it

    def feed(self, chunk: bytes) -> list[str]:
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = False
        if not chunk:
            return []
        *ended, rest = _EOL.split(chunk)
        lines = []
        if ended:
            self._partial += ended[0]
            lines.append(self._line(bytes(self._partial)))
            self._partial.clear()
            lines.extend(self._line(part) for part in ended[1:])
            self._after_cr = chunk.endswith(b"\r")
        self._partial += rest
        self._check(len(self._partial))
        return lines

    def flush(self) -> list[str]:
        """The last line of a body that ended without a terminator."""
        if not self._partial:
            return []
        line = self._line(bytes(self._partial))
        self._partial.clear()
        return [line]

    def _line(self, raw: bytes) -> str:
        self._check(len(raw))
        return raw.decode("utf-8", "replace")

    def _check(self, size: int) -> None:
        if size > self._max_line:
            raise ProtocolError(f"event stream line longer than {self._max_line} bytes")


class SSEDecoder:
    """Feed lines without their terminator; `feed` returns an event's data when a blank line completes one."""

    def __init__(self, max_event: int = MAX_EVENT) -> None:
        self._max_event = max_event
        self._data: list[str] = []
        self._size = 0

    def feed(self, line: str) -> str | None:
        if not line:
            if not self._data:
                return None
            data, self._data, self._size = "\n".join(self._data), [], 0
            return data
        if line.startswith(":"):
            return None  # a comment: fal's keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            value = value[1:] if value.startswith(" ") else value
            self._size += len(value) + 1
            if self._size > self._max_event:
                raise ProtocolError(f"event stream event larger than {self._max_event} characters")
            self._data.append(value)
        return None  # `event`, `id` and `retry` carry nothing fal uses

    def flush(self) -> str | None:
        """The last event of a stream that ended without its blank line."""
        return self.feed("")
