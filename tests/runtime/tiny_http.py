"""A tiny scripted HTTP server for tests that need answers the local fal server never gives (echoed keys, endless
lines): every request is answered by `route(method, path, authorization)`, set by the test.

Imported by test modules in this directory (pytest puts it on `sys.path`, as it has no `__init__.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qs

Body = bytes | Iterable[bytes]  # an iterable is streamed chunk by chunk, without a content-length
Answer = tuple[int, dict[str, str], Body]
Route = Callable[[str, str, str], Answer]  # (method, path without query, Authorization header) → answer


class Seen(NamedTuple):
    """One request as it arrived: the query as parsed (repeated names keep every value), headers with lower-case
    names."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class TinyServer:
    """Plain HTTP on 127.0.0.1; `calls` lists "METHOD path" of each request, `requests` each whole request (`Seen`,
    recorded before `route` is asked), `sent` counts body bytes written.

    Replies are JSON unless `route` says otherwise, and close the connection (so a streamed body ends with it).
    A client that hangs up mid-body is not an error: tests of stream limits expect exactly that."""

    def __init__(self) -> None:
        self.route: Route = lambda method, path, auth: (404, {}, b'{"detail": "Not Found"}')
        self.calls: list[str] = []
        self.requests: list[Seen] = []
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append(Seen(self.command, path, parse_qs(query, keep_blank_values=True), headers, body))
                server.calls.append(f"{self.command} {path}")
                status, headers, body = server.route(self.command, path, self.headers.get("authorization", ""))
                self.send_response(status)
                for name, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(name, value)
                if isinstance(body, bytes):
                    self.send_header("content-length", str(len(body)))
                self.send_header("connection", "close")
                self.end_headers()
                try:
                    for chunk in [body] if isinstance(body, bytes) else body:
                        self.wfile.write(chunk)
                        server.sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
