"""Sending: the retry loops that carry a `RequestSpec` over httpx and hand `Core` a `Reply` or a `TransportError`.

`TransportBase` holds what both transports share that touches httpx without doing I/O (timeouts, converting
exceptions, logging a retry); `SyncTransport` and `AsyncTransport` are the same loops, once blocking and once with
`await`. What a reply means, and whether to retry, is decided in `_core`; nothing here knows about queues or uploads.
A client holds one transport and hands it to its collaborators (`_queue`, `_uploads`), which call `send`,
`open_stream`, `lines` and `drain`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager

import httpx
from httpx_sse import aconnect_sse, connect_sse

from fal_runtime import errors
from fal_runtime._core import (
    BACKUP_CONNECT_TIMEOUT,
    Core,
    Operation,
    Reply,
    RequestSpec,
    uses_backup_hosts,
)
from fal_runtime._sse import LineDecoder
from fal_runtime._wait import DRAIN_LINES, DeadlineExpired

logger = logging.getLogger("fal_runtime")

SHARD = 25  # connections per httpx pool in AsyncTransport (see AsyncTransport.__init__)
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # failed before a byte of the request left
_NOT_TRANSIENT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError)
# What makes fal-client 1.0.3 (`BackupDomainTransport`) try fal's backup domain: the connection never came up.
_TRY_BACKUP = (httpx.ConnectError, httpx.ConnectTimeout)
# Draining a completed status stream stops at any of these: the request is complete whatever happens there.
_DRAIN_ENDS = (errors.TransportError, errors.ProtocolError, DeadlineExpired)


class TransportBase:
    """Settings and httpx conversions shared by both transports; the clients' constructors document the arguments.

    `core` decides (headers, retries, errors), `timeout` is the client's httpx timeouts, `verify` its TLS setting."""

    def __init__(
        self, core: Core, *, timeout: float, connect_timeout: float, verify: ssl.SSLContext | str | bool
    ) -> None:
        self._core = core
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.verify = verify

    def _headers(self, spec: RequestSpec) -> dict[str, str]:
        return self._core.headers(spec)

    def _timeout_for(self, spec: RequestSpec, remaining: float | None) -> httpx.Timeout:
        """The client's timeouts, shortened by the call's `timeout` option and the wait's deadline."""
        limit = min((t for t in (spec.timeout, remaining) if t is not None), default=None)
        connect = self.timeout.connect
        if self._core.backup_hosts and uses_backup_hosts(spec.url):  # as fal-client: fail over to the backup fast
            connect = min(connect or BACKUP_CONNECT_TIMEOUT, BACKUP_CONNECT_TIMEOUT)
        if limit is None:
            if connect == self.timeout.connect:
                return self.timeout
            t = self.timeout
            return httpx.Timeout(connect=connect, read=t.read, write=t.write, pool=t.pool)
        limit = max(limit, 0.001)
        return httpx.Timeout(min(self.timeout.read or limit, limit), connect=min(connect or limit, limit))

    def _backup(self, spec: RequestSpec, exc: httpx.TransportError) -> RequestSpec | None:
        """The request to send once more, on fal's backup domain, after `exc`; None when fal-client would not: only
        when the connection to `fal.run` or `queue.fal.run` was never established (nothing was sent)."""
        if not isinstance(exc, _TRY_BACKUP):
            return None
        backup = self._core.backup(spec)
        if backup is not None:
            logger.warning("fal: cannot connect to %s (%s); trying %s", spec.url.split("/")[2], type(exc).__name__,
                           backup.url.split("/")[2])  # fmt: skip
        return backup

    def _failure(self, exc: httpx.TransportError) -> errors.TransportError:
        """An httpx exception as ours, recording whether the request may have reached the server, and whether
        trying again could help (not after a certificate failure; a few times only after a refused connection)."""
        where = f"{exc.request.method} {exc.request.url}" if _has_request(exc) else "request"
        message = self._core.redact(f"{where}: {type(exc).__name__}: {exc}")
        if isinstance(exc, _NOT_SENT):
            if isinstance(exc, httpx.TimeoutException):
                return errors.APITimeoutError(message, request_sent=False)
            if certificate_failure(exc):
                hint = " (not retried: trust the server's CA with SSL_CERT_FILE or verify=, or fix the host name)"
                return errors.APIConnectionError(message + hint, transient=False)
            return errors.APIConnectionError(message, refused=connection_refused(exc))
        if isinstance(exc, httpx.TimeoutException):
            return errors.APITimeoutError(message, request_sent=True)
        return errors.TransportError(message, request_sent=True, transient=not isinstance(exc, _NOT_TRANSIENT))

    def _retry_delay(
        self,
        op: Operation | None,
        spec: RequestSpec,
        attempt: int,
        started: float,
        *,
        reply: Reply | None = None,
        failure: errors.TransportError | None = None,
        remaining: float | None = None,
    ) -> float | None:
        if op is None:
            return None
        delay = self._core.retry_delay(
            op,
            attempt,
            time.monotonic() - started,
            reply=reply,
            failure=failure,
            now_epoch=time.time(),
            remaining=remaining,
        )
        if delay is not None:
            why = f"HTTP {reply.status_code}" if reply is not None else type(failure).__name__
            url = self._core.redact(spec.url)  # a status URL is the server's: it may echo anything
            logger.info("fal %s %s: %s; retry %d in %.2f s", spec.method, url, why, attempt, delay)
        return delay


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it was raised from or during (httpx wraps httpcore's, which wraps the socket's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def certificate_failure(exc: BaseException) -> bool:
    """Whether a connection failed because the server's certificate failed verification (untrusted issuer, expired,
    host-name mismatch): trying again cannot help."""
    return any(isinstance(e, ssl.SSLCertVerificationError) for e in _causes(exc))


def connection_refused(exc: BaseException) -> bool:
    """Whether a connection was refused (ECONNREFUSED: nothing listens on that port). anyio reports several
    addresses' failures as a group, refused only if every one of them was."""
    for cause in _causes(exc):
        if isinstance(cause, BaseExceptionGroup):
            return all(connection_refused(e) for e in cause.exceptions)
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return True
    return False


def check_ca_file(verify: ssl.SSLContext | str | bool, environ: Mapping[str, str] | None = None) -> None:
    """Refuse, before any request, a CA file that cannot be read: `verify="path"`, or `SSL_CERT_FILE` when `verify`
    is True (httpx reads it then). Without this, the first request dies deep inside httpx with a FileNotFoundError
    that names neither the setting nor the file."""
    env = os.environ if environ is None else environ
    if isinstance(verify, str):
        where, path = "verify=", verify
    elif verify is True and env.get("SSL_CERT_FILE"):
        where, path = "SSL_CERT_FILE", env["SSL_CERT_FILE"]
    else:
        return
    if os.path.isdir(path) and where == "verify=":
        return  # a directory of hashed certificates (capath), which httpx accepts
    if not os.path.isfile(path):
        state = "does not exist" if not os.path.exists(path) else "is not a file"
        raise errors.ConfigurationError(
            f"{where} names a CA file that {state}: {path!r} (point it at a PEM bundle of trusted certificates"
            f"{', or unset it to use the default bundle' if where == 'SSL_CERT_FILE' else ''})"
        )


def tls(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | bool:
    """`verify` as httpx takes it: a CA file or directory becomes an `SSLContext` trusting it (httpx deprecates a
    path; a client built with `verify="ca.pem"` must not warn on every request it makes)."""
    if not isinstance(verify, str):
        return verify
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


def _create_failed(verify: ssl.SSLContext | str | bool, exc: Exception) -> errors.ConfigurationError:
    """An httpx client that could not be made because its CA file is unreadable or holds no certificate."""
    path = verify if isinstance(verify, str) else os.environ.get("SSL_CERT_FILE", "")
    where = "verify=" if isinstance(verify, str) else "SSL_CERT_FILE"
    return errors.ConfigurationError(f"{where} names a CA file that cannot be loaded: {path!r} ({exc})")


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - httpx raises RuntimeError when the exception has no request
    except RuntimeError:
        return False
    return True


def reply_of(response: httpx.Response) -> Reply:
    """The core's view of a response whose body has been read."""
    return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)


def reply_head(response: httpx.Response) -> Reply:
    """Status and headers of a streaming response, without reading its body."""
    return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()})


