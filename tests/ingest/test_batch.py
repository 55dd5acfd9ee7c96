"""`csauto ingest FILE`: CSV and JSONL rows validated with line numbers and fields, valid
rows stored once, a file imported twice changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.ingest.batch import Rejected, import_file
from csautomation.store.engine import table
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow

runner = CliRunner()


def usage(day: int, logins: object = 40, account: str = "ACME") -> dict[str, object]:
    return {
        "type": "usage_daily",
        "account_id": account,
        "occurred_at": f"2026-11-{day:02d}T09:00:00Z",
        "payload": {"logins": logins, "active_users": 10},
    }


def write_jsonl(path: Path) -> Path:
    lines = [
        json.dumps(usage(1)),
        json.dumps(usage(2, logins=-3)),  # line 2: a payload field out of range
        "",
        "{not json",  # line 4
        json.dumps(usage(3) | {"type": "usage_dialy"}),  # line 5: an unknown type
        json.dumps(usage(4) | {"idempotency_key": "feed-4"}),
        json.dumps(usage(1)),  # line 7: the same event as line 1
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_rows_are_checked_with_line_and_field_and_stored_once(
    tmp_path: Path, store: Store
) -> None:
    path = write_jsonl(tmp_path / "signals.jsonl")
    report = import_file(store, path)
    assert (report.rows, report.accepted, report.stored, report.duplicates) == (6, 3, 2, 1)
    assert [(r.line, r.field) for r in report.rejected] == [
        (2, "payload.logins"),
        (4, ""),
        (5, "type"),
    ]
    assert "greater than or equal to 0" in str(report.rejected[0])
    assert str(report.rejected[1]).startswith("line 4: not JSON")
    again = import_file(store, path)  # the same file again changes nothing
    assert (again.accepted, again.stored, again.duplicates) == (3, 0, 3)
    assert store.signals_version("ACME")[0] == 2


def test_csv_takes_payload_columns_or_a_json_payload(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "signals.csv"
    path.write_text(
        "type,account_id,occurred_at,payload.logins,payload.active_users,payload\n"
        "usage_daily,ACME,2026-11-01T09:00:00Z,40,10,\n"
        'nps_response,ACME,2026-11-01T10:00:00Z,,,"{""score"": 9}"\n'
        "usage_daily,ACME,2026-11-02T09:00:00Z,many,10,\n"
        "usage_daily,,2026-11-02,5,1,\n"
        'nps_response,BETA,2026-11-01T10:00:00Z,,,"{score: 9}"\n',
        encoding="utf-8",
    )
    report = import_file(store, path)
    assert (report.rows, report.accepted, report.stored) == (5, 2, 2)
    assert [(r.line, r.field) for r in report.rejected] == [
        (4, "payload.logins"),
        (5, "account_id"),
        (5, "occurred_at"),
        (6, "payload"),
    ]
    assert report.rejected_rows == 3
    assert isinstance(report.rejected[0], Rejected)


def test_the_command_reports_and_exits_1_on_rejected_rows(tmp_path: Path, db_url: str) -> None:
    path = write_jsonl(tmp_path / "signals.jsonl")
    env = {"CSAUTO_DATABASE_URL": db_url}
    result = runner.invoke(app, ["ingest", str(path)], env=env, terminal_width=200)
    assert result.exit_code == 1, result.output
    assert "6 rows, 3 accepted (2 new, 1 already stored), 3 rejected" in result.output
    assert "line 2: payload.logins: Input should be greater than or equal to 0" in result.output
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(usage(9)) + "\n", encoding="utf-8")
    ok = runner.invoke(app, ["ingest", str(good)], env=env, terminal_width=200)
    assert ok.exit_code == 0 and "1 accepted (1 new" in ok.output
    unknown = runner.invoke(app, ["ingest", str(tmp_path / "x.txt")], env=env)
    assert unknown.exit_code != 0 and "no such file" in unknown.output


def test_csv_payload_columns_are_typed_by_the_schema(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "signals.csv"
    path.write_text(
        "type,account_id,occurred_at,payload.logins,payload.active_users,payload.goals_met_pct,"
        "payload.subject,payload.priority\n"
        "usage_daily,ACME,2026-11-01T09:00:00Z,5,12,,,\n"
        "outcome_review,ACME,2026-11-01T10:00:00Z,,,80,,\n"
        "outcome_review,ACME,2026-11-01T11:00:00Z,,,72.5,,\n"
        "support_ticket,ACME,2026-11-01T12:00:00Z,,,,007,high\n"
        "usage_daily,ACME,2026-11-02T09:00:00Z,5.5,1,,,\n"
        "usage_daily,ACME,2026-11-02T09:00:00Z,true,1,,,\n"
        "usage_daily,ACME,0001-01-01T09:00:00Z,1,1,,,\n",
        encoding="utf-8",
    )
    report = import_file(store, path)
    assert (report.rows, report.accepted, report.stored) == (7, 4, 4)
    assert [(r.line, r.field) for r in report.rejected] == [
        (6, "payload.logins"),
        (7, "payload.logins"),
        (8, "occurred_at"),
    ]
    t = table(SignalRow)
    with store.engine.connect() as conn:
        payloads = [dict(p) for p in conn.execute(select(t.c.payload).order_by(t.c.id)).scalars()]
    # read back from the table: numbers stored as numbers, text as text, absent left out
    assert payloads == [
        {"logins": 5, "active_users": 12},
        {"goals_met_pct": 80},
        {"goals_met_pct": 72.5},
        {"subject": "007", "priority": "high"},
    ]
    assert type(payloads[0]["logins"]) is int and type(payloads[1]["goals_met_pct"]) is int


def test_jsonl_lines_beyond_the_bounds_are_rejected_with_their_line(
    tmp_path: Path, store: Store
) -> None:
    path = tmp_path / "signals.jsonl"
    lines = [
        "[" * 2000 + "]" * 2000,
        json.dumps(usage(1, logins="1" * 5000)).replace('"' + "1" * 5000 + '"', "1" * 5000),
        json.dumps(usage(2, logins="7")),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_file(store, path)
    assert (report.rows, report.accepted) == (3, 1)
    assert [str(r) for r in report.rejected] == [
        "line 1: nested deeper than 32 levels",
        "line 2: a number 5,000 characters long; at most 1,000 are read",
    ]
    [signal] = store.signals_for("ACME")
    assert signal.payload["logins"] == 7


def test_csauto_ingest_of_a_csv_stores_the_number_5(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(
        "type,account_id,occurred_at,payload.logins,payload.active_users\n"
        "usage_daily,ACME,2026-11-01T09:00:00Z,5,3\n",
        encoding="utf-8",
    )
    env = {"CSAUTO_DATABASE_URL": store.engine.url.render_as_string(hide_password=False)}
    result = runner.invoke(app, ["ingest", str(path)], env=env, terminal_width=200)
    assert result.exit_code == 0, result.output
    t = table(SignalRow)
    with store.engine.connect() as conn:
        [payload] = conn.execute(select(t.c.payload)).scalars()
    assert payload == {"logins": 5, "active_users": 3} and type(payload["logins"]) is int
