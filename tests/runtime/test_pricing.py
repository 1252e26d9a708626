"""What endpoints cost, end to end over real HTTPS: `get_pricing` and `estimate_cost` (sync and async) against the
local server's `/v1/models/pricing` and `/v1/models/pricing/estimate`, with prices the test sets. Also: arguments and
the key checked before any request, the key only for hosts the client trusts, and the server's own checks.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator

import httpx
import pytest
from tiny_http import TinyServer

import fal_runtime
from fal_runtime import AsyncClient, Client, RetryPolicy, errors
from fal_runtime.local import LocalServer
from fal_runtime.platform import CostEstimate, PricesPage

ECHO = "fal-ai/test/echo"
FAST_ID = "fal-ai/test/echo/fast"
NO_RETRY = RetryPolicy(max_retries=0)


@pytest.fixture
def priced(fal_env: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    monkeypatch.setenv("FAL_API_HOST", fal_env.api_host)
    fal_env.reset()
    fal_env.set_prices({ECHO: (0.025, "image"), FAST_ID: 0.5}, replace=True)
    yield fal_env
    fal_env.set_prices({}, replace=True)


def _calls(server: LocalServer, op: str) -> int:
    count: int = server.counters()["calls"].get("", {}).get(op, 0)  # platform calls are counted under no endpoint
    return count


def test_pricing_is_typed_and_leaves_out_unpriced_ids(priced: LocalServer) -> None:
    with Client() as client:
        page = fal_runtime.get_pricing([ECHO, FAST_ID, "fal-ai/unknown"], client=client)
    assert isinstance(page, PricesPage) and not page.has_more
    echo = page.price_of(ECHO)
    assert echo is not None and (echo.unit_price, echo.unit, echo.currency) == (0.025, "image", "USD")
    fast = page.price_of(FAST_ID)
    assert fast is not None and (fast.unit_price, fast.unit) == (0.5, "request")
    assert page.price_of("fal-ai/unknown") is None


def test_estimate_by_calls_and_by_units(priced: LocalServer) -> None:
    with Client() as client:
        by_calls = fal_runtime.estimate_cost({ECHO: 12, FAST_ID: 2}, client=client)
        by_units = fal_runtime.estimate_cost(units={ECHO: 3.5}, client=client)
    assert isinstance(by_calls, CostEstimate)
    assert by_calls.estimate_type == "historical_api_price"
    assert by_calls.total_cost == pytest.approx(12 * 0.025 + 2 * 0.5)
    assert by_calls.currency == "USD"
    assert by_units.estimate_type == "unit_price" and by_units.total_cost == pytest.approx(3.5 * 0.025)


def test_pricing_calls_are_counted(priced: LocalServer) -> None:
    with Client() as client:
        fal_runtime.get_pricing([ECHO], client=client)
        fal_runtime.estimate_cost({ECHO: 1}, client=client)
    assert (_calls(priced, "pricing"), _calls(priced, "estimate")) == (1, 1)


def test_async_pricing_and_estimate(priced: LocalServer) -> None:
    async def go() -> tuple[PricesPage, CostEstimate]:
        async with AsyncClient() as client:
            page = await fal_runtime.get_pricing_async([ECHO], client=client)
            return page, await fal_runtime.estimate_cost_async({ECHO: 4}, client=client)

    page, estimate = asyncio.run(go())
    assert [p.endpoint_id for p in page.prices] == [ECHO]
    assert estimate.total_cost == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: fal_runtime.get_pricing([], client=c), ValueError),
        (lambda c: fal_runtime.get_pricing([f"a/{i}" for i in range(51)], client=c), ValueError),
        (lambda c: fal_runtime.get_pricing(ECHO, client=c), TypeError),
        (lambda c: fal_runtime.get_pricing([""], client=c), ValueError),
        (lambda c: fal_runtime.estimate_cost({ECHO: 0}, client=c), ValueError),
        (lambda c: fal_runtime.estimate_cost({ECHO: 1.5}, client=c), ValueError),
        (lambda c: fal_runtime.estimate_cost(units={ECHO: -1.0}, client=c), ValueError),
        (lambda c: fal_runtime.estimate_cost(units={ECHO: float("nan")}, client=c), ValueError),
        (lambda c: fal_runtime.estimate_cost({ECHO: 1}, units={ECHO: 1.0}, client=c), TypeError),
        (lambda c: fal_runtime.estimate_cost(client=c), TypeError),
        (lambda c: fal_runtime.estimate_cost({}, client=c), ValueError),
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    priced: LocalServer, call: object, error: type[Exception]
) -> None:
    with Client() as client, pytest.raises(error):
        call(client)  # type: ignore[operator]
    assert _calls(priced, "pricing") == 0 and _calls(priced, "estimate") == 0


def test_no_key_is_refused_before_any_request(priced: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY")
    with Client() as client:
        with pytest.raises(errors.MissingCredentialsError):
            fal_runtime.get_pricing([ECHO], client=client)
        with pytest.raises(errors.MissingCredentialsError):
            fal_runtime.estimate_cost({ECHO: 1}, client=client)
    assert priced.counters()["calls"] == {}


def test_the_server_requires_the_key_and_checks_its_input(priced: LocalServer) -> None:
    with httpx.Client(verify=ssl.create_default_context(cafile=str(priced.ca_file))) as http:
        unauthorized = http.get(f"{priced.url}/v1/models/pricing", params={"endpoint_id": ECHO})
        assert unauthorized.status_code == 401 and unauthorized.json()["error"]["type"] == "authorization_error"
        auth = {"Authorization": "Key k"}
        assert http.get(f"{priced.url}/v1/models/pricing", headers=auth).status_code == 400
        bad = {"estimate_type": "guess", "endpoints": {ECHO: {"call_quantity": 1}}}
        assert http.post(f"{priced.url}/v1/models/pricing/estimate", json=bad, headers=auth).status_code == 400
        unpriced = {"estimate_type": "historical_api_price", "endpoints": {"x/y": {"call_quantity": 1}}}
        reply = http.post(f"{priced.url}/v1/models/pricing/estimate", json=unpriced, headers=auth)
        # fal's `Error` shape, as the Platform API's document gives it for every 4xx
        assert reply.status_code == 400 and reply.json()["error"]["type"] == "validation_error"
        assert "no price" in reply.json()["error"]["message"] and reply.json()["error"]["request_id"]
        assert http.post(f"{priced.url}/_local/prices", json={"x/y": [2, "second"]}).status_code == 200
        assert http.post(f"{priced.url}/_local/prices", json={"x/y": "free"}).status_code == 400
    with Client() as client:
        price = fal_runtime.get_pricing(["x/y"], client=client).price_of("x/y")
    assert price is not None and (price.unit_price, price.unit) == (2.0, "second")


def test_an_unpriced_estimate_is_an_http_error_naming_the_endpoint(priced: LocalServer) -> None:
    with Client(retry=NO_RETRY) as client, pytest.raises(errors.HTTPError, match="no price"):
        fal_runtime.estimate_cost({"x/nothing": 1}, client=client)


def test_the_key_goes_only_to_hosts_the_client_trusts(fal_env: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    with TinyServer() as other:

        def route(method: str, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
            seen.append(auth)
            return 401, {}, json.dumps({"detail": "no key"}).encode()

        other.route = route
        monkeypatch.setenv("FAL_API_HOST", other.url)
        with Client(retry=NO_RETRY) as client, pytest.raises(errors.AuthenticationError):
            fal_runtime.get_pricing([ECHO], client=client)
    assert seen == [""]


def test_local_server_prices_argument_and_its_checks(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="not a price"):
        LocalServer(prices={ECHO: -1.0})
    with pytest.raises(ValueError, match="unit"):
        LocalServer(prices={ECHO: (1.0, 5)})  # type: ignore[dict-item]
