"""Per-call options of the generated call functions, as TypedDicts so editors and mypy check them.

Imports nothing heavy: generated modules import these names only under TYPE_CHECKING, and the generator reads
`OPTION_NAMES` to rename an input field that would collide with an option.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:
    from fal_runtime._status import Status

ObjectLifetime = int | Literal["never", "immediate", "1h", "1d", "7d", "30d", "1y"]
"""How long fal keeps files: seconds (> 0), or one of fal-client's names ("immediate" is 60 s, "never" keeps fal's
default retention and sends nothing). Sent as `X-Fal-Object-Lifecycle-Preference: {"expiration_duration_seconds": N}`.
"""


class SubmitOptions(TypedDict, total=False):
    webhook_url: str
    """fal POSTs the result here when the request completes (`fal_webhook` query parameter)."""
    priority: Literal["normal", "low"]
    """Queue priority (`X-Fal-Queue-Priority`)."""
    hint: str
    """Runner hint for routing (`X-Fal-Runner-Hint`)."""
    start_timeout: float
    """Seconds the request may wait to *start*, queue time included (`X-Fal-Request-Timeout`)."""
    object_lifetime: ObjectLifetime
    """How long fal keeps the files this request produces (`X-Fal-Object-Lifecycle-Preference`, fal-js's
    `storageSettings`); overrides the client's `object_lifetime`."""
    headers: Mapping[str, str]
    """Extra request headers."""


class SubscribeOptions(SubmitOptions, total=False):
    on_enqueue: Callable[[str], object]
    """Called once with the request id after the submit succeeds."""
    on_queue_update: Callable[[Status], object]
    """Called with every status change while waiting."""
    with_logs: bool
    """Ask for the runner's logs in status updates."""
    client_timeout: float
    """Total seconds to wait; on expiry the request is cancelled server-side and a timeout error is raised."""
    poll_interval: float
    """Seconds between status polls when the status stream is unavailable."""


class RunOptions(TypedDict, total=False):
    hint: str
    """Runner hint for routing (`X-Fal-Runner-Hint`). There is no `priority`: fal.run has no queue to order."""
    start_timeout: float
    object_lifetime: ObjectLifetime
    """How long fal keeps the files this request produces (see `SubmitOptions.object_lifetime`)."""
    headers: Mapping[str, str]
    timeout: float
    """Total seconds for the one round trip."""


class StreamOptions(TypedDict, total=False):
    headers: Mapping[str, str]
    timeout: float


SUBMIT_OPTIONS: frozenset[str] = frozenset(SubmitOptions.__annotations__)
SUBSCRIBE_OPTIONS: frozenset[str] = frozenset(SubscribeOptions.__annotations__) | SUBMIT_OPTIONS
RUN_OPTIONS: frozenset[str] = frozenset(RunOptions.__annotations__)
STREAM_OPTIONS: frozenset[str] = frozenset(StreamOptions.__annotations__)
OPTION_NAMES: frozenset[str] = SUBSCRIBE_OPTIONS | RUN_OPTIONS | STREAM_OPTIONS
"""Every option keyword; an input field with one of these names (or `client`) is renamed by the generator."""
