"""Where fal's per-endpoint OpenAPI document (its queue document) keeps an endpoint's input, output and stream.

fal publishes one document per endpoint (`openapi.json` on its model page, `expand=openapi-3.0` in its model
search): the input is the JSON body of `POST /{endpoint_id}`, the output the 200 JSON body of
`GET /{endpoint_id}/requests/{request_id}`, and a streaming endpoint also has `POST /{endpoint_id}/stream`. The local
server and the generator both read documents by this one rule.
"""

from __future__ import annotations

Path = list[str | int]  # keys from the document's root, as a JSON pointer's parts


def input_schema_path(endpoint_id: str) -> Path:
    return ["paths", f"/{endpoint_id}", "post", "requestBody", "content", "application/json", "schema"]


def output_schema_path(endpoint_id: str) -> Path:
    return ["paths", f"/{endpoint_id}/requests/{{request_id}}", "get", "responses", "200", "content", "application/json",
            "schema"]  # fmt: skip


def stream_operation_path(endpoint_id: str) -> Path:
    return ["paths", f"/{endpoint_id}/stream", "post"]
