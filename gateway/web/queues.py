"""/api/v1/queues: what waits for a line, per priority, and what is on the lines now."""

from __future__ import annotations

from aiohttp import web

from gateway.web.keys import PAGING

routes = web.RouteTableDef()


@routes.get("/api/v1/queues")
async def get_queues(request: web.Request) -> web.Response:
    dispatcher = request.app[PAGING].dispatcher
    return web.json_response({
        "queues": [
            {"priority": s.priority, "depth": s.depth, "oldest_wait_s": s.oldest_wait_s,
             "waiting_too_long": s.waiting_too_long}
            for s in dispatcher.stats()
        ],
        "providers": [{
            "name": dispatcher.provider.name,
            "in_flight": dispatcher.in_flight,
            "capacity": dispatcher.capacity,
            "reserved_for_high": dispatcher.reserved_for_high,
            "calls_per_second": dispatcher.provider.capabilities.calls_per_second,
        }],
        "low_wait_warning_s": dispatcher.low_wait_warning_s,
        "low_waited_too_long_total": dispatcher.low_waited_too_long,
    })
