"""Temporal workflow classes only (sandbox-safe imports).

The workflow modules import their payloads (`types`) inside
`workflow.unsafe.imports_passed_through()`; this package's own imports stay the workflow
classes, so the sandbox re-imports no payload module.
"""

from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow

__all__ = ["EscalationWorkflow", "PlaybookWorkflow"]
