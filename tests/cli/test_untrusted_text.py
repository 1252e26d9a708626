"""What the command line prints of text it did not write (issue #21, items 6 and 11).

- Item 11: rich markup. Names, descriptions and output values go into tables as text, never as markup: on a real
  terminal (rich forced to one) `FLUX.1 [dev]` and `[false]` print as written.
- Item 6: prices. What the pricing API answers is checked before it is printed (a NaN, negative or 309-digit price is
  "unavailable", not a number); the currency is the one fal named; a total in one currency is never shown beside a
  price in another; and control characters, escape sequences and bidi overrides in server text are dropped.

Against the local server over real HTTPS; its raw price entries and raw estimate answers play the broken fal.
"""

from __future__ import annotations

import io
import json
import re
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from rich.console import Console

from fal_cli import render
from fal_cli.app import cli
from fal_cli.fields import Field
from fal_runtime.local import LocalServer
from fal_runtime.registry import EndpointInfo
from tests.cli.conftest import KEY, SCHNELL

OSC_TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
OSC_LINK = "\x1b]8;;https://evil.test/\x1b\\"  # starts a hyperlink (ST-terminated)
CSI_CLEAR = "\x1b[2J\x1b[1;1H"  # clears the screen, moves the cursor
HOSTILE = f"{OSC_TITLE}{OSC_LINK}mega{CSI_CLEAR}pixel\u202e\u2066\x9b31m\x07\x00"
ANSI_SGR = re.compile(r"\x1b\[[0-9;]*m")


def terminal_invoke(*args: str) -> Result:
    """`fal-typed ...` with rich believing it writes to a 200-column colour terminal (FORCE_COLOR)."""
    runner = CliRunner(env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": None, "COLUMNS": "200", "NO_COLOR": None})
    return runner.invoke(cli, list(args), catch_exceptions=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def visible(text: str) -> str:
    """What a terminal shows of rich's output: its colour and style codes removed."""
    return ANSI_SGR.sub("", text)


def terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=200, highlight=False, soft_wrap=False), buffer


# -- item 11: markup ---------------------------------------------------------------------------------------------------


def test_list_on_a_terminal_shows_square_brackets_verbatim() -> None:
    result = terminal_invoke("list", "flux/dev")
    assert result.exit_code == 0, result.output
    assert "\x1b[" in result.stdout  # really rendered for a terminal: a table with styles
    shown = visible(result.stdout)
    assert "FLUX.1 [dev]" in shown
    assert "│ fal-ai/flux/dev " in shown


def test_render_tables_keep_markup_like_text_from_fal_and_the_user() -> None:
    console, buffer = terminal()
    infos = [
        EndpointInfo("owner/app", "generated.x", "[bold]image[/bold]", "FLUX.1 [dev] :smile:", deprecated=True),
        EndpointInfo("owner/[red]x[/red]", "generated.y", "video", "[link=https://evil.test]click[/link]", False),
    ]
    render.endpoint_list(infos, console)
    field = Field(name="mode", kind="choice", many=False, choices=("[a]", "b"), model="", required=False,
                  default="[a]", bounds=(), description="One of [a] or [b]; see [bold]docs[/]")  # fmt: skip
    render.field_table("Input", [field], console)
    shown = visible(buffer.getvalue())
    for verbatim in ("FLUX.1 [dev] :smile:", "[bold]image[/bold]", "owner/[red]x[/red]", "(deprecated)",
                     "[link=https://evil.test]click[/link]", "One of [a] or [b]; see [bold]docs[/]",
                     'default: "[a]"', "one of [a]|b"):  # fmt: skip
        assert verbatim in shown, verbatim
    assert "https://evil.test" not in buffer.getvalue().replace("[link=https://evil.test]", "")  # no OSC 8 link


class _Output(BaseModel):
    has_nsfw_concepts: list[bool]
    prompt: str
    note: str


def test_the_output_summary_on_a_terminal_shows_values_verbatim() -> None:
    console, buffer = terminal()
    output = _Output(has_nsfw_concepts=[False], prompt="a [red] fox [/red]", note="[bold]x")
    render.summary(console, output)
    shown = visible(buffer.getvalue())
    assert "[false]" in shown
    assert "a [red] fox [/red]" in shown
    assert "[bold]x" in shown


def test_run_on_a_terminal_prints_the_output_summary_verbatim(fal: LocalServer) -> None:
    result = terminal_invoke("run", SCHNELL, "--prompt", "a [bold]fox[/bold]", "--num-inference-steps", "2")
    assert result.exit_code == 0, result.output
    shown = visible(result.stdout)
    assert "[false]" in shown  # has_nsfw_concepts
    assert re.search(r"has_nsfw_concepts +\[false\]", shown), shown


# -- item 6: what is printed of prices and other server text -----------------------------------------------------------


def test_clean_drops_escape_sequences_controls_and_bidi_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", KEY)
    assert render.clean(HOSTILE) == "megapixel"
    assert render.clean("a\tb\nc\r\nd") == "a b c  d"
    assert render.clean("\u202aL\u202bR\u202cP\u202dO\u202eE\u2066I\u2067J\u2068K\u2069") == "LRPOEIJK"
    assert render.clean("\x1b[31mred\x1b[0m \x9d8;;x\x9c link \x1bPdcs\x1b\\ end \x1b") == "red  link  end "
    assert render.clean("FLUX.1 [dev] 日本語 ✓") == "FLUX.1 [dev] 日本語 ✓"
    assert KEY not in render.clean(f"key {KEY}")


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (0.003, "USD", "$0.003"),
        (0.003, "JPY", "0.003 JPY"),
        (3.0, "EUR", "3.00 EUR"),
        (0.036000000000000004, "USD", "$0.036"),
        (0.0000005, "USD", "$0.0000005"),
        (-0.0, "USD", "$0.00"),
        (1_000_000.0, "USD", "$1000000.00"),
    ],
)
def test_money_names_the_currency_fal_named(amount: float, currency: str, shown: str) -> None:
    assert render.money(amount, currency) == shown


