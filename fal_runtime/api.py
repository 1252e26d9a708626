"""The runtime side of generated Platform API calls: one `ApiOperation` per operation of fal's Platform API.

A generated function builds the operation's `Params` model from its keywords and calls
`operation.call(arguments, body, client=client)`; everything between the typed arguments and the wire lives here, once:

- the parameters, dumped by their wire names (`model_dump(by_alias=True, exclude_none=True, mode="json")`), each sent
  where `locations` says: into the path (percent-encoded, `/` included), the query (a list repeats the parameter,
  booleans are `true` / `false`) or a header; the body dumped the same way, as JSON;
- the URL, `https://{FAL_API_HOST or api.fal.ai}/v1` + path, and the request through the client's `api_request` (its
  pool, TLS settings, retry policy; the key only to fal's and the client's configured hosts);
- retries: a GET (or any read) is retried like a status call, honouring a 429's `Retry-After`; a write is sent again
  only when it provably never arrived, unless the operation takes an `Idempotency-Key`: then a fresh key (a uuid4) goes
  with each call, the same on every retry of it, which makes the call safe to retry like a read;
- the answer: an error status raises the error tree's exception (the Platform API's `error.message` in its message), a
  JSON answer is validated into `answer` (`ProtocolError` naming the operation when it does not validate), another
  content type comes back as bytes and an empty answer (204) as None; every answer is read up to `max_bytes`;
- pages: `iterate` follows `next_cursor` while `has_more`, yielding each item of `items` (or each page), refusing a
  cursor it has seen and stopping at `max_pages`.

`call_async` and `iterate_async` are the same on an `AsyncClient`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast
from urllib.parse import quote

import pydantic
from pydantic import BaseModel, TypeAdapter

from fal_runtime import errors
from fal_runtime._core import ApiReply, Auth

if TYPE_CHECKING:
    from fal_runtime._client import AsyncClient, Client

__all__ = ["DEFAULT_MAX_BYTES", "MAX_PAGES", "ApiOperation", "Location"]

ParamsT = TypeVar("ParamsT", bound=BaseModel)
AnswerT = TypeVar("AnswerT")
Location = Literal["path", "query", "header"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # the largest answer read, by default (a page of the model search with specs)
MAX_PAGES = 1_000  # `iterate` stops with ProtocolError past this many pages: a server that never says "no more"
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_SNIPPET = 200


@dataclass(frozen=True)
class _Prepared:
    """One call's request, before `_request` adds the cursor and the Idempotency-Key."""

    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    json: Any


