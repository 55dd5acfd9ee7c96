"""What the review API and pages refuse, each with the HTTP status it becomes.

    CsAutomationError
     └── ReviewError                 a read or an action the review API refuses
          ├── NotSignedInError       401: no credentials, or ones we do not know
          ├── NotAllowedError        403: a read-only role, a reassignment outside the
          │                          caller's teams, or a bad form token (CSRF)
          ├── EscalationNotFoundError 404: no such escalation (or no such workflow), or one
          │                          outside the caller's scope: the same answer
          ├── RuleNotFoundError      404: no such rule (the rules pages)
          ├── EscalationClosedError  409: it is resolved; its workflow has closed
          └── InputError             422: one field is wrong; `field` names it

Temporal's own errors become these in one place, `actions.TemporalActions`; a Temporal
server that does not answer is `csautomation.errors.ServiceUnavailableError` (503).
"""

from __future__ import annotations

from csautomation.errors import CsAutomationError


class ReviewError(CsAutomationError):
    status = 400

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotSignedInError(ReviewError):
    status = 401


class NotAllowedError(ReviewError):
    status = 403


class EscalationNotFoundError(ReviewError):
    status = 404


class RuleNotFoundError(ReviewError):
    status = 404


class EscalationClosedError(ReviewError):
    status = 409


class InputError(ReviewError):
    status = 422

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")
        self.detail = message
