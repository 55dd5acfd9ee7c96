"""The decision ledger: why every workflow started and what every one of them did.

One append-only table, `decision_ledger`, written in the same transaction as the thing it
records:

    rule_fired        a rule fired for an account (its version hash and the facts it read:
                      the explain), with the firing's id; the rule itself as it was at that
                      version is kept in `rule_versions`
    workflow_started  a firing's playbook or escalation run was indexed, about to start
                      (playbook version hash; the playbook itself kept in
                      `playbook_versions`)
    create_task, notify, update_account, notify_escalation
                      a side effect, with the connector, the vendor's record id and its
                      outcome; written in one transaction with the record of the effect: the
                      local CRM's row, or the receipt of a vendor's answer
    escalation        a change of an escalation (opened, notified, climbed, acknowledged,
                      reassigned, snoozed, woke, resolved), by whom
    dead_lettered, redriven, discarded
                      an action that failed for good (outcome "failed"), and what became
                      of it
    workflow_closed   a run's outcome

Two times. `at` is when the entry was recorded, for every kind. A firing also has a business
time, `detail["business_at"]` (`Entry.business_at`): the time of the signals it was
evaluated at, which is days earlier for a signal that arrived late or was back-filled.
Other entries happen as they are recorded: their business time is `at`. (Entries written
before the firing's two times were told apart have `at` = the business time.) `Query`
filters `since`/`until` on the recorded time, or with `business_time` on the business time.

Every row has a `key` naming what it records (the firing id, the action's idempotency key,
the escalation's event index), so writing it again, as a retried activity or a re-evaluated
signal does, adds nothing. Nothing updates or deletes a row: triggers on both databases
refuse UPDATE and DELETE, and TRUNCATE on PostgreSQL; each entry carries the hash of the one
before it (store/chain.py), so a row changed, removed or moved by someone who dropped the
triggers first shows in `csauto audit verify`. Temporal's histories expire with the
namespace's retention; the ledger does not, and `csauto audit --jsonl` exports it.

A side effect's outcome is "created" exactly once per effect (per idempotency key), and
its entry is never written twice. An attempt killed after the vendor made the record but
before the receipt and the entry were written leaves nothing behind in our store; its
retry finds the record at the vendor (the vendor deduplicated on our idempotency key,
which only this effect uses). That record was made by this effect, and nothing recorded
it: the entry says "created", at the time the retry learnt of it, with `vendor:
"found_existing"` as the evidence. "found_existing" is the outcome only of an effect that
makes no record of its own, an update of a record that was there (a CRM account's field).
The local CRM's row and its entry commit together, so a retry finds both or neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, not_, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from csautomation.store import chain
from csautomation.store.engine import aware, table, upsert
from csautomation.store.repo import Store
from csautomation.store.tables import DecisionRow, PlaybookVersionRow, RuleVersionRow

LEDGER = table(DecisionRow)
RULES = table(RuleVersionRow)
PLAYBOOKS = table(PlaybookVersionRow)
# built once, so that its cache key is memoized (every append asks)
_KEYS_THERE = select(LEDGER.c.key).where(LEDGER.c.key.in_(bindparam("keys", expanding=True)))


@dataclass(frozen=True)
class Entry:
    key: str
    kind: str
    at: datetime
    account_id: str = ""
    rule_id: str = ""
    rule_version: str = ""
    firing_id: int | None = None
    playbook_id: str = ""
    playbook_version: str = ""
    workflow_id: str = ""
    step_id: str = ""
    connector: str = ""
    record_id: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""  # set by `append`: the chain (store/chain.py)
    hash: str = ""

    @property
    def business_at(self) -> datetime:
        """The time of the signals a firing was evaluated at; for other entries, `at`."""
        value = self.detail.get("business_at") if self.kind == "rule_fired" else None
        return aware(datetime.fromisoformat(value)) if isinstance(value, str) else self.at


def append(conn: Connection, entries: Iterable[Entry]) -> list[Entry]:
    """Add entries in the caller's transaction, chained after the last one; an entry whose
    key is there is skipped. Returns the entries added. Holds the ledger's append lock to
    the end of the transaction (store/chain.py)."""
    wanted = {e.key: e for e in entries}  # one per key, the first given
    if not wanted:
        return []
    chain.serialise(conn)
    keys = list(wanted)
    there: set[str] = set()
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        there.update(conn.execute(_KEYS_THERE, {"keys": batch}).scalars())
    prev = chain.last_hash(conn)
    added = []
    for entry in wanted.values():
        if entry.key in there:
            continue
        values = dict(entry.__dict__)
        # as the database gives them back, so that the hash is the one verify computes
        values["at"] = aware(entry.at).astimezone(UTC)
        values["detail"] = json.loads(json.dumps(entry.detail))
        values["prev_hash"] = prev
        values["hash"] = prev = chain.entry_hash(values, prev)
        added.append(Entry(**values))
    if added:  # rows inserted in list order: ids in the order of the chain
        # executemany, not one multi-row VALUES: that statement is compiled anew on every
        # call (SQLAlchemy caches no multi-row VALUES), which cost more than the insert
        conn.execute(insert(LEDGER), [e.__dict__ for e in added])
    return added


def append_one(store: Store, entry: Entry) -> None:
    with store.engine.begin() as conn:
        append(conn, [entry])


def remember_rules(conn: Connection, rules: Mapping[str, tuple[str, dict[str, Any]]]) -> None:
    """Keep each rule as it is at its version: {version: (rule id, source)}."""
    now = datetime.now(UTC)
    rows = [
        {"version": v, "rule_id": r, "source": s, "first_seen": now} for v, (r, s) in rules.items()
    ]
    if rows:
        conn.execute(upsert(conn, RULES).on_conflict_do_nothing(), rows)


def remember_playbooks(
    conn: Connection, playbooks: Mapping[str, tuple[str, dict[str, Any]]]
) -> None:
    now = datetime.now(UTC)
    rows = [
        {"version": v, "playbook_id": p, "source": s, "first_seen": now}
        for v, (p, s) in playbooks.items()
    ]
    if rows:
        conn.execute(upsert(conn, PLAYBOOKS).on_conflict_do_nothing(), rows)


def rule_source(store: Store, version: str) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        value = conn.execute(select(RULES.c.source).where(RULES.c.version == version)).scalar()
    return dict(value) if value is not None else None


def playbook_source(store: Store, version: str) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        value = conn.execute(
            select(PLAYBOOKS.c.source).where(PLAYBOOKS.c.version == version)
        ).scalar()
    return dict(value) if value is not None else None


@dataclass(frozen=True)
class Query:
    account_id: str | None = None
    workflow_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    kinds: Sequence[str] = ()
    firing_id: int | None = None
    limit: int | None = None
    business_time: bool = False  # since/until on the business time, not the recorded one


def entries(store: Store, q: Query = Query()) -> list[Entry]:
    """Ledger entries, oldest recorded first."""
    stmt = select(LEDGER).order_by(LEDGER.c.at, LEDGER.c.id)
    if q.account_id is not None:
        stmt = stmt.where(LEDGER.c.account_id == q.account_id)
    if q.workflow_id is not None:
        stmt = stmt.where(LEDGER.c.workflow_id == q.workflow_id)
    if q.since is not None:
        stmt = stmt.where(_on_or_after(q.since, q.business_time))
    if q.until is not None:
        stmt = stmt.where(not_(_on_or_after(q.until, q.business_time)))
    if q.kinds:
        stmt = stmt.where(LEDGER.c.kind.in_(list(q.kinds)))
    if q.firing_id is not None:
        stmt = stmt.where(LEDGER.c.firing_id == q.firing_id)
    if q.limit is not None:
        stmt = stmt.limit(q.limit)
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    out = []
    for r in rows:
        values = {k: v for k, v in r.items() if k != "id"}
        values["at"] = aware(values["at"])
        out.append(Entry(**values))
    return out


def _on_or_after(moment: datetime, business: bool) -> ColumnElement[bool]:
    """The entries at or after `moment`: recorded, or (`business`) by business time, which
    a firing keeps in its detail as fixed-width ISO text (`_instant`), so text compares
    as time does on both databases."""
    if not business:
        return LEDGER.c.at >= moment
    kept = LEDGER.c.detail["business_at"].as_string()
    firing = and_(LEDGER.c.kind == "rule_fired", kept.is_not(None))
    return or_(and_(firing, kept >= _instant(moment)), and_(not_(firing), LEDGER.c.at >= moment))


def _instant(moment: datetime) -> str:
    """UTC, to the microsecond, always the same width: "2026-11-01T09:00:00.000000+00:00"."""
    return aware(moment).astimezone(UTC).isoformat(timespec="microseconds")


def to_json(entry: Entry) -> dict[str, Any]:
    data = dict(entry.__dict__)
    data["at"] = entry.at.astimezone(UTC).isoformat()
    data["business_at"] = entry.business_at.astimezone(UTC).isoformat()
    return data


# ---- what each writer records ------------------------------------------------------------


def fired(firing_id: int, row: Mapping[str, Any], recorded_at: datetime) -> Entry:
    """A firing's entry: recorded at `recorded_at`; its business time is the firing's
    (`fired_at`: the signals' time it was evaluated at, which cooldowns count from)."""
    return Entry(
        key=f"firing:{firing_id}",
        kind="rule_fired",
        at=recorded_at,
        account_id=row["account_id"],
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        firing_id=firing_id,
        detail={
            "business_at": _instant(row["fired_at"]),
            "window": row["window"],
            "priority": row["priority"],
            "explain": row["explain"],
            "actions": row.get("actions", []),
        },
    )


# the kinds of entry a connector's side effect writes (`effect`), one per idempotency key
EFFECTS = ("create_task", "notify", "update_account", "notify_escalation")
# the side effects that make a record of their own (a task, a message); update_account
# changes one that was there
MAKES_A_RECORD = ("create_task", "notify", "notify_escalation")
CREATED, FOUND_EXISTING, FAILED = "created", "found_existing", "failed"


def outcome(action: str, vendor_created: bool) -> str:
    """The ledger's word for a side effect entered for the first time (module docstring)."""
    return CREATED if vendor_created or action in MAKES_A_RECORD else FOUND_EXISTING


def effect_words(action: str, created: bool) -> str:
    """A side effect in words for people (replay, `csauto audit`, the audit report): an
    account update is an update, whatever the vendor answered; a record is created, or
    was already there (the vendor deduplicated on our key)."""
    if action == "update_account":
        return "updated"
    return "created" if created else "already there (deduplicated)"


def effect(
    action: str,
    key: str,
    workflow_id: str,
    step_id: str,
    account_id: str,
    connector: str,
    record_id: str,
    created: bool,
    at: datetime | None = None,
    attempt: int | None = None,
) -> Entry:
    """A side effect's entry: `created` is what the vendor answered (made now, or found
    existing); the entry's outcome follows from it and the action (`outcome`). `at`: when
    its record was made (the local row's or the receipt's time)."""
    said = outcome(action, created)
    detail: dict[str, Any] = {
        "idempotency_key": key,
        "outcome": said,
        "created": said == CREATED,
        "vendor": CREATED if created else FOUND_EXISTING,
    }
    if attempt is not None:
        detail["attempt"] = attempt
    return Entry(
        key=f"effect:{key}",
        kind=action,
        at=at or datetime.now(UTC),
        account_id=account_id,
        workflow_id=workflow_id,
        step_id=step_id,
        connector=connector,
        record_id=record_id,
        detail=detail,
    )


def effects_per_connector(store: Store) -> dict[str, tuple[int, datetime]]:
    """Side effects done through each connector: (how many, the latest one's time)."""
    q = (
        select(LEDGER.c.connector, func.count(), func.max(LEDGER.c.at))
        .where(LEDGER.c.kind.in_(EFFECTS))
        .group_by(LEDGER.c.connector)
    )
    with store.engine.connect() as conn:
        return {c: (int(n), aware(at)) for c, n, at in conn.execute(q)}
