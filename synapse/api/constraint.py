"""HTTP binding of the constraint-node protocol (draft-urien-08 §4.2): POST /v1/constraint-node/provision.

A thin translation over axon.constraint_node: the body is a Provisioning-Message, the answer the
Transaction-Message `respond(body)` gives (`ConstraintNode.respond` over the node's data: a reading or a
decision attestation). 200 with type 1; 415 with type 0 (AXON-CN-MEDIA-TYPE) when the body is not
declared JSON (synapse.api.media, the rule of every JSON route; the CoAP node's 4.15), before it is read;
400 with type 0 when the provisioning message is malformed; 500 with type 0 when the node could not
produce its data. Mount with `app.include_router(make_router(...))`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.params import Depends

from axon.constraint_node import PROVISIONING_SCHEMA, TRANSACTION_SCHEMA, MediaTypeRefused, TransactionMessage
from synapse.api.media import JSON, not_json

PATH = "/v1/constraint-node/provision"


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "$schema"}


def make_router(respond: Callable[[bytes], TransactionMessage], *,
                dependencies: Sequence[Depends] = ()) -> APIRouter:
    """`dependencies` lets the service put its own authorisation in front of the route."""
    router = APIRouter(dependencies=list(dependencies))

    @router.post(
        PATH,
        summary="Sign a transaction carrying this node's data (constraint-node protocol)",
        openapi_extra={
            "requestBody": {"required": True, "content": {JSON: {"schema": _schema(PROVISIONING_SCHEMA)}}},
            "responses": {
                "200": {"description": "Transaction-Message, type 1",
                        "content": {JSON: {"schema": _schema(TRANSACTION_SCHEMA)}}},
                "400": {"description": "Transaction-Message, type 0: the provisioning message is malformed"},
                "415": {"description": "Transaction-Message, type 0: the body is not declared JSON"},
                "500": {"description": "Transaction-Message, type 0: the node could not read its data"},
            },
        },
    )
    async def provision(request: Request) -> Response:
        refused = not_json(request.headers.get("content-type"))
        if refused is not None:
            reply, status = TransactionMessage.failure(MediaTypeRefused(refused)), 415
        else:
            reply = respond(await request.body())
            status = 200 if not reply.is_error else 400 if reply.client_error else 500
        return Response(content=reply.to_json(), media_type=JSON, status_code=status)

    return router
