"""The escalation matrix and the pure policy: who is reached next, through what, and when."""
