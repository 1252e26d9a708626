"""fal's Platform API (api.fal.ai/v1) served from its spec, `<specs>/_platform/v1.yaml`: every operation, under
`/v1/...` on the server's API host. Without that file only the model search and pricing routes exist, as before.

Every call goes as fal's would:

- auth: `Authorization: Key ...` wherever the spec asks for a key (all but `GET /v1/meta`); else 401;
- checks: path, query and header parameters and the JSON body are validated against the spec's schemas; what does not
  conform is refused with fal's `Error` shape (`{"error": {"type": "validation_error", "message": ...}}`, the message
  naming the parameter or the body field): 400 for parameters (422 where the spec lists only 422), 422 for bodies
  (400 where the spec lists only 400). Unknown paths answer 404, a known path under another method 405;
- idempotency: a write that declares `Idempotency-Key` answers a repeated key (same operation, 10 minutes) with the
  first answer, without doing it again.

What answers come from (`PlatformApi.handlers`):

- API keys (`/v1/keys`): created keys are listed (cursor paging, `expand=creator_info`) and deletable; deleting a
  deleted key answers 204 again ("or already deleted"), a key this server never made 404.
- Request history (`/v1/models/requests/by-endpoint`, `/search`, `/v1/serverless/requests/by-endpoint`): every
  request submitted to this server's queue (`Store.history`), with its times, status code and duration; payloads with
  `expand=payloads` (null once deleted). Filters `endpoint_id` (repeated or comma-separated), `start`/`end` (on the
  time sent; default the last 24 hours, 90 days with `request_id`), `status`, `request_id`, `sort_by`, `query`.
- Usage, billing events and analytics (`/v1/models/usage`, `/billing-events`, `/analytics`, and the organization's
  usage and billing events): computed from the same requests, see `platform_usage`.
- `DELETE /v1/models/requests/{id}/payloads`: the request's input and output are forgotten and its output files
  deleted from this server's CDN (each listed in `cdn_delete_results`). Its status and result then answer 404, as an
  expired request's do (fal: "request input/output payload data" and "CDN-hosted output files" are deleted, and the
  action is irreversible); the history keeps the request without payloads. A request still running is refused (400).
- Workflows, asset collections and asset tags: created ones are listed, read, updated and deleted (404 for unknown
  ids); favouriting a collection sets `is_favorited`.
- Everything else: a minimal valid instance of the success schema (`PlatformSpec.answer`). Non-JSON answers are a
  small body of their type: a CSV header line, a Prometheus text line, a few bytes, one server-sent event.

Calls are counted by operation id in the server's counters (`calls[""][operationId]`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import files as cdn
from .faults import error_response, fal_headers
from .platform_check import check_request, find_operation
from .platform_query import DEFAULT_LIMIT, Refused, ids, page, strings
from .platform_schema import JSON, Operation, PlatformSpec, SpecError, now_iso
from .platform_usage import Usage
from .store import Job

if TYPE_CHECKING:
    from .app import LocalFal

IDEMPOTENCY_SECONDS = 600.0  # fal caches an Idempotency-Key's answer for 10 minutes
LOCAL_USER = "local"  # the account's username, as workflows and organization reports name it
_NON_JSON_BODIES: dict[str, bytes] = {
    "text/csv": b"BilledCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,ServiceName\n",
    "text/plain": b"# fal_runtime.local: no serverless metrics\n",
    "application/octet-stream": b"fal_runtime.local file\n",
}


@dataclass
class Call:
    """One checked call: its operation, parameters read as their types, JSON body."""

    operation: Operation
    request: Request
    path: dict[str, Any]
    query: dict[str, Any]
    headers: dict[str, Any]
    body: Any = None


@dataclass
class Reply:
    """A handler's answer: the body (JSON, or None for the operation's default) and the status (default: the
    spec's success status)."""

    body: Any = None
    status: int | None = None


Handler = Callable[[Call], Awaitable[Reply]]


class DeletableFiles(cdn.Files):
    """The CDN's files, of which some can be deleted (an output file's URL is virtual: it is remembered as gone)."""

    def __init__(self) -> None:
        super().__init__()
        self._gone: set[str] = set()

    def delete(self, path: str) -> bool:
        """Delete the file at `path`; False when there was none."""
        if self.get(path) is None:
            return False
        with self._lock:
            self._gone.add(path)
            self._files.pop(path, None)
        return True

    def get(self, path: str) -> cdn.StoredFile | None:
        with self._lock:
            if path in self._gone:
                return None
        return super().get(path)


@dataclass
class _Key:
    key_id: str
    alias: str
    created_at: str
    deleted: bool = False


@dataclass
class _Shelf:
    """Objects of one kind made through the API, by id, in creation order."""

    objects: dict[str, JSON] = field(default_factory=dict)


class PlatformApi:
    """The Platform API's operations from the spec (parsed on the first call), and their state."""

    def __init__(self, fal: LocalFal, spec_path: Path | None) -> None:
        self.fal = fal
        self.spec_path = spec_path
        self._spec: PlatformSpec | None = None
        self._spec_lock = threading.Lock()
        self._lock = threading.Lock()  # the state below
        self._keys: dict[str, _Key] = {}
        self._shelves: dict[str, _Shelf] = {"workflows": _Shelf(), "collections": _Shelf(), "tags": _Shelf()}
        self._replies: dict[tuple[str, str], tuple[float, Reply]] = {}
        self.handlers: dict[str, Handler] = {
            "createApiKey": self.create_key,
            "listApiKeys": self.list_keys,
            "deleteApiKey": self.delete_key,
            "listRequestsByEndpoint": self.requests_by_endpoint,
            "serverlessListRequestsByEndpoint": self.requests_by_endpoint,
            "searchRequests": self.search_requests,
            "deleteRequestPayloads": self.delete_payloads,
            "getUsage": self.usage,
            "getOrganizationUsage": self.usage,
            "getBillingEvents": self.billing_events,
            "getOrganizationBillingEvents": self.billing_events,
            "getAnalytics": self.analytics,
            "createWorkflow": self.create_workflow,
            "listWorkflows": self.list_workflows,
            "getWorkflow": self.get_workflow,
            "createAssetCollection": self.create_collection,
            "listAssetCollections": self.list_collections,
            "getAssetCollection": self.get_collection,
            "updateAssetCollection": self.update_collection,
            "deleteAssetCollection": self.delete_collection,
            "favoriteAssetCollection": self.favorite_collection,
            "unfavoriteAssetCollection": self.favorite_collection,
            "createAssetTag": self.create_tag,
            "listAssetTags": self.list_tags,
            "updateAssetTag": self.update_tag,
            "deleteAssetTag": self.delete_tag,
        }

    @property
    def available(self) -> bool:
        return self.spec_path is not None and self.spec_path.is_file()

    def routes(self) -> list[Route]:
        """`/v1/{path}` for every method, when the spec is there; mounted after the model search and pricing routes,
        which keep answering their paths."""
        if not self.available:
            return []
        return [Route("/v1/{path:path}", self.serve, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]

    def spec(self) -> PlatformSpec:
        """The parsed spec (parsed once, on first use: a server that is never asked starts as fast as before)."""
        with self._spec_lock:
            if self._spec is None:
                assert self.spec_path is not None
                self._spec = PlatformSpec.load(self.spec_path)
            return self._spec

    # -- dispatch ---------------------------------------------------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        try:
            spec = await asyncio.to_thread(self.spec) if self._spec is None else self._spec
        except (OSError, SpecError, ValueError) as exc:
            return error_response(500, "server_error", f"the Platform API spec cannot be read: {exc}")
        try:
            found, raw = find_operation(spec, request.method, request.path_params["path"])
        except Refused as refused:
            return error_response(refused.status, refused.kind, refused.message)

        async def produce() -> Response:
            try:
                return await self._answer(spec, found, request, raw)
            except Refused as refused:
                return error_response(refused.status, refused.kind, refused.message)

        return await self.fal.guarded(None, found.operation_id, produce)

    async def _answer(
        self, spec: PlatformSpec, operation: Operation, request: Request, raw: dict[str, str]
    ) -> Response:
        if operation.secured:
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "key" or not credentials.strip():
                raise Refused(401, "authorization_error", "Authentication required: send 'Authorization: Key ...'")
        call = await self._checked(spec, operation, request, raw)
        idempotency = call.headers.get("Idempotency-Key") if _takes(operation, "Idempotency-Key") else None
        if isinstance(idempotency, str) and idempotency:
            remembered = self._remembered(operation.operation_id, idempotency)
            if remembered is not None:
                return self._render(spec, operation, remembered)
        handler = self.handlers.get(operation.operation_id)
        reply = await handler(call) if handler is not None else Reply(spec.answer(operation))
        if isinstance(idempotency, str) and idempotency:
            with self._lock:
                self._replies[(operation.operation_id, idempotency)] = (time.monotonic() + IDEMPOTENCY_SECONDS, reply)
        return self._render(spec, operation, reply)

    def _remembered(self, operation_id: str, key: str) -> Reply | None:
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, (expires, _) in self._replies.items() if expires <= now]:
                del self._replies[stale]
            found = self._replies.get((operation_id, key))
            return None if found is None else found[1]

    def _render(self, spec: PlatformSpec, operation: Operation, reply: Reply) -> Response:
        status = reply.status or operation.status
        headers = fal_headers()
        if operation.media is None or status == 204:
            return Response(status_code=status, headers=headers)
        if operation.media == "application/json" or "json" in operation.media:
            return JSONResponse(reply.body, status, headers)
        if operation.media == "text/event-stream":
            event = {"timestamp": now_iso(), "level": "INFO", "message": "fal_runtime.local: no live logs"}
            return Response(f"data: {json.dumps(event)}\n\n", status, headers, media_type=operation.media)
        body = reply.body if isinstance(reply.body, bytes) else _NON_JSON_BODIES.get(operation.media, b"")
        return Response(body, status, headers, media_type=operation.media)

    async def _checked(self, spec: PlatformSpec, operation: Operation, request: Request, raw: dict[str, str]) -> Call:
        """The call with its parameters read and validated against the spec (`platform_check`); Refused naming what
        does not conform."""
        body = b""
        if operation.body_schema is not None:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.fal.max_body_bytes:
                raise Refused(413, "validation_error", f"body: larger than {self.fal.max_body_bytes} bytes")
            body = await request.body()
        checked = check_request(spec, operation, raw, request.query_params.multi_items(), request.headers.items(), body)
        return Call(operation, request, checked.path, checked.query, checked.headers, checked.body)

    # -- API keys ---------------------------------------------------------------------------------------------------

    async def create_key(self, call: Call) -> Reply:
        key_id, secret = secrets.token_hex(8), secrets.token_hex(24)
        with self._lock:
            self._keys[key_id] = _Key(key_id, str(call.body["alias"]), now_iso())
        return Reply({"key_id": key_id, "key_secret": secret, "key": f"{key_id}:{secret}"})

    async def list_keys(self, call: Call) -> Reply:
        creator = "creator_info" in strings(call.query.get("expand"))
        with self._lock:
            live = [k for k in self._keys.values() if not k.deleted]
        chosen, next_cursor, has_more = page(live, call.query)
        keys = []
        for key in chosen:
            item: JSON = {"key_id": key.key_id, "alias": key.alias, "scope": "API", "created_at": key.created_at}
            if creator:
                item |= {"creator_nickname": LOCAL_USER, "creator_email": f"{LOCAL_USER}@localhost"}
            keys.append(item)
        return Reply({"keys": keys, "next_cursor": next_cursor, "has_more": has_more})

    async def delete_key(self, call: Call) -> Reply:
        with self._lock:
            key = self._keys.get(call.path["key_id"])
            if key is None:
                raise Refused(404, "not_found", f"API key {call.path['key_id']} not found")
            key.deleted = True
        return Reply(status=204)

    # -- requests, usage, billing -------------------------------------------------------------------------------------

    def _usage(self) -> Usage:
        return Usage(list(self.fal.store.history), self.fal.prices, self.spec())

    async def requests_by_endpoint(self, call: Call) -> Reply:
        return Reply(self._usage().requests_by_endpoint(call.operation, call.query))

    async def search_requests(self, call: Call) -> Reply:
        return Reply(self._usage().search(call.operation, call.query))

    async def usage(self, call: Call) -> Reply:
        return Reply(self._usage().usage(call.operation, call.query))

    async def billing_events(self, call: Call) -> Reply:
        return Reply(self._usage().billing_events(call.operation, call.query))

    async def analytics(self, call: Call) -> Reply:
        return Reply(self._usage().analytics(call.operation, call.query))

    async def delete_payloads(self, call: Call) -> Reply:
        request_id = call.path["request_id"]
        job = next((j for j in reversed(self.fal.store.history) if j.request_id == request_id), None)
        if job is None:
            raise Refused(404, "not_found", f"Request {request_id} not found")
        if job.state != "COMPLETED":
            raise Refused(400, "validation_error", f"Request {request_id} is still in progress")
        results = [{"link": link, "exception": None} for link in self._delete_outputs(job)]
        self.fal.store.delete_payloads(job)
        return Reply({"cdn_delete_results": results})

    def _delete_outputs(self, job: Job) -> Iterator[str]:
        """Delete the output files of `job` that this server's CDN holds; their links."""
        files = self.fal.files
        marker = f"{cdn.CDN_PREFIX}/files/"
        for value in _all_strings(job.body):
            _, found, path = value.partition(marker)
            if found and value.startswith(job.base_url) and isinstance(files, DeletableFiles) and files.delete(path):
                yield value

    # -- workflows, asset collections, asset tags ---------------------------------------------------------------------

    def _item_schema(self, operation_id: str, *keys: str) -> JSON:
        spec = self.spec()
        return spec.at(spec.operations[operation_id].schema, *keys)

    def _put(self, shelf: str, object_id: str, item: JSON) -> None:
        with self._lock:
            self._shelves[shelf].objects[object_id] = item

    def _get(self, shelf: str, object_id: str, what: str) -> JSON:
        with self._lock:
            found = self._shelves[shelf].objects.get(object_id)
        if found is None:
            raise Refused(404, "not_found", f"{what} {object_id} not found")
        return found

    def _all(self, shelf: str) -> list[JSON]:
        with self._lock:
            return list(self._shelves[shelf].objects.values())

    def _drop(self, shelf: str, object_id: str, what: str) -> None:
        with self._lock:
            if self._shelves[shelf].objects.pop(object_id, None) is None:
                raise Refused(404, "not_found", f"{what} {object_id} not found")

    async def create_workflow(self, call: Call) -> Reply:
        body = call.body or {}
        schema = self._item_schema("createWorkflow", "workflow")
        fields = {**body, "user_nickname": LOCAL_USER, "created_at": now_iso(), "is_public": False}
        workflow = self.spec().shaped(schema, fields)
        self._put("workflows", str(workflow["name"]), workflow)
        return Reply({"workflow": workflow})

    async def list_workflows(self, call: Call) -> Reply:
        spec, schema = self.spec(), self._item_schema("listWorkflows", "workflows", "[]")
        search = str(call.query.get("search") or "").lower()
        used = set(ids(call.query.get("used_endpoint_ids")))
        matching = [
            w
            for w in self._all("workflows")
            if search in f"{w.get('name')} {w.get('title')}".lower()
            and (not used or used & set(_endpoint_ids(w.get("contents"))))
        ]
        chosen, next_cursor, has_more = page(matching, call.query)
        items = [
            spec.shaped(schema, {**w, "endpoint_ids": sorted(set(_endpoint_ids(w.get("contents"))))}) for w in chosen
        ]
        return Reply({"workflows": items, "next_cursor": next_cursor, "has_more": has_more, "total": len(matching)})

    async def get_workflow(self, call: Call) -> Reply:
        """By name: every workflow here belongs to the one local account, whatever username the path names."""
        return Reply({"workflow": self._get("workflows", call.path["workflow_name"], "Workflow")})

    async def create_collection(self, call: Call) -> Reply:
        stamp = now_iso()
        fields = {
            "type": "manual",
            "description": None,
            "icon": None,
            "color": None,
            "cover_image_url": None,
            "character_identifier": None,
            "parent_collection_id": None,
            "is_favorited": False,
            "asset_count": 0,
            **(call.body or {}),
            "id": uuid.uuid4().hex,
            "created_at": stamp,
            "updated_at": stamp,
        }
        collection = self.spec().shaped(self._item_schema("createAssetCollection", "collection"), fields)
        self._put("collections", collection["id"], collection)
        return Reply({"collection": collection})

    async def list_collections(self, call: Call) -> Reply:
        offset, limit = int(call.query.get("offset", 0)), int(call.query.get("limit", DEFAULT_LIMIT))
        return Reply({"collections": self._all("collections")[offset : offset + limit]})

    async def get_collection(self, call: Call) -> Reply:
        return Reply({"collection": self._get("collections", call.path["collection_id"], "Collection")})

    async def update_collection(self, call: Call) -> Reply:
        found = self._get("collections", call.path["collection_id"], "Collection")
        schema = self._item_schema("updateAssetCollection", "collection")
        updated = self.spec().shaped(schema, {**found, **(call.body or {}), "updated_at": now_iso()})
        self._put("collections", updated["id"], updated)
        return Reply({"collection": updated})

    async def delete_collection(self, call: Call) -> Reply:
        self._drop("collections", call.path["collection_id"], "Collection")
        return Reply(status=204)

    async def favorite_collection(self, call: Call) -> Reply:
        found = self._get("collections", call.path["collection_id"], "Collection")
        self._put("collections", found["id"], {**found, "is_favorited": call.operation.operation_id.startswith("fav")})
        return Reply(self.spec().answer(call.operation))

    async def create_tag(self, call: Call) -> Reply:
        fields = {"id": uuid.uuid4().hex[:20], "name": call.body["name"], "created_at": now_iso()}
        tag = self.spec().shaped(self._item_schema("createAssetTag", "tag"), fields)
        self._put("tags", tag["id"], tag)
        return Reply({"tag": tag})

    async def list_tags(self, call: Call) -> Reply:
        return Reply({"tags": self._all("tags")})

    async def update_tag(self, call: Call) -> Reply:
        found = self._get("tags", call.path["tag_id"], "Tag")
        updated = {**found, **{k: v for k, v in (call.body or {}).items() if k == "name"}}
        self._put("tags", updated["id"], updated)
        return Reply({"tag": updated})

    async def delete_tag(self, call: Call) -> Reply:
        self._drop("tags", call.path["tag_id"], "Tag")
        return Reply(status=204)


# -- helpers ------------------------------------------------------------------------------------------------------------


def _takes(operation: Operation, header: str) -> bool:
    return any(p.location == "header" and p.name.lower() == header.lower() for p in operation.parameters)


def _all_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_strings(item)


def _endpoint_ids(contents: Any) -> Iterator[str]:
    """The model endpoints a workflow's nodes call (`{"nodes": {id: {"app": "fal-ai/..."}}}`)."""
    nodes = contents.get("nodes") if isinstance(contents, dict) else None
    for node in (nodes or {}).values() if isinstance(nodes, dict) else []:
        if isinstance(node, dict) and isinstance(node.get("app"), str):
            yield node["app"]
