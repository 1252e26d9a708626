"""fal's Platform API as typed calls: the model search (`GET https://api.fal.ai/v1/models`, one page or every page by
cursor), and what endpoints cost (`GET /v1/models/pricing`, `POST /v1/models/pricing/estimate`).

The request goes through a runtime client's own `_send`, so it shares that client's connection pool, TLS settings
(`SSL_CERT_FILE`, `verify=`) and retry rules: it is an idempotent read, so transport errors, 408, 429 and 5xx are
retried with backoff, and a 429's `Retry-After` is honoured. The host is `FAL_API_HOST` (default `api.fal.ai`).

Auth is optional on fal's side (a key raises the rate limit): the key is sent when one is configured, and only where
the client would send it anyway — fal's own hosts and the hosts the client was configured with — so pointing
`FAL_API_HOST` somewhere else never hands that host the key.

Pricing needs the key (fal answers 401 without one): with none configured, `MissingCredentialsError` is raised before
anything is sent. The estimate is a read too (it computes, it bills nothing), so it is retried like the search.

Arguments are checked before anything is sent. A page that cannot be read (not JSON, `models` not a list, an entry
without a string `endpoint_id`) raises `ProtocolError` naming the page's cursor.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pydantic
from pydantic import ConfigDict, Field

from fal_runtime import errors
from fal_runtime._core import Core, Operation, Reply, RequestSpec, base_url
from fal_runtime.models import FalModel

if TYPE_CHECKING:
    from fal_runtime._client import AsyncClient, Client

API_HOST_ENV = "FAL_API_HOST"
DEFAULT_API_HOST = "api.fal.ai"
MAX_ENDPOINT_IDS = 50  # fal's limit for find mode
ModelStatus = Literal["active", "deprecated"]

# A search is a read that changes nothing: retried like a status call (transport errors, 408, 429 with its
# Retry-After, 5xx), never like a submit.
_OPERATION: Operation = "status"
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
) -> ModelsPage:
    """One page of fal's model search: find (`endpoint_ids`, 1-50), search (`query`, `category`, `status`) or, with
    no filters, list. `client` defaults to the runtime's default client."""
    params = _params(endpoint_ids, query, category, status, expand, limit, cursor)
    client = _sync_client(client)
    spec = _spec(client._core, params)
    return _page(client._core, client._send(_OPERATION, spec), cursor)


def iter_models(
    *,
    endpoint_ids: Sequence[str] = (),
    query: str | None = None,
    category: str | None = None,
    status: ModelStatus | None = None,
    expand: Sequence[str] = (),
    limit: int | None = None,
    client: Client | None = None,
) -> Iterator[ModelEntry]:
    """Every matching entry, page after page by cursor (one request per page, fetched as the iteration needs it).
    Arguments are checked now, not at the first `next()`."""
    _params(endpoint_ids, query, category, status, expand, limit, None)
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
            )
            yield from page.models
            if not walker.advance(page, chosen._core):
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
) -> ModelsPage:
    """`search_models` on an `AsyncClient` (default: the running loop's default async client)."""
    params = _params(endpoint_ids, query, category, status, expand, limit, cursor)
    client = _async_client(client)
    spec = _spec(client._core, params)
    return _page(client._core, await client._send(_OPERATION, spec), cursor)


def iter_models_async(
    *,
    endpoint_ids: Sequence[str] = (),
    query: str | None = None,
    category: str | None = None,
    status: ModelStatus | None = None,
    expand: Sequence[str] = (),
    limit: int | None = None,
    client: AsyncClient | None = None,
) -> AsyncIterator[ModelEntry]:
    """`iter_models` on an `AsyncClient`: `async for entry in iter_models_async(...)`. Arguments are checked now;
    the default client is chosen at the first page (it belongs to the running loop)."""
    _params(endpoint_ids, query, category, status, expand, limit, None)
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
            )
            for entry in page.models:
                yield entry
            if not walker.advance(page, chosen._core):
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
) -> list[tuple[str, str]]:
    """The query string, in order; ValueError/TypeError for what fal would refuse, before any request is made."""
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
    params = [("endpoint_id", i) for i in ids]
    if query:
        params.append(("q", query))
    if category:
        params.append(("category", category))
    if status:
        params.append(("status", status))
    params += [("expand", e) for e in expand]
    if limit is not None:
        params.append(("limit", str(limit)))
    if cursor:
        params.append(("cursor", cursor))
    return params


