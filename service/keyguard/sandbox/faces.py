"""The request handling every key-introspection face (all but Binance) shares: who called, what they sent, and
the injected faults, which pre-empt the face's answer or replace it after it has run.

Binance keeps its own: it charges the request weight between taking the faults and answering with one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from keyguard.sandbox.faults import apply_latency, fault_response, split_faults
from keyguard.sandbox.state import Fault, SandboxExchange


@dataclass(frozen=True)
class FaceCall:
    """One request to a face, after its faults were taken and no fault pre-empted it."""

    exchange: SandboxExchange
    ip: str
    # The path under the face's prefix (/okx/api/v5/... -> /api/v5/...), as the client signed it.
    path: str
    query: str
    body: str
    # The fault that replaces the face's answer once the call has run (a lost or garbled response).
    after: Fault | None

    @property
    def path_and_query(self) -> str:
        """The request target most exchanges sign: the path, then ?query when there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def answer(self, response: Response) -> Response:
        """The face's response, unless a fault replaces it: a lost answer is lost whatever it said."""
        if self.after is not None:
            return fault_response(self.after, self.exchange.stopping, self.exchange.config.drop_hold_s)
        return response


FaceRoute = Callable[[FaceCall, Request], Response]


def face_endpoint(prefix: str, routes: Mapping[tuple[str, str], FaceRoute],
                  not_found: FaceRoute) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint serving one face under `prefix`: routes are keyed by (method, path under the prefix). A call
    to anything else gets the face's not-found answer (its faults taken, but no fault replaces the answer)."""

    async def handle(request: Request) -> Response:
        call = await _begin_face_call(request, prefix)
        if not isinstance(call, FaceCall):
            return call
        route = routes.get((request.method, call.path))
        if route is None:
            return not_found(call, request)
        return call.answer(route(call, request))

    return handle


async def _begin_face_call(request: Request, prefix: str) -> FaceCall | Response:
    """Read the call and take its faults (waiting out any latency); a fault that pre-empts the call is returned
    as the response to send instead."""
    exchange: SandboxExchange = request.app.state.exchange
    ip = request.client.host if request.client else "unknown"
    path = request.url.path.removeprefix(prefix)
    query = request.scope.get("query_string", b"").decode()
    body = (await request.body()).decode()
    faults = exchange.take_faults(f"{request.method} {request.url.path}", ip)
    await apply_latency(faults)
    before, after = split_faults(faults)
    if before is not None:
        return fault_response(before, exchange.stopping, exchange.config.drop_hold_s)
    return FaceCall(exchange, ip, path, query, body, after)
