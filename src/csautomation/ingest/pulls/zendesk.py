"""The Zendesk tickets pull: the cursor-based incremental ticket export, as
`support_ticket` and `support_escalation` signals."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import Field

from csautomation.connectors.config import ZendeskConfig
from csautomation.facts.model import Signal, SignalType
from csautomation.ingest.pulls.common import (
    PullContext,
    PullOptions,
    Tally,
    new_signal,
    vendor_connector,
)
from csautomation.store.pull_tables import load_cursor, save_cursor

if TYPE_CHECKING:
    from csautomation.connectors.zendesk import ExportedTicket, ZendeskTicketing

log = logging.getLogger(__name__)
KIND_ZD = "zendesk_tickets"
PRIORITIES = ("low", "normal", "high", "urgent")
# external_id prefixes of the tickets csautomation creates (their idempotency keys)
OURS = ("playbook:", "escalation:")


class ZendeskTicketsOptions(PullOptions):
    connector: str = "zendesk"
    escalation_tags: list[str] = Field(default_factory=lambda: ["escalated"])
    first_days: int = Field(default=30, ge=1, le=3650)  # how far back the first export starts
    ours: list[str] = Field(default_factory=lambda: list(OURS))  # external_id prefixes: skipped
    # per run, the rest on the next: Zendesk allows 10 export requests a minute
    max_pages: int = Field(default=10, ge=1, le=1000)


def pull_zendesk_tickets(opts: ZendeskTicketsOptions, ctx: PullContext, tally: Tally) -> str:
    name = opts.cursor_name()
    built, _config = vendor_connector(ctx, opts.connector, ZendeskConfig)
    desk: ZendeskTicketing = built
    cursor = load_cursor(ctx.store.engine, KIND_ZD, name)
    orgs: dict[int, str | None] = {}  # organization id -> external_id, for this run
    try:
        for _ in range(opts.max_pages):
            if cursor is None:
                page = desk.export_tickets(start=ctx.now - timedelta(days=opts.first_days))
            else:
                page = desk.export_tickets(cursor=cursor)
            tally.fetched += len(page.tickets)
            unknown = {t.organization_id for t in page.tickets if t.organization_id}
            unknown -= orgs.keys()
            if unknown:
                found = desk.organization_external_ids(unknown)
                orgs |= {i: found.get(i) for i in unknown}
            signals = [s for t in page.tickets for s in _ticket_signals(t, orgs, opts)]
            tally.stored += ctx.store.add_signals(signals)
            if page.after_cursor:
                cursor = page.after_cursor
                save_cursor(ctx.store.engine, KIND_ZD, name, cursor, ctx.now)
            if page.end_of_stream or not page.tickets or not page.after_cursor:
                break
    finally:
        desk.close()
    return cursor or ""


def _ticket_signals(
    ticket: ExportedTicket, orgs: Mapping[int, str | None], opts: ZendeskTicketsOptions
) -> list[Signal]:
    if ticket.status == "deleted" or (ticket.external_id or "").startswith(tuple(opts.ours)):
        return []
    account = orgs.get(ticket.organization_id) if ticket.organization_id else None
    if not account:
        log.debug("Zendesk ticket %s has no organization with an external_id", ticket.id)
        return []
    when = datetime.fromisoformat(ticket.updated_at).astimezone(UTC)
    # one ticket is one support_ticket (and at most one support_escalation), however often
    # it is updated: the facts count tickets, not edits
    key = f"zd:ticket:{ticket.id}"
    priority = ticket.priority if ticket.priority in PRIORITIES else "normal"
    out = [
        new_signal(
            SignalType.support_ticket,
            account,
            when,
            {"priority": priority, "subject": ticket.subject},
            key,
        )
    ]
    tags = [t for t in opts.escalation_tags if t in ticket.tags]
    if priority == "urgent" or tags:
        reason = f"tagged {', '.join(tags)}" if tags else "urgent priority"
        out.append(
            new_signal(SignalType.support_escalation, account, when, {"reason": reason}, key)
        )
    return [s for s in out if s is not None]
