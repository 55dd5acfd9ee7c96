"""Auditing: the decision ledger, workflow replay, and decisions made again.

replay.py      a workflow's history replayed against the current code, and its timeline
decisions.py   a recorded firing re-evaluated against the rule version that fired
"""

__all__ = ["decisions", "replay"]
