"""The activity names: one spelling shared by the workflows that schedule an activity and
the `@activity.defn(name=...)` that implements it.

Constants rather than typed method references (`execute_activity_method`): the activity
classes live in `activities/`, a higher layer that imports the store, the connectors and
these workflows' payload types, so a workflow importing them would close a package cycle.
The names are recorded in every workflow history: renaming one breaks replay of the
committed histories under tests/.
"""

from __future__ import annotations

from typing import Final

# the playbook workflow
READ_ACCOUNT_FACTS: Final = "read_account_facts"
CREATE_TASK: Final = "create_task"
NOTIFY: Final = "notify"
UPDATE_ACCOUNT: Final = "update_account"
OPEN_ESCALATION: Final = "open_escalation"
# both workflows
RECORD_RUN_OUTCOME: Final = "record_run_outcome"
RECORD_DEAD_LETTER: Final = "record_dead_letter"
# the escalation workflow
PLAN_ESCALATION: Final = "plan_escalation"
RECORD_ESCALATION: Final = "record_escalation"
NOTIFY_ESCALATION: Final = "notify_escalation"
