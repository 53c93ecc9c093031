"""A dashboard page: a template rendered with autoescape, the CSRF token its forms carry, and
the checked form a POST sends back.

CSRF is a double submit: each page's forms carry the token of a random ``SameSite=Strict``,
HttpOnly cookie, and a POST counts only when the two match (``hmac.compare_digest``). Another
site can neither read the cookie nor make the browser send it, so it cannot forge a form.
Everything a template shows from outside (names, bodies, ids, errors) is escaped.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape

from runtime import Request, Response

CSRF_COOKIE = "roost_csrf"
CSRF_FIELD = "csrf"
HTML = "text/html; charset=utf-8"
MAX_FORM_VALUES = 1000
_CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)

_templates = Environment(
    loader=PackageLoader("actors.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_templates.globals["inf"] = float("inf")


class FormRefused(ValueError):
    """A POST that changes nothing: its CSRF token is missing or wrong (403) or its fields
    are bad (400)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def cookies(request: Request) -> dict[str, str]:
    pairs = (part.strip().partition("=") for part in request.headers.get("cookie", "").split(";"))
    return {name: value for name, _, value in pairs if name}


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """``template`` with ``context`` and the CSRF token, setting its cookie when the browser
    has none yet."""
    known = cookies(request).get(CSRF_COOKIE)
    token = known or secrets.token_urlsafe(24)
    nonce = secrets.token_urlsafe(16)
    body = _templates.get_template(template).render(csrf=token, nonce=nonce, **context)
    headers = {
        "content-type": HTML,
        "cache-control": "no-store",
        # Only this page's own inline script runs, even if something slipped past escaping.
        "content-security-policy": _CSP.format(nonce=nonce),
        "x-content-type-options": "nosniff",
    }
    if not known:
        headers["set-cookie"] = f"{CSRF_COOKIE}={token}; Path=/dashboard; HttpOnly; SameSite=Strict"
    return Response(body, status, headers)


def error_page(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", status, error=message, code=status)


def redirect(location: str) -> Response:
    """A 303 to ``location`` (a path built from quoted parts): after a POST, the page to see."""
    return Response(b"", 303, {"location": location, "cache-control": "no-store"})


def checked_form(request: Request) -> dict[str, list[str]]:
    """The POSTed form once its CSRF token matches the cookie; ``FormRefused`` otherwise."""
    try:
        form = parse_qs(
            request.body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(request.body),
            max_num_fields=MAX_FORM_VALUES,
        )
    except (UnicodeDecodeError, ValueError):
        raise FormRefused("the body must be a URL-encoded form") from None
    expected = cookies(request).get(CSRF_COOKIE, "")
    given = (form.get(CSRF_FIELD) or [""])[0]
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise FormRefused("the form's CSRF token is missing or wrong: reload the page and try again", 403)
    return form


def field(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0].strip()
