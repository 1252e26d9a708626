"""Checking a request against fal's Platform API spec: the operation its method and path name, its path, query and
header parameters against their schemas, its body against the request body's schema.

The local server checks every request it receives with `check_request` (and answers `Refused` in fal's `Error`
shape). The same function takes a request recorded anywhere else, such as one a client sent through a mock
transport: `check_url` takes a whole URL (`https://api.fal.ai/v1/keys?limit=2`) and the headers and bytes sent,
`check_httpx_request` an `httpx.Request`.

Statuses, as fal's spec lists them per operation: a bad parameter is a 400 (a 422 where the operation lists 422 and
no 400), a bad body a 422 (a 400 where it lists 400 and no 422); an unknown path 404, a known path under another
method 405. Messages name what does not conform: `query parameter 'limit': 0 is less than the minimum of 1`,
`body: 'alias' is a required property`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .platform_query import Refused
from .platform_schema import Operation, PlatformSpec, coerce

if TYPE_CHECKING:
    import httpx

API_PREFIX = "/v1"


@dataclass
class CheckedRequest:
    """A request that conforms: its operation, its parameters read as their schemas' types, its body (JSON decoded;
    raw bytes for other media; None when there is none)."""

    operation: Operation
    path: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    body: Any = None


def find_operation(spec: PlatformSpec, method: str, path: str) -> tuple[Operation, dict[str, str]]:
    """The operation serving `method path` (path under /v1, with or without the prefix) and its raw path
    parameters; Refused 404 or 405 when there is none."""
    relative = path.removeprefix(API_PREFIX).strip("/")
    operation, raw, other_method = spec.find(method.upper(), relative)
    if operation is None:
        if other_method:
            raise Refused(405, "validation_error", f"Method {method.upper()} not allowed on {API_PREFIX}/{relative}")
        raise Refused(404, "not_found", f"Path {API_PREFIX}/{relative} not found")
    return operation, raw


def check_request(
    spec: PlatformSpec,
    operation: Operation,
    path_values: Mapping[str, str],
    query: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
    body: bytes,
) -> CheckedRequest:
    """The request read and validated against `operation`'s parameters and body; Refused naming the first thing that
    does not conform."""
    bad_parameter = 400 if "400" in operation.statuses or "422" not in operation.statuses else 422
    by_name: dict[str, list[str]] = {}
    for name, value in query:
        by_name.setdefault(name, []).append(value)
    by_header: dict[str, list[str]] = {}
    for name, value in headers:
        by_header.setdefault(name.lower(), []).append(value)
    checked = CheckedRequest(operation)
    for parameter in operation.parameters:
        values: Sequence[str]
        if parameter.location == "path":
            values = [path_values[parameter.name]] if parameter.name in path_values else []
            target = checked.path
        elif parameter.location == "query":
            values, target = by_name.get(parameter.name, []), checked.query
        elif parameter.location == "header":
            values, target = by_header.get(parameter.name.lower(), []), checked.headers
        else:
            continue
        if not values:
            if parameter.required:
                raise Refused(bad_parameter, "validation_error", f"{parameter.label} is required")
            continue
        value = coerce(spec, parameter, list(values))
        problems = list(spec.errors(parameter.schema, value))
        if problems:
            raise Refused(bad_parameter, "validation_error", f"{parameter.label}: {problems[0]}")
        target[parameter.name] = value
    if operation.body_schema is not None:
        content_type = next(iter(by_header.get("content-type", [])), "")
        checked.body = check_body(spec, operation, body, content_type)
    return checked


def check_body(spec: PlatformSpec, operation: Operation, raw: bytes, content_type: str) -> Any:
    """The body read as the operation's request body media (JSON decoded and validated); Refused when it is not."""
    status = 422 if "422" in operation.statuses or "400" not in operation.statuses else 400
    media = operation.body_media or "application/json"
    if not raw.strip():
        if operation.body_required:
            raise Refused(status, "validation_error", "body: a request body is required")
        return None
    if "json" not in media:
        sent = content_type.split(";")[0].strip().lower()
        if sent != media:
            raise Refused(status, "validation_error", f"body: expected {media}, got {sent or 'no content type'}")
        return raw
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise Refused(status, "validation_error", "body: not valid JSON") from None
    assert operation.body_schema is not None
    problems = list(spec.errors(operation.body_schema, body))
    if problems:
        raise Refused(status, "validation_error", f"body: {problems[0]}")
    return body


def check_url(
    spec: PlatformSpec, method: str, url: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
) -> CheckedRequest:
    """Check a recorded request given as its method, whole URL (`https://api.fal.ai/v1/...?...`), headers and body
    bytes; Refused naming what does not conform."""
    parts = urlsplit(url)
    operation, raw = find_operation(spec, method, unquote(parts.path))
    return check_request(spec, operation, raw, parse_qsl(parts.query, keep_blank_values=True), headers, body)


def check_httpx_request(spec: PlatformSpec, request: httpx.Request) -> CheckedRequest:
    """Check a request as httpx built it (what a mock transport records of a client's calls)."""
    return check_url(spec, request.method, str(request.url), request.headers.multi_items(), request.read())
