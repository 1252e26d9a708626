"""Text from a spec can never become code: hostile descriptions, enum values, defaults and names."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codegen.generation import render
from tests.codegen.conftest import mini_spec

PAYLOAD = 'x"""\nimport os; os.environ["FAL_PWNED"] = "1"\n"""\\'


@pytest.mark.parametrize(
    "text",
    [PAYLOAD, 'ends with a quote"', "back\\slash\\", "tab\tand\rcarriage\x00nul\u2028sep\u202ebidi", "'''", '""""""'],
)
def test_docstring_filter_reads_back_verbatim(text: str) -> None:
    source = f'"""{render.docstring(text)}"""\n'
    module = ast.parse(source)
    assert ast.get_docstring(module, clean=False) == text


def test_comment_filter_stays_on_one_line() -> None:
    assert "\n" not in render.comment("a\nimport os\r\u2028b")


def test_hostile_spec_generates_inert_code(build_package: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_PWNED", raising=False)
    spec = mini_spec(
        "fal-ai/hostile/endpoint",
        {
            "prompt": {"type": "string", "description": PAYLOAD, "default": PAYLOAD, "title": PAYLOAD},
            "style": {"enum": [PAYLOAD, "a'b", 'c"d', "e\\f"], "type": "string", "default": "a'b"},
            "weird-name": {"type": "integer", "description": "a field whose name is not an identifier"},
        },
        required=[],
    )
    spec["info"]["title"] = PAYLOAD
    spec["info"]["description"] = PAYLOAD
    pkg = build_package([spec])
    mod = pkg.load("fal-ai/hostile/endpoint")
    assert "FAL_PWNED" not in os.environ
    assert mod.Input().prompt == PAYLOAD
    assert mod.Input(style=PAYLOAD).style == PAYLOAD
    assert mod.Input.model_validate({"weird-name": 3}).model_dump(by_alias=True, exclude_unset=True) == {
        "weird-name": 3
    }
    assert PAYLOAD in (mod.__doc__ or "")
    source = Path(mod.__file__).read_text()
    tree = ast.parse(source)
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "system"
    ]
    assert calls == []


@given(st.text(alphabet="'\"\\ ab", max_size=8))
def test_string_literals_are_quoted_as_black_quotes_them(text: str) -> None:
    """A literal the generator writes is black's fixed point: a text holding both quotes gets the quotes black picks
    (fewest escapes, then double), as an enum value `'"'` of bria/product-dimensions did not."""
    import black

    from codegen.generation.escape import black_quotes

    literal = black_quotes(repr(text))
    assert black.format_str(f"x = {literal}\n", mode=black.Mode()) == f"x = {literal}\n"
    assert eval(literal) == text
