"""Request history, usage, billing events and analytics of the Platform API, computed from the requests this server
ran (`Store.history`: every queue submit and run-API call, kept after its result expires, up to
`store.HISTORY_LIMIT`).

- A request is billed once it completed with a 2xx status (failed and cancelled requests are not billed, as on fal).
  Its units are the result's billable units (`x-fal-billable-units`): the job's `billable_units` when it has one,
  else the header among its result headers, else the `billable_units` of its endpoint's price entry (what the
  result route sends in that header), else 1.
- Its unit price, unit and currency are the endpoint's price set with `LocalServer.set_prices` or `/_local/prices`
  (what `/v1/models/pricing` answers) when the request ended: a price set later does not reprice it. An endpoint
  without a (usable) price costs 0 per "request" in USD.
- Cost: `cost_subtotal = units × unit_price`, no discounts (`percent_discount` null, `cost_discount` 0), so
  `cost_total` (and the deprecated `cost`) equal the subtotal; `cost_estimate_nano_usd` is the total in nano USD.
- Usage groups billed requests by endpoint, unit, unit price and currency: `summary` over the whole window and/or
  `time_series` buckets (by `timeframe`, or as fal picks it from the window's length; in `timezone`), paged by bucket.
- Billing events are one per billed request, newest first. Analytics count requests (2xx success, 4xx user errors,
  5xx errors) and give percentiles of their queue time (`*_prepare_duration`) and run time (`*_duration`).

Times: a request's history times are when it was sent, started and ended; usage, billing and analytics count a
request at its end (when it was billed), the request history at its sending. `start` defaults to 24 hours before
`end` (history with a `request_id`: 90 days), `end` to now, as fal documents. Filters on API keys and team members
apply to what each request recorded: `api_key_id` to the id of the key it came with (`Key id:secret`); every request
came with a key, so `login_username` matches none; `team_username` matches this account's (`local`) only.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .platform_query import Refused, ids, page, strings, window
from .platform_schema import JSON, Operation, PlatformSpec
from .pricing import DEFAULT_CURRENCY, DEFAULT_UNIT, Prices
from .store import Job

UNITS_HEADER = "x-fal-billable-units"
LOCAL_USER = "local"
AUTH_METHOD = "API Key"
RUNNER_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "fal_runtime.local/runner"))
_TIMEFRAMES = (  # fal's automatic timeframe: the first whose limit the window is under
    ("minute", timedelta(hours=2)),
    ("hour", timedelta(days=2)),
    ("day", timedelta(days=64)),
    ("week", timedelta(days=183)),
)


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def billable_units(job: Job, price: Mapping[str, Any] | None = None) -> float:
    """The units a completed request is billed for (see the module's doc); `price`: its endpoint's price entry."""
    units = getattr(job, "billable_units", None)
    if units is None:
        units = next((v for k, v in job.result_headers.items() if k.lower() == UNITS_HEADER), None)
    if units is None and price is not None:
        units = price.get("billable_units")
    try:
        value = float(units) if units is not None and not isinstance(units, bool) else 1.0
    except (TypeError, ValueError):
        return 1.0
    return value if math.isfinite(value) and value >= 0 else 1.0


@dataclass(frozen=True)
class Charge:
    """What one billed request costs."""

    job: Job
    units: float
    unit: str
    unit_price: float
    currency: str

    @property
    def ended_at(self) -> float:
        return self.job.ended_at or self.job.sent_at

    @property
    def cost(self) -> float:
        return round(self.units * self.unit_price, 9)


def charge(job: Job, prices: Prices) -> Charge | None:
    """The charge of a request: None when it is not billed (not completed, or not a 2xx)."""
    if job.state != "COMPLETED" or not 200 <= job.status_code < 300:
        return None
    price = job.price if job.price is not None else prices.get(job.endpoint.id) or {}  # as it was when it ended
    amount = price.get("unit_price")
    number = float(amount) if isinstance(amount, (int, float)) and not isinstance(amount, bool) else math.nan
    usable = math.isfinite(number) and number >= 0
    unit, currency = price.get("unit"), price.get("currency")
    return Charge(
        job,
        billable_units(job, price),
        unit if isinstance(unit, str) and unit else DEFAULT_UNIT,
        number if usable else 0.0,
        currency if isinstance(currency, str) and len(currency) == 3 else DEFAULT_CURRENCY,
    )


def _outcome(job: Job) -> str | None:
    """fal's request status: success (2xx), user_error (4xx), error (5xx); None while it runs."""
    if job.state != "COMPLETED":
        return None
    return "success" if job.status_code < 400 else "user_error" if job.status_code < 500 else "error"


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return round(ordered[rank - 1], 4)


class Usage:
    """The Platform API's reports over a snapshot of the server's requests."""

    def __init__(self, jobs: Iterable[Job], prices: Prices, spec: PlatformSpec) -> None:
        self.jobs = list(jobs)
        self.prices = prices
        self.spec = spec

    # -- request history ----------------------------------------------------------------------------------------------

    def _request(self, job: Job, payloads: bool, billing: bool) -> JSON:
        started = job.started_at
        item: JSON = {
            "request_id": job.request_id,
            "endpoint_id": job.endpoint.id,
            "sent_at": iso(job.sent_at),
            "started_at": iso(started if started is not None else job.sent_at),
            "ended_at": iso(job.ended_at),
            "status_code": job.status_code if job.state == "COMPLETED" else None,
            "duration": round(job.ended_at - started, 4) if started is not None and job.ended_at is not None else None,
            "runner_id": RUNNER_ID if started is not None else None,
        }
        if payloads:
            item["json_input"] = None if job.payloads_deleted else job.payload
            item["json_output"] = None if job.payloads_deleted or job.state != "COMPLETED" else job.body
        if billing:
            billed = charge(job, self.prices)
            item["billable_units"] = billed.units if billed is not None else None
        return item

    def requests_by_endpoint(self, operation: Operation, query: JSON) -> JSON:
        wanted = set(ids(query.get("endpoint_id")))
        request_id = query.get("request_id")
        start, end = window(query, timedelta(days=90 if request_id else 1))
        status = query.get("status")
        found = [
            j
            for j in self.jobs
            if j.endpoint.id in wanted
            and start <= j.sent_at < end
            and (request_id is None or j.request_id == request_id)
            and (status is None or _outcome(j) == status)
        ]
        if query.get("sort_by") == "duration":
            found.sort(key=lambda j: -(j.ended_at - j.started_at) if j.ended_at and j.started_at else math.inf)
        else:
            found.sort(key=lambda j: -(j.ended_at or math.inf))
        chosen, next_cursor, has_more = page(found, query)
        expand = strings(query.get("expand"))
        schema = self.spec.at(operation.schema, "items", "[]")
        items = [self.spec.shaped(schema, self._request(j, "payloads" in expand, "billing" in expand)) for j in chosen]
        return {"items": items, "next_cursor": next_cursor, "has_more": has_more}

    def search(self, operation: Operation, query: JSON) -> JSON:
        wanted = set(ids(query.get("endpoint_id")) or ids(query.get("endpoint")))  # `endpoint`: deprecated, loses
        text = str(query.get("query") or "").lower()
        found = [
            j
            for j in reversed(self.jobs)
            if (not wanted or j.endpoint.id in wanted)
            and not query.get("exclude_api_requests")  # every request here came through the API
            and (not text or text in _searchable(j))
        ]
        chosen, next_cursor, has_more = page(found, query)
        schema = self.spec.at(operation.schema, "results", "[]")
        results = [self.spec.shaped(schema, self._request(j, True, False)) for j in chosen]
        return {"results": results, "next_cursor": next_cursor, "has_more": has_more}

    # -- billing --------------------------------------------------------------------------------------------------------

    def _charges(self, query: JSON, field: str = "endpoint_id") -> list[Charge]:
        start, end = window(query)
        wanted = set(ids(query.get(field)))
        requests = set(ids(query.get("request_id")))
        keys = set(ids(query.get("api_key_id")))
        # Every request here came with a key, none with a team member's login; the one team is this account
        logins = set(ids(query.get("login_username")))
        teams = set(ids(query.get("team_username")))
        if logins or (teams and LOCAL_USER not in teams):
            return []
        charges = (charge(j, self.prices) for j in self.jobs)
        return [
            c
            for c in charges
            if c is not None
            and start <= c.ended_at < end
            and (not wanted or c.job.endpoint.id in wanted)
            and (not requests or c.job.request_id in requests)
            and (not keys or c.job.api_key_id in keys)
        ]

    def billing_events(self, operation: Operation, query: JSON) -> JSON:
        expand = strings(query.get("expand"))
        charges = sorted(self._charges(query), key=lambda c: -c.ended_at)
        chosen, next_cursor, has_more = page(charges, query)
        schema = self.spec.at(operation.schema, "billing_events", "[]")
        events = []
        for c in chosen:
            event: JSON = {
                "username": LOCAL_USER,
                "request_id": c.job.request_id,
                "endpoint_id": c.job.endpoint.id,
                "timestamp": iso(c.ended_at),
                "output_units": c.units,
                "unit_price": c.unit_price,
                "percent_discount": None,
                "cost_subtotal": c.cost,
                "cost_discount": 0.0,
                "cost_total": c.cost,
                "cost_estimate_nano_usd": round(c.cost * 1e9),
                **_auth(expand, c.job.api_key_id),
            }
            events.append(self.spec.shaped(schema, event))
        return {"billing_events": events, "next_cursor": next_cursor, "has_more": has_more}

    def usage(self, operation: Operation, query: JSON) -> JSON:
        expand = strings(query.get("expand")) or ["time_series"]
        if "time_series" not in expand and "summary" not in expand:
            raise Refused(400, "validation_error", "query parameter 'expand': 'time_series' or 'summary' is required")
        charges = sorted(self._charges(query), key=lambda c: c.ended_at)
        line_schema = self.spec.at(operation.schema, "summary", "[]")

        by_key = "auth_method" in expand or "auth_method_structured" in expand  # a line per key, as fal splits them

        def lines(group: list[Charge]) -> list[JSON]:
            rows: dict[tuple[str, str, float, str, str | None], list[Charge]] = {}
            for c in group:
                key = c.job.api_key_id if by_key else None
                rows.setdefault((c.job.endpoint.id, c.unit, c.unit_price, c.currency, key), []).append(c)
            made = []
            for (endpoint_id, unit, unit_price, currency, key), row in rows.items():
                cost = round(sum(c.cost for c in row), 9)
                line: JSON = {
                    "username": LOCAL_USER,
                    "product": "model_apis",
                    "endpoint_id": endpoint_id,
                    "unit": unit,
                    "quantity": sum(c.units for c in row),
                    "unit_price": unit_price,
                    "percent_discount": None,
                    "cost_subtotal": cost,
                    "cost_discount": 0.0,
                    "cost_total": cost,
                    "cost": cost,
                    "currency": currency,
                    **_auth(expand, key),
                }
                made.append(self.spec.shaped(line_schema, line))
            return made

        return self._report(query, expand, charges, lambda c: c.ended_at, lines)

    def analytics(self, operation: Operation, query: JSON) -> JSON:
        expand = strings(query.get("expand")) or ["time_series", "request_count"]
        if "time_series" not in expand and "summary" not in expand:
            raise Refused(400, "validation_error", "query parameter 'expand': 'time_series' or 'summary' is required")
        schema = self.spec.at(operation.schema, "summary", "[]")
        known = set(schema.get("properties") or {}) - {"endpoint_id"}
        metrics = [m for m in expand if m in known]
        if not metrics:
            raise Refused(400, "validation_error", "query parameter 'expand': at least one metric is required")
        wanted = set(ids(query.get("endpoint_id")))
        start, end = window(query)
        jobs = [
            j
            for j in self.jobs
            if j.state == "COMPLETED" and j.endpoint.id in wanted and start <= (j.ended_at or j.sent_at) < end
        ]

        def rows(group: list[Job]) -> list[JSON]:
            by_endpoint: dict[str, list[Job]] = {}
            for j in group:
                by_endpoint.setdefault(j.endpoint.id, []).append(j)
            return [
                self.spec.shaped(schema, {"endpoint_id": e, **_metrics(members, metrics)})
                for e, members in by_endpoint.items()
            ]

        return self._report(query, expand, jobs, lambda j: j.ended_at or j.sent_at, rows)

    def _report(
        self,
        query: JSON,
        expand: list[str],
        things: list[Any],
        when: Callable[[Any], float],
        rows: Callable[[list[Any]], list[JSON]],
    ) -> JSON:
        """`summary` (rows over the whole window) and/or `time_series` (rows per bucket, paged by bucket)."""
        start, end = window(query)
        timeframe = query.get("timeframe") or _timeframe(timedelta(seconds=end - start))
        try:
            zone = ZoneInfo(str(query.get("timezone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            raise Refused(400, "validation_error", "query parameter 'timezone': unknown time zone") from None
        body: JSON = {}
        if "time_series" in expand:
            buckets: dict[datetime, list[Any]] = {}
            for thing in things:
                buckets.setdefault(_bucket(when(thing), str(timeframe), zone), []).append(thing)
            series = [{"bucket": b.isoformat(), "results": rows(group)} for b, group in sorted(buckets.items())]
            chosen, body["next_cursor"], body["has_more"] = page(series, query)
            body["time_series"] = chosen
        else:
            body["next_cursor"], body["has_more"] = None, False
        if "summary" in expand:
            body["summary"] = rows(things)
        return body


def _auth(expand: list[str], api_key_id: str | None = None) -> JSON:
    auth: JSON = {}
    if "auth_method" in expand:
        auth["auth_method"] = AUTH_METHOD
    if "auth_method_structured" in expand:
        auth["auth_method_structured"] = {"detail": AUTH_METHOD}
        if api_key_id is not None:
            auth["auth_method_structured"]["api_key_id"] = api_key_id
    return auth


def _searchable(job: Job) -> str:
    if job.payloads_deleted:
        return job.endpoint.id.lower()
    return f"{job.endpoint.id}\n{json.dumps(job.payload)}\n{json.dumps(job.body)}".lower()


def _timeframe(span: timedelta) -> str:
    return next((name for name, limit in _TIMEFRAMES if span < limit), "month")


def _bucket(epoch: float, timeframe: str, zone: ZoneInfo) -> datetime:
    """The start of the `timeframe` holding `epoch`, in `zone`."""
    moment = datetime.fromtimestamp(epoch, zone)
    if timeframe == "minute":
        return moment.replace(second=0, microsecond=0)
    if timeframe == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if timeframe == "week":
        return day - timedelta(days=day.weekday())
    if timeframe == "month":
        return day.replace(day=1)
    return day


def _metrics(jobs: list[Job], metrics: list[str]) -> JSON:
    """The requested analytics of a group of completed requests (percentiles only when some request has a time)."""
    outcomes = [_outcome(j) for j in jobs]
    run = [j.ended_at - j.started_at for j in jobs if j.ended_at is not None and j.started_at is not None]
    prepare = [(j.started_at or j.ended_at or j.sent_at) - j.sent_at for j in jobs]
    counts = {
        "request_count": len(jobs),
        "success_count": outcomes.count("success"),
        "user_error_count": outcomes.count("user_error"),
        "error_count": outcomes.count("error"),
        "runtime_error_count": outcomes.count("error"),
        "startup_error_count": 0,
        "connection_error_count": 0,
        "timeout_error_count": sum(1 for j in jobs if j.error_type == "request_timeout"),
        "cold_boot_count": 0,
        "total_billable_duration": round(sum(run), 4),
    }
    found: JSON = {}
    for metric in metrics:
        if metric in counts:
            found[metric] = counts[metric]
        elif metric.startswith("p") and metric.endswith("_duration") and "cold_boot" not in metric:
            percent, _, kind = metric[1:].partition("_")
            values = prepare if kind == "prepare_duration" else run
            if values and percent.isdigit():
                found[metric] = _percentile([max(v, 0.0) for v in values], float(percent))
    return found