@pytest.fixture
def pricing(fal: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """The server with FAL_API_HOST pointing at it; every price and raw answer set here is forgotten afterwards."""
    monkeypatch.setenv("FAL_API_HOST", fal.api_host)
    yield fal
    fal.set_prices({}, replace=True)


def answer_estimates_with(server: LocalServer, answer: Any) -> None:
    with httpx.Client(verify=ssl.create_default_context(cafile=str(server.ca_file))) as http:
        body = json.dumps(answer)  # NaN and Infinity as Python writes them, which httpx's json= refuses
        reply = http.post(
            f"{server.url}/_local/prices/estimate", content=body, headers={"content-type": "application/json"}
        )
    assert reply.status_code == 200, reply.text


def test_show_prints_another_currency_by_its_code(pricing: LocalServer) -> None:
    pricing.set_prices({SCHNELL: (0.45, "image", "JPY")})
    result = invoke("show", SCHNELL)
    assert result.exit_code == 0
    assert "Price: 0.45 JPY per image" in result.stdout
    assert "$" not in result.stdout.split("Price:")[1]


def test_show_strips_escape_sequences_and_bidi_from_the_unit(pricing: LocalServer) -> None:
    pricing.set_prices({SCHNELL: {"unit_price": 0.003, "unit": HOSTILE, "currency": "USD"}})
    result = invoke("show", SCHNELL)
    assert result.exit_code == 0
    assert "Price: $0.003 per megapixel\n" in result.stdout
    for bad in ("\x1b", "\x07", "\x9b", "\x00", "\u202e", "\u2066", "pwned", "evil.test"):
        assert bad not in result.stdout, repr(bad)


@pytest.mark.parametrize(
    "unit_price",
    [-0.003, float("nan"), float("inf"), float("-inf"), 10**308, 10**309, 1e12, True, "0.003"],
    ids=["negative", "nan", "inf", "-inf", "309-digits", "310-digits", "huge", "bool", "string"],
)
def test_show_refuses_a_price_that_is_no_price(pricing: LocalServer, unit_price: Any) -> None:
    pricing.set_prices({SCHNELL: {"unit_price": unit_price, "unit": "image", "currency": "USD"}})
    result = invoke("show", SCHNELL)
    assert result.exit_code == 0  # `show` still shows the fields
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("Price:")]
    assert line.startswith(f"Price: unavailable (pricing of '{SCHNELL}': unit_price is not an amount"), line
    assert "$" not in line and " per image" not in line
    assert len(line) < 300  # a 309-digit number is quoted cut short


