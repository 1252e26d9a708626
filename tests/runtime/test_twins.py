"""The async twins are written once more by hand; this shows each pair equal (issue #22 item 4).

Each async function or method is normalized (no `async` / `await`; `AsyncX` → `X`, `x_async` → `x`, `aread` → `read`,
`asyncio.sleep` → `time.sleep`, `asyncio.to_thread(f, *a)` → `f(*a)`, ...; docstrings dropped; `for x in y: yield x`
read as `yield from y` on both sides) and its syntax tree compared with its sync twin's. The pairs that differ on
purpose are listed in `DIFFERENT`, each with the reason; the test fails when another pair drifts apart, and when a
listed pair becomes equal (so the list stays true).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from typing import Any

import pytest

# (module, sync name, async name): classes (every method is paired by its normalized name) or functions.
PAIRS: list[tuple[str, str, str]] = [
    ("fal_runtime._transport", "SyncTransport", "AsyncTransport"),
    ("fal_runtime._queue", "SyncQueue", "AsyncQueue"),
    ("fal_runtime._uploads", "SyncUploads", "AsyncUploads"),
    ("fal_runtime._client", "Client", "AsyncClient"),
    ("fal_runtime._handles", "RequestHandle", "AsyncRequestHandle"),
    ("fal_runtime.realtime", "RealtimeConnection", "AsyncRealtimeConnection"),
    ("fal_runtime.realtime", "TypedRealtimeConnection", "AsyncTypedRealtimeConnection"),
    ("fal_runtime.realtime", "realtime_connect", "realtime_connect_async"),
    ("fal_runtime.platform", "search_models", "search_models_async"),
    ("fal_runtime.platform", "iter_models", "iter_models_async"),
    ("fal_runtime.platform", "get_pricing", "get_pricing_async"),
    ("fal_runtime.platform", "estimate_cost", "estimate_cost_async"),
    ("fal_runtime.api", "ApiOperation.call", "ApiOperation.call_async"),
    ("fal_runtime.api", "ApiOperation.iterate", "ApiOperation.iterate_async"),
    ("fal_runtime._endpoint", "Endpoint.submit", "Endpoint.submit_async"),
    ("fal_runtime._endpoint", "Endpoint.subscribe", "Endpoint.subscribe_async"),
    ("fal_runtime._endpoint", "Endpoint.run", "Endpoint.run_async"),
    ("fal_runtime._endpoint", "Endpoint.handle", "Endpoint.handle_async"),
    ("fal_runtime._endpoint", "Endpoint._sync_payload", "Endpoint._async_payload"),
    ("fal_runtime.files", "FalFile.download", "FalFile.download_async"),
    ("fal_runtime.files", "FalFile.save", "FalFile.save_async"),
    ("fal_runtime.files", "FalFile._fetch", "FalFile._fetch_async"),
    ("fal_runtime.files", "_stream", "_astream"),
    ("fal_runtime._endpoint", "Endpoint.realtime", "Endpoint.realtime_async"),
    ("fal_runtime.webhooks", "WebhookVerifier.verify", "WebhookVerifier.verify_async"),
    ("fal_runtime.webhooks", "WebhookVerifier.verify_and_parse", "WebhookVerifier.verify_and_parse_async"),
]

# What differs on purpose, and why ("module:Class.method"; "only sync" / "only async" where one side has no twin).
DIFFERENT: dict[str, str] = {
    "fal_runtime._transport:SyncTransport.__init__": "one httpx.Client vs sharded pools behind a semaphore "
    "(httpcore's pool costs O(connections²) per request on asyncio)",
    "fal_runtime._transport:SyncTransport.http": "only sync: the one pool, created on first use",
    "fal_runtime._transport:SyncTransport.connection": "only async: a slot and the least busy pool, held per request",
    "fal_runtime._transport:SyncTransport.close": "one pool vs every shard",
    "fal_runtime._transport:SyncTransport._request": "async holds a connection slot around the request",
    "fal_runtime._transport:SyncTransport._connect_sse": "async passes the slot's pool along",
    "fal_runtime._transport:SyncTransport._enter_sse": "async passes the slot's pool along",
    "fal_runtime._transport:SyncTransport.open_stream": "async holds a connection slot while the stream is open and "
    "gives it back on every way out",
    "fal_runtime._uploads:SyncUploads.upload_all": "one file after another vs all at once",
    "fal_runtime._uploads:SyncUploads._upload_multipart": "parts from a thread pool vs tasks under a semaphore",
    "fal_runtime._client:Client.http": "only sync: the httpx.Client downloads use",
    "fal_runtime._client:Client.connection": "only async: a pool slot downloads use",
    "fal_runtime.realtime:RealtimeConnection.recv": "a socket timeout vs asyncio.wait_for, and an answer still being "
    "decoded is waited for through asyncio.shield",
    "fal_runtime.realtime:RealtimeConnection._handshake": "websockets' sync connection must be entered to be held open",
    "fal_runtime.realtime:RealtimeConnection._forget": "threads may race to forget a socket: the sync side locks",
    "fal_runtime.realtime:TypedRealtimeConnection.__iter__": "a generator expression vs an async generator",
    "fal_runtime.platform:iter_models": "the default async client belongs to the running loop: chosen at the first "
    "page, not when called",
    "fal_runtime.api:ApiOperation.iterate": "the default async client belongs to the running loop: chosen at the "
    "first page, not when called",
    "fal_runtime.files:FalFile._fetch": "the async download is bounded as a whole by asyncio.timeout and holds one "
    "pool slot throughout; the sync one by a watchdog in `_stream`",
    "fal_runtime.files:_stream": "a blocking read cannot be cancelled: a watchdog timer closes the response at the "
    "deadline (async: asyncio.timeout in `_fetch_async`)",
    "fal_runtime.webhooks:WebhookVerifier.verify": "a key fetch on the executor is awaited through asyncio (a thread "
    "pool's future is not awaitable) and bounded by asyncio.timeout rather than by `wait`'s timeout",
}
# Not paired at all: `Endpoint.stream` / `stream_async` (the async one validates at once and hands the rest to the
# async generator `_stream_async`), `platform._sync_client` / `_async_client` and `api`'s (the default client differs:
# one per process, one per event loop); `webhooks._fetch_jwks`, which runs `_fetch_jwks_async` on a worker thread
# rather than being written twice.

_PREFIXED = {"AsyncTransport": "SyncTransport", "AsyncQueue": "SyncQueue", "AsyncUploads": "SyncUploads"}
_RENAMES = {
    "aread": "read",
    "aiter_bytes": "iter_bytes",
    "aclose": "close",
    "aconnect_sse": "connect_sse",
    "asynccontextmanager": "contextmanager",
    "enter_async_context": "enter_context",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "anext": "next",
    "StopAsyncIteration": "StopIteration",
    "async_connect": "sync_connect",
    "AsyncSocket": "SyncSocket",
    "default_async_client": "default_client",
    "_async_client": "_sync_client",
    "_async": "_sync",
    "_async_payload": "_sync_payload",
    "_fetch_jwks_async": "_fetch_jwks",
    "_astream": "_stream",
}
_MODULE_RENAMES = {("asyncio", "sleep"): "time", ("asyncio", "Lock"): "threading"}


def rename(name: str) -> str:
    if name in _RENAMES:
        return _RENAMES[name]
    if name in _PREFIXED:
        return _PREFIXED[name]
    if re.fullmatch(r"Async[A-Z]\w*", name):
        return name[5:]
    if name.endswith("_async") and len(name) > 6:
        return name[: -len("_async")]
    return name


class Normalize(ast.NodeTransformer):
    """An async definition rewritten as its sync twin would read; applied to both sides."""

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> Any:
        return self.visit(ast.copy_location(ast.FunctionDef(**{f: getattr(node, f) for f in node._fields}), node))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        node.name = rename(node.name)
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            node.body = node.body[1:] or [ast.Pass()]  # docstrings differ ("See `Client.upload`")
        return self.generic_visit(node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> Any:
        return self.visit(ast.copy_location(ast.For(**{f: getattr(node, f) for f in node._fields}), node))

    def visit_AsyncWith(self, node: ast.AsyncWith) -> Any:
        return self.visit(ast.copy_location(ast.With(**{f: getattr(node, f) for f in node._fields}), node))

    def visit_Await(self, node: ast.Await) -> Any:
        return self.visit(node.value)

    def visit_For(self, node: ast.For) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        # `for x in y: yield x` (an async generator cannot `yield from`) reads as `yield from y`.
        if (
            not node.orelse
            and len(node.body) == 1
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Yield)
            and isinstance(node.target, ast.Name)
            and isinstance(node.body[0].value.value, ast.Name)
            and node.body[0].value.value.id == node.target.id
        ):
            return ast.Expr(ast.YieldFrom(node.iter))
        return node

    def visit_Call(self, node: ast.Call) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "to_thread" and node.args:  # asyncio.to_thread(f, *a)
            return ast.Call(node.args[0], node.args[1:], node.keywords)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        if isinstance(node.value, ast.Name) and (node.value.id, node.attr) in _MODULE_RENAMES:
            node.value = ast.Name(_MODULE_RENAMES[node.value.id, node.attr], ast.Load())
        node.attr = rename(node.attr)
        return node

    def visit_Name(self, node: ast.Name) -> Any:
        node.id = rename(node.id)
        return node

    def visit_alias(self, node: ast.alias) -> Any:  # `from fal_runtime._client import default_async_client`
        node.name = rename(node.name)
        return node

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        if isinstance(node.value, ast.Name) and node.value.id == "Awaitable":  # `Callable[..., Awaitable[T]]`
            return node.slice
        return node

    def visit_Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, str) and node.value.isidentifier():  # `_prepare("submit_async", ...)`
            node.value = rename(node.value)
        return node


def definition(module: str, qualname: str) -> ast.AST:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = inspect.unwrap(getattr(obj, part)) if not isinstance(getattr(obj, part), property) else getattr(obj, part)
    if isinstance(obj, property):
        obj = obj.fget
    tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    return tree.body[0]


def normalized(node: ast.AST) -> str:
    return ast.dump(Normalize().visit(node), include_attributes=False)


def methods(node: ast.AST) -> dict[str, ast.AST]:
    assert isinstance(node, ast.ClassDef)
    found = {}
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[rename(item.name)] = item
    return found


def differing() -> set[str]:
    found: set[str] = set()
    for module, sync_name, async_name in PAIRS:
        sync, asyn = definition(module, sync_name), definition(module, async_name)
        if isinstance(sync, ast.ClassDef):
            ours, theirs = methods(sync), methods(asyn)
            for name in sorted(set(ours) | set(theirs)):
                if name not in ours or name not in theirs or normalized(ours[name]) != normalized(theirs[name]):
                    found.add(f"{module}:{sync_name}.{name}")
        elif normalized(sync) != normalized(asyn):
            found.add(f"{module}:{sync_name}")
    return found


def test_each_async_twin_equals_its_sync_twin_but_the_listed_ones() -> None:
    found = differing()
    assert sorted(found - set(DIFFERENT)) == [], "these twins drifted apart (fix one, or list it with the reason)"
    assert sorted(set(DIFFERENT) - found) == [], "these twins are equal now: take them off DIFFERENT"


def test_the_pairs_cover_the_collaborators() -> None:
    compared = {f"{module}:{name}" for module, name, _ in PAIRS}
    for required in ("_transport:SyncTransport", "_queue:SyncQueue", "_uploads:SyncUploads", "_client:Client",
                     "_handles:RequestHandle", "realtime:RealtimeConnection", "platform:search_models"):  # fmt: skip
        assert f"fal_runtime.{required}" in compared
    equal = sum(
        len(methods(definition(m, s))) if isinstance(definition(m, s), ast.ClassDef) else 1 for m, s, _ in PAIRS
    ) - len(DIFFERENT)
    assert equal >= 60  # most of the runtime's async code is proved equal, not just listed


@pytest.mark.parametrize(
    ("sync", "asyn"),
    [
        ("def f(x):\n    return g(x)\n", "async def f_async(x):\n    return await g(x)\n"),
        (
            "def f(s):\n    for line in s.lines():\n        yield line\n",
            "async def f(s):\n    async for line in s.lines():\n        yield line\n",
        ),
        ("def f(s):\n    time.sleep(1)\n", "async def f(s):\n    await asyncio.sleep(1)\n"),
        ("def f(b):\n    return b.read()\n", "async def f(b):\n    return await asyncio.to_thread(b.read)\n"),
    ],
)
def test_the_normalizer_reads_async_as_sync(sync: str, asyn: str) -> None:
    assert normalized(ast.parse(sync).body[0]) == normalized(ast.parse(asyn).body[0])


def test_the_normalizer_still_sees_a_real_difference() -> None:
    sync = ast.parse("def f(x):\n    return g(x, retry=True)\n").body[0]
    asyn = ast.parse("async def f(x):\n    return await g(x, retry=False)\n").body[0]
    assert normalized(sync) != normalized(asyn)
