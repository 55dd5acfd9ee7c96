"""Vendors' documented field lengths, met visibly: a subject too long for its vendor is cut
to the limit and ends in MARK, and its full text opens the description, so nothing a
playbook wrote is lost and a reader sees that the subject was shortened. A vendor that
refused the longer value would make the action a permanent dead letter instead.

One info line per cut field names the connector, the field, the limit and the action's
idempotency key (ids only: never the text, which may hold a customer's words).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

MARK = "…"


@dataclass(frozen=True)
class Limits:
    """The vendor's field names and their documented lengths in characters (None: no
    documented limit)."""

    subject_field: str
    subject: int | None
    body_field: str
    body: int | None


def cut(text: str, limit: int | None) -> str:
    """`text`, or its start and MARK in `limit` characters."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - len(MARK)] + MARK


def fit_task(connector: str, key: str, subject: str, body: str, limits: Limits) -> tuple[str, str]:
    """(subject, body) within the vendor's limits; a cut subject's full text opens the
    body."""
    short = cut(subject, limits.subject)
    if short != subject:
        body = f"{subject}\n\n{body}" if body else subject
        _note(connector, key, limits.subject_field, limits.subject, limits.body_field)
    fitted = cut(body, limits.body)
    if fitted != body:
        _note(connector, key, limits.body_field, limits.body, None)
    return short, fitted


def _note(connector: str, key: str, field: str, limit: int | None, kept_in: str | None) -> None:
    where = f"; the full text is in {kept_in}" if kept_in else ""
    log.info(
        "%s: %s cut to the vendor's %s characters, ending in %s%s (action %s)",
        connector,
        field,
        limit,
        MARK,
        where,
        key,
        extra={"connector": connector, "field": field},
    )
