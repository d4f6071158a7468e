"""CoAP transport for the constraint-node protocol (draft-urien-08 §4.1, which leaves it "to be done").

Our binding (docs/constraint-node.md): the node serves `POST /provision` with a Provisioning-Message as
JSON (Content-Format 50, application/json); it answers 2.04 Changed with a type-1 Transaction-Message,
4.15 Unsupported Content-Format with a type-0 message when the request declares no format or another,
4.00 Bad Request with a type-0 message when the provisioning message is malformed, or 5.00 with a
type-0 message when the node itself failed. Large answers travel block-wise (aiocoap does it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiocoap
import aiocoap.error
import aiocoap.resource
from aiocoap.numbers import ContentFormat

from axon.constraint_node import (
    ConstraintNode,
    ConstraintNodeError,
    MediaTypeRefused,
    NodeTransaction,
    ProvisioningMessage,
    TransactionMessage,
    parse_transaction_message,
)

PATH = ("provision",)
DEFAULT_PORT = 5683


class NodeUnreachable(ConstraintNodeError):
    code = "AXON-CN-TRANSPORT"


class ProvisionResource(aiocoap.resource.Resource):
    """The node's CoAP resource: a thin adapter over ConstraintNode.respond."""

    def __init__(self, node: ConstraintNode, read: Callable[[], bytes], chain_id: int | None) -> None:
        super().__init__()
        self._node, self._read, self._chain_id = node, read, chain_id

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        declared = request.opt.content_format
        if declared != ContentFormat.JSON:
            shown = "no Content-Format" if declared is None else f"Content-Format {int(declared)}"
            refused = MediaTypeRefused(f"{shown} is not JSON; send application/json (Content-Format 50)")
            return aiocoap.Message(code=aiocoap.UNSUPPORTED_CONTENT_FORMAT, content_format=ContentFormat.JSON,
                                   payload=TransactionMessage.failure(refused).to_json())
        reply = self._node.respond(request.payload, self._read, self._chain_id)
        if not reply.is_error:
            code = aiocoap.CHANGED
        else:
            code = aiocoap.BAD_REQUEST if reply.client_error else aiocoap.INTERNAL_SERVER_ERROR
        return aiocoap.Message(code=code, payload=reply.to_json(), content_format=ContentFormat.JSON)


async def serve(node: ConstraintNode, read: Callable[[], bytes], chain_id: int | None, *,
                host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> aiocoap.Context:
    """Start the node's CoAP server; `await context.shutdown()` stops it."""
    site = aiocoap.resource.Site()
    site.add_resource(PATH, ProvisionResource(node, read, chain_id))
    try:
        return await aiocoap.Context.create_server_context(site, bind=(host, port))
    except OSError as exc:
        raise NodeUnreachable(f"cannot listen on coap://{host}:{port}: {exc.strerror}") from exc


async def provision(uri: str, msg: ProvisioningMessage, *, context: aiocoap.Context | None = None,
                    timeout: float = 30.0, check: bool = True) -> NodeTransaction:
    """Controller side: POST `msg` to a node's provisioning URI (coap://host:port/provision) and return the
    decoded, signature-checked transaction; with `check`, also that it carries the provisioned context."""
    own = context is None
    ctx = context or await aiocoap.Context.create_client_context()
    try:
        request = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=msg.to_json(),
                                  content_format=ContentFormat.JSON)
        try:
            response = await asyncio.wait_for(ctx.request(request).response, timeout)
        except (aiocoap.error.Error, OSError) as exc:
            raise NodeUnreachable(f"no answer from {uri}: {exc}") from exc
        except TimeoutError as exc:
            raise NodeUnreachable(f"no answer from {uri} within {timeout:g} s") from exc
    finally:
        if own:
            await ctx.shutdown()
    result = parse_transaction_message(response.payload)  # a type-0 answer raises NodeReportedError
    if check:
        result.check_matches(msg)
    return result
