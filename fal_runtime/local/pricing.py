"""fal's pricing routes of the Platform API, served with prices a test sets.

- `GET /v1/models/pricing?endpoint_id=...` (1-50 ids, repeated) → `{"prices": [{"endpoint_id", "unit_price", "unit",
  "currency"}], "next_cursor": null, "has_more": false}`. An id without a price is left out, as fal leaves out what it
  cannot price.
- `POST /v1/models/pricing/estimate` with `{"estimate_type": "historical_api_price", "endpoints": {id:
  {"call_quantity": N}}}` or `{"estimate_type": "unit_price", "endpoints": {id: {"unit_quantity": X}}}` →
  `{"estimate_type", "total_cost", "currency"}`. Here one call costs one unit, so both are unit price × quantity.
- `POST /_local/prices` with `{id: price}` sets prices from another process (`LocalServer.set_prices` in this one).
  A price given as an object is a raw entry, served exactly as given (its `endpoint_id` filled in when missing) with
  no checks: a test makes this server answer what a broken or hostile fal might (a negative, NaN, infinite or
  309-digit `unit_price`, an odd `currency`, a `unit` holding terminal escape sequences). JSON has no NaN, so such
  amounts go out as Python's json writes them (`NaN`, `Infinity`), which is what Python's and most parsers read.
- `POST /_local/prices/estimate` with any JSON makes every later estimate answer exactly that (status 200); `null`
  computes estimates again (so does `set(..., replace=True)`). For an estimate that contradicts the prices, such as a
  total in JPY for an endpoint priced in USD.

An estimate over endpoints priced in different currencies is refused (400), never summed into a number that is in
no currency at all.

Both fal routes need `Authorization: Key ...` (401 otherwise) and answer 400 for what fal would refuse, each with
fal's `Error` (`{"error": {"type", "message", "request_id"}}`). Calls are counted as `pricing` and `estimate` in the
server's counters.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import error_response, fal_headers

if TYPE_CHECKING:
    from .app import LocalFal

MAX_ENDPOINT_IDS = 50
DEFAULT_UNIT = "request"
DEFAULT_CURRENCY = "USD"

Price = float | tuple[float, str] | tuple[float, str, str] | Mapping[str, Any]
"""A unit price: the price alone (per request, USD), (price, unit) or (price, unit, currency); or a raw entry, a
mapping served as is (`{"unit_price": float("nan"), "unit": "image", "currency": "USD"}`), unchecked."""


class PriceError(ValueError):
    """A request fal would refuse: answered 400 with fal's `Error`, the message its `message`."""


def _entry(endpoint_id: str, price: Any) -> dict[str, Any]:
    if isinstance(price, Mapping):  # raw: as fal might send it, good or bad
        return {"endpoint_id": endpoint_id, **price}
    parts = tuple(price) if isinstance(price, (tuple, list)) else (price,)
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"price of {endpoint_id}: expected price, (price, unit) or (price, unit, currency)")
    amount = parts[0]
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
        raise ValueError(f"price of {endpoint_id}: not a price: {amount!r}")
    unit = parts[1] if len(parts) > 1 else DEFAULT_UNIT
    currency = parts[2] if len(parts) > 2 else DEFAULT_CURRENCY
    if not isinstance(unit, str) or not isinstance(currency, str):
        raise ValueError(f"price of {endpoint_id}: unit and currency must be strings")
    return {"endpoint_id": endpoint_id, "unit_price": float(amount), "unit": unit, "currency": currency}


