"""The rules pages without a browser: firings per week at known times around week
boundaries with a fixed now, what a rule's playbook runs came to, the health bands week by
week, who sees which accounts' numbers, and the answers to the signed out, to unknown and
hostile rule ids, and to rule text with markup in it. The browser test draws the charts
(test_rule_pages_browser.py)."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterator
from datetime import date, timedelta
from fnmatch import fnmatch
from html import unescape
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from api.rules_support import (
    HOSTILE_NAME,
    QUIET,
    RULE,
    WEEKLY_ALL,
    WEEKLY_EAST,
    WEST,
    at,
    seed,
    write_rules,
)
from api.support import FAST, NOW, SECRET, FakeActions, csrf_of, sign_in
from csautomation.api import create_app, insights
from csautomation.escalation.people import People
from csautomation.rules.explain import ExplainNode, explain
from csautomation.rules.loader import RuleSet
from csautomation.store.repo import Store
from factories import daily_usage

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "src/csautomation/api/static/vendor"


@pytest.fixture
def ruleset(tmp_path: Path) -> RuleSet:
    return write_rules(tmp_path / "rules")


@pytest.fixture
def rules_client(store: Store, people: People, ruleset: RuleSet) -> Iterator[TestClient]:
    seed(store)
    app = create_app(
        store,
        people,
        FakeActions(store),
        now=lambda: NOW,
        session_secret=SECRET,
        hasher=FAST,
        rules=lambda: ruleset,
    )
    with TestClient(app, follow_redirects=False) as c:
        yield c


def chart_of(html: str, canvas: str) -> dict[str, Any]:
    found = re.search(
        rf'<script type="application/json" data-chart="{canvas}">(.*?)</script>', html, re.S
    )
    assert found, f"no data block for {canvas}"
    data: dict[str, Any] = json.loads(found[1])
    data["series"] = dict(data["series"])  # [name, counts] pairs, in order
    return data


def cells(html: str, testid: str) -> list[str]:
    return [unescape(c) for c in re.findall(rf'data-testid="{testid}"[^>]*>([^<]*)<', html)]


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def switch(client: TestClient, csrf: str, person_id: str) -> str:
    """Sign out, and in as another person."""
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    return sign_in(client, person_id)


def test_weeks_are_mondays_in_utc_and_the_current_one_is_labelled() -> None:
    span = insights.weeks(NOW)
    assert len(span) == 12
    assert span[0].start == at("2025-12-15T00:00:00") and span[0].label == "15 Dec"
    assert span[-1].start == at("2026-03-02T00:00:00") and span[-1].end == NOW
    assert span[-1].label == "2 Mar (so far)" and span[-1].partial
    assert not any(w.partial for w in span[:-1])
    assert all(b.start - a.start == timedelta(weeks=1) for a, b in pairwise(span))
    times = [at("2026-02-22T23:59:59"), at("2026-02-23T00:00:00"), NOW, NOW + timedelta(1)]
    assert insights.per_week(times, span)[-3:] == [1, 1, 1]  # the one after now: nowhere


def test_the_rule_page_counts_its_firings_per_week(rules_client: TestClient) -> None:
    sign_in(rules_client, "ada")
    r = rules_client.get(f"/rules/{RULE}")
    assert r.status_code == 200, r.text
    chart = chart_of(r.text, "chart-firings")
    assert chart["series"] == {"firings": WEEKLY_ALL}
    assert chart["labels"][0] == "15 Dec" and chart["labels"][-1] == "2 Mar (so far)"
    assert [int(c) for c in cells(r.text, "week-count")] == WEEKLY_ALL  # the table too
    assert 'data-week="2026-02-23"' in r.text
    assert "6 firings in all" in r.text
    # the conditions in words, as `csauto rules diff` says them
    assert "usage.logins_change_30d_pct &lt; -50 and account.tier == enterprise" in r.text
    assert "start playbook usage-recovery" in r.text


def test_the_latest_firings_say_which_conditions_held_with_the_facts_values(
    rules_client: TestClient,
) -> None:
    sign_in(rules_client, "ada")
    r = rules_client.get(f"/rules/{RULE}")
    rows = re.findall(r'data-testid="firing-row" data-account-id="([^"]+)"', r.text)
    # newest first; the one after now is stored and is the newest: it is a firing
    assert rows[:4] == ["beta", "acme", WEST, "acme"]
    assert "West &amp; Co" in r.text and "Beta &lt;b&gt;Bold&lt;/b&gt; Ltd" in r.text
    text = text_of(r.text)
    assert "✔ held: usage.logins_change_30d_pct < -50 (value: -62.5)" in text
    assert "✔ held: account.tier == 'enterprise' (value: 'enterprise')" in text


def test_what_its_playbooks_came_to(rules_client: TestClient) -> None:
    sign_in(rules_client, "ada")
    r = rules_client.get(f"/rules/{RULE}")
    counts = {
        name: cells(r.text, name)[0]
        for name in (
            "runs-started",
            "runs-running",
            "runs-completed",
            "runs-cancelled",
            "goal-reached",
            "goal-not-reached",
            "runs-escalated",
            "escalations",
        )
    }
    assert counts == {
        "runs-started": "6",
        "runs-running": "1",
        "runs-completed": "4",
        "runs-cancelled": "1",
        "goal-reached": "1",
        "goal-not-reached": "3",
        "runs-escalated": "1",  # ESCALATED_RUN opened one
        # support.populate's three for usage-drop (one resolved) and the run's
        "escalations": "4 (3)",
    }
    recorded = re.search(r'data-testid="recorded-outcomes">(.*?)</table>', r.text, re.S)
    assert recorded is not None
    pairs = re.findall(r"<code>([^<]+)</code></td><td>(\d+)</td>", recorded[1])
    assert sorted(pairs) == [
        ("escalated", "1"),
        ("goal_met", "1"),
        ("handed_to_sales", "1"),
        ("recovered", "1"),
    ]


def test_another_teams_firings_and_runs_are_not_counted(rules_client: TestClient) -> None:
    sign_in(rules_client, "mia")  # east: acme, beta, gamma, delta
    r = rules_client.get(f"/rules/{RULE}")
    assert r.status_code == 200
    assert chart_of(r.text, "chart-firings")["series"]["firings"] == WEEKLY_EAST
    assert WEST not in re.findall(r'data-account-id="([^"]+)"', r.text)
    assert "West &amp; Co" not in r.text
    assert cells(r.text, "runs-started") == ["5"] and cells(r.text, "runs-completed") == ["3"]
    assert "<code>handed_to_sales</code></td>" not in r.text
    assert "on the accounts you see" in r.text


def test_a_manager_of_the_other_team_sees_only_theirs(rules_client: TestClient) -> None:
    sign_in(rules_client, "noah")  # west: west-co only
    r = rules_client.get(f"/rules/{RULE}")
    assert re.findall(r'data-account-id="([^"]+)"', r.text) == [WEST]
    assert chart_of(r.text, "chart-firings")["series"]["firings"] == [0] * 10 + [1, 0]
    assert cells(r.text, "runs-started") == ["1"] and cells(r.text, "escalations") == ["0 (0)"]


def test_a_csm_sees_the_accounts_they_own(rules_client: TestClient) -> None:
    sign_in(rules_client, "cara")  # owns acme, beta, gamma, delta
    r = rules_client.get(f"/rules/{RULE}")
    assert r.status_code == 200
    assert chart_of(r.text, "chart-firings")["series"]["firings"] == WEEKLY_EAST


def test_a_rule_with_no_firings_shows_zeros_and_its_text_as_written(
    rules_client: TestClient,
) -> None:
    sign_in(rules_client, "ada")
    r = rules_client.get(f"/rules/{QUIET}")
    assert r.status_code == 200, r.text
    assert chart_of(r.text, "chart-firings")["series"]["firings"] == [0] * 12
    assert [int(c) for c in cells(r.text, "week-count")] == [0] * 12
    assert 'data-testid="no-firings"' in r.text and 'data-testid="no-outcomes"' in r.text
    assert cells(r.text, "runs-started") == ["0"]
    # markup and template braces arrive as written: escaped, never run or rendered
    assert "<script>alert(1)" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7 * 7 }} &amp; co" in r.text
    assert "49" not in cells(r.text, "rule-name")[0]
    assert unescape(cells(r.text, "rule-name")[0]) == HOSTILE_NAME
    assert "{{ account.name }} stays as written" in unescape(r.text)
    assert 'data-testid="rule-disabled"' in r.text
    # the window condition in words
    assert "health.score fell by 20 within 30d" in r.text


def test_a_rule_only_the_store_knows_is_shown_escaped(store: Store, people: People) -> None:
    # a rule that fired under an id no rule file has: the store's name for it is the page's
    hostile = "gone</script><b>{{ 7 * 7 }}"
    store.record_firing(hostile.replace("/", ""), "v0", "acme", 1, "low", NOW, {})
    app = create_app(
        store, people, FakeActions(store), now=lambda: NOW, session_secret=SECRET, hasher=FAST
    )
    with TestClient(app, follow_redirects=False) as c:
        sign_in(c, "ada")
        r = c.get("/rules/" + quote(hostile.replace("/", ""), safe=""))
        assert r.status_code == 200, r.text
        assert "<b>" not in r.text.split("<main>")[1] and "gone<script>" not in r.text
        assert cells(r.text, "rule-name") == [hostile.replace("/", "")]
        assert chart_of(r.text, "chart-firings")["series"]["firings"] == [0] * 11 + [1]
        assert 'data-testid="rule-not-in-files"' in r.text
        assert 'data-testid="rule-disabled"' not in r.text  # not known: not said
        overview = c.get("/rules")
        assert 'href="/rules/gone%3Cscript%3E%3Cb%3E%7B%7B%207%20%2A%207%20%7D%7D"' in overview.text


@pytest.mark.parametrize(
    "rule_id",
    ["no-such-rule", "<script>alert(1)</script>", "..%2F..%2Fetc", "%00", "x" * 3000, "é✓"],
)
def test_unknown_and_hostile_rule_ids_answer_404(rules_client: TestClient, rule_id: str) -> None:
    sign_in(rules_client, "ada")
    r = rules_client.get("/rules/" + quote(rule_id, safe="%"))
    assert r.status_code == 404, r.text[:300]
    assert "<script>alert(1)" not in r.text


def test_signed_out_is_sent_to_sign_in_and_an_ended_session_gets_401(
    rules_client: TestClient,
) -> None:
    for path in ("/rules", f"/rules/{RULE}"):
        r = rules_client.get(path)
        assert r.status_code == 303 and r.headers["location"] == f"/login?next={path}"
    csrf = sign_in(rules_client, "mia")
    cookie = rules_client.cookies["csauto_session"]
    assert rules_client.get(f"/rules/{RULE}").status_code == 200
    assert rules_client.post("/logout", data={"csrf": csrf}).status_code == 303
    with TestClient(rules_client.app, follow_redirects=False) as copy:  # the old cookie
        for path in ("/rules", f"/rules/{RULE}"):
            copy.cookies.set("csauto_session", cookie)
            r = copy.get(path)
            assert r.status_code == 401 and "Your session has ended." in r.text


def test_the_overview_counts_each_rules_firings_in_7_and_28_days(
    rules_client: TestClient,
) -> None:
    csrf = sign_in(rules_client, "ada")
    r = rules_client.get("/rules")
    assert r.status_code == 200, r.text
    rows = re.findall(
        r'data-rule-id="([^"]+)">.*?href="([^"]+)".*?data-testid="fired-7">(\d+)<.*?'
        r'data-testid="fired-28">(\d+)<',
        r.text,
        re.S,
    )
    # 7 days back from NOW: 2026-02-23 10:00; 28 days: 2026-02-02 10:00
    assert rows == [(QUIET, f"/rules/{QUIET}", "0", "0"), (RULE, f"/rules/{RULE}", "3", "5")]
    switch(rules_client, csrf, "noah")
    r = rules_client.get("/rules")
    assert re.findall(r'data-testid="fired-7">(\d+)<', r.text) == ["0", "1"]
    assert 'data-testid="rules-link"' in r.text  # the nav


def test_the_overview_shows_the_health_bands_week_by_week(
    store: Store, rules_client: TestClient
) -> None:
    # acme's logins fell 70% in the last 31 days: green until the last week, then yellow;
    # the others have no usage (their contract facts alone keep them green)
    csrf = sign_in(rules_client, "mia")
    before = chart_of(rules_client.get("/rules").text, "chart-bands")
    assert before["series"]["green"] == [4] * 12
    # the bands kept for acme are computed again once its signals change
    store.add_signals(daily_usage("acme", NOW.date(), fell=True))
    r = rules_client.get("/rules")
    chart = chart_of(r.text, "chart-bands")
    assert chart["labels"][-1] == "2 Mar (so far)"
    assert chart["series"]["yellow"] == [0] * 10 + [1, 1]
    assert chart["series"]["green"] == [4] * 10 + [3, 3]
    assert chart["series"]["red"] == [0] * 12 and chart["series"]["unknown"] == [0] * 12
    rows = re.findall(r'data-band="(\w+)"><th scope="row">[^<]+</th>((?:<td>\d+</td>)+)', r.text)
    table = {band: [int(n) for n in re.findall(r"\d+", tds)] for band, tds in rows}
    assert table == chart["series"]
    assert "4 accounts you see" in r.text and "computed from the signals stored now" in r.text
    switch(rules_client, csrf, "ada")  # and the west account
    r = rules_client.get("/rules")
    assert chart_of(r.text, "chart-bands")["series"]["green"] == [5] * 10 + [4, 4]


def test_an_account_whose_facts_cannot_be_derived_counts_as_no_score(
    store: Store, rules_client: TestClient
) -> None:
    from api.test_unhealthy_facts import poison

    poison(store, "beta")
    sign_in(rules_client, "mia")
    r = rules_client.get("/rules")
    assert r.status_code == 200
    assert chart_of(r.text, "chart-bands")["series"]["unknown"] == [1] * 12
    assert "Facts could not be computed for 1 account" in r.text and "beta:" in r.text


def test_the_pages_allow_scripts_from_this_site_only(rules_client: TestClient) -> None:
    sign_in(rules_client, "ada")
    for path in ("/rules", f"/rules/{RULE}", "/"):  # the app's one policy (app.HEADERS)
        csp = rules_client.get(path).headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


def test_chart_js_is_served_from_the_app_as_vendored(rules_client: TestClient) -> None:
    r = rules_client.get("/static/vendor/chart.umd.min.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "max-age=86400" in r.headers["cache-control"]
    readme = (VENDOR / "README.md").read_text()
    [recorded] = re.findall(r"sha256\s+([0-9a-f]{64})\s+chart\.umd\.min\.js", readme)
    assert hashlib.sha256(r.content).hexdigest() == recorded
    version = re.search(r"Chart\.js v([\d.]+)", r.content[:200].decode())
    assert version is not None and f"Chart.js **{version[1]}**" in readme
    assert (VENDOR / "LICENSE.md").read_text().startswith("The MIT License")
    ours = rules_client.get("/static/charts.js")
    assert ours.status_code == 200 and "max-age=3600" in ours.headers["cache-control"]


def test_the_wheel_ships_the_scripts_and_the_vendored_license() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["csautomation"]
    package = ROOT / "src/csautomation"
    for path in (
        "api/static/charts.js",
        "api/static/vendor/chart.umd.min.js",
        "api/static/vendor/LICENSE.md",
        "api/static/vendor/README.md",
        "api/templates/rule.html",
        "api/templates/rules.html",
    ):
        assert (package / path).exists()
        assert any(fnmatch(path, p) for p in patterns), f"{path} is not package data"


def test_a_stored_explain_reads_back_as_the_tree_it_was() -> None:
    from csautomation.rules.ir import compile_rule
    from csautomation.rules.spec import Rule

    rule = compile_rule(
        Rule.model_validate(
            {
                "id": "r",
                "name": "R",
                "owner": "o",
                "priority": "low",
                "trigger": {"on": ["usage_daily"]},
                "conditions": {
                    "any": [
                        {"not": "account.tier in [smb, mid_market]"},
                        "health.score between 10 and 40",
                    ]
                },
                "actions": [{"start_playbook": "p"}],
            }
        )
    )
    why = explain(rule, {"account.tier": "smb", "health.score": 20})
    stored = json.loads(json.dumps(why.to_dict()))  # as the JSON column gives it back
    assert ExplainNode.from_dict(stored["conditions"]) == why.tree
    assert ExplainNode.from_dict({"check": {"fact": 1}}) is None
    assert ExplainNode.from_dict({"all": [{"oops": True}]}) is None
    assert ExplainNode.from_dict(None) is None


def test_weeks_before_a_store_existed_are_zero_not_missing(rules_client: TestClient) -> None:
    sign_in(rules_client, "ada")
    r = rules_client.get(f"/rules/{RULE}")
    assert len(cells(r.text, "week-count")) == 12
    assert csrf_of(r.text)  # the sign-out form is on the page
    assert date(2025, 12, 15).isoformat() in r.text


def test_a_rule_gone_from_the_files_is_shown_as_it_was_when_it_fired(
    store: Store, people: People, ruleset: RuleSet
) -> None:
    from csautomation.store import ledger

    rule = ruleset.by_id(RULE)
    assert rule is not None
    with store.engine.begin() as conn:  # as the pipeline keeps a version that fired
        source = rule.rule.model_dump(mode="json", by_alias=True)
        ledger.remember_rules(conn, {rule.version: (RULE, source)})
    # newer than support.populate's firing of a version the store did not keep
    store.record_firing(RULE, rule.version, "beta", 1, "high", NOW - timedelta(hours=1), {})
    app = create_app(
        store, people, FakeActions(store), now=lambda: NOW, session_secret=SECRET, hasher=FAST
    )
    with TestClient(app, follow_redirects=False) as c:
        sign_in(c, "ada")
        r = c.get(f"/rules/{RULE}")
        assert r.status_code == 200, r.text
        assert 'data-testid="rule-not-in-files"' in r.text
        assert cells(r.text, "rule-name") == ["Usage dropped at an enterprise account"]
        assert "usage.logins_change_30d_pct &lt; -50 and account.tier == enterprise" in r.text
        assert "No explanation was recorded." in r.text
        assert chart_of(r.text, "chart-firings")["series"]["firings"] == [0] * 11 + [2]
