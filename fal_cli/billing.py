"""What a request cost: fal's billable units (`x-fal-billable-units` on its result, `RequestHandle.billable_units`)
times the endpoint's unit price (`get_pricing`, as `show` prints it), in the currency fal names.

The price is looked up once per command (never an error: a run or a batch that succeeded does not fail because
pricing is unreachable; its units are still shown and recorded). Amounts are multiplied and added as decimals, so
2.5 units at $0.003 cost $0.0075, not $0.0075000000000000005; and amounts in different currencies are never added.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from fal_cli import render
from fal_runtime import AsyncClient, Client, RetryPolicy
from fal_runtime.errors import FalError, MissingCredentialsError
from fal_runtime.platform import EndpointPrice, get_pricing, get_pricing_async

QUICK = RetryPolicy(max_retries=1, base_delay=0.2, total=10.0)  # a price must never hold up a command for long
TIMEOUT, CONNECT_TIMEOUT = 10.0, 5.0


NOT_LISTED = "not listed by fal"


@dataclass(frozen=True)
class PriceLookup:
    """The endpoint's price, or None with why it is not known (one line, fit for a terminal): `NOT_LISTED`, or why
    fal could not be asked."""

    price: EndpointPrice | None
    reason: str = ""

    @property
    def unavailable(self) -> bool:
        """fal could not be asked (no key, unreachable, a broken answer), as opposed to fal listing no price."""
        return self.price is None and self.reason != NOT_LISTED


def _found(price: EndpointPrice | None) -> PriceLookup:
    return PriceLookup(price, "" if price is not None else NOT_LISTED)


def _failed(exc: FalError) -> PriceLookup:
    if isinstance(exc, MissingCredentialsError):
        return PriceLookup(None, "set FAL_KEY to see fal's price")
    return PriceLookup(None, render.clean(" ".join(str(exc).split()))[:200] or type(exc).__name__)


def lookup_price(endpoint_id: str) -> PriceLookup:
    try:
        with Client(timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT, retry=QUICK) as client:
            return _found(get_pricing([endpoint_id], client=client).price_of(endpoint_id))
    except FalError as exc:
        return _failed(exc)


async def lookup_price_async(endpoint_id: str) -> PriceLookup:
    try:
        async with AsyncClient(timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT, retry=QUICK) as client:
            return _found((await get_pricing_async([endpoint_id], client=client)).price_of(endpoint_id))
    except FalError as exc:
        return _failed(exc)


def decimal(value: float) -> Decimal:
    """`value` as the decimal it was written as (0.003, not 0.003000000000000000062...)."""
    return Decimal(repr(float(value)))


def cost(units: float, price: EndpointPrice) -> float:
    """`units` × the unit price, multiplied as decimals."""
    return float(decimal(units) * decimal(price.unit_price))


def quantity(value: float) -> str:
    """A number of units as written: `2`, `2.5`, `0.000001` (no exponent, no trailing zeros)."""
    text = format(Decimal(f"{float(value) + 0.0:.10g}"), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def billed_line(units: float, price: EndpointPrice | None) -> str:
    """`billed: 2.5 megapixels × $0.003 = $0.0075` (fal's unit as fal names it), or `billed: 2.5 units` when the price
    is not known."""
    if price is None:
        return f"billed: {quantity(units)} unit{'' if units == 1 else 's'}"
    each, total = render.money(price.unit_price, price.currency), render.money(cost(units, price), price.currency)
    return f"billed: {quantity(units)} {render.unit(price.unit)} × {each} = {total}"


def totals(amounts: Iterable[tuple[float, str]]) -> dict[str, tuple[Decimal, int]]:
    """Amounts added up per currency (as decimals), with how many there were, in the order currencies appear."""
    found: dict[str, tuple[Decimal, int]] = {}
    for amount, currency in amounts:
        total, count = found.get(currency, (Decimal(0), 0))
        found[currency] = (total + decimal(amount), count + 1)
    return found


NOT_ADDED = "different currencies, not added together"


def total_text(amounts: Iterable[tuple[float, str]]) -> str:
    """`$0.036`; amounts in different currencies side by side, never added: `$0.03; 0.50 JPY (different currencies,
    not added together)`. Empty when there is no amount."""
    found = totals(amounts)
    text = "; ".join(render.money(float(total), currency) for currency, (total, _) in found.items())
    return f"{text} ({NOT_ADDED})" if len(found) > 1 else text