def _declared_over(response: httpx.Response, max_bytes: int) -> bool:
    """Whether the response's Content-Length already says it is over the cap (checked before reading a byte)."""
    declared = response.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > max_bytes


def _too_large(spec: RequestSpec, max_bytes: int, core: Core) -> errors.ProtocolError:
    url = core.redact(spec.url)
    return errors.ProtocolError(
        f"{spec.method} {url}: the answer is over max_bytes ({max_bytes:,} bytes); the connection was closed there"
    )


class SyncTransport(TransportBase):
    """One httpx.Client, created on first use, and the blocking send and stream loops over it."""

    def __init__(
        self,
        core: Core,
        *,
        timeout: float,
        connect_timeout: float,
        verify: ssl.SSLContext | str | bool,
        http_client: httpx.Client | None,
        max_connections: int,
    ) -> None:
        super().__init__(core, timeout=timeout, connect_timeout=connect_timeout, verify=verify)
        # Every pooled connection is kept alive, as in AsyncClient: httpx keeps 20, so more threads paid handshakes.
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = http_client
        self._lock = threading.Lock()
        if http_client is None:
            check_ca_file(self.verify)

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                try:
                    self._http = httpx.Client(
                        timeout=self.timeout, verify=tls(self.verify), limits=self._limits, follow_redirects=True
                    )
                except (OSError, ssl.SSLError) as exc:  # the CA file went away or holds no certificate
                    raise _create_failed(self.verify, exc) from None
            return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def send(
        self, op: Operation, spec: RequestSpec, *, remaining: float | None = None, max_bytes: int | None = None
    ) -> Reply:
        """Send with retries as `Core.retry_delay` decides; the last reply, whatever its status. `max_bytes` caps the
        body read (in chunks): over it, the response is closed and `ProtocolError` raised, never retried."""
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            reply, failure = None, None
            try:
                reply = self._request(spec, remaining, max_bytes)
            except httpx.TransportError as exc:
                failure = self._failure(exc)
                backup = self._backup(spec, exc)
                if backup is not None:
                    try:
                        reply, failure = self._request(backup, remaining, max_bytes), None
                    except _TRY_BACKUP:
                        pass  # as fal-client: the primary's error stands (it decides the retry)
                    except httpx.TransportError as later:
                        failure = self._failure(later)  # sent to the backup, maybe: may not be resent
            delay = self._retry_delay(op, spec, attempt, started, reply=reply, failure=failure, remaining=remaining)
            if delay is None:
                if failure is not None:
                    raise failure
                assert reply is not None
                return reply
            time.sleep(delay)

    def _request(self, spec: RequestSpec, remaining: float | None, max_bytes: int | None = None) -> Reply:
        if max_bytes is None:
            response = self.http.request(
                spec.method,
                spec.url,
                headers=self._headers(spec),
                params=spec.params,
                json=spec.json,
                content=spec.content,
                timeout=self._timeout_for(spec, remaining),
            )
            return reply_of(response)
        with self.http.stream(
            spec.method,
            spec.url,
            headers=self._headers(spec),
            params=spec.params,
            json=spec.json,
            content=spec.content,
            timeout=self._timeout_for(spec, remaining),
        ) as response:  # leaving the block early closes the connection: the rest of the body is never read
            if _declared_over(response, max_bytes):
                raise _too_large(spec, max_bytes, self._core)
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise _too_large(spec, max_bytes, self._core)
            return Reply(response.status_code, reply_head(response).headers, bytes(body))

    def _connect_sse(self, stack: ExitStack, spec: RequestSpec, remaining: float | None) -> httpx.Response:
        """Open the event stream of `spec` on `stack`; on a connect failure to fal.run, once more on its backup."""
        try:
            return self._enter_sse(stack, spec, remaining)
        except httpx.TransportError as exc:
            backup = self._backup(spec, exc)
            if backup is None:
                raise
            try:
                return self._enter_sse(stack, backup, remaining)
            except _TRY_BACKUP:
                raise exc from None

    def _enter_sse(self, stack: ExitStack, spec: RequestSpec, remaining: float | None) -> httpx.Response:
        source = stack.enter_context(
            connect_sse(
                self.http,
                spec.method,
                spec.url,
                headers=self._headers(spec),
                params=spec.params,
                json=spec.json,
                timeout=self._timeout_for(spec, remaining),
            )
        )
        return source.response

    @contextmanager
    def open_stream(
        self, op: Operation | None, spec: RequestSpec, *, remaining: float | None = None
    ) -> Iterator[httpx.Response]:
        """An open 2xx event stream, retried on opening as `Core.retry_delay` decides (never, for `op=None`)."""
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            reply, failure = None, None
            stack = ExitStack()
            try:
                response = self._connect_sse(stack, spec, remaining)
            except httpx.TransportError as exc:
                failure = self._failure(exc)
            else:
                with stack:
                    if response.is_success:
                        yield response  # outside any `except`: the caller's errors pass through untouched
                        return
                    try:
                        response.read()
                        reply = reply_of(response)
                    except httpx.TransportError as exc:
                        failure = self._failure(exc)
            delay = self._retry_delay(op, spec, attempt, started, reply=reply, failure=failure, remaining=remaining)
            if delay is None:
                if failure is not None:
                    raise failure
                assert reply is not None
                raise self._core.error_for(reply)
            time.sleep(delay)

    def lines(self, response: httpx.Response, check: Callable[[], None] | None = None) -> Iterator[str]:
        """The body's lines; `check` runs on every chunk, so a deadline holds even while one line never ends."""
        decoder = LineDecoder()
        try:
            for chunk in response.iter_bytes():
                if check is not None:
                    check()
                yield from decoder.feed(chunk)
        except httpx.TransportError as exc:
            raise self._failure(exc) from None
        yield from decoder.flush()

    @staticmethod
    def drain(lines: Iterator[str]) -> None:
        """Read a completed status stream on to its close (see `DRAIN_LINES`); a failure there changes nothing."""
        try:
            for _ in range(DRAIN_LINES):
                next(lines)
        except (StopIteration, *_DRAIN_ENDS):
            pass


