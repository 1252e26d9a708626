"""What fal's pricing API answers is checked before a caller sees it (issue #21, item 6): a price or an estimate total
that is negative, NaN, infinite, absurdly large or not a number, or a currency that is no currency code, raises
`ProtocolError` naming the endpoint and the field. Over real HTTPS against the local server, whose raw price entries
and raw estimate answers are what a broken fal would send. Also the server's side: an estimate over endpoints priced
in different currencies is refused, not summed.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import fal_runtime
from fal_runtime import AsyncClient, Client, RetryPolicy, errors
from fal_runtime.local import LocalServer
from fal_runtime.platform import MAX_UNIT_PRICE

ECHO = "fal-ai/test/echo"
OTHER = "fal-ai/test/other"
NO_RETRY = RetryPolicy(max_retries=0)


@pytest.fixture
def priced(fal_env: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    monkeypatch.setenv("FAL_API_HOST", fal_env.api_host)
    fal_env.reset()
    fal_env.set_prices({}, replace=True)
    yield fal_env
    fal_env.set_prices({}, replace=True)


def _http(server: LocalServer) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(server.ca_file)))


def _answer_estimates_with(server: LocalServer, answer: Any) -> None:
    with _http(server) as http:
        reply = http.post(f"{server.url}/_local/prices/estimate", content=json.dumps(answer),
                          headers={"content-type": "application/json"})  # fmt: skip
    assert reply.status_code == 200, reply.text


def _raw(unit_price: Any = 0.003, unit: Any = "image", currency: Any = "USD") -> dict[str, Any]:
    return {"unit_price": unit_price, "unit": unit, "currency": currency}


BAD_PRICES = {
    "negative": -0.003,
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "309-digits": 10**308,
    "310-digits": 10**309,
    "above-the-cap": MAX_UNIT_PRICE * 2,
    "bool": True,
    "string": "0.003",
    "null": None,
}


@pytest.mark.parametrize("unit_price", BAD_PRICES.values(), ids=BAD_PRICES.keys())
def test_a_bad_unit_price_is_a_protocol_error_naming_endpoint_and_field(priced: LocalServer, unit_price: Any) -> None:
    priced.set_prices({ECHO: _raw(unit_price)})
    with Client(retry=NO_RETRY) as client, pytest.raises(errors.ProtocolError) as caught:
        fal_runtime.get_pricing([ECHO], client=client)
    message = str(caught.value)
    assert message.startswith(f"pricing of '{ECHO}': unit_price is not an amount from 0 to 1,000,000: "), message
    assert len(message) < 200  # a 309-digit number is quoted cut short


def test_a_missing_unit_price_or_unit_is_named(priced: LocalServer) -> None:
    priced.set_prices({ECHO: {"unit": "image"}, OTHER: {"unit_price": 1.0, "unit": ""}})
    with Client(retry=NO_RETRY) as client:
        with pytest.raises(errors.ProtocolError, match=f"pricing of '{ECHO}': unit_price is missing"):
            fal_runtime.get_pricing([ECHO], client=client)
        with pytest.raises(errors.ProtocolError, match=f"pricing of '{OTHER}': unit is not a non-empty string"):
            fal_runtime.get_pricing([OTHER], client=client)


@pytest.mark.parametrize("currency", ["US$", "dollars", "", "U\x1b]0;x\x07SD", 840, None])
def test_a_currency_that_is_no_currency_code_is_a_protocol_error(priced: LocalServer, currency: Any) -> None:
    priced.set_prices({ECHO: _raw(currency=currency)})
    with Client(retry=NO_RETRY) as client, pytest.raises(errors.ProtocolError) as caught:
        fal_runtime.get_pricing([ECHO], client=client)
    assert str(caught.value).startswith(f"pricing of '{ECHO}': currency is not a three-letter currency code")
    assert "\x1b" not in str(caught.value)  # quoted as repr


def test_good_prices_pass_in_any_currency_and_odd_units_are_kept_for_the_caller(priced: LocalServer) -> None:
    priced.set_prices({ECHO: _raw(0, "image", "jpy"), OTHER: _raw(MAX_UNIT_PRICE, "\x1b[2Jsecond", "EUR")})
    with Client() as client:
        page = fal_runtime.get_pricing([ECHO, OTHER], client=client)
    echo, other = page.price_of(ECHO), page.price_of(OTHER)
    assert echo is not None and (echo.unit_price, echo.unit, echo.currency) == (0.0, "image", "JPY")
    assert other is not None
    assert (other.unit_price, other.unit, other.currency) == (MAX_UNIT_PRICE, "\x1b[2Jsecond", "EUR")


def test_a_price_left_without_currency_is_usd_as_before(priced: LocalServer) -> None:
    priced.set_prices({ECHO: {"unit_price": 0.5, "unit": "request"}})
    with Client() as client:
        price = fal_runtime.get_pricing([ECHO], client=client).price_of(ECHO)
    assert price is not None and price.currency == "USD"


BAD_TOTALS = {"negative": -1.0, "nan": float("nan"), "inf": float("inf"), "310-digits": 10**309, "string": "1.0"}


@pytest.mark.parametrize("total", BAD_TOTALS.values(), ids=BAD_TOTALS.keys())
def test_a_bad_estimate_total_is_a_protocol_error_naming_endpoint_and_field(priced: LocalServer, total: Any) -> None:
    priced.set_prices({ECHO: 0.5})
    _answer_estimates_with(priced, {"estimate_type": "historical_api_price", "total_cost": total, "currency": "USD"})
    with Client(retry=NO_RETRY) as client, pytest.raises(errors.ProtocolError) as caught:
        fal_runtime.estimate_cost({ECHO: 2}, client=client)
    assert str(caught.value).startswith(f"pricing estimate for '{ECHO}': total_cost is not an amount from 0 to ")


def test_an_estimate_total_is_bounded_by_what_was_asked(priced: LocalServer) -> None:
    priced.set_prices({ECHO: 0.5})
    with Client(retry=NO_RETRY) as client:
        _answer_estimates_with(priced, {"estimate_type": "historical_api_price", "total_cost": 3 * MAX_UNIT_PRICE})
        assert fal_runtime.estimate_cost({ECHO: 3}, client=client).total_cost == 3 * MAX_UNIT_PRICE
        with pytest.raises(errors.ProtocolError, match="total_cost is not an amount from 0 to 2,000,000"):
            fal_runtime.estimate_cost({ECHO: 2}, client=client)


def test_an_estimate_in_no_currency_code_is_a_protocol_error(priced: LocalServer) -> None:
    priced.set_prices({ECHO: 0.5})
    _answer_estimates_with(priced, {"estimate_type": "unit_price", "total_cost": 1.0, "currency": "¥"})
    with Client(retry=NO_RETRY) as client, pytest.raises(errors.ProtocolError, match="currency is not a three-letter"):
        fal_runtime.estimate_cost(units={ECHO: 2.0}, client=client)


def test_the_async_calls_check_the_same(priced: LocalServer) -> None:
    priced.set_prices({ECHO: _raw(float("nan"))})

    async def go() -> None:
        async with AsyncClient(retry=NO_RETRY) as client:
            with pytest.raises(errors.ProtocolError, match="unit_price"):
                await fal_runtime.get_pricing_async([ECHO], client=client)
            priced.set_prices({ECHO: 0.5})
            _answer_estimates_with(priced, {"estimate_type": "historical_api_price", "total_cost": -2})
            with pytest.raises(errors.ProtocolError, match="total_cost"):
                await fal_runtime.estimate_cost_async({ECHO: 1}, client=client)

    asyncio.run(go())


def test_the_server_serves_raw_entries_as_given(priced: LocalServer) -> None:
    priced.set_prices({ECHO: _raw(float("nan"), "\x1b]0;t\x07image", "JPY"), OTHER: {"unit_price": 10**309}})
    with _http(priced) as http:
        reply = http.get(f"{priced.url}/v1/models/pricing", params={"endpoint_id": [ECHO, OTHER]},
                         headers={"Authorization": "Key k"})  # fmt: skip
        assert reply.status_code == 200
        assert '"unit_price":NaN' in reply.text and "1" + "0" * 309 in reply.text
        prices = json.loads(reply.text)["prices"]
        assert prices[0]["unit"] == "\x1b]0;t\x07image" and prices[0]["currency"] == "JPY"
        assert prices[1]["endpoint_id"] == OTHER
        # from another process: an object is a raw entry too
        assert http.post(f"{priced.url}/_local/prices", json={ECHO: {"unit_price": -1, "unit": "x"}}).status_code == 200
    with Client(retry=NO_RETRY) as client, pytest.raises(errors.ProtocolError, match="unit_price"):
        fal_runtime.get_pricing([ECHO], client=client)


def test_the_server_refuses_to_add_prices_in_different_currencies(priced: LocalServer) -> None:
    priced.set_prices({ECHO: (0.5, "image", "USD"), OTHER: (70.0, "image", "JPY")})
    with Client(retry=NO_RETRY) as client:
        with pytest.raises(errors.HTTPError, match="different currencies") as caught:
            fal_runtime.estimate_cost({ECHO: 1, OTHER: 1}, client=client)
        assert caught.value.status_code == 400
        assert "USD" in str(caught.value) and "JPY" in str(caught.value)
        same = fal_runtime.estimate_cost({OTHER: 2}, client=client)
    assert (same.total_cost, same.currency) == (140.0, "JPY")


def test_a_raw_estimate_answer_is_forgotten_with_the_prices(priced: LocalServer) -> None:
    priced.set_prices({ECHO: 0.5})
    _answer_estimates_with(priced, {"estimate_type": "historical_api_price", "total_cost": 9.0, "currency": "JPY"})
    with Client() as client:
        assert fal_runtime.estimate_cost({ECHO: 2}, client=client).total_cost == 9.0
        _answer_estimates_with(priced, None)
        assert fal_runtime.estimate_cost({ECHO: 2}, client=client).total_cost == 1.0
        _answer_estimates_with(priced, {"total_cost": 9.0})
        priced.set_prices({ECHO: 0.5}, replace=True)
        assert fal_runtime.estimate_cost({ECHO: 2}, client=client).total_cost == 1.0
