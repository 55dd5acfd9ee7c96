"""Signals in: from the API, from files, and pulled from the vendors.

    intake.py        the ingestion API's pipeline: validate, store, quarantine (with
                     routes.py, sources.py, validate.py, writer.py)
    batch.py         files imported (`csauto ingest`, the usage file drop)
    pulls/           the pulls schedules.yaml lists (Salesforce, Zendesk, file drop)
    completions.py   tasks completed at the vendors signalled to their playbooks

Modules are imported directly (`from csautomation.ingest.batch import import_file`): the
API, the scheduler and the command line each need a different part, and importing the
package loads none of them.
"""

__all__ = [
    "batch",
    "completions",
    "intake",
    "pulls",
    "routes",
    "sources",
    "validate",
    "writer",
]
