"""/metrics: the dispatcher's queues and lines in Prometheus' text format (scrape with the API token)."""

from __future__ import annotations

from aiohttp import web

from gateway.web.keys import PAGING, PROVIDERS

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    dispatcher = request.app[PAGING].dispatcher
    provider = dispatcher.provider.name
    lines = [
        "# HELP gateway_queue_depth Calls waiting for a line, per priority.",
        "# TYPE gateway_queue_depth gauge",
        "# HELP gateway_queue_oldest_wait_seconds How long the oldest waiting call has waited.",
        "# TYPE gateway_queue_oldest_wait_seconds gauge",
        "# HELP gateway_queue_waiting_too_long Calls waiting longer than dispatch.low_wait_warning.",
        "# TYPE gateway_queue_waiting_too_long gauge",
    ]
    for stats in dispatcher.stats():
        label = f'{{priority="{stats.priority}"}}'
        lines += [
            f"gateway_queue_depth{label} {stats.depth}",
            f"gateway_queue_oldest_wait_seconds{label} {stats.oldest_wait_s or 0:.3f}",
            f"gateway_queue_waiting_too_long{label} {stats.waiting_too_long}",
        ]
    lines += [
        "# HELP gateway_low_waited_too_long_total Low-priority calls dialled after waiting past the bound.",
        "# TYPE gateway_low_waited_too_long_total counter",
        f"gateway_low_waited_too_long_total {dispatcher.low_waited_too_long}",
        "# HELP gateway_lines_in_use Calls in progress on the provider.",
        "# TYPE gateway_lines_in_use gauge",
        f'gateway_lines_in_use{{provider="{provider}"}} {dispatcher.in_flight}',
        "# HELP gateway_lines The provider's capacity, and the lines reserved for high priority.",
        "# TYPE gateway_lines gauge",
        f'gateway_lines{{provider="{provider}",kind="capacity"}} {dispatcher.capacity}',
        f'gateway_lines{{provider="{provider}",kind="reserved_for_high"}} {dispatcher.reserved_for_high}',
    ]
    manager = request.app[PROVIDERS].manager
    lines += [
        "# HELP gateway_provider_up 1 while a provider is used, 0 while it is marked down after failing again and "
        "again (one probe at a time finds out whether it is back).",
        "# TYPE gateway_provider_up gauge",
        *(f'gateway_provider_up{{provider="{name}"}} {0 if manager.is_down(name) else 1}' for name in manager.health),
        "# HELP gateway_provider_consecutive_failures Failures of a provider since its last success.",
        "# TYPE gateway_provider_consecutive_failures gauge",
        *(f'gateway_provider_consecutive_failures{{provider="{name}"}} {health.failures}'
          for name, health in manager.health.items()),
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})
