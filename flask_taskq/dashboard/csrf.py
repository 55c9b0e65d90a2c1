"""CSRF protection of the dashboard's actions: a random token per session, sent back by
every POST in the form field ``csrf_token`` or the header ``X-CSRF-Token``."""

from __future__ import annotations

import hmac
import secrets

from flask import Request, session

SESSION_KEY = "taskq_dashboard_csrf"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
#: Methods that change state and so must carry the token.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def token() -> str:
    """This session's token, created on first use (needs ``app.secret_key``)."""
    value = session.get(SESSION_KEY)
    if not value:
        value = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return value


def valid(request: Request) -> bool:
    """True if ``request`` carries this session's token."""
    expected = session.get(SESSION_KEY)
    given = request.form.get(FORM_FIELD) or request.headers.get(HEADER)
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
