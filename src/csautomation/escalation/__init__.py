"""The escalation matrix and the pure policy: who is reached next, through what, and when.

    matrix.py     escalation_matrix.yaml: severities, levels, routing, calendars
    people.py     people.yaml: who is who, their teams, roles and sign-in
    calendar.py   working hours and holidays, for deadlines that count working time
    policy.py     `plan`: the rounds an escalation climbs, from the matrix and the people
    model.py      the plan and its rounds, carried in the escalation workflow's history

Its commands are in cli/escalations.py. Modules are imported directly.
"""

__all__ = ["calendar", "matrix", "model", "people", "policy"]
