"""What aiohttp would answer outside our middlewares, answered by us: ``Expect`` headers and no-such-route.

aiohttp runs a route's *expect handler* before any middleware, and its default one echoes the header
into a text body: ``Expect: \\xff`` (a non-UTF-8 byte, decoded with surrogateescape) fails to encode and
becomes a 500, on every path, even one that does not exist. So every route gets :func:`expect_handler`,
and a last catch-all route (:data:`UNMATCHED_PATH`) gives requests that match no route our own 404/405,
through the middlewares like any other request.
"""

from __future__ import annotations

from aiohttp import HttpVersion11, web

from gateway.web.auth import Auth, auth
from gateway.web.errors import error_response

UNMATCHED_PATH = "/{unmatched_path:.*}"
_CANONICAL = "/{unmatched_path}"  # how aiohttp names that resource


async def expect_handler(request: web.Request) -> web.StreamResponse | None:
    """``100-continue`` is honoured (the client may send its body); any other expectation is a 417."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not the response (as aiohttp's own handler)
        return None
    return error_response(417, "expectation_failed", "the only Expect this server knows is 100-continue")


def hardened(route: web.RouteDef) -> web.RouteDef:
    """``route`` with :func:`expect_handler`."""
    return web.RouteDef(route.method, route.path, route.handler, {**route.kwargs, "expect_handler": expect_handler})


@auth(Auth.NONE)
async def unmatched(request: web.Request) -> web.StreamResponse:
    """No route matched: 405 (with Allow) when the path exists with other methods, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == _CANONICAL:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise web.HTTPNotFound()


def catch_all() -> web.RouteDef:
    """Register it last: it matches every path and method that nothing else did."""
    return hardened(web.route("*", UNMATCHED_PATH, unmatched))


def is_catch_all(route: web.AbstractRoute) -> bool:
    return route.resource is not None and route.resource.canonical == _CANONICAL
