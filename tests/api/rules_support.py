"""What the rules pages' tests share: rule files, firings at known times around week
boundaries, playbook runs with their outcomes, and one account of the west team.

`support.NOW` (2026-03-02 10:00 UTC) is a Monday: the current week is ten hours old, and
the 12 weeks shown start on Monday 2025-12-15.

    firings of usage-drop (rule, account, when)                  week of
      acme   2025-12-14 23:59:59   before the 12 weeks: not counted
      acme   2025-12-15 00:00:00   the first week's first second      15 Dec
      beta   2026-02-22 23:59:59   a Sunday's last second             16 Feb
      beta   2026-02-23 00:00:00   the Monday after                   23 Feb
      acme   2026-02-24 09:00                                         23 Feb
      west   2026-02-24 12:00      the west team's account            23 Feb
      acme   2026-03-02 05:00      (support.populate's)               2 Mar (so far)
      beta   2026-03-02 11:00      after NOW: not counted
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.support import NOW
from csautomation.rules.loader import RuleSet, load_rules
from csautomation.store.escalations import record_escalation
from csautomation.store.repo import Store
from csautomation.store.tables import PlaybookRunRow
from csautomation.workflows.types import EscalationState
from factories import account

RULE = "usage-drop"
QUIET = "quiet-rule"
HOSTILE_NAME = "<script>alert(1)</script> {{ 7 * 7 }} & co"
WEST = "west-co"

RULES_YAML = f"""
rules:
  - id: {RULE}
    name: Usage dropped at an enterprise account
    description: >
      Logins fell by more than half in 30 days at an enterprise account.
    owner: cs-ops@example.com
    priority: critical
    trigger: {{on: [usage_daily]}}
    conditions:
      all:
        - usage.logins_change_30d_pct < -50
        - account.tier == enterprise
    cooldown: 7d
    actions:
      - start_playbook: usage-recovery
  - id: {QUIET}
    name: '{HOSTILE_NAME}'
    description: "Markup <b>stays</b> text and {{{{ account.name }}}} stays as written."
    owner: cs-ops@example.com
    priority: low
    enabled: false
    trigger: {{on: [nps_response]}}
    conditions:
      any:
        - engagement.nps <= 6
        - window: {{fact: health.score, fell_by: 20, within: 30d}}
    actions:
      - create_task: {{subject: "Call about NPS"}}
"""


def write_rules(folder: Path) -> RuleSet:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.yaml").write_text(RULES_YAML)
    return load_rules([folder])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


EXPLAIN = {
    "rule_id": RULE,
    "rule_version": "v1",
    "matched": True,
    "facts": {"usage.logins_change_30d_pct": -62.5, "account.tier": "enterprise"},
    "conditions": {
        "all": [
            {
                "check": {
                    "fact": "usage.logins_change_30d_pct",
                    "op": "lt",
                    "expected": -50,
                    "actual": -62.5,
                    "result": True,
                }
            },
            {
                "check": {
                    "fact": "account.tier",
                    "op": "eq",
                    "expected": "enterprise",
                    "actual": "enterprise",
                    "result": True,
                }
            },
        ],
        "result": True,
    },
}

FIRINGS = [
    ("acme", "2025-12-14T23:59:59"),
    ("acme", "2025-12-15T00:00:00"),
    ("beta", "2026-02-22T23:59:59"),
    ("beta", "2026-02-23T00:00:00"),
    ("acme", "2026-02-24T09:00:00"),
    (WEST, "2026-02-24T12:00:00"),
    ("beta", "2026-03-02T11:00:00"),
]
# per week, oldest first, as an admin sees them (support.populate adds acme's on 2 Mar)
WEEKLY_ALL = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 1]
WEEKLY_EAST = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1]

# (workflow id, account, status, outcome)
RUNS = [
    ("playbook:usage-drop:acme:1", "acme", "completed", "goal_met"),
    ("playbook:usage-drop:beta:1", "beta", "completed", "recovered"),
    ("playbook:usage-drop:acme:2", "acme", "running", ""),
    ("playbook:usage-drop:beta:2", "beta", "cancelled", "cancelled"),
    ("playbook:usage-drop:acme:3", "acme", "completed", "escalated"),
    ("playbook:usage-drop:west-co:1", WEST, "completed", "handed_to_sales"),
]
ESCALATED_RUN = "playbook:usage-drop:acme:3"


def seed(store: Store) -> None:
    """On top of `support.populate`: the west account, the firings, runs and the
    escalation one run raised."""
    store.upsert_accounts([account(id=WEST, name="West & Co", owner="carl", manager="noah")])
    for window, (account_id, when) in enumerate(FIRINGS, start=100):
        store.record_firing(RULE, "v1", account_id, window, "critical", at(when), EXPLAIN)
    with store.session() as s:
        for wid, account_id, status, outcome in RUNS:
            s.add(
                PlaybookRunRow(
                    workflow_id=wid,
                    kind="playbook",
                    rule_id=RULE,
                    playbook_id="usage-recovery",
                    account_id=account_id,
                    status=status,
                    outcome=outcome,
                )
            )
        s.commit()
    opened = NOW - timedelta(days=3)
    record_escalation(
        store,
        EscalationState(
            workflow_id=f"escalation:acme:{ESCALATED_RUN}:escalate",
            account_id="acme",
            severity="high",
            rule_id=RULE,
            source_workflow_id=ESCALATED_RUN,
            team="east",
            holder="cara",
            opened_at=opened,
        ),
        seq=1,
    )
