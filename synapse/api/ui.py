"""The operator page (`/ui`) and the read-only data it shows, translated from `PolicyService` operations.

The page is three files shipped inside the package (synapse/ui/), plain HTML, CSS and JavaScript with
no build step and nothing from another host: plants are air-gapped, and the Content-Security-Policy
below lets the browser load and connect to this service only. The page's data routes need the evaluate
scope unless the client is on loopback (`PolicyService.authorize_view`); retire, rollback and unpin
are the ordinary admin routes, called by the page with the token the operator types in.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from synapse.service.auth import Principal
from synapse.service.errors import ServiceError
from synapse.service.service import PolicyService

View = Callable[[Request, PolicyService], Principal]

ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
# Everything from this origin only; no inline script, no frames around the page.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}
STREAM_BACKLOG = 256  # decisions held for a watcher that is slow to read; beyond, it is told it missed some
_KEEP_ALIVE_S = 15.0  # a comment line so proxies and the browser keep an idle stream open
_CHECK_CLOSING_S = 1.0


def asset(name: str) -> bytes:
    """One of the page's files, from the package."""
    return resources.files("synapse.ui").joinpath(name).read_bytes()


def ui_routes(app: FastAPI, service: PolicyService, closing: threading.Event, view: View) -> None:
    """The page and its data routes; `view` authorises a read (PolicyService.authorize_view). `closing` is
    set when the server begins to shut down: a live stream never ends by itself, and the graceful
    shutdown waits for responses in progress."""
    files = {name: asset(name) for name in ASSETS}

    def page_file(name: str) -> Response:
        return Response(files[name], media_type=ASSETS[name], headers=_HEADERS)

    @app.get("/ui", tags=["operator page"], summary="The operator page (HTML; no outside resources)",
             response_class=Response)
    async def ui() -> Response:
        return page_file("index.html")

    @app.get("/ui/{name}", tags=["operator page"], summary="The operator page's script and style sheet",
             response_class=Response)
    async def ui_asset(name: str) -> Response:
        if name not in files:
            raise ServiceError(f"the operator page has no file {name!r}", code="SYNAPSE-SVC-NOT-FOUND",
                               status=404)
        return page_file(name)

    @app.get("/v1/overview", tags=["operator page"],
             summary="Readiness, ledger head and follow lag, policies with their artifacts, the last seal")
    async def overview(request: Request) -> Response:
        view(request, service)
        return Response(orjson.dumps(service.overview()), media_type="application/json")

    @app.get("/v1/decisions/recent", tags=["operator page"],
             summary="This worker's latest decisions (without inputs) and per-minute counts and latency")
    async def recent(request: Request) -> Response:
        view(request, service)
        return Response(orjson.dumps(service.recent_decisions()), media_type="application/json")

    @app.post("/v1/decision-log/verify", tags=["operator page"],
              summary="Check the decision log as `synapse decisions verify --allow-unsealed-tail` does")
    async def verify_log(request: Request) -> Response:
        view(request, service)
        report = await asyncio.to_thread(service.verify_decision_log)
        return Response(orjson.dumps(report), media_type="application/json")

    # Not in the OpenAPI document: a stream that never ends is no request/response operation, and clients
    # that walk the document's GET routes would wait on it forever (docs/service.md lists it).
    @app.get("/v1/decisions/stream", include_in_schema=False)
    async def stream(request: Request) -> StreamingResponse:
        view(request, service)
        return StreamingResponse(_events(service, closing), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(service: PolicyService, closing: threading.Event) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=STREAM_BACKLOG)
    missed = 0

    def offer(item: dict[str, Any]) -> None:
        nonlocal missed
        if queue.full():
            missed += 1
        else:
            queue.put_nowait(item)

    stop = service.watch_decisions(lambda item: loop.call_soon_threadsafe(offer, item))
    try:
        yield b"retry: 2000\n\n"
        idle = 0.0
        while not closing.is_set():
            try:
                item = await asyncio.wait_for(queue.get(), timeout=_CHECK_CLOSING_S)
            except TimeoutError:
                idle += _CHECK_CLOSING_S
                if idle >= _KEEP_ALIVE_S:
                    idle = 0.0
                    yield b": keep-alive\n\n"
                continue
            idle = 0.0
            if missed:
                yield b"event: missed\ndata: " + orjson.dumps({"count": missed}) + b"\n\n"
                missed = 0
            yield b"event: decision\ndata: " + orjson.dumps(item) + b"\n\n"
    finally:
        stop()
