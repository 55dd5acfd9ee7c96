"""Rules and playbooks edited under a running pipeline: the next firing starts the new
playbook version while a run already started keeps its own, each reload is logged with the
versions it brought in, and an edit that does not validate (alone, or as a pair: a rule
starting a playbook that is not there) keeps the last good pair serving and says where,
once."""

from __future__ import annotations

import logging
import shutil
import threading
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from temporalio.client import Client

from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.live import LiveConfiguration
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.playbooks.loader import load_playbooks
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.outbox import mark_all_evaluated, runs
from csautomation.workflows.types import PlaybookInput
from factories import ROOT, TODAY, playbook_store

OLD_SUBJECT = "Usage is down at {{ account.name }}: call the champion"
NEW_SUBJECT = "Logins fell at {{ account.name }}: book a call with the champion"


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the shipped rules/ and workflows/, to edit."""
    rules, workflows = tmp_path / "rules", tmp_path / "workflows"
    shutil.copytree(ROOT / "rules", rules)
    shutil.copytree(ROOT / "workflows", workflows)
    return rules, workflows


@pytest.fixture
def live(folders: tuple[Path, Path]) -> LiveConfiguration:
    rules, workflows = folders
    return LiveConfiguration.load([rules], [workflows], reload_interval=0)


def edit(path: Path, old: str, new: str) -> int:
    """Replace `old` (present once) with `new`; the 1-based line `old` began on."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not in {path} once"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def usage_signal(account_id: str) -> Signal:
    return Signal(
        type="usage_daily",
        account_id=account_id,
        occurred_at=datetime.combine(TODAY, time(18), tzinfo=UTC),
        payload={"logins": 30, "active_users": 7},
        idempotency_key=f"{account_id}-today",
    )


async def started_input(client: Client, account_id: str, store_runs: list[str]) -> PlaybookInput:
    """The input the usage-recovery run of `account_id` was started with, from its history."""
    [workflow_id] = [
        w
        for w in store_runs
        if w.startswith(f"playbook:usage-decline:usage-recovery:{account_id}:")
    ]
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        [inp] = await client.data_converter.decode(payloads, [PlaybookInput])
        assert isinstance(inp, PlaybookInput)
        return inp
    raise AssertionError(f"{workflow_id} has no history")


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


