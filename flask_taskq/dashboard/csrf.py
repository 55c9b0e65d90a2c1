"""CSRF protection of the dashboard's actions, without the session: a double-submit cookie.

A random token lives in the cookie :data:`COOKIE` (``HttpOnly``, ``SameSite=Strict``,
``Secure`` over HTTPS, scoped to the dashboard's path) and every page carries the same
value; every POST must send it back in the form field ``csrf_token`` or the header
``X-CSRF-Token``, and the two are compared in constant time. Another site can neither read
the cookie nor make the browser send it with a cross-site request, so it cannot forge the
pair. It needs no ``SECRET_KEY``: API-only apps often have none.
"""

from __future__ import annotations

import hmac
import re
import secrets

from flask import Request, Response, g, request, url_for

COOKIE = "taskq_csrf"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
#: Methods that change state and so must carry the token.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: What :func:`token` makes (``secrets.token_urlsafe(32)``); any other cookie is replaced.
_WELL_FORMED = re.compile(r"\A[A-Za-z0-9_-]{32,128}\Z")
_NEW = "taskq_csrf_new"


def _from_cookie(req: Request) -> str | None:
    value = req.cookies.get(COOKIE)
    return value if value and _WELL_FORMED.match(value) else None


def token() -> str:
    """The browser's token: the cookie's, or a new one that :func:`set_cookie` sends."""
    value = _from_cookie(request) or g.get(_NEW)
    if value is None:
        value = g.taskq_csrf_new = secrets.token_urlsafe(32)
    return value


def set_cookie(response: Response) -> None:
    """Send the token made during this request, if any, as the cookie."""
    value = g.get(_NEW)
    if value is not None:
        response.set_cookie(
            COOKIE,
            value,
            path=url_for("taskq_dashboard.overview"),
            secure=request.is_secure,
            httponly=True,
            samesite="Strict",
        )


def valid(req: Request) -> bool:
    """True if ``req`` sends back, in its form or header, the token of its cookie."""
    expected = _from_cookie(req)
    given = req.form.get(FORM_FIELD) or req.headers.get(HEADER)
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
