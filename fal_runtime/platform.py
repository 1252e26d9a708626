"""fal's Platform API as typed calls: the model search (`GET https://api.fal.ai/v1/models`, one page or every page by
cursor), and what endpoints cost (`GET /v1/models/pricing`, `POST /v1/models/pricing/estimate`).

Helpers over the generated Platform API (`generated.platform`, from fal's own document): each request is built and
sent by the generated operation (`get_models`, `get_pricing`, `estimate_pricing`), so the wire is fal's spec's, written
once; what this module adds is reading the answers leniently (a model search entry fal adds or drops a field in never
breaks a walk) and checking every amount. The generated operations use `generated.platform`'s typed models; these
helpers keep theirs for apps (and `codegen sync`) that must not fail on one odd entry.

The request goes through a runtime client's `api_request`, so it shares that client's connection pool, TLS settings
(`SSL_CERT_FILE`, `verify=`) and retry rules: it is an idempotent read, so transport errors, 408, 429 and 5xx are
retried with backoff, and a 429's `Retry-After` is honoured. The host is `FAL_API_HOST` (default `api.fal.ai`). A page
of the model search is read in chunks up to `max_page_bytes` (default 64 MiB: fal's pages with `expand=openapi-3.0`
hold whole OpenAPI documents, a few MiB at most): past it the connection is closed and `ProtocolError` raised.

Auth is optional on fal's side (a key raises the rate limit): the key is sent when one is configured, and only where
the client would send it anyway — fal's own hosts and the hosts the client was configured with — so pointing
`FAL_API_HOST` somewhere else never hands that host the key.

Pricing needs the key (fal answers 401 without one): with none configured, `MissingCredentialsError` is raised before
anything is sent. The estimate is a read too (it computes, it bills nothing), so it is retried like the search. Every
amount fal answers is checked before a caller can add it up or print it: a `unit_price` or `total_cost` that is not a
JSON number, negative, NaN, infinite or above `MAX_UNIT_PRICE` (per call or unit asked for, for a total), or a
`currency` that is not a three-letter code, raises `ProtocolError` naming the endpoint and the field.

Arguments are checked before anything is sent. A page that cannot be read (not JSON, `models` not a list, an entry
without a string `endpoint_id`) raises `ProtocolError` naming the page's cursor.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pydantic
from pydantic import ConfigDict, Field

from fal_runtime import errors
from fal_runtime._core import API_HOST_ENV as API_HOST_ENV  # defined there (Client.api_request reads it), kept here
from fal_runtime._core import DEFAULT_API_HOST as DEFAULT_API_HOST
from fal_runtime._core import Core, Reply, base_url
from fal_runtime.models import FalModel

if TYPE_CHECKING:
    from fal_runtime._client import AsyncClient, Client
    from fal_runtime.api import ApiOperation


MAX_ENDPOINT_IDS = 50  # fal's limit for find mode
MAX_PAGE_BYTES = 64 * 1024 * 1024  # the default cap of one model-search page
ModelStatus = Literal["active", "deprecated"]

# Every call here is a read that changes nothing (the estimate computes, it bills nothing): `api_request` retries it
# like a status call (transport errors, 408, 429 with its Retry-After, 5xx), never like a submit.
_SNIPPET = 200  # characters of a bad body or cursor quoted in an error


class ModelMetadata(FalModel):
    """What fal says about an endpoint. Every field is optional and unknown fields are kept (`model_extra`), so fal
    adding or dropping a field never breaks a caller."""

    model_config = ConfigDict(extra="allow")

    display_name: str | None = None
    category: str | None = None
    description: str | None = None
    status: ModelStatus | str | None = None
    tags: list[Any] | None = None
    updated_at: str | None = None
    date: str | None = None
    kind: Literal["inference", "training"] | str | None = None
    license_type: str | None = None
    group: dict[str, Any] | None = None
    stream_url: str | None = None
    model_url: str | None = None
    thumbnail_url: str | None = None
    highlighted: bool | None = None
    pinned: bool | None = None
    is_favorited: bool | None = None


class ModelEntry(FalModel):
    """One endpoint of the catalogue; `openapi` holds its whole OpenAPI document when `expand=["openapi-3.0"]`."""

    model_config = ConfigDict(extra="allow")

    endpoint_id: str
    metadata: ModelMetadata = Field(default_factory=ModelMetadata)
    openapi: dict[str, Any] | None = None


class ModelsPage(FalModel):
    """One page of results; pass `next_cursor` back as `cursor` for the next while `has_more`."""

    model_config = ConfigDict(extra="allow")

    models: list[ModelEntry]
    next_cursor: str | None = None
    has_more: bool = False


def api_base() -> str:
    """`https://{FAL_API_HOST}/v1`, read at each call so a test (or an app) can set it after import."""
    return f"{base_url(os.environ.get(API_HOST_ENV) or DEFAULT_API_HOST)}/v1"


def search_models(
    *,
    endpoint_ids: Sequence[str] = (),
    query: str | None = None,
    category: str | None = None,
    status: ModelStatus | None = None,
    expand: Sequence[str] = (),
    limit: int | None = None,
    cursor: str | None = None,
    client: Client | None = None,
    max_page_bytes: int = MAX_PAGE_BYTES,
) -> ModelsPage:
    """One page of fal's model search: find (`endpoint_ids`, 1-50), search (`query`, `category`, `status`) or, with
    no filters, list. `client` defaults to the runtime's default client. A page over `max_page_bytes` (default
    64 MiB) is not read past the cap: `ProtocolError` naming it."""
    params = _params(endpoint_ids, query, category, status, expand, limit, cursor, max_page_bytes)
    client = _sync_client(client)
    reply = _operation("get_models").send(params, client=client, cursor=cursor, max_bytes=max_page_bytes,
                                          auth="optional", raise_for_status=False)  # fmt: skip
    return _page(client.core, reply, cursor)


def iter_models(
    *,
    endpoint_ids: Sequence[str] = (),
    query: str | None = None,
    category: str | None = None,
    status: ModelStatus | None = None,
    expand: Sequence[str] = (),
    limit: int | None = None,
    client: Client | None = None,
    max_page_bytes: int = MAX_PAGE_BYTES,
) -> Iterator[ModelEntry]:
    """Every matching entry, page after page by cursor (one request per page, fetched as the iteration needs it,
    each capped at `max_page_bytes`). Arguments are checked now, not at the first `next()`."""
    _params(endpoint_ids, query, category, status, expand, limit, None, max_page_bytes)
    chosen = _sync_client(client)

    def walk() -> Iterator[ModelEntry]:
        walker = _Walk()
        while True:
            page = search_models(
                endpoint_ids=endpoint_ids,
                query=query,
                category=category,
                status=status,
                expand=expand,
                limit=limit,
                cursor=walker.cursor,
                client=chosen,
                max_page_bytes=max_page_bytes,
            )
            yield from page.models
            if not walker.advance(page, chosen.core):
                return

    return walk()


async def search_models_async(
    *,
    endpoint_ids: Sequence[str] = (),
    query: str | None = None,
    category: str | None = None,
    status: ModelStatus | None = None,
    expand: Sequence[str] = (),
    limit: int | None = None,
    cursor: str | None = None,
    client: AsyncClient | None = None,
    max_page_bytes: int = MAX_PAGE_BYTES,
) -> ModelsPage:
    """`search_models` on an `AsyncClient` (default: the running loop's default async client)."""
    params = _params(endpoint_ids, query, category, status, expand, limit, cursor, max_page_bytes)
    client = _async_client(client)
    reply = await _operation("get_models").send_async(params, client=client, cursor=cursor, max_bytes=max_page_bytes,
                                                      auth="optional", raise_for_status=False)  # fmt: skip
    return _page(client.core, reply, cursor)


def iter_models_async(
    *,
    endpoint_ids: Sequence[str] = (),
    query: str | None = None,
    category: str | None = None,
    status: ModelStatus | None = None,
    expand: Sequence[str] = (),
    limit: int | None = None,
    client: AsyncClient | None = None,
    max_page_bytes: int = MAX_PAGE_BYTES,
) -> AsyncIterator[ModelEntry]:
    """`iter_models` on an `AsyncClient`: `async for entry in iter_models_async(...)`. Arguments are checked now;
    the default client is chosen at the first page (it belongs to the running loop)."""
    _params(endpoint_ids, query, category, status, expand, limit, None, max_page_bytes)
    if client is not None:
        _async_client(client)

    async def walk() -> AsyncIterator[ModelEntry]:
        chosen = _async_client(client)
        walker = _Walk()
        while True:
            page = await search_models_async(
                endpoint_ids=endpoint_ids,
                query=query,
                category=category,
                status=status,
                expand=expand,
                limit=limit,
                cursor=walker.cursor,
                client=chosen,
                max_page_bytes=max_page_bytes,
            )
            for entry in page.models:
                yield entry
            if not walker.advance(page, chosen.core):
                return

    return walk()


class _Walk:
    """The cursor of a walk over pages. A server that says `has_more` without a cursor, or hands back a cursor it
    gave before, would make the walk loop forever: that is a ProtocolError instead."""

    def __init__(self) -> None:
        self.cursor: str | None = None
        self._seen: set[str] = set()

    def advance(self, page: ModelsPage, core: Core) -> bool:
        if not page.has_more:
            return False
        where = _where(self.cursor, core)
        if not page.next_cursor:
            raise errors.ProtocolError(f"model search {where}: has_more is true but next_cursor is missing")
        if page.next_cursor in self._seen or page.next_cursor == self.cursor:
            raise errors.ProtocolError(
                f"model search {where}: next_cursor {_quote(page.next_cursor, core)} was already visited"
            )
        self._seen.add(page.next_cursor)
        self.cursor = page.next_cursor
        return True


def _params(
    endpoint_ids: Sequence[str],
    query: str | None,
    category: str | None,
    status: str | None,
    expand: Sequence[str],
    limit: int | None,
    cursor: str | None,
    max_page_bytes: int = MAX_PAGE_BYTES,
) -> dict[str, Any]:
    """The search's parameters by wire name (the cursor goes separately); ValueError/TypeError for what fal would
    refuse, and for a `max_page_bytes` that is no cap, before any request is made."""
    if isinstance(max_page_bytes, bool) or not isinstance(max_page_bytes, int) or max_page_bytes < 1:
        raise ValueError(f"max_page_bytes must be a positive number of bytes, got {max_page_bytes!r}")
    if isinstance(endpoint_ids, str) or isinstance(expand, str):
        raise TypeError("endpoint_ids and expand take a sequence of strings, not one string")
    ids = list(endpoint_ids)
    if len(ids) > MAX_ENDPOINT_IDS:
        raise ValueError(f"endpoint_ids: fal finds at most {MAX_ENDPOINT_IDS} ids at once, got {len(ids)}")
    if any(not isinstance(i, str) or not i.strip() for i in ids):
        raise ValueError("endpoint_ids: every id must be a non-empty string")
    if any(not isinstance(e, str) or not e for e in expand):
        raise ValueError("expand: every expansion must be a non-empty string (e.g. 'openapi-3.0')")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
    if status is not None and status not in ("active", "deprecated"):
        raise ValueError(f"status must be 'active' or 'deprecated' (or None for both), got {status!r}")
    for name, value in (("query", query), ("category", category), ("cursor", cursor)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    given = {"endpoint_id": ids or None, "q": query or None, "category": category or None, "status": status or None,
             "expand": list(expand) or None, "limit": limit}  # fmt: skip
    return {name: value for name, value in given.items() if value is not None}


def _page(core: Core, reply: Reply, cursor: str | None) -> ModelsPage:
    """A 2xx reply as a page; the mapped HTTPError otherwise (a 429 that outlasted the retries: RateLimitError)."""
    if not reply.ok:
        raise core.error_for(reply)
    where = _where(cursor, core)
    try:
        data = reply.json()
    except (ValueError, UnicodeDecodeError):
        raise errors.ProtocolError(f"model search {where}: the body is not JSON: {_body(reply, core)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise errors.ProtocolError(
            f"model search {where}: expected an object with a 'models' list: {_body(reply, core)}"
        )
    for index, item in enumerate(data["models"]):
        if not isinstance(item, dict) or not isinstance(item.get("endpoint_id"), str):
            shown = core.redact(repr(item)[:_SNIPPET])
            raise errors.ProtocolError(f"model search {where}: entry {index} has no string 'endpoint_id': {shown}")
    try:
        return ModelsPage.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise errors.ProtocolError(f"model search {where}: {core.redact(problems)[: _SNIPPET * 2]}") from None


def _where(cursor: str | None, core: Core) -> str:
    return f"page at cursor {_quote(cursor, core)}" if cursor else "first page (no cursor)"


def _quote(text: str, core: Core) -> str:
    shown = text if len(text) <= 80 else f"{text[:80]}...({len(text)} chars)"
    return repr(core.redact(shown))


def _body(reply: Reply, core: Core) -> str:
    text = reply.content[:_SNIPPET].decode("utf-8", "replace")
    more = f"... ({len(reply.content)} bytes)" if len(reply.content) > _SNIPPET else ""
    return f"{core.redact(text)!r}{more}"


# Pricing.

EstimateType = Literal["historical_api_price", "unit_price"]

MAX_UNIT_PRICE = 1_000_000.0
"""The most one unit may cost, in any currency: a larger `unit_price` (or a total above this per call or unit asked
for) is not a price but a broken answer, and raises ProtocolError rather than reach a caller's arithmetic."""

_CURRENCY = re.compile(r"[A-Za-z]{3}")  # an ISO 4217 code; fal says "USD"


class EndpointPrice(FalModel):
    """What one unit of an endpoint's output costs: `unit_price` in `currency` per `unit` (`image`, `megapixel`,
    `second`, `video`, `request`, ...). Checked on arrival: `unit_price` is a finite number from 0 to
    `MAX_UNIT_PRICE`, `currency` a three-letter code (upper case), `unit` a non-empty string (fal's text, unfiltered:
    strip control characters before printing it)."""

    model_config = ConfigDict(extra="allow")

    endpoint_id: str
    unit_price: float
    unit: str
    currency: str = "USD"


class PricesPage(FalModel):
    """fal's answer to a pricing query: the prices of the endpoints asked for (fal may leave an id out)."""

    model_config = ConfigDict(extra="allow")

    prices: list[EndpointPrice]
    next_cursor: str | None = None
    has_more: bool = False

    def price_of(self, endpoint_id: str) -> EndpointPrice | None:
        return next((p for p in self.prices if p.endpoint_id == endpoint_id), None)


class CostEstimate(FalModel):
    """fal's estimate: `total_cost` in `currency` for the quantities asked for (checked as `EndpointPrice` is, the
    total bounded by `MAX_UNIT_PRICE` per call or unit asked for)."""

    model_config = ConfigDict(extra="allow")

    estimate_type: EstimateType | str
    total_cost: float
    currency: str = "USD"


def get_pricing(endpoint_ids: Sequence[str], *, cursor: str | None = None, client: Client | None = None) -> PricesPage:
    """The unit price of each endpoint (1-50 ids): `GET /v1/models/pricing?endpoint_id=...`."""
    params = _pricing_params(endpoint_ids, cursor)
    client = _sync_client(client)
    reply = _operation("get_pricing").send(params, client=client, cursor=cursor, raise_for_status=False)
    return _prices(client.core, reply)


async def get_pricing_async(
    endpoint_ids: Sequence[str], *, cursor: str | None = None, client: AsyncClient | None = None
) -> PricesPage:
    """`get_pricing` on an `AsyncClient`."""
    params = _pricing_params(endpoint_ids, cursor)
    client = _async_client(client)
    reply = await _operation("get_pricing").send_async(params, client=client, cursor=cursor, raise_for_status=False)
    return _prices(client.core, reply)


def estimate_cost(
    calls: Mapping[str, int] | None = None, *, units: Mapping[str, float] | None = None, client: Client | None = None
) -> CostEstimate:
    """What a workload would cost: `POST /v1/models/pricing/estimate`. Give either `calls` (endpoint id → number of
    calls, priced from fal's history of what a call costs: `historical_api_price`) or `units` (endpoint id →
    quantity of the endpoint's billing unit, e.g. megapixels or seconds: `unit_price`)."""
    body = _estimate_body(calls, units)
    client = _sync_client(client)
    reply = _operation("estimate_pricing").send({}, body, client=client, idempotent=True, raise_for_status=False)
    return _estimate(client.core, reply, body)


async def estimate_cost_async(
    calls: Mapping[str, int] | None = None,
    *,
    units: Mapping[str, float] | None = None,
    client: AsyncClient | None = None,
) -> CostEstimate:
    """`estimate_cost` on an `AsyncClient`."""
    body = _estimate_body(calls, units)
    client = _async_client(client)
    reply = await _operation("estimate_pricing").send_async(
        {}, body, client=client, idempotent=True, raise_for_status=False
    )
    return _estimate(client.core, reply, body)


def _check_ids(ids: list[Any], name: str) -> None:
    if not 1 <= len(ids) <= MAX_ENDPOINT_IDS:
        raise ValueError(f"{name}: fal prices 1 to {MAX_ENDPOINT_IDS} endpoints at once, got {len(ids)}")
    if any(not isinstance(i, str) or not i.strip() for i in ids):
        raise ValueError(f"{name}: every endpoint id must be a non-empty string")


def _pricing_params(endpoint_ids: Sequence[str], cursor: str | None) -> dict[str, str | list[str]]:
    if isinstance(endpoint_ids, str):
        raise TypeError("endpoint_ids takes a sequence of strings, not one string")
    ids = list(endpoint_ids)
    _check_ids(ids, "endpoint_ids")
    if cursor is not None and not isinstance(cursor, str):
        raise TypeError(f"cursor must be a string, got {type(cursor).__name__}")
    return {"endpoint_id": ids}


def _estimate_body(calls: Mapping[str, int] | None, units: Mapping[str, float] | None) -> dict[str, Any]:
    if (calls is None) == (units is None):
        raise TypeError("estimate_cost takes either calls= (numbers of calls) or units= (billing units), not both")
    given = calls if calls is not None else units
    name = "calls" if calls is not None else "units"
    if not isinstance(given, Mapping):
        raise TypeError(f"{name} must map endpoint ids to quantities, got {type(given).__name__}")
    _check_ids(list(given), name)
    endpoints: dict[str, dict[str, float | int]] = {}
    for endpoint_id, quantity in given.items():
        if calls is not None:
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                raise ValueError(f"calls[{endpoint_id!r}] must be a whole number of calls >= 1, got {quantity!r}")
            endpoints[endpoint_id] = {"call_quantity": quantity}
        else:
            number = quantity if isinstance(quantity, (int, float)) and not isinstance(quantity, bool) else None
            if number is None or not math.isfinite(number) or number <= 0:
                raise ValueError(f"units[{endpoint_id!r}] must be a positive number of billing units, got {quantity!r}")
            endpoints[endpoint_id] = {"unit_quantity": number}
    estimate_type = "historical_api_price" if calls is not None else "unit_price"
    return {"estimate_type": estimate_type, "endpoints": endpoints}


def _prices(core: Core, reply: Reply) -> PricesPage:
    """A pricing reply as a page whose every price was checked; ProtocolError naming the endpoint and the field
    for an answer that is no price (negative, NaN, infinite, absurdly large, not a number, no currency code)."""
    data = _reply_json(core, reply, "pricing")
    if not isinstance(data, dict) or not isinstance(data.get("prices"), list):
        raise errors.ProtocolError(f"pricing: expected an object with a 'prices' list: {_body(reply, core)}")
    entries = []
    for index, item in enumerate(data["prices"]):
        endpoint_id = item.get("endpoint_id") if isinstance(item, dict) else None
        if not isinstance(endpoint_id, str) or not endpoint_id.strip():
            shown = core.redact(repr(item)[:_SNIPPET])
            raise errors.ProtocolError(f"pricing: entry {index} has no string 'endpoint_id': {shown}")
        where = f"pricing of {_quote(endpoint_id, core)}"
        entry = dict(item)
        entry["unit_price"] = _amount(item.get("unit_price", _MISSING), f"{where}: unit_price", MAX_UNIT_PRICE, core)
        entry["currency"] = _currency(item.get("currency", "USD"), where, core)
        unit = item.get("unit", _MISSING)
        if not isinstance(unit, str) or not unit.strip():
            raise errors.ProtocolError(f"{where}: unit is not a non-empty string: {_shown(unit, core)}")
        entries.append(entry)
    return _validated(core, PricesPage, {**data, "prices": entries}, "pricing")


def _estimate(core: Core, reply: Reply, body: dict[str, Any]) -> CostEstimate:
    """An estimate reply, its total checked like a price: finite, >= 0, at most MAX_UNIT_PRICE per call or unit
    asked for (a total of ten million for one call is a broken answer, not a bill), in a currency code."""
    data = _reply_json(core, reply, "pricing estimate")
    endpoints: dict[str, dict[str, float]] = body["endpoints"]
    ids = list(endpoints)
    named = ", ".join(_quote(i, core) for i in ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    where = f"pricing estimate for {named}"
    if not isinstance(data, dict):
        raise errors.ProtocolError(f"{where}: expected an object: {_body(reply, core)}")
    quantity = sum(float(v) for item in endpoints.values() for v in item.values())
    fields = dict(data)
    fields["total_cost"] = _amount(
        data.get("total_cost", _MISSING), f"{where}: total_cost", MAX_UNIT_PRICE * max(quantity, 1.0), core
    )
    fields["currency"] = _currency(data.get("currency", "USD"), where, core)
    return _validated(core, CostEstimate, fields, where)


_MISSING: Any = object()


def _amount(value: Any, where: str, limit: float, core: Core) -> float:
    """`value` as an amount of money: a JSON number (not a bool, not a string), finite, from 0 to `limit`."""
    if value is _MISSING:
        raise errors.ProtocolError(f"{where} is missing")
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            number = math.inf
    if number is None or not math.isfinite(number) or not 0 <= number <= limit:
        raise errors.ProtocolError(f"{where} is not an amount from 0 to {limit:,.0f}: {_shown(value, core)}")
    return number + 0.0  # no -0.0


def _currency(value: Any, where: str, core: Core) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise errors.ProtocolError(f"{where}: currency is not a three-letter currency code: {_shown(value, core)}")
    return value.upper()


def _shown(value: Any, core: Core) -> str:
    """A bad value quoted in an error: repr, redacted, cut short (a 309-digit number says how long it was)."""
    if value is _MISSING:
        return "missing"
    text = core.redact(repr(value))
    return text if len(text) <= 40 else f"{text[:40]}...({len(text)} chars)"


def _reply_json(core: Core, reply: Reply, what: str) -> Any:
    """A 2xx reply's JSON; the mapped HTTPError otherwise, ProtocolError for a body that is not JSON."""
    if not reply.ok:
        raise core.error_for(reply)
    try:
        return reply.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise errors.ProtocolError(f"{what}: the body is not JSON: {_body(reply, core)}") from None


_Reply = TypeVar("_Reply", PricesPage, CostEstimate)


def _validated(core: Core, model: type[_Reply], data: Any, what: str) -> _Reply:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise errors.ProtocolError(f"{what}: unexpected reply: {core.redact(problems)[: _SNIPPET * 2]}") from None


def _operation(name: str) -> ApiOperation[Any, Any]:
    """The generated operation of fal's Platform API (`generated.platform.models`) that builds and sends a request of
    this module: the wire is fal's spec's, generated once; this module reads the answers itself, leniently, and checks
    every amount. Imported on first use: `generated` imports this runtime, not the other way round."""
    import importlib

    operations: dict[str, ApiOperation[Any, Any]] = importlib.import_module("generated.platform.models").OPERATIONS
    return operations[name]


def _sync_client(client: Client | None) -> Client:
    from fal_runtime._client import Client, default_client  # httpx loads on the first request, not at import

    if client is None:
        return default_client()
    if not isinstance(client, Client):
        raise TypeError(f"client must be a fal_runtime.Client, got {type(client).__name__} (use the *_async functions)")
    return client


def _async_client(client: AsyncClient | None) -> AsyncClient:
    from fal_runtime._client import AsyncClient, default_async_client

    if client is None:
        return default_async_client()
    if not isinstance(client, AsyncClient):
        raise TypeError(f"client must be a fal_runtime.AsyncClient, got {type(client).__name__}")
    return client
