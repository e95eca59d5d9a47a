"""How injected faults reach the client: a held connection, a cut mid-response, a 5xx, a garbled body."""

from __future__ import annotations

import asyncio
import logging
import threading

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from keyguard.sandbox.state import Fault


class ConnectionCut(Exception):
    """Raised after a partial response so uvicorn closes the socket: the client sees a broken connection."""


class CutConnectionResponse(Response):
    """Optionally holds the request (client times out), then starts a response and cuts it short."""

    def __init__(self, hold_s: float, stopping: threading.Event):
        super().__init__()
        self.hold_s = hold_s
        self.stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        waited = 0.0
        while waited < self.hold_s and not self.stopping.is_set():
            await asyncio.sleep(0.05)
            waited += 0.05
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"symbol":"', "more_body": True})
        raise ConnectionCut("sandbox fault: connection cut")


class _HideDeliberateCuts(logging.Filter):
    """uvicorn logs a traceback for every cut; a deliberate fault is not an error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is ConnectionCut)


def install_cut_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDeliberateCuts) for f in logger.filters):
        logger.addFilter(_HideDeliberateCuts())


def fault_response(fault: Fault, stopping: threading.Event, default_hold_s: float) -> Response:
    """The response a non-latency fault sends instead of (or after executing) the real one."""
    if fault.kind == "drop":
        return CutConnectionResponse(fault.hold_s if fault.hold_s is not None else default_hold_s, stopping)
    if fault.kind == "reset":
        return CutConnectionResponse(0.0, stopping)
    if fault.kind == "malformed":
        return Response(b'{"orderId": 12, "status": <html>502 Bad Gateway', status_code=200,
                        media_type="application/json")
    return Response(b"<html><body><h1>Service Unavailable</h1></body></html>", status_code=fault.status,
                    media_type="text/html")


async def apply_latency(faults: list[Fault]) -> None:
    delay = sum(f.latency_ms for f in faults) / 1000.0
    if delay > 0:
        await asyncio.sleep(delay)


def split_faults(faults: list[Fault]) -> tuple[Fault | None, Fault | None]:
    """(the fault that pre-empts execution, the fault that replaces the response after execution)."""
    active = [f for f in faults if f.kind != "latency"]
    before = next((f for f in active if f.effective_when() == "before"), None)
    after = next((f for f in active if f.effective_when() == "after"), None)
    return before, after
