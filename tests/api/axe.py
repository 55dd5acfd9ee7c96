"""axe-core in the browser tests: the pages are checked as a screen-reader user or a
keyboard user meets them. axe-core comes inside axe-playwright-python (no download at run
time); it is injected by Playwright's evaluate, which the pages' CSP does not govern.

Only serious and critical violations fail a test; the rest are printed, so they are seen.
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.async_playwright import Axe as AsyncAxe
from axe_playwright_python.sync_playwright import Axe as SyncAxe

BLOCKING = ("serious", "critical")
# WCAG 2.1 A and AA, and axe's best practices (landmarks, headings, one main)
OPTIONS = {
    "resultTypes": ["violations"],
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    },
}


def _problems(response: dict[str, Any], where: str) -> list[str]:
    blocking, minor = [], []
    for v in response.get("violations", []):
        nodes = "; ".join(
            f"{' '.join(n.get('target', []))}: {n.get('failureSummary', '').strip()}"
            for n in v.get("nodes", [])[:5]
        )
        line = f"{where}: [{v.get('impact')}] {v.get('id')}: {v.get('help')} ({nodes})"
        (blocking if v.get("impact") in BLOCKING else minor).append(line)
    for line in minor:
        print("axe (minor):", line)
    return blocking


def check(page: Any, where: str) -> None:
    """Fails on a serious or critical violation on the page as it is now."""
    results = SyncAxe().run(page, options=OPTIONS)
    problems = _problems(results.response, where)
    assert not problems, "axe-core:\n" + "\n".join(problems)


async def check_async(page: Any, where: str) -> None:
    results = await AsyncAxe().run(page, options=OPTIONS)
    problems = _problems(results.response, where)
    assert not problems, "axe-core:\n" + "\n".join(problems)
