"""The console's check on every request (called by the auth middleware for ``Auth.SESSION`` routes).

No session: the browser is sent to the sign-in page. Every POST carries the session's CSRF value in a
hidden ``csrf`` field, compared in constant time before the handler runs; then the role is checked, read
from the config (not from the cookie) so a changed token takes effect at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.console import sessions
from gateway.console.render import read_form, refusal
from gateway.web.auth import ROLE, TOKEN_NAME, Role, token_role
from gateway.web.keys import CLOCK, CONFIG

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def session_gate(request: web.Request, handler: Handler, needed: Role) -> web.StreamResponse:
    config = request.app[CONFIG]
    session = sessions.read(config, request.cookies.get(sessions.COOKIE, ""), now=request.app[CLOCK].now())
    if session is None:
        raise sessions.sign_in_redirect(request)
    held = token_role(session.token)
    if request.method == "POST":
        form = await read_form(request)
        if isinstance(form, web.Response):
            return form
        presented = form.get("csrf")
        if not isinstance(presented, str) or not sessions.csrf_matches(session, presented):
            return refusal(request, 403, "This form was not sent by your console session (the CSRF check "
                                         "failed). Reload the page and try again.")
    if not held.allows(needed):
        return refusal(request, 403, f"This needs the {needed.value} role; your token has {held.value}.")
    request[TOKEN_NAME], request[ROLE], request[sessions.SESSION] = session.token.name, held, session
    return await handler(request)