class Prices:
    """The price list, thread-safe: tests set it from their thread while the server reads it on its loop."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._lock = threading.Lock()
        self._prices: dict[str, dict[str, Any]] = {}
        self._estimate_answer: Any = None  # a raw estimate answer, or None to compute it
        if prices:
            self.set(prices)

    def set(self, prices: Mapping[str, Any], *, replace: bool = False) -> None:
        entries = {str(k): _entry(str(k), v) for k, v in prices.items()}  # all checked before any is set
        with self._lock:
            if replace:
                self._prices.clear()
                self._estimate_answer = None
            self._prices.update(entries)

    def answer_estimates(self, answer: Any) -> None:
        """Answer every later estimate with `answer` (any JSON value, sent as is); None: compute them again."""
        with self._lock:
            self._estimate_answer = answer

    def get(self, endpoint_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._prices.get(endpoint_id)
            return None if entry is None else copy.deepcopy(entry)

    def page(self, ids: list[str]) -> dict[str, Any]:
        if not 1 <= len(ids) <= MAX_ENDPOINT_IDS:
            raise PriceError(f"endpoint_id: between 1 and {MAX_ENDPOINT_IDS} ids are required, got {len(ids)}")
        if any(not i for i in ids):
            raise PriceError("endpoint_id: must not be empty")
        found = [p for p in (self.get(i) for i in dict.fromkeys(ids)) if p is not None]
        return {"prices": found, "next_cursor": None, "has_more": False}

    def estimate(self, body: Any) -> Any:
        with self._lock:
            answer = copy.deepcopy(self._estimate_answer)
        if not isinstance(body, dict):
            raise PriceError("expected a JSON object")
        kind = body.get("estimate_type")
        field = {"historical_api_price": "call_quantity", "unit_price": "unit_quantity"}.get(str(kind))
        if field is None:
            raise PriceError("estimate_type: must be 'historical_api_price' or 'unit_price'")
        endpoints = body.get("endpoints")
        if not isinstance(endpoints, dict) or not 1 <= len(endpoints) <= MAX_ENDPOINT_IDS:
            raise PriceError(f"endpoints: an object of 1 to {MAX_ENDPOINT_IDS} endpoint ids is required")
        total, currencies = 0.0, {}
        for endpoint_id, item in endpoints.items():
            quantity = item.get(field) if isinstance(item, dict) else None
            if isinstance(quantity, bool) or not isinstance(quantity, (int, float)) or not quantity > 0:
                raise PriceError(f"endpoints.{endpoint_id}.{field}: a positive number is required")
            if field == "call_quantity" and not isinstance(quantity, int):
                raise PriceError(f"endpoints.{endpoint_id}.call_quantity: a whole number is required")
            price = self.get(endpoint_id)
            if price is None:
                raise PriceError(f"endpoints.{endpoint_id}: no price is known for this endpoint")
            amount = price.get("unit_price")
            if isinstance(amount, bool) or not isinstance(amount, (int, float)):
                raise PriceError(f"endpoints.{endpoint_id}: no usable price is known for this endpoint")
            total += float(amount) * quantity
            currencies[endpoint_id] = price.get("currency", DEFAULT_CURRENCY)
        if len(set(map(str, currencies.values()))) > 1:
            priced = ", ".join(f"{i} in {c}" for i, c in currencies.items())
            raise PriceError(f"endpoints: priced in different currencies ({priced}); amounts are not added across them")
        if answer is not None:
            return answer
        currency = next(iter(currencies.values()), DEFAULT_CURRENCY)
        return {"estimate_type": kind, "total_cost": round(total, 6), "currency": currency}


class PricingRoutes:
    """The two pricing routes of fal's Platform API and the control route that sets prices."""

    def __init__(self, fal: LocalFal) -> None:
        self.fal = fal

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models/pricing", self.pricing, methods=["GET"]),
            Route("/v1/models/pricing/estimate", self.estimate, methods=["POST"]),
            Route("/_local/prices", self.set_prices, methods=["POST"]),
            Route("/_local/prices/estimate", self.set_estimate_answer, methods=["POST"]),
        ]

    async def pricing(self, request: Request) -> Response:
        async def produce() -> Response:
            return _answer(request, lambda: self.fal.prices.page(request.query_params.getlist("endpoint_id")))

        return await self.fal.guarded(None, "pricing", produce)

    async def estimate(self, request: Request) -> Response:
        async def produce() -> Response:
            try:
                body = await request.json()
            except ValueError:
                return error_response(400, "validation_error", "the body is not JSON")
            return _answer(request, lambda: self.fal.prices.estimate(body))

        return await self.fal.guarded(None, "estimate", produce)

    async def set_prices(self, request: Request) -> Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected an object of endpoint id → price")
            self.fal.prices.set(body)
        except ValueError as exc:
            return _json({"detail": str(exc)}, 400)
        return _json({"ok": True})

    async def set_estimate_answer(self, request: Request) -> Response:
        try:
            self.fal.prices.answer_estimates(await request.json())
        except ValueError:
            return _json({"detail": "the body is not JSON"}, 400)
        return _json({"ok": True})


class _AnyJSON(JSONResponse):
    """JSON as Python writes it: NaN and Infinity included, as a raw price entry may hold them."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json(body: Any, status: int = 200) -> JSONResponse:
    return _AnyJSON(body, status, fal_headers(None))


def _answer(request: Request, make: Any) -> Response:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "key" or not credentials.strip():
        return error_response(401, "authorization_error", "Authentication required: send 'Authorization: Key ...'")
    try:
        return _json(make())
    except PriceError as exc:
        return error_response(400, "validation_error", str(exc))