def test_show_refuses_a_currency_that_is_no_currency_code(pricing: LocalServer) -> None:
    pricing.set_prices({SCHNELL: {"unit_price": 0.003, "unit": "image", "currency": f"US{OSC_TITLE}D"}})
    result = invoke("show", SCHNELL)
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("Price:")]
    assert "currency is not a three-letter currency code" in line and SCHNELL in line
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def _rows(tmp_path: Any, n: int) -> str:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(f'{{"prompt": "p{i}"}}\n' for i in range(n)))
    return str(inputs)


def test_batch_estimate_in_another_currency(pricing: LocalServer, tmp_path: Any) -> None:
    pricing.set_prices({SCHNELL: (0.5, "image", "JPY")})
    result = invoke("batch", SCHNELL, _rows(tmp_path, 3), "--estimate")
    assert result.exit_code == 0, result.output
    assert f"estimate: 3 rows of {SCHNELL} at 0.50 JPY per image: 1.50 JPY in all" in result.stdout


def test_batch_estimate_refuses_a_total_in_another_currency_than_the_price(pricing: LocalServer, tmp_path: Any) -> None:
    pricing.set_prices({SCHNELL: (0.003, "image", "USD")})
    answer_estimates_with(pricing, {"estimate_type": "historical_api_price", "total_cost": 36, "currency": "JPY"})
    result = invoke("batch", SCHNELL, _rows(tmp_path, 12), "--estimate")
    assert result.exit_code == 1
    assert "in all" not in result.stdout
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert SCHNELL in error and "USD" in error and "JPY" in error and "different currencies" in error


@pytest.mark.parametrize("total", [float("nan"), -1.0, float("inf"), 10**309, 1e15])
def test_batch_estimate_refuses_a_total_that_is_no_amount(pricing: LocalServer, tmp_path: Any, total: Any) -> None:
    pricing.set_prices({SCHNELL: (0.003, "image")})
    answer_estimates_with(pricing, {"estimate_type": "historical_api_price", "total_cost": total, "currency": "USD"})
    result = invoke("batch", SCHNELL, _rows(tmp_path, 2), "--estimate")
    assert result.exit_code == 1
    assert "in all" not in result.stdout
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert f"pricing estimate for '{SCHNELL}': total_cost is not an amount" in error


def test_fal_error_text_and_status_errors_are_printed_without_escape_sequences(fal: LocalServer) -> None:
    fal.behave(SCHNELL, error=f"boom{OSC_LINK}click here\u202e{CSI_CLEAR} (key {KEY})", times=2)
    result = invoke("run", SCHNELL, "--prompt", "p")
    assert result.exit_code == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "boomclick here" in error
    request_id = invoke("submit", SCHNELL, "--prompt", "p").stdout.strip()
    status = invoke("status", SCHNELL, request_id)
    while "COMPLETED" not in status.stdout:
        status = invoke("status", SCHNELL, request_id)
    assert "COMPLETED with error: boomclick here" in status.stdout
    for output in (result.stderr, status.stdout):
        assert "\x1b" not in output and "\u202e" not in output and KEY not in output


def test_a_field_description_prints_clean_in_help_and_show() -> None:
    field = Field(name="x", kind="str", many=False, choices=(), model="", required=True, default=PydanticUndefined,
                  bounds=(), description=f"Pick{OSC_TITLE} one\u202e [here]")  # fmt: skip
    from fal_cli.options import help_text

    assert help_text(field) == "Pick one [here] [text; required]"
    console, buffer = terminal()
    render.field_table("Input", [field], console)
    assert "Pick one [here]" in visible(buffer.getvalue()) and "pwned" not in buffer.getvalue()
