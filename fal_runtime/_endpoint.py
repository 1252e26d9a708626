"""`Endpoint`: the one object a generated module holds, turning typed arguments into runtime calls.

Generated call functions are thin: `subscribe(**kwargs)` → `endpoint.subscribe(arguments, client=..., **kwargs)`.
Everything between the typed signature and the wire lives here, once: separating input fields from per-call
options, validating the input (before any network call), serializing it as fal expects, and validating the result
into the endpoint's `Output`. Imports nothing heavy, so importing a generated module stays cheap; the HTTP client
is imported on the first call.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Unpack

from pydantic import BaseModel, ValidationError

from fal_runtime import errors
from fal_runtime._options import OPTION_NAMES, RUN_OPTIONS, STREAM_OPTIONS, SUBMIT_OPTIONS, SUBSCRIBE_OPTIONS
from fal_runtime.inputs import needs_sending

if TYPE_CHECKING:
    from fal_runtime._client import AsyncClient, Client
    from fal_runtime._handles import AsyncRequestHandle, RequestHandle
    from fal_runtime.realtime import AsyncTypedRealtimeConnection, RealtimeOptions, TypedRealtimeConnection

InputT = TypeVar("InputT", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)
OutputT = TypeVar("OutputT", bound=BaseModel)


class Endpoint(Generic[InputT, OutputT]):
    def __init__(
        self,
        endpoint_id: str,
        input_model: type[InputT],
        output_model: type[OutputT],
        *,
        streams: bool = False,
        renamed: Mapping[str, str] | None = None,
        files: Mapping[type[BaseModel], Sequence[str]] | None = None,
        deprecated: bool = False,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.deprecated = deprecated  # fal lists the endpoint as deprecated: every call warns
        self.input_model = input_model
        self.output_model = output_model
        self.streams = streams
        self.renamed = dict(renamed or {})  # call-function keyword → model attribute (`client_` → `client`)
        # File-input attributes by model class (the Input's, and those of models nested in it): local files found
        # there at any depth are uploaded before the call.
        self.files = {cls: frozenset(attrs) for cls, attrs in (files or {}).items()}

    def __repr__(self) -> str:
        return f"Endpoint({self.endpoint_id!r})"

    def build_input(self, arguments: InputT | None, kwargs: dict[str, Any]) -> tuple[InputT, dict[str, Any]]:
        """Split keyword arguments into the validated input and the per-call options.

        Raises `pydantic.ValidationError` for a bad field value (titled `<endpoint id> Input`, so its first line
        names the endpoint) and `TypeError` for an unknown keyword (with the closest one it takes: `'promt' (did
        you mean 'prompt'?)`) or for an `Input` given together with field keywords, in both cases before anything
        touches the network.
        """
        options = {k: v for k, v in kwargs.items() if k in OPTION_NAMES}
        fields = {self.renamed.get(k, k): v for k, v in kwargs.items() if k not in OPTION_NAMES}
        known = self.input_model.model_fields
        unknown = sorted(k for k in kwargs if k not in OPTION_NAMES and self.renamed.get(k, k) not in known)
        if unknown:
            raise TypeError(f"{self.endpoint_id}: unexpected keyword argument(s) {self._suggest(unknown)}")
        if arguments is not None:
            if fields:
                raise TypeError(f"{self.endpoint_id}: pass either an Input instance or field keywords, not both")
            if not isinstance(arguments, self.input_model):
                arguments = self._validate(lambda: self.input_model.model_validate(arguments))
            return arguments, options
        return self._validate(lambda: self.input_model(**fields)), options

    def _suggest(self, unknown: Sequence[str]) -> str:
        """The unknown keywords, each with the closest keyword the call takes (`'promt' (did you mean 'prompt'?)`):
        the Input's fields, as the call function names them, and the per-call options."""
        import difflib

        keyword = {attr: kw for kw, attr in self.renamed.items()}
        known = [keyword.get(name, name) for name in self.input_model.model_fields] + sorted(OPTION_NAMES)
        described = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            described.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
        return ", ".join(described)

    def _validate(self, build: Callable[[], InputT]) -> InputT:
        """`build()`, whose `pydantic.ValidationError` names this endpoint: its title becomes `<endpoint id> Input`
        (`1 validation error for fal-ai/flux/dev Input`). It stays a `ValidationError` with the same errors."""
        try:
            return build()
        except ValidationError as exc:
            renamed = _titled(exc, f"{self.endpoint_id} Input")
        raise renamed from None

    def _warn_if_deprecated(self, stacklevel: int) -> None:
        """Every call of an endpoint fal lists as deprecated warns, pointing `stacklevel` frames above the caller."""
        if self.deprecated:
            warnings.warn(f"fal lists {self.endpoint_id} as deprecated", DeprecationWarning, stacklevel=stacklevel + 1)

    def _prepare(
        self, call: str, allowed: frozenset[str], arguments: InputT | None, kwargs: dict[str, Any]
    ) -> tuple[InputT, dict[str, Any]]:
        """The validated input and options of one call; an option that belongs to another call is a TypeError."""
        self._warn_if_deprecated(stacklevel=4)  # user → generated function → Endpoint.<call> → here
        data, options = self.build_input(arguments, kwargs)
        misplaced = sorted(set(options) - allowed)
        if misplaced:
            raise TypeError(f"{call}() does not take option(s) {', '.join(map(repr, misplaced))}")
        return data, options

    def payload(self, arguments: InputT) -> dict[str, Any]:
        """The JSON body fal expects: wire names, JSON types, and only the fields that were set.
        File inputs must already be URLs (see `pending_files`)."""
        return arguments.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def pending_files(self, arguments: InputT) -> list[Any]:
        """Every file-input value that is not a URL yet (a path, bytes, ...), at any depth, in field order: what
        must be sent before the call."""
        found: list[Any] = []
        if not self.files:  # the endpoint takes no files anywhere
            return found

        def keep(value: Any) -> Any:
            found.append(value)
            return value

        self._map_files(arguments, keep)
        return found

    def with_urls(self, arguments: InputT, urls: Sequence[str]) -> InputT:
        """`arguments` with the `pending_files` values replaced, in order, by `urls`; the caller's input is unchanged."""
        sent = iter(urls)
        return self._map_files(arguments, lambda value: next(sent))

    def _map_files(self, model: M, replace: Callable[[Any], Any]) -> M:
        """`model` with each pending file value replaced by `replace(value)`; models holding none are kept as is."""
        files = next((self.files[c] for c in type(model).__mro__ if c in self.files), frozenset())  # subclasses too
        update = {}
        for name in type(model).model_fields:
            if name in model.model_fields_set:
                value = getattr(model, name)
                new = self._map_value(value, replace, name in files)
                if new is not value:
                    update[name] = new
        return model.model_copy(update=update) if update else model

    def _map_value(self, value: Any, replace: Callable[[Any], Any], is_file: bool) -> Any:
        if isinstance(value, list):
            items = [self._map_value(item, replace, is_file) for item in value]
            return items if any(new is not old for new, old in zip(items, value, strict=False)) else value
        if isinstance(value, BaseModel):
            return self._map_files(value, replace)
        return replace(value) if is_file and value is not None and needs_sending(value) else value

    def _sync_payload(self, client: Client, arguments: InputT) -> dict[str, Any]:
        pending = self.pending_files(arguments)
        if pending:
            arguments = self.with_urls(arguments, client.upload_all(pending))
        return self.payload(arguments)

    async def _async_payload(self, client: AsyncClient, arguments: InputT) -> dict[str, Any]:
        pending = self.pending_files(arguments)
        if pending:
            arguments = self.with_urls(arguments, await client.upload_all(pending))
        return self.payload(arguments)

    def _sync(self, client: Client | None) -> Client:
        if client is not None:
            return client
        from fal_runtime._client import default_client

        return default_client()

    def _async(self, client: AsyncClient | None) -> AsyncClient:
        if client is not None:
            return client
        from fal_runtime._client import default_async_client

        return default_async_client()

    def _check_streams(self) -> None:
        if not self.streams:
            raise TypeError(f"{self.endpoint_id} does not stream; use subscribe() or run()")

    # The sync calls.

    def submit(
        self,
        arguments: InputT | None = None,
        /,
        *,
        client: Client | None = None,
        **kwargs: Any,
    ) -> RequestHandle[OutputT]:
        data, options = self._prepare("submit", SUBMIT_OPTIONS, arguments, kwargs)
        api = self._sync(client)
        payload = self._sync_payload(api, data)
        return api.submit(self.endpoint_id, payload, output=self.output_model, **options)

    def subscribe(
        self,
        arguments: InputT | None = None,
        /,
        *,
        client: Client | None = None,
        **kwargs: Any,
    ) -> OutputT:
        data, options = self._prepare("subscribe", SUBSCRIBE_OPTIONS, arguments, kwargs)
        api = self._sync(client)
        payload = self._sync_payload(api, data)
        return api.subscribe(self.endpoint_id, payload, output=self.output_model, **options)

    def run(
        self,
        arguments: InputT | None = None,
        /,
        *,
        client: Client | None = None,
        **kwargs: Any,
    ) -> OutputT:
        data, options = self._prepare("run", RUN_OPTIONS, arguments, kwargs)
        api = self._sync(client)
        payload = self._sync_payload(api, data)
        return api.run(self.endpoint_id, payload, output=self.output_model, **options)

    def stream(
        self,
        arguments: InputT | None = None,
        /,
        *,
        event: type[M],
        client: Client | None = None,
        **kwargs: Any,
    ) -> Iterator[M]:
        """Run the endpoint and yield each server-sent event's data validated as `event` (the generated module's
        `OutputChunk`: the output's fields, each optional, since fal sends them as they become ready)."""
        self._check_streams()
        data, options = self._prepare("stream", STREAM_OPTIONS, arguments, kwargs)
        api = self._sync(client)
        payload = self._sync_payload(api, data)
        return (_event(event, item) for item in api.stream(self.endpoint_id, payload, **options))

    def handle(self, request_id: str, *, client: Client | None = None) -> RequestHandle[OutputT]:
        """Rebuild the handle of a request submitted earlier (by this or another process)."""
        return self._sync(client).get_handle(self.endpoint_id, request_id, output=self.output_model)

    # The async twins: the same decisions, awaiting the async client.

    async def submit_async(
        self,
        arguments: InputT | None = None,
        /,
        *,
        client: AsyncClient | None = None,
        **kwargs: Any,
    ) -> AsyncRequestHandle[OutputT]:
        data, options = self._prepare("submit_async", SUBMIT_OPTIONS, arguments, kwargs)
        api = self._async(client)
        payload = await self._async_payload(api, data)
        return await api.submit(self.endpoint_id, payload, output=self.output_model, **options)

    async def subscribe_async(
        self,
        arguments: InputT | None = None,
        /,
        *,
        client: AsyncClient | None = None,
        **kwargs: Any,
    ) -> OutputT:
        data, options = self._prepare("subscribe_async", SUBSCRIBE_OPTIONS, arguments, kwargs)
        api = self._async(client)
        payload = await self._async_payload(api, data)
        return await api.subscribe(self.endpoint_id, payload, output=self.output_model, **options)

    async def run_async(
        self,
        arguments: InputT | None = None,
        /,
        *,
        client: AsyncClient | None = None,
        **kwargs: Any,
    ) -> OutputT:
        data, options = self._prepare("run_async", RUN_OPTIONS, arguments, kwargs)
        api = self._async(client)
        payload = await self._async_payload(api, data)
        return await api.run(self.endpoint_id, payload, output=self.output_model, **options)

    def stream_async(
        self,
        arguments: InputT | None = None,
        /,
        *,
        event: type[M],
        client: AsyncClient | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[M]:
        """`stream`, for asyncio."""
        self._check_streams()
        data, options = self._prepare("stream_async", STREAM_OPTIONS, arguments, kwargs)
        return self._stream_async(self._async(client), data, options, event)

    async def _stream_async(
        self, api: AsyncClient, data: InputT, options: dict[str, Any], event: type[M]
    ) -> AsyncIterator[M]:
        """The events, after the input's files are sent; the input itself was validated when `stream_async` was called."""
        payload = await self._async_payload(api, data)
        async for item in api.stream(self.endpoint_id, payload, **options):
            yield _event(event, item)

    def handle_async(self, request_id: str, *, client: AsyncClient | None = None) -> AsyncRequestHandle[OutputT]:
        return self._async(client).get_handle(self.endpoint_id, request_id, output=self.output_model)

    # Realtime apps: fal's WebSocket protocol (see fal_runtime.realtime), typed by this endpoint's models.

    def realtime(
        self, *, client: Client | None = None, **options: Unpack[RealtimeOptions]
    ) -> TypedRealtimeConnection[InputT, OutputT]:
        """A realtime connection to this endpoint (`Client.realtime` documents the options). `send` takes an `Input`,
        a dict or field keywords, validated (and its local files uploaded) before anything is sent; `recv` and
        iteration give `Output`s, and an answer that is not one raises `ProtocolError` naming the fields."""
        from fal_runtime.realtime import TypedRealtimeConnection

        self._warn_if_deprecated(stacklevel=2)  # user → Endpoint.realtime(_async) → here
        api = self._sync(client)

        def prepare(arguments: InputT | Mapping[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
            return self._sync_payload(api, self._realtime_input(arguments, fields))

        return TypedRealtimeConnection(api.realtime(self.endpoint_id, **options), prepare, self._realtime_output)

    def realtime_async(
        self, *, client: AsyncClient | None = None, **options: Unpack[RealtimeOptions]
    ) -> AsyncTypedRealtimeConnection[InputT, OutputT]:
        """`realtime`, for asyncio: use it with `async with`."""
        from fal_runtime.realtime import AsyncTypedRealtimeConnection

        self._warn_if_deprecated(stacklevel=2)  # user → Endpoint.realtime(_async) → here
        api = self._async(client)

        async def prepare(arguments: InputT | Mapping[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
            return await self._async_payload(api, self._realtime_input(arguments, fields))

        return AsyncTypedRealtimeConnection(api.realtime(self.endpoint_id, **options), prepare, self._realtime_output)

    def _realtime_input(self, arguments: InputT | Mapping[str, Any] | None, fields: dict[str, Any]) -> InputT:
        """One realtime input, validated like a call's; per-call options (`timeout=`, `priority=`...) have no
        meaning on a socket, so they are a TypeError."""
        if arguments is not None and not isinstance(arguments, self.input_model):
            given = arguments
            arguments = self._validate(lambda: self.input_model.model_validate(given))
        data, options = self.build_input(arguments, fields)
        if options:
            raise TypeError(f"realtime send() takes no call option(s) {', '.join(map(repr, sorted(options)))}")
        return data

    def _realtime_output(self, data: dict[str, Any]) -> OutputT:
        return _event(self.output_model, data, "a realtime answer")


def _titled(exc: ValidationError, title: str) -> ValidationError:
    """`exc` with another title (the first line of its message), the same errors and input; `exc` itself, with the
    title as a note, should pydantic refuse to rebuild one of its errors."""
    try:
        return ValidationError.from_exception_data(title, exc.errors())  # type: ignore[arg-type]
    except (TypeError, ValueError, KeyError):
        exc.add_note(f"(validating the input of {title.removesuffix(' Input')})")
        return exc


def _event(model: type[M], data: dict[str, Any], what: str = "a stream event") -> M:
    """One stream event's (or realtime answer's) data as `model`; data that cannot be one is fal breaking its own
    schema."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # the fields and what is wrong with them, never the server's values
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())
        raise errors.ProtocolError(f"{what} does not match {model.__name__}: {problems}") from None
