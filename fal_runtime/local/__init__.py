"""A local fal-compatible HTTPS server, for offline apps and for testing clients against fal's real protocol.

Run it with `python -m fal_runtime.local --port N --ca-file PATH`, or in-process with `LocalServer` (which also lets
a test script faults and job behaviour and read the server's counters).
"""

from .script import Behaviour, Rule
from .server import LocalServer

__all__ = ["Behaviour", "LocalServer", "Rule"]