def _spec(core: Core, params: list[tuple[str, str]]) -> RequestSpec:
    """The GET. The key goes along only if one is configured; `Core.headers` then still sends it only to fal's and
    the client's configured hosts."""
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)  # endpoint_id and expand repeat
    return RequestSpec("GET", f"{api_base()}/models", params=grouped, credentials=_has_key(core))


def _has_key(core: Core) -> bool:
    try:
        core.auth_headers()
    except errors.MissingCredentialsError:
        return False
    return True


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


class EndpointPrice(FalModel):
    """What one unit of an endpoint's output costs: `unit_price` in `currency` per `unit` (`image`, `megapixel`,
    `second`, `video`, `request`, ...)."""

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
    """fal's estimate: `total_cost` in `currency` for the quantities asked for."""

    model_config = ConfigDict(extra="allow")

    estimate_type: EstimateType | str
    total_cost: float
    currency: str = "USD"


def get_pricing(endpoint_ids: Sequence[str], *, cursor: str | None = None, client: Client | None = None) -> PricesPage:
    """The unit price of each endpoint (1-50 ids): `GET /v1/models/pricing?endpoint_id=...`."""
    params = _pricing_params(endpoint_ids, cursor)
    client = _sync_client(client)
    spec = _pricing_spec(client._core, params)
    return _reply_as(client._core, client._send(_OPERATION, spec), PricesPage, "pricing")


async def get_pricing_async(
    endpoint_ids: Sequence[str], *, cursor: str | None = None, client: AsyncClient | None = None
) -> PricesPage:
    """`get_pricing` on an `AsyncClient`."""
    params = _pricing_params(endpoint_ids, cursor)
    client = _async_client(client)
    spec = _pricing_spec(client._core, params)
    return _reply_as(client._core, await client._send(_OPERATION, spec), PricesPage, "pricing")


def estimate_cost(
    calls: Mapping[str, int] | None = None, *, units: Mapping[str, float] | None = None, client: Client | None = None
) -> CostEstimate:
    """What a workload would cost: `POST /v1/models/pricing/estimate`. Give either `calls` (endpoint id → number of
    calls, priced from fal's history of what a call costs: `historical_api_price`) or `units` (endpoint id →
    quantity of the endpoint's billing unit, e.g. megapixels or seconds: `unit_price`)."""
    body = _estimate_body(calls, units)
    client = _sync_client(client)
    spec = _estimate_spec(client._core, body)
    return _reply_as(client._core, client._send(_OPERATION, spec), CostEstimate, "pricing estimate")


async def estimate_cost_async(
    calls: Mapping[str, int] | None = None,
    *,
    units: Mapping[str, float] | None = None,
    client: AsyncClient | None = None,
) -> CostEstimate:
    """`estimate_cost` on an `AsyncClient`."""
    body = _estimate_body(calls, units)
    client = _async_client(client)
    spec = _estimate_spec(client._core, body)
    return _reply_as(client._core, await client._send(_OPERATION, spec), CostEstimate, "pricing estimate")


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
    params: dict[str, str | list[str]] = {"endpoint_id": ids}
    if cursor:
        params["cursor"] = cursor
    return params


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


def _pricing_spec(core: Core, params: dict[str, str | list[str]]) -> RequestSpec:
    core.auth_headers()  # MissingCredentialsError now: fal prices only for a key
    return RequestSpec("GET", f"{api_base()}/models/pricing", params=params)


def _estimate_spec(core: Core, body: dict[str, Any]) -> RequestSpec:
    core.auth_headers()
    return RequestSpec("POST", f"{api_base()}/models/pricing/estimate", json=body)


_Reply = TypeVar("_Reply", PricesPage, CostEstimate)


def _reply_as(core: Core, reply: Reply, model: type[_Reply], what: str) -> _Reply:
    """A 2xx reply as `model`; the mapped HTTPError otherwise, ProtocolError for a body that does not fit."""
    if not reply.ok:
        raise core.error_for(reply)
    try:
        data = reply.json()
    except (ValueError, UnicodeDecodeError):
        raise errors.ProtocolError(f"{what}: the body is not JSON: {_body(reply, core)}") from None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise errors.ProtocolError(f"{what}: unexpected reply: {core.redact(problems)[: _SNIPPET * 2]}") from None


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