class ApiOperation(Generic[ParamsT, AnswerT]):
    """One operation of fal's Platform API, as a generated function calls it.

    Args:
        method: The HTTP method.
        path: The path under `/v1`, its parameters as `{wire_name}` (`/models/requests/{request_id}`).
        params: The operation's parameters as a pydantic model, each field aliased to its wire name.
        locations: Where each parameter goes, by wire name: "path", "query" or "header".
        answer: What a JSON answer is validated into (a model, or any type pydantic reads, such as `list[X]`);
            None: the JSON as parsed.
        answer_type: The answer's media type; anything but JSON (`application/json`, `*+json`) comes back as bytes.
        body: The body's model, if the operation takes one.
        body_type: How the body is sent: "application/json" (default) or "multipart/form-data" (each `bytes` field a
            file part named as the field, the others text parts).
        idempotency_key: Send a fresh `Idempotency-Key` with each call (the same on its retries), which makes a write
            safe to retry.
        pages: The answer is a page of a cursor walk (`next_cursor`, `has_more`): `iterate` follows it.
        items: The answer's field (wire name) holding a page's items; "" for `iterate` to yield whole pages.
        auth: Whether the key goes along: "required" (default), "optional" or "none" (see `Client.api_request`).
        max_bytes: The largest answer read, in bytes; past it, `ProtocolError` (default 64 MiB).
        max_pages: The most pages `iterate` walks before `ProtocolError` (default 1,000).
        cursor: The query parameter carrying the cursor (default `cursor`).
        name: What errors call the operation; default `METHOD /v1/path`.
    """

    def __init__(
        self,
        method: str,
        path: str,
        *,
        params: type[ParamsT],
        locations: Mapping[str, Location],
        answer: type[AnswerT] | None,
        answer_type: str = "application/json",
        body: type[BaseModel] | None = None,
        body_type: str = "application/json",
        idempotency_key: bool = False,
        pages: bool = False,
        items: str = "",
        auth: Auth = "required",
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pages: int = MAX_PAGES,
        cursor: str = "cursor",
        name: str = "",
    ) -> None:
        self.method = method.upper()
        self.path = path if path.startswith("/") else f"/{path}"
        self.params = params
        self.locations: dict[str, Location] = dict(locations)
        self.answer = answer
        self.answer_type = answer_type
        self.body = body
        if body_type not in ("application/json", "multipart/form-data"):
            raise ValueError(f"body_type must be application/json or multipart/form-data, got {body_type!r}")
        self.body_type = body_type
        self.idempotency_key = idempotency_key
        self.pages = pages
        self.items = items
        self.auth: Auth = auth
        self.max_bytes = _positive(max_bytes, "max_bytes")
        self.max_pages = _positive(max_pages, "max_pages")
        self.cursor = cursor
        self.name = name or f"{self.method} /v1{self.path}"
        bad = {k: v for k, v in self.locations.items() if v not in ("path", "query", "header")}
        if bad:
            raise ValueError(f"{self.name}: locations must be 'path', 'query' or 'header': {bad}")
        unplaced = [p for p in _PLACEHOLDER.findall(self.path) if self.locations.get(p) != "path"]
        if unplaced:
            raise ValueError(f"{self.name}: path parameter(s) {unplaced} have no 'path' location")
        if items and not pages:
            raise ValueError(f"{self.name}: items= names the items of a page: it needs pages=True")
        self._adapter: TypeAdapter[Any] | None = TypeAdapter(answer) if answer is not None else None

    def __repr__(self) -> str:
        return f"ApiOperation({self.name!r})"

    @property
    def json_answer(self) -> bool:
        media = self.answer_type.partition(";")[0].strip().lower()
        return media == "application/json" or media.endswith("+json")

    # Building the request (no I/O).

    def prepare(
        self, arguments: ParamsT | Mapping[str, Any], body: BaseModel | Mapping[str, Any] | None = None
    ) -> _Prepared:
        """The request of one call: path, query, headers and JSON body; ValueError/TypeError (or pydantic's
        ValidationError) for arguments that cannot make one, before anything is sent."""
        values = self._arguments(arguments).model_dump(by_alias=True, exclude_none=True, mode="json")
        unknown = sorted(set(values) - set(self.locations))
        if unknown:
            raise TypeError(f"{self.name}: parameter(s) {unknown} have no location")
        query: dict[str, list[str]] = {}
        headers: dict[str, str] = {}
        for wire, value in values.items():
            where = self.locations[wire]
            if where == "query":
                query[wire] = [_text(v) for v in value] if isinstance(value, list) else [_text(value)]
            elif where == "header":
                headers[wire] = ",".join(_text(v) for v in value) if isinstance(value, list) else _text(value)
        path = _PLACEHOLDER.sub(lambda m: self._path_value(m.group(1), values), self.path)
        return _Prepared(self.method, path, query, headers, self._body(body))

    def _arguments(self, arguments: ParamsT | Mapping[str, Any]) -> ParamsT:
        if isinstance(arguments, self.params):
            return arguments
        if isinstance(arguments, Mapping):
            return self.params.model_validate(arguments)
        raise TypeError(f"{self.name}: arguments must be a {self.params.__name__}, not {type(arguments).__name__}")

    def _path_value(self, wire: str, values: Mapping[str, Any]) -> str:
        if wire not in values:
            raise ValueError(f"{self.name}: path parameter {wire!r} is missing")
        text = _text(values[wire])
        if not text:
            raise ValueError(f"{self.name}: path parameter {wire!r} is empty")
        return quote(text, safe="")

    def _body(self, body: BaseModel | Mapping[str, Any] | None) -> Any:
        if body is None:
            return None
        if self.body is None:
            raise TypeError(f"{self.name} takes no body")
        model = body if isinstance(body, self.body) else self.body.model_validate(body)
        if self.body_type == "multipart/form-data":
            return model.model_dump(by_alias=True, exclude_none=True)  # bytes stay bytes: `_form` encodes them
        return model.model_dump(by_alias=True, exclude_none=True, mode="json")

    def _request(self, prepared: _Prepared, cursor: str | None, max_bytes: int | None) -> dict[str, Any]:
        """`Client.api_request`'s arguments for one request; a fresh Idempotency-Key for each (its retries, inside
        `api_request`, resend the same request, key included)."""
        params = dict(prepared.params)
        if cursor is not None:
            params[self.cursor] = [cursor]
        headers = dict(prepared.headers)
        if self.idempotency_key:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        body: dict[str, Any] = {"json": prepared.json}
        if self.body_type == "multipart/form-data" and prepared.json is not None:
            boundary = uuid.uuid4().hex
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
            body = {"content": _form(prepared.json, boundary)}
        return {
            "method": prepared.method,
            "path_or_url": prepared.path,
            "params": params,
            "headers": headers,
            **body,
            "auth": self.auth,
            "max_bytes": self.max_bytes if max_bytes is None else _positive(max_bytes, "max_bytes"),
        }

    # Reading the answer (no I/O).

    def read(self, reply: ApiReply) -> AnswerT:
        """The answer of a 2xx reply: None when empty, bytes unless JSON is expected, else validated JSON."""
        if reply.status_code == 204 or not reply.content:
            return cast(AnswerT, None)
        if not self.json_answer:
            return cast(AnswerT, reply.content)
        data = self._json(reply)
        return self._validated(data)

    def _json(self, reply: ApiReply) -> Any:
        try:
            return reply.json()
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass  # raised below, outside the `except`: the decode error holds the body
        shown = reply.content[:_SNIPPET].decode("utf-8", "replace")
        raise errors.ProtocolError(f"{self.name}: the answer is not JSON: {shown!r}")

    def _validated(self, data: Any) -> AnswerT:
        if self._adapter is None:
            return cast(AnswerT, data)
        try:
            return cast(AnswerT, self._adapter.validate_python(data))
        except pydantic.ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:3])
            more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
            raise errors.ProtocolError(
                f"{self.name}: the answer does not match {_type_name(self.answer)}: {problems}{more}"
            ) from None

    def _page_items(self, page: Any) -> list[Any]:
        """A page's items (its `items` field, typed as the answer model says), or the page itself."""
        if not self.items:
            return [page]
        if isinstance(page, BaseModel):
            for attr, field in type(page).model_fields.items():
                if self.items in (attr, field.alias, field.serialization_alias):
                    found = getattr(page, attr)
                    break
            else:
                found = (page.model_extra or {}).get(self.items)
        else:
            found = page.get(self.items) if isinstance(page, Mapping) else None
        if not isinstance(found, list):
            raise errors.ProtocolError(f"{self.name}: a page has no list {self.items!r}")
        return found

    # The calls.

    def send(
        self,
        arguments: ParamsT | Mapping[str, Any],
        body: BaseModel | Mapping[str, Any] | None = None,
        *,
        client: Client | None = None,
        cursor: str | None = None,
        max_bytes: int | None = None,
        **request: Any,
    ) -> ApiReply:
        """The reply as fal sent it, for a caller that reads fal's answer itself (`fal_runtime.platform` reads model
        search pages entry by entry, leniently): the request built and sent as `call` does, `request` overriding
        `Client.api_request`'s arguments (`auth`, `idempotent`, `raise_for_status`)."""
        prepared = self.prepare(arguments, body)
        with self._named():
            return _sync_client(client).api_request(**{**self._request(prepared, cursor, max_bytes), **request})

    async def send_async(
        self,
        arguments: ParamsT | Mapping[str, Any],
        body: BaseModel | Mapping[str, Any] | None = None,
        *,
        client: AsyncClient | None = None,
        cursor: str | None = None,
        max_bytes: int | None = None,
        **request: Any,
    ) -> ApiReply:
        """`send` on an `AsyncClient`."""
        prepared = self.prepare(arguments, body)
        with self._named():
            return await _async_client(client).api_request(**{**self._request(prepared, cursor, max_bytes), **request})

    def call(
        self,
        arguments: ParamsT | Mapping[str, Any],
        body: BaseModel | Mapping[str, Any] | None = None,
        *,
        client: Client | None = None,
        max_bytes: int | None = None,
    ) -> AnswerT:
        """Send the operation once (retried as the class docstring says) and return its answer."""
        prepared = self.prepare(arguments, body)
        with self._named():
            return self.read(_sync_client(client).api_request(**self._request(prepared, None, max_bytes)))

    async def call_async(
        self,
        arguments: ParamsT | Mapping[str, Any],
        body: BaseModel | Mapping[str, Any] | None = None,
        *,
        client: AsyncClient | None = None,
        max_bytes: int | None = None,
    ) -> AnswerT:
        """`call` on an `AsyncClient`."""
        prepared = self.prepare(arguments, body)
        with self._named():
            return self.read(await _async_client(client).api_request(**self._request(prepared, None, max_bytes)))

    def iterate(
        self,
        arguments: ParamsT | Mapping[str, Any],
        body: BaseModel | Mapping[str, Any] | None = None,
        *,
        client: Client | None = None,
        max_bytes: int | None = None,
    ) -> Iterator[Any]:
        """Each item of every page (each page when `items` is ""), following `next_cursor` while `has_more`, one
        request per page as the iteration needs it. Arguments are checked now, not at the first `next()`."""
        prepared = self._pages(arguments, body)
        chosen = _sync_client(client)

        def walk() -> Iterator[Any]:
            walker = _Walk(self)
            while True:
                with self._named():
                    reply = chosen.api_request(**self._request(prepared, walker.cursor, max_bytes))
                page = self.read(reply)
                yield from self._page_items(page)
                if not walker.advance(self._json(reply) if reply.content else None):
                    return

        return walk()

    def iterate_async(
        self,
        arguments: ParamsT | Mapping[str, Any],
        body: BaseModel | Mapping[str, Any] | None = None,
        *,
        client: AsyncClient | None = None,
        max_bytes: int | None = None,
    ) -> AsyncIterator[Any]:
        """`iterate` on an `AsyncClient`: `async for item in operation.iterate_async(...)`."""
        prepared = self._pages(arguments, body)
        if client is not None:
            _async_client(client)

        async def walk() -> AsyncIterator[Any]:
            chosen = _async_client(client)  # the default one belongs to the running loop: chosen at the first page
            walker = _Walk(self)
            while True:
                with self._named():
                    reply = await chosen.api_request(**self._request(prepared, walker.cursor, max_bytes))
                page = self.read(reply)
                for item in self._page_items(page):
                    yield item
                if not walker.advance(self._json(reply) if reply.content else None):
                    return

        return walk()

    @contextmanager
    def _named(self) -> Iterator[None]:
        """An HTTP error status or a transport failure, noted with the operation's name (shown in its traceback)."""
        try:
            yield
        except (errors.HTTPError, errors.TransportError) as exc:
            exc.add_note(f"(fal Platform API: {self.name})")
            raise

    def _pages(self, arguments: ParamsT | Mapping[str, Any], body: BaseModel | Mapping[str, Any] | None) -> _Prepared:
        if not self.pages:
            raise TypeError(f"{self.name} does not answer in pages; use call()")
        if not self.json_answer:
            raise TypeError(f"{self.name}: pages are JSON, not {self.answer_type}")
        return self.prepare(arguments, body)