class AsyncTransport(TransportBase):
    """Sharded httpx.AsyncClient pools behind a semaphore, and the awaiting send and stream loops over them."""

    def __init__(
        self,
        core: Core,
        *,
        timeout: float,
        connect_timeout: float,
        verify: ssl.SSLContext | str | bool,
        http_client: httpx.AsyncClient | None,
        max_connections: int,
    ) -> None:
        super().__init__(core, timeout=timeout, connect_timeout=connect_timeout, verify=verify)
        # Requests wait for a slot here rather than in httpcore's pool, whose scheduling is quadratic in the number
        # of waiting requests (1,000 concurrent subscribes spent seconds of CPU there).
        self._slots = asyncio.Semaphore(max_connections)
        # httpcore's pool bookkeeping also costs O(connections²) on every request start and end (encode/httpcore#1035,
        # unmerged), so the connections are split over pools of at most SHARD; each request takes the least busy.
        count = 1 if http_client is not None else -(-max_connections // SHARD)
        per = -(-max_connections // count)
        # Keep every pooled connection alive: the default keeps 20, so heavy concurrency paid a TLS handshake per call.
        self._limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
        self._shards: list[httpx.AsyncClient | None] = [http_client] if http_client is not None else [None] * count
        self._busy = [0] * count
        if http_client is None:
            check_ca_file(self.verify)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[httpx.AsyncClient]:
        """A slot, then the least busy pool (created on first use), both held until the request or stream closes.
        While a slot is free, some pool has a free connection, so nothing waits inside httpcore. Requests sent
        through it directly carry no credentials (output downloads use it)."""
        async with self._slots:
            i = min(range(len(self._busy)), key=self._busy.__getitem__)
            shard = self._shards[i]
            if shard is None:
                try:
                    shard = httpx.AsyncClient(
                        timeout=self.timeout, verify=tls(self.verify), limits=self._limits, follow_redirects=True
                    )
                except (OSError, ssl.SSLError) as exc:  # the CA file went away or holds no certificate
                    raise _create_failed(self.verify, exc) from None
                self._shards[i] = shard
            self._busy[i] += 1
            try:
                yield shard
            finally:
                self._busy[i] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            if shard is not None:
                await shard.aclose()

    async def send(
        self, op: Operation, spec: RequestSpec, *, remaining: float | None = None, max_bytes: int | None = None
    ) -> Reply:
        """Send with retries as `Core.retry_delay` decides; the last reply, whatever its status. `max_bytes` caps the
        body read (in chunks): over it, the response is closed and `ProtocolError` raised, never retried."""
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            reply, failure = None, None
            try:
                reply = await self._request(spec, remaining, max_bytes)
            except httpx.TransportError as exc:
                failure = self._failure(exc)
                backup = self._backup(spec, exc)
                if backup is not None:
                    try:
                        reply, failure = await self._request(backup, remaining, max_bytes), None
                    except _TRY_BACKUP:
                        pass  # as fal-client: the primary's error stands (it decides the retry)
                    except httpx.TransportError as later:
                        failure = self._failure(later)
            delay = self._retry_delay(op, spec, attempt, started, reply=reply, failure=failure, remaining=remaining)
            if delay is None:
                if failure is not None:
                    raise failure
                assert reply is not None
                return reply
            await asyncio.sleep(delay)

    async def _request(self, spec: RequestSpec, remaining: float | None, max_bytes: int | None = None) -> Reply:
        async with self.connection() as http:
            if max_bytes is None:
                response = await http.request(
                    spec.method,
                    spec.url,
                    headers=self._headers(spec),
                    params=spec.params,
                    json=spec.json,
                    content=spec.content,
                    timeout=self._timeout_for(spec, remaining),
                )
                return reply_of(response)
            async with http.stream(
                spec.method,
                spec.url,
                headers=self._headers(spec),
                params=spec.params,
                json=spec.json,
                content=spec.content,
                timeout=self._timeout_for(spec, remaining),
            ) as response:  # leaving the block early closes the connection: the rest of the body is never read
                if _declared_over(response, max_bytes):
                    raise _too_large(spec, max_bytes, self._core)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise _too_large(spec, max_bytes, self._core)
                return Reply(response.status_code, reply_head(response).headers, bytes(body))

    async def _connect_sse(
        self, stack: AsyncExitStack, http: httpx.AsyncClient, spec: RequestSpec, remaining: float | None
    ) -> httpx.Response:
        """Open the event stream of `spec` on `stack`; on a connect failure to fal.run, once more on its backup."""
        try:
            return await self._enter_sse(stack, http, spec, remaining)
        except httpx.TransportError as exc:
            backup = self._backup(spec, exc)
            if backup is None:
                raise
            try:
                return await self._enter_sse(stack, http, backup, remaining)
            except _TRY_BACKUP:
                raise exc from None

    async def _enter_sse(
        self, stack: AsyncExitStack, http: httpx.AsyncClient, spec: RequestSpec, remaining: float | None
    ) -> httpx.Response:
        source = await stack.enter_async_context(
            aconnect_sse(
                http,
                spec.method,
                spec.url,
                headers=self._headers(spec),
                params=spec.params,
                json=spec.json,
                timeout=self._timeout_for(spec, remaining),
            )
        )
        return source.response

    @asynccontextmanager
    async def open_stream(
        self, op: Operation | None, spec: RequestSpec, *, remaining: float | None = None
    ) -> AsyncIterator[httpx.Response]:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            reply, failure = None, None
            stack = AsyncExitStack()
            http = await stack.enter_async_context(self.connection())  # held while the stream is open
            try:
                response = await self._connect_sse(stack, http, spec, remaining)
            except httpx.TransportError as exc:
                await stack.aclose()  # give the slot back
                failure = self._failure(exc)
            except BaseException:
                await stack.aclose()
                raise
            else:
                async with stack:
                    if response.is_success:
                        yield response
                        return
                    try:
                        await response.aread()
                        reply = reply_of(response)
                    except httpx.TransportError as exc:
                        failure = self._failure(exc)
            delay = self._retry_delay(op, spec, attempt, started, reply=reply, failure=failure, remaining=remaining)
            if delay is None:
                if failure is not None:
                    raise failure
                assert reply is not None
                raise self._core.error_for(reply)
            await asyncio.sleep(delay)

    async def lines(self, response: httpx.Response, check: Callable[[], None] | None = None) -> AsyncIterator[str]:
        """The body's lines; `check` runs on every chunk, so a deadline holds even while one line never ends."""
        decoder = LineDecoder()
        try:
            async for chunk in response.aiter_bytes():
                if check is not None:
                    check()
                for line in decoder.feed(chunk):
                    yield line
        except httpx.TransportError as exc:
            raise self._failure(exc) from None
        for line in decoder.flush():
            yield line

    @staticmethod
    async def drain(lines: AsyncIterator[str]) -> None:
        try:
            for _ in range(DRAIN_LINES):
                await anext(lines)
        except (StopAsyncIteration, *_DRAIN_ENDS):
            pass
