"""The audit report as one HTML page that needs nothing else: its style inline, no script,
no font, image or link to fetch (a Content-Security-Policy says so to the browser), so it
opens from a file, offline, and prints. Rendered by Jinja2's sandboxed environment with
autoescaping: every value in it is text from the store or the history, never markup.
"""

from __future__ import annotations

from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from csautomation.audit.report import Report

__all__ = ["render"]


def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=PackageLoader("csautomation.audit", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(report: Report) -> str:
    runs = sum(len(f.runs) for f in report.firings) + len(report.other_runs)
    return _env().get_template("report.html").render(r=report, run_count=runs)
