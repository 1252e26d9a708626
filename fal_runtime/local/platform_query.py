"""What the Platform API's list operations share: fal's refusals (`Refused`), cursor paging, time windows and id
lists given as repeated or comma-separated query parameters."""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_LIMIT = 50
MAX_IDS = 50


class Refused(Exception):
    """A call fal would refuse: answered `status` with fal's `Error` shape."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def ids(value: Any) -> list[str]:
    """Ids given as a parameter (repeated or comma-separated): 1 to 50 of them."""
    ids = strings(value)
    if len(ids) > MAX_IDS:
        raise Refused(400, "validation_error", f"at most {MAX_IDS} ids may be given, got {len(ids)}")
    return ids


def strings(value: Any) -> list[str]:
    """A parameter given once or repeated, as a list of strings, comma-separated values split."""
    values = value if isinstance(value, list) else [] if value is None else [value]
    return [part.strip() for item in values for part in str(item).split(",") if part.strip()]


def encode_cursor(number: int) -> str:
    return base64.b64encode(str(number).encode()).decode()


def decode_cursor(cursor: Any) -> int:
    """The page a cursor names (None: the first): as fal's (`"Mg=="`), the base64 of the page number."""
    if cursor is None:
        return 1
    try:
        text = base64.b64decode(str(cursor).encode("ascii"), validate=True).decode("ascii")
        number = int(text)
    except (ValueError, UnicodeError, binascii.Error):
        raise Refused(
            400, "validation_error", f"query parameter 'cursor': invalid cursor {str(cursor)[:40]!r}"
        ) from None
    if number < 1 or not text.isdigit():
        raise Refused(400, "validation_error", f"query parameter 'cursor': invalid cursor {str(cursor)[:40]!r}")
    return number


def page(
    items: list[Any], query: dict[str, Any], default_limit: int = DEFAULT_LIMIT
) -> tuple[list[Any], str | None, bool]:
    """One page of `items` for the call's `limit` and `cursor`: (items, next_cursor, has_more)."""
    limit = int(query.get("limit", default_limit))
    number = decode_cursor(query.get("cursor"))
    start = (number - 1) * limit
    has_more = start + limit < len(items)
    return items[start : start + limit], encode_cursor(number + 1) if has_more else None, has_more


def parse_time(value: Any, name: str) -> datetime | None:
    """A `start`/`end` parameter (ISO 8601 date-time or date; UTC when it names no zone)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise Refused(400, "validation_error", f"query parameter '{name}': not an ISO 8601 date or date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def window(query: dict[str, Any], default: timedelta = timedelta(days=1)) -> tuple[float, float]:
    """The call's [start, end) as epoch seconds: `end` defaults to now, `start` to `default` before it."""
    end = parse_time(query.get("end"), "end")
    start = parse_time(query.get("start"), "start")
    end_at = end.timestamp() if end is not None else time.time() + 1e-3
    start_at = start.timestamp() if start is not None else end_at - default.total_seconds()
    if start_at > end_at:
        raise Refused(400, "validation_error", "query parameters 'start' and 'end': start is after end")
    return start_at, end_at
