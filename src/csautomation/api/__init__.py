"""The review API and the manager's pages (FastAPI, Jinja2 templates).

    app.py         create_app: the JSON API under /api, the intake and the pages, in one app
    intake.py      POST /v1/signals: the signal intake (a source's token or signature)
    quarantine.py  the quarantine API (/v1/quarantine, admins and ops)
    api_routes.py  the escalations API (Bearer tokens)
    health.py      /health/live, /health/ready, /metrics
    pages.py       the pages (session cookie, CSRF token in every form), views.py their words
    listing.py     the list: escalations grouped by account, sorted, paged, with health
    docs.py        /docs, the OpenAPI description rendered without scripts
    review.py      the logic both call: scope, filters, checks before any signal
    auth.py        sign-in, tokens (the one Bearer dependency), sessions, what each role sees
    actions.py     EscalationActions, and TemporalActions that signals the workflows
    server.py      serve (uvicorn), and BackgroundServer for tests and demos
    errors.py      what the API refuses, with its HTTP status

Names are loaded on first use, so `from csautomation.api.actions import TemporalActions`
(the CLI's) does not import the web framework.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from csautomation.api.actions import EscalationActions, TemporalActions
    from csautomation.api.app import create_app
    from csautomation.api.errors import (
        EscalationClosedError,
        EscalationNotFoundError,
        InputError,
        NotAllowedError,
        NotSignedInError,
        ReviewError,
    )
    from csautomation.api.server import BackgroundServer, serve, serve_async

_WHERE = {
    "BackgroundServer": "server",
    "EscalationActions": "actions",
    "EscalationClosedError": "errors",
    "EscalationNotFoundError": "errors",
    "InputError": "errors",
    "NotAllowedError": "errors",
    "NotSignedInError": "errors",
    "ReviewError": "errors",
    "TemporalActions": "actions",
    "create_app": "app",
    "serve": "server",
    "serve_async": "server",
}
__all__ = [
    "BackgroundServer",
    "EscalationActions",
    "EscalationClosedError",
    "EscalationNotFoundError",
    "InputError",
    "NotAllowedError",
    "NotSignedInError",
    "ReviewError",
    "TemporalActions",
    "create_app",
    "serve",
    "serve_async",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
