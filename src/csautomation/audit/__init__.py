"""Auditing: the decision ledger, workflow replay, and decisions made again."""