@pytest.mark.asyncio
async def test_the_next_firing_starts_the_edited_playbook_and_the_running_one_keeps_its_own(
    client: Client,
    db_url: str,
    folders: tuple[Path, Path],
    live: LiveConfiguration,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    store = playbook_store(db_url)
    mark_all_evaluated(store)  # the history is context, not news
    runtime = RuleRuntime(
        live.rule_paths, load_health_model(), cooldowns=SqlCooldowns(store), source=live
    )
    pipeline = Pipeline(store, runtime, live, client)
    try:
        pipeline.add_signal(usage_signal("ACME"))
        await pipeline.run_once()
        old = live.playbooks["usage-recovery"].version

        edit(folders[1] / "usage-recovery.yaml", OLD_SUBJECT, NEW_SUBJECT)
        assert live.reload_if_changed()
        new = live.playbooks["usage-recovery"].version
        assert new != old
        infos = messages(caplog, logging.INFO)
        assert f"reloaded playbooks: usage-recovery version {new} (was {old})" in infos
        assert not any("reloaded rules" in m for m in infos)  # only what changed

        pipeline.add_signal(usage_signal("BETA"))
        await pipeline.run_once()
        ids = [r.workflow_id for r in runs(store)]
        first = await started_input(client, "ACME", ids)
        second = await started_input(client, "BETA", ids)
        assert (first.playbook_version, second.playbook_version) == (old, new)
        tasks = [i.playbook.steps[0].create_task for i in (first, second)]
        assert [t.subject if t else None for t in tasks] == [OLD_SUBJECT, NEW_SUBJECT]
        indexed = {
            r.account_id: r.playbook_version
            for r in runs(store)
            if r.workflow_id.startswith("playbook:usage-decline:usage-recovery:")
        }
        assert indexed == {"ACME": old, "BETA": new}
    finally:
        runtime.close()


def test_a_playbook_edit_that_does_not_validate_keeps_the_last_good_pair_and_says_where_once(
    folders: tuple[Path, Path], live: LiveConfiguration, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = folders[1] / "usage-recovery.yaml"
    before = live.served
    line = edit(path, "due_in: 2d", "due_in: soon")

    assert not live.reload_if_changed()
    assert live.served is before  # rules and playbooks as they were
    assert live.last_error is not None and f"{path}:{line}:" in str(live.last_error)
    [warning] = messages(caplog, logging.WARNING)
    assert "do not validate; the last good rules and playbooks serve" in warning
    assert f"{path}:{line}:" in warning and "due_in" in warning

    assert not live.reload_if_changed()  # the next look: the same files, nothing new said
    with path.open("a", encoding="utf-8") as f:
        f.write("# still broken\n")
    assert not live.reload_if_changed()  # edited, but the same problem: said already
    assert len(messages(caplog, logging.WARNING)) == 1

    again = edit(path, "wait: 14d", "wait: a fortnight")
    assert not live.reload_if_changed()  # another broken state: said again
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 2 and f"{path}:{again}:" in warnings[1]
    assert live.served is before

    shutil.copy(ROOT / "workflows" / "usage-recovery.yaml", path)
    assert live.reload_if_changed()
    assert live.last_error is None
    assert live.playbooks["usage-recovery"].version == before.playbooks["usage-recovery"].version
    infos = messages(caplog, logging.INFO)
    assert "rule and playbook files validate again; serving them" in infos
    assert "playbook files reloaded; no playbook changed (5)" in infos


def test_a_rule_that_starts_a_missing_playbook_is_refused_the_same_way(
    folders: tuple[Path, Path], live: LiveConfiguration, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = folders[0] / "usage.yaml"
    runtime = RuleRuntime(live.rule_paths, load_health_model(), source=live)
    try:
        before = live.served
        # usage-decline's action (usage-anomaly's, the same words, follows its own id)
        after = "\n        parameters: {target_logins_change_pct: -10}\n\n  - id: usage-anomaly"
        line = edit(
            path, "start_playbook: usage-recovery" + after, "start_playbook: usage-recovry" + after
        )
        assert not runtime.reload_if_changed()
        assert live.served is before and runtime.ruleset is before.ruleset
        assert runtime.last_error is live.last_error and live.last_error is not None
        [warning] = messages(caplog, logging.WARNING)
        assert f"{path}:{line}:" in warning
        assert "starts playbook 'usage-recovry'" in warning
        assert "did you mean 'usage-recovery'?" in warning
        assert not any(m.startswith("reloaded") for m in messages(caplog, logging.INFO))
    finally:
        runtime.close()


def test_a_rule_and_the_new_playbook_it_starts_arrive_together_with_their_versions(
    folders: tuple[Path, Path], live: LiveConfiguration, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rules, workflows = folders
    runtime = RuleRuntime(live.rule_paths, load_health_model(), source=live)
    try:
        old_rule = live.ruleset.by_id("usage-decline")
        assert old_rule is not None
        text = (workflows / "usage-recovery.yaml").read_text(encoding="utf-8")
        (workflows / "usage-rescue.yaml").write_text(
            text.replace("id: usage-recovery", "id: usage-rescue"), encoding="utf-8"
        )
        edit(
            rules / "usage.yaml",
            "cooldown: 30d\n    actions:\n      - start_playbook: usage-recovery",
            "cooldown: 30d\n    actions:\n      - start_playbook: usage-rescue",
        )
        assert runtime.reload_if_changed()  # both sides, one pair
        new_rule = runtime.ruleset.by_id("usage-decline")
        assert new_rule is not None and new_rule.version != old_rule.version
        rescue = live.playbooks["usage-rescue"].version
        infos = messages(caplog, logging.INFO)
        assert (
            f"reloaded rules: usage-decline version {new_rule.version} (was {old_rule.version})"
            in infos
        )
        assert f"reloaded playbooks: usage-rescue version {rescue} (new)" in infos
        assert not runtime.reload_if_changed()  # nothing new since
    finally:
        runtime.close()


def test_threads_looking_at_once_reload_an_edit_once(
    folders: tuple[Path, Path], live: LiveConfiguration, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    edit(folders[1] / "usage-recovery.yaml", OLD_SUBJECT, NEW_SUBJECT)
    start = threading.Barrier(8)
    results: list[bool] = []

    def look() -> None:
        start.wait()
        results.append(live.reload_if_changed())

    threads = [threading.Thread(target=look) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert sum(m.startswith("reloaded playbooks") for m in messages(caplog, logging.INFO)) == 1
    assert live.playbooks == load_playbooks([folders[1]])


def test_a_template_that_does_not_render_is_refused_as_at_start(
    folders: tuple[Path, Path], live: LiveConfiguration, caplog: pytest.LogCaptureFixture
) -> None:
    path = folders[1] / "usage-recovery.yaml"
    before = live.served
    line = edit(path, OLD_SUBJECT, OLD_SUBJECT.replace("account.name", "account.nmae"))
    assert not live.reload_if_changed()
    assert live.served is before
    [warning] = messages(caplog, logging.WARNING)
    assert f"{path}:{line}:" in warning and "nmae" in warning
