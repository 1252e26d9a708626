"""`LocalServer`: the local fal server in a background thread, and the handle tests script it through.

uvicorn runs on its own event loop in a daemon thread, on a socket bound to 127.0.0.1 before the thread starts (so
port 0 gives a free port with no race). Everything the test thread calls (`script`, `behave`, `counters`, ...) goes
through the thread-safe `Script`.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

# Only the standard library and `script` at import: `import fal_runtime.local` (and `python -m fal_runtime.local`)
# works without the `local` extra, so a missing extra is one line naming it rather than a ModuleNotFoundError.
from .script import Behaviour, Fault, Op, Phase, Rule, Script

if TYPE_CHECKING:
    import uvicorn

    from .pricing import Price
    from .specs import SpecIndex
    from .tls import Certificates
    from .webhooks import Signer

HOST = "127.0.0.1"  # load and faults only ever on loopback
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# What the `local` extra installs (pyproject.toml), by import name.
EXTRA_MODULES = ("starlette", "uvicorn", "trustme", "nacl", "jsonschema", "yaml", "websockets", "msgpack")
INSTALL_EXTRA = "pip install 'fal-typed[local]'"


class MissingExtraError(ModuleNotFoundError):
    """The local server needs the `local` extra, which is not installed; the message names the command."""


def require_extra() -> None:
    """Import what the server needs; `MissingExtraError` naming the missing module and `INSTALL_EXTRA` if one is
    absent."""
    import importlib

    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise MissingExtraError(
                f"the local fal server needs the 'local' extra ({exc.name or name} is not installed): {INSTALL_EXTRA}",
                name=exc.name or name,
            ) from None


def default_specs_dir() -> Path:
    """`specs/` of the checkout this package runs from (absent from an installed wheel: pass a directory then)."""
    return Path(__file__).resolve().parents[2] / "specs"


@cache
def _server_class() -> type[uvicorn.Server]:
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn's server, but stopping means stopping: open connections are aborted first. Otherwise an idle TLS
        keep-alive connection of a client that is not reading waits out the graceful timeout (and logs an error)."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for connection in list(self.server_state.connections):
                connection.transport.abort()
            await super().shutdown(sockets)

    return _Server


class LocalServer:
    """A fal-compatible HTTPS server on 127.0.0.1 serving every endpoint of a specs directory.

    Point clients at it with `FAL_QUEUE_RUN_HOST=<queue_host>`, `FAL_RUN_HOST=<run_host>`,
    `FAL_API_HOST=<api_host>` (fal's model search) and `SSL_CERT_FILE=<ca_file>`.
    """

    def __init__(
        self,
        specs_dir: Path | None = None,
        port: int = 0,
        ca_file: Path | None = None,
        *,
        result_ttl: float | None = None,
        max_body_bytes: int | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        """`specs_dir`: the endpoint specs to serve; default: the checkout's `specs/` (`default_specs_dir()`). A
        directory that does not exist is a `FileNotFoundError` (a server answering 404 to everything helps nobody).
        `result_ttl`: seconds a completed request's status and result stay available (default 3600, as fal).
        `max_body_bytes`: the largest submit, run or stream body accepted (larger ones answer 413; default 32 MiB).
        `prices`: unit prices served by `/v1/models/pricing` and its estimate (see `set_prices`).
        Without the `local` extra installed: `MissingExtraError`, naming `pip install 'fal-typed[local]'`."""
        require_extra()
        import uvicorn

        from .app import MAX_BODY_BYTES, LocalFal
        from .faults import ExposeTransport
        from .specs import load_specs
        from .store import RESULT_TTL
        from .tls import issue
        from .webhooks import Signer

        specs_dir = default_specs_dir() if specs_dir is None else Path(specs_dir)
        if not specs_dir.is_dir():
            raise FileNotFoundError(f"no specs directory at {specs_dir}: pass the directory of endpoint specs to serve")
        result_ttl = RESULT_TTL if result_ttl is None else result_ttl
        max_body_bytes = MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes
        self._workdir = tempfile.TemporaryDirectory(prefix="fal-local-")
        workdir = Path(self._workdir.name)
        self.certificates: Certificates = issue(ca_file or workdir / "ca.pem", workdir)
        # Parsed lazily (`SpecIndex`): a server starts in a fraction of a second and parses the specs it is asked for.
        self.endpoints: SpecIndex = load_specs(specs_dir)
        self._script = Script()
        self._fal = LocalFal(
            self.endpoints,
            self._script,
            Signer(),
            self.certificates.client_context(),
            result_ttl,
            max_body_bytes,
            platform_spec=specs_dir / "_platform" / "v1.yaml",  # fal's Platform API, served when the file is there
        )
        if prices:
            self._fal.prices.set(prices)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        self._socket.bind((HOST, port))
        self.port: int = self._socket.getsockname()[1]
        pem = str(self.certificates.server_pem)
        config = uvicorn.Config(
            ExposeTransport(self._fal.app()),
            ssl_certfile=pem,
            ssl_keyfile=pem,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            # Idle connections are kept longer than httpx's 5 s, as an ingress does (nginx: 75 s), so the client
            # always closes first. With uvicorn's 5 s both expired together, and a submit could go out on a
            # connection the server was closing: "Server disconnected", an ambiguous submit that is never resent.
            timeout_keep_alive=75,
        )
        self._server = _server_class()(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    # -- addresses --------------------------------------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        return self.certificates.ca_file

    @property
    def base(self) -> str:
        """`127.0.0.1:PORT`: the value for FAL_QUEUE_RUN_HOST."""
        return f"{HOST}:{self.port}"

    @property
    def api_host(self) -> str:
        """`127.0.0.1:PORT`: the value for FAL_API_HOST (fal's Platform API, `/v1/models`, is served at the root)."""
        return self.base

    @property
    def run_host(self) -> str:
        """`127.0.0.1:PORT/run`: the value for FAL_RUN_HOST (fal.run's routes live under /run here)."""
        from .app import RUN_PREFIX

        return f"{self.base}{RUN_PREFIX}"

    @property
    def url(self) -> str:
        return f"https://{self.base}"

    @property
    def webhook_url(self) -> str:
        """A receiver on the server itself; what it got is in `webhooks()`."""
        return f"{self.url}/_local/webhooks"

    @property
    def signer(self) -> Signer:
        """The key this server signs webhooks with (its JWKS is at `/.well-known/jwks.json`)."""
        return self._fal.signer

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> LocalServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the local fal server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)
        self._socket.close()
        self._workdir.cleanup()

    def wait(self) -> None:
        """Block until the server stops (polling, so the main thread still sees KeyboardInterrupt)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- scripting --------------------------------------------------------------------------------------------------

    def script(
        self,
        endpoint_id: str | None = None,
        op: Op = "submit",
        fault: Fault | None = None,
        *,
        times: int | None = 1,
        phase: Phase = "before",
        delay: float = 0.0,
        retry_after: float = 1.0,
        stall_seconds: float = 5.0,
        nth: int | None = None,
        body: str = "",
    ) -> None:
        """Make the next `times` calls of `op` on `endpoint_id` (None: any) fail with `fault` and/or wait `delay`;
        with `nth`, only the nth such call since the last reset. Fault "body" answers 200 with `body` as is."""
        self._script.add_rule(Rule(op, endpoint_id, fault, times, phase, delay, retry_after, stall_seconds, nth, body))

    def behave(
        self,
        endpoint_id: str | None = None,
        *,
        queue_seconds: float = 0.05,
        run_seconds: float = 0.15,
        error: str | None = None,
        error_type: str = "internal_server_error",
        status_code: int = 500,
        times: int | None = None,
    ) -> None:
        """Set how jobs of `endpoint_id` (None: any) queue, run and fail, for the next `times` jobs (None: all)."""
        self._script.add_behaviour(
            Behaviour(endpoint_id, queue_seconds, run_seconds, error, error_type, status_code, times)
        )

    def counters(self) -> dict[str, Any]:
        return self._script.counters()

    def open_connections(self) -> int:
        """Client connections open right now (idle keep-alive ones included)."""
        return len(self._server.server_state.connections)

    def webhooks(self) -> list[dict[str, Any]]:
        return self._script.webhooks()

    def inputs(self) -> list[tuple[str, Any]]:
        """(endpoint id, JSON input) of every accepted submit, run and stream since the last reset."""
        return self._script.inputs()

    def stored_file(self, url: str) -> bytes | None:
        """The bytes this server's CDN holds at `url` (an upload's access URL), or None."""
        return self._fal.files.stored(url)

    def set_prices(self, prices: Mapping[str, Price], *, replace: bool = False) -> None:
        """Set unit prices by endpoint id: a price (USD per request), (price, unit) or (price, unit, currency), e.g.
        `{"fal-ai/flux/schnell": (0.003, "megapixel")}`. `replace`: forget every other price. Not undone by `reset`.
        """
        self._fal.prices.set(prices, replace=replace)

    def reset(self) -> None:
        self._script.reset()