class _Walk:
    """The cursor of a walk over pages: a page saying `has_more` without a cursor, a cursor seen before, or more than
    `max_pages` pages would make the walk loop forever: ProtocolError instead."""

    def __init__(self, operation: ApiOperation[Any, Any]) -> None:
        self.operation = operation
        self.cursor: str | None = None
        self.count = 0
        self._seen: set[str] = set()

    def advance(self, data: Any) -> bool:
        self.count += 1
        name = self.operation.name
        if not isinstance(data, Mapping) or not data.get("has_more"):
            return False
        where = f"page {self.count}" + (f" (cursor {_short(self.cursor)})" if self.cursor else "")
        cursor = data.get("next_cursor")
        if not isinstance(cursor, str) or not cursor:
            raise errors.ProtocolError(f"{name}: {where} says has_more but gives no next_cursor")
        if cursor in self._seen or cursor == self.cursor:
            raise errors.ProtocolError(f"{name}: {where} hands back cursor {_short(cursor)}, already visited")
        if self.count >= self.operation.max_pages:
            raise errors.ProtocolError(f"{name}: more than max_pages ({self.operation.max_pages}) pages")
        self._seen.add(cursor)
        self.cursor = cursor
        return True


def _text(value: Any) -> str:
    """A parameter's value on the wire: booleans `true`/`false`, objects as JSON, anything else as `str`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _short(text: str | None) -> str:
    text = text or ""
    return repr(text if len(text) <= 80 else f"{text[:80]}...({len(text)} chars)")


def _type_name(answer: Any) -> str:
    return getattr(answer, "__name__", None) or repr(answer)


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


def _sync_client(client: Client | None) -> Client:
    from fal_runtime._client import Client, default_client  # httpx loads on the first request, not at import

    if client is None:
        return default_client()
    if not isinstance(client, Client):
        raise TypeError(f"client must be a fal_runtime.Client, got {type(client).__name__} (use the *_async calls)")
    return client


def _async_client(client: AsyncClient | None) -> AsyncClient:
    from fal_runtime._client import AsyncClient, default_async_client

    if client is None:
        return default_async_client()
    if not isinstance(client, AsyncClient):
        raise TypeError(f"client must be a fal_runtime.AsyncClient, got {type(client).__name__}")
    return client


def _form(fields: Mapping[str, Any], boundary: str) -> bytes:
    """A multipart/form-data body (RFC 7578): each `bytes` value a file part named as its field, the others text."""
    parts = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
            head += "Content-Type: application/octet-stream\r\n"
            data = value
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n'
            data = (json.dumps(value) if isinstance(value, (dict, list)) else _text(value)).encode()
        parts.append(f"--{boundary}\r\n{head}\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()
