"""Activity classes: the one place where I/O and connector errors meet workflows."""

from csautomation.activities.escalation import EscalationActivities
from csautomation.activities.playbook import PlaybookActivities, backoff, local_connectors

__all__ = ["EscalationActivities", "PlaybookActivities", "backoff", "local_connectors"]
