"""Facts every stage of generation shares, stated once.

`LINE_LENGTH`: black's line length (its default), which the templates, docstring wrapping and black itself keep to.
`MODULE_FUNCTIONS`: the call functions an endpoint module may define (with their `_async` twins). A segment of an
endpoint id spelled like one becomes a module name with a trailing `_` (`naming`), and a child module may not take one
(`pipeline`), since importing it would replace its parent's function.
"""

from __future__ import annotations

LINE_LENGTH = 88
CALL_FUNCTIONS = ("submit", "subscribe", "run", "stream", "realtime")
MODULE_FUNCTIONS = tuple(name for call in CALL_FUNCTIONS for name in (call, f"{call}_async"))
