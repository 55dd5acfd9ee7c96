"""The managers' list through the app: an account's escalations in one group with each
reason, ARR, renewal date and health now and at firing; sort, pages and filters in the URL
(bad ones named and left out); the API's sort and pages; hostile names and reasons."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.support import EAST_CRITICAL, EAST_MEDIUM, NOW, FakeActions, bearer, sign_in
from csautomation.api.listing import page_links
from csautomation.facts.model import Account
from csautomation.store.escalations import record_escalation
from csautomation.store.repo import Store
from csautomation.store.tables import PlaybookRunRow, RuleFiringRow
from csautomation.workflows.types import EscalationState
from factories import account

H = timedelta(hours=1)
SECOND_ACME = "escalation:nps-low:acme:1"


def escalation(
    wid: str,
    account_id: str,
    severity: str = "medium",
    reason: str = "NPS fell to 4",
    opened: timedelta = 3 * H,
    team: str = "east",
    holder: str = "cara",
) -> EscalationState:
    return EscalationState(
        workflow_id=wid,
        account_id=account_id,
        severity=severity,
        reason=reason,
        rule_id=wid.split(":")[1],
        team=team,
        level=1,
        holder=holder,
        opened_at=NOW - opened,
        ack_by=NOW + H,
    )


def fired(store: Store, wid: str, account_id: str, window: int, facts: dict[str, object]) -> None:
    """A rule firing that raised `wid`, its explain reading `facts`."""
    explain = {"rule_id": "nps-low", "rule_version": "v1", "matched": True, "facts": facts}
    store.record_firing("nps-low", "v1", account_id, window, "medium", NOW - 26 * H, explain)
    with store.session() as s:
        firing_id = s.exec(
            select(RuleFiringRow.id).where(
                RuleFiringRow.account_id == account_id, RuleFiringRow.window == window
            )
        ).one()
        s.add(
            PlaybookRunRow(
                workflow_id=wid, kind="escalation", firing_id=firing_id, account_id=account_id
            )
        )
        s.commit()


def rows_of(html: str, testid: str = "escalation-row") -> list[str]:
    return re.findall(rf'data-testid="{testid}" data-workflow-id="([^"]+)"', html)


def groups_of(html: str) -> list[str]:
    return re.findall(r'data-testid="account-group" data-account-id="([^"]+)"', html)


def test_an_accounts_escalations_are_one_group_with_reasons_and_health(
    client: TestClient, store: Store
) -> None:
    record_escalation(store, escalation(SECOND_ACME, "acme"), seq=1)
    fired(store, SECOND_ACME, "acme", 2, {"health.score": 41.4, "health.band": "red"})
    sign_in(client, "mia")
    html = client.get("/").text

    assert groups_of(html) == ["acme", "delta", "beta"]  # the most urgent group first
    # acme's group: a head row that expands, then each escalation, most urgent first
    assert html.count('data-testid="account-row"') == 1
    assert rows_of(html) == [EAST_CRITICAL, SECOND_ACME, "escalation:tickets:delta:1", EAST_MEDIUM]
    assert 'aria-expanded="false" aria-controls="group-1-1 group-1-2"' in html
    assert ">2 escalations</button>" in html
    assert "2 open" in html and "Mia Manager, Cara CSM" in html
    # each escalation's rendered reason
    assert html.count(">logins fell by 70% in 30 days<") == 3  # acme's head and row, beta
    assert ">NPS fell to 4<" in html
    # the account's ARR and renewal date, health now with its date, at firing with its
    assert html.count('data-testid="arr">120,000<') == 3
    assert 'data-testid="renewal">2026-09-30<' in html
    now = re.findall(r'data-testid="health-now">(.*?)</span>\s*</td>', html, re.S)
    assert len(now) == 3 and all("on 2026-03-02" in h for h in now)
    at = re.findall(r'data-testid="health-at-firing">(.*?)</span>\s*</td>', html, re.S)
    assert "<strong>41</strong>" in at[1] and "red" in at[1] and "on 2026-03-01" in at[1]
    assert "not recorded when it fired" in at[0] and "on 2026-03-02" in at[0]
    assert "no rule firing recorded" in at[2]
    assert "None" not in html and "{{" not in html


def test_detail_page_dates_health_now_and_at_firing(client: TestClient, store: Store) -> None:
    record_escalation(store, escalation(SECOND_ACME, "acme"), seq=1)
    fired(store, SECOND_ACME, "acme", 2, {"health.score": 41.4, "health.band": "red"})
    sign_in(client, "mia")
    html = client.get("/escalations/escalation%3Anps-low%3Aacme%3A1").text
    assert "<h3>At firing, on 2026-03-01</h3>" in html
    assert "Score <strong>41</strong>" in html
    assert ">Now, on 2026-03-02</h3>" in html
    summary = re.search(r'data-testid="health-summary">(.*?)</dd>', html, re.S)
    assert summary is not None
    assert unescape(summary.group(1)) == (
        "now: 72 green (on 2026-03-02) · at firing: 41 red (on 2026-03-01)"
    )


def many(store: Store, n: int) -> None:
    """`n` more east accounts, one escalation each, opened i hours ago, ARR 1000 * i."""
    accounts = [
        account(id=f"acct-{i:03}", name=f"Account {i:03}", arr=1000.0 * i, manager="mia")
        for i in range(n)
    ]
    store.upsert_accounts(accounts)
    for i in range(n):
        state = escalation(f"escalation:x:acct-{i:03}:1", f"acct-{i:03}", opened=i * H + H / 2)
        record_escalation(store, state, seq=1)


def test_pages_of_fifty_account_groups(client: TestClient, store: Store) -> None:
    many(store, 120)  # 123 groups with the fixture's three east accounts
    sign_in(client, "mia")
    first = client.get("/").text
    assert len(groups_of(first)) == 50
    assert "123 escalations in 123 accounts, most urgent first · page 1 of 3" in unescape(first)
    assert 'aria-current="page" class="current">1<' in first
    assert 'href="/?page=2" rel="next"' in first and 'rel="prev"' not in first

    last = client.get("/?page=3").text
    assert len(groups_of(last)) == 23
    assert 'href="/?page=2" rel="prev"' in last and 'rel="next"' not in last
    # no group is on two pages, and together the pages show every group
    middle = client.get("/?page=2").text
    seen = groups_of(first) + groups_of(middle) + groups_of(last)
    assert len(seen) == len(set(seen)) == 123
    # a page past the last shows the last
    assert groups_of(client.get("/?page=9").text) == groups_of(last)


def test_page_links_leave_out_the_far_pages() -> None:
    assert page_links(1, 1) == [1]
    assert page_links(1, 3) == [1, 2, 3]
    assert page_links(10, 20) == [1, None, 8, 9, 10, 11, 12, None, 20]
    assert page_links(2, 9) == [1, 2, 3, 4, None, 9]


def test_sort_by_each_column(client: TestClient, store: Store) -> None:
    store.upsert_accounts([account(id="zeta", name="Zeta (no ARR)", arr=None, renewal_date=None)])
    record_escalation(store, escalation("escalation:x:zeta:1", "zeta", opened=100 * H), seq=1)
    sign_in(client, "mia")

    def order(query: str) -> list[str]:
        return groups_of(client.get("/?" + query).text)

    assert order("") == ["acme", "delta", "beta", "zeta"]  # urgency
    assert order("sort=account") == ["acme", "beta", "delta", "zeta"]
    assert order("sort=account&order=desc") == ["zeta", "delta", "beta", "acme"]
    assert order("sort=age") == ["zeta", "delta", "acme", "beta"]  # oldest first
    assert order("sort=age&order=asc") == ["beta", "acme", "delta", "zeta"]
    assert order("sort=severity") == ["acme", "delta", "beta", "zeta"]
    # no deadline (acknowledged) last in either direction
    assert order("sort=left") == ["beta", "acme", "zeta", "delta"]
    assert order("sort=left&order=desc") == ["acme", "zeta", "beta", "delta"]  # ties: urgency
    # no ARR, no renewal date: last in either direction, and shown as a dash
    assert order("sort=arr")[-1] == "zeta" and order("sort=arr&order=asc")[-1] == "zeta"
    assert order("sort=renewal")[-1] == "zeta"
    html = client.get("/?sort=arr&order=asc").text
    assert 'data-testid="arr">—<' in html and 'data-testid="renewal">—<' in html
    # the sorted column says so, and its link turns the order round
    assert (
        '<th scope="col" aria-sort="ascending"><a href="/?sort=arr&amp;order=desc"'
        ' data-testid="sort-arr">ARR' in html
    )
    assert html.count("aria-sort=") == 1
    assert "by ARR" in html


def test_filters_sort_and_page_stay_in_the_url(client: TestClient, store: Store) -> None:
    many(store, 60)
    sign_in(client, "mia")
    html = unescape(client.get("/?severity=medium&sort=arr&order=asc").text)
    # the filter form keeps the sort; sort links keep the filter and go to page 1
    assert '<input type="hidden" name="sort" value="arr">' in html
    assert '<input type="hidden" name="order" value="asc">' in html
    assert 'href="/?severity=medium&sort=age&order=desc"' in html
    # page links keep filter and sort
    assert 'href="/?severity=medium&sort=arr&order=asc&page=2" rel="next"' in html
    second = client.get("/?severity=medium&sort=arr&order=asc&page=2").text
    assert groups_of(second) == [f"acct-{i:03}" for i in range(50, 60)] + ["beta"]


@pytest.mark.parametrize(
    ("query", "problem", "groups"),
    [
        ("sort=loudness", "sort: Input should be 'urgency', 'severity',", 3),
        ("order=sideways&severity=critical", "order: Input should be 'asc' or 'desc'", 1),
        ("page=0&severity=critical", "page: Input should be greater than or equal to 1", 1),
        ("page=two", "page: Input should be a valid integer", 3),
        ("level=zero&sort=account", "level: Input should be a valid integer", 3),
    ],
)
def test_bad_parameters_are_named_and_the_others_still_apply(
    client: TestClient, query: str, problem: str, groups: int
) -> None:
    sign_in(client, "mia")
    r = client.get("/?" + query)
    assert r.status_code == 200
    html = unescape(r.text)
    assert f"Filter ignored: {problem}" in html
    assert len(groups_of(html)) == groups
    if "sort=account" in query:  # the good parameter kept
        assert groups_of(html) == ["acme", "beta", "delta"]


def test_the_api_sorts_and_pages_escalations(client: TestClient, store: Store) -> None:
    many(store, 60)
    every = client.get("/api/escalations", headers=bearer("mia")).json()
    assert every["count"] == len(every["escalations"]) == 63  # no page: all, as before
    assert "page" not in every
    r = client.get("/api/escalations?sort=arr&order=asc&page=2", headers=bearer("mia"))
    body = r.json()
    assert (body["count"], body["page"], body["pages"], body["page_size"]) == (63, 2, 2, 50)
    ids = [e["account_id"] for e in body["escalations"]]
    assert ids[:10] == [f"acct-{i:03}" for i in range(50, 60)]
    assert len(ids) == 13
    r = client.get("/api/escalations?sort=loudness", headers=bearer("mia"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort"
    r = client.get("/api/escalations?page=0", headers=bearer("mia"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "page"


HOSTILE = [
    ("hostile-1", "<script>alert('name')</script>", "<script>alert('reason')</script>"),
    ("hostile-2", "{{ 7*7 }} Corp", "Usage fell for {{ 7*7 }}"),
    ("hostile-3", "W" * 500, "because " + "x" * 3000),
]


def test_hostile_names_and_reasons(client: TestClient, store: Store) -> None:
    accounts = [
        Account(id=aid, name=name, tier="enterprise", manager="mia") for aid, name, _ in HOSTILE
    ]
    store.upsert_accounts(accounts)
    for aid, _, reason in HOSTILE:
        record_escalation(store, escalation(f"escalation:x:{aid}:1", aid, reason=reason), seq=1)
    sign_in(client, "mia")
    html = client.get("/?sort=account").text
    assert "<script>" not in html and "&lt;script&gt;alert(&#39;name&#39;)" in html
    assert "&lt;script&gt;alert(&#39;reason&#39;)&lt;/script&gt;" in html
    assert "49 Corp" not in html and "for 49" not in html  # nothing in the data is run
    assert "{{ 7*7 }} Corp" in html  # a name is shown as it is
    # an unrendered template in a reason is not shown as one
    assert "Usage fell for" not in html and "could not be filled in" in html
    assert "W" * 500 in html and "x" * 3000 in html  # long text is kept, the CSS wraps it
    assert "None" not in html
    for aid, *_ in HOSTILE:
        assert 'data-testid="arr">—<' in html
        detail = client.get(f"/escalations/escalation%3Ax%3A{aid}%3A1")
        assert detail.status_code == 200
        assert "<script>" not in detail.text and "None" not in detail.text
        assert "{{" not in detail.text.replace("{{ 7*7 }} Corp", "")


def test_list_forms_work_without_the_script(client: TestClient, fake_actions: FakeActions) -> None:
    csrf = sign_in(client, "mia")
    action = f"/escalations/{quote(EAST_MEDIUM, safe='')}/acknowledge"
    # a plain form post: back to the list it came from, with the message for that page
    r = client.post(action, data={"csrf": csrf, "back": "/?sort=arr&page=1"})
    assert (r.status_code, r.headers["location"]) == (303, "/?sort=arr&page=1")
    assert (
        "Acknowledged. Status: acknowledged; held by Mia Manager."
        in client.get(r.headers["location"]).text
    )
    # never back to another site
    r = client.post(
        action.replace("acknowledge", "reassign"),
        data={"csrf": csrf, "to": "cara", "back": "//evil.example/"},
    )
    assert (r.status_code, r.headers["location"]) == (303, "/")
    assert [kind for kind, _, _ in fake_actions.calls] == ["acknowledge", "reassign"]


def test_the_script_gets_json_and_no_message_is_left_for_later(
    client: TestClient, fake_actions: FakeActions
) -> None:
    csrf = sign_in(client, "mia")
    page = f"/escalations/{quote(EAST_MEDIUM, safe='')}"
    json = {"accept": "application/json"}
    r = client.post(f"{page}/reassign", data={"csrf": csrf, "to": "cara"}, headers=json)
    assert r.status_code == 200
    assert r.json() == {
        "ok": True,
        "message": "Reassigned. Status: open; held by Cara CSM.",
        "status": "open",
        "holder": "Cara CSM",
    }
    r = client.post(
        f"{page}/snooze", data={"csrf": csrf, "until": "2020-01-01T09:00"}, headers=json
    )
    assert r.status_code == 422
    assert r.json() == {"ok": False, "message": "Not done: until: must be in the future"}
    assert 'data-testid="flash"' not in client.get(page).text  # the script showed them
    # without the form's token: refused before anything, as for a form
    r = client.post(f"{page}/acknowledge", data={"csrf": "forged"}, headers=json)
    assert r.status_code == 403
    assert [kind for kind, _, _ in fake_actions.calls] == ["reassign"]


def test_the_script_is_served_and_allowed(client: TestClient) -> None:
    r = client.get("/static/app.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert client.get("/static/other.js").status_code == 404
    sign_in(client, "mia")
    assert '<script src="/static/app.js"></script>' in client.get("/").text
