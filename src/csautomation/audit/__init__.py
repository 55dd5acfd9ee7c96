"""Auditing: the decision ledger, workflow replay, a run's story and an account's report.

replay.py            a workflow's history replayed against the current code
capture.py, compare.py, versions.py
                     what the current code would schedule, compared with the history
timeline.py          a history as people read it; playbook_story.py, escalation_story.py,
                     story.py and conditions.py tell what its events mean
decisions.py         a recorded firing re-evaluated against the rule version that fired
report.py            one account's audit trail from the store (report_parts.py), written
                     as one HTML page by report_html.py
"""

__all__ = ["decisions", "replay", "report", "timeline"]
