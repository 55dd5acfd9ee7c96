"""The quarantine API, for admins and ops (an API token: Authorization: Bearer):

GET  /v1/quarantine                 ?status=open&source=...
GET  /v1/quarantine/{id}
POST /v1/quarantine/{id}/reprocess  optional body: the corrected signal
POST /v1/quarantine/{id}/discard
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from csautomation.api.auth import Authenticator
from csautomation.api.errors import NotAllowedError, ReviewError
from csautomation.escalation.people import Person
from csautomation.ingest.intake import Intake, discard, reprocess
from csautomation.ingest.validate import read_json
from csautomation.store.quarantine import get_held, held
from csautomation.store.tables import QuarantineRow

__all__ = ["QuarantineItem", "router"]

QUARANTINE_ROLES = frozenset({"admin", "ops"})
NOT_JSON = "the corrected signal cannot be read"
NOT_JSON_ERROR = {"index": None, "field": "body", "message": NOT_JSON}


class QuarantineNotFoundError(ReviewError):
    status = 404


class QuarantineItem(BaseModel):
    id: int
    source: str
    status: str
    times: int
    errors: list[dict[str, Any]]
    raw: str
    signal_key: str
    received_at: str
    last_seen_at: str
    resolved_by: str
    result_key: str

    @classmethod
    def of(cls, row: QuarantineRow) -> "QuarantineItem":
        assert row.id is not None
        return cls(
            id=row.id,
            source=row.source,
            status=row.status,
            times=row.times,
            errors=row.errors,
            raw=row.raw,
            signal_key=row.signal_key,
            received_at=row.received_at.isoformat(),
            last_seen_at=row.last_seen_at.isoformat(),
            resolved_by=row.resolved_by,
            result_key=row.result_key,
        )


def router(intake: Intake, authn: Authenticator) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["quarantine"])

    def staff(person: Annotated[Person, Depends(authn.caller)]) -> Person:
        if person.role not in QUARANTINE_ROLES:
            raise NotAllowedError("the quarantine is for admins and ops")
        return person

    Staff = Annotated[Person, Depends(staff)]

    @api.get(
        "/quarantine",
        summary="Signals held back, with why",
        dependencies=[Depends(staff)],
    )
    def list_quarantine(
        status: Annotated[str | None, Query(pattern="^(open|reprocessed|discarded)$")] = "open",
        source: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        rows = held(intake.store, status, source, limit)
        items = [QuarantineItem.of(r).model_dump() for r in rows]
        return {"count": len(items), "items": items}

    @api.get("/quarantine/{row_id}", dependencies=[Depends(staff)])
    def show_quarantine(row_id: int) -> QuarantineItem:
        row = get_held(intake.store, row_id)
        if row is None:
            raise QuarantineNotFoundError(f"no quarantined item {row_id}")
        return QuarantineItem.of(row)

    @api.post(
        "/quarantine/{row_id}/reprocess",
        summary="Re-process an item, optionally with a corrected signal as the body",
    )
    async def reprocess_item(row_id: int, request: Request, person: Staff) -> JSONResponse:
        body = await request.body()
        corrected: Any = None
        if body.strip():
            corrected, why = read_json(body)  # bounded: no body nests or counts its way to a 500
            if why:
                error = {**NOT_JSON_ERROR, "message": f"{NOT_JSON} ({why})"}
                return JSONResponse({"detail": error["message"], "errors": [error]}, 422)
        done = await asyncio.to_thread(reprocess, intake.store, row_id, person.id, corrected)
        if done is None:
            raise QuarantineNotFoundError(f"no quarantined item {row_id}")
        if done.already:
            return JSONResponse({"detail": f"item {row_id} is already {done.already}"}, 409)
        if not done.ok:
            errors = [e.to_dict() for e in done.errors]
            text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            return JSONResponse({"detail": text, "errors": errors}, 422)
        intake.writer.notify()
        return JSONResponse({"id": row_id, "status": "reprocessed", "idempotency_key": done.key})

    @api.post("/quarantine/{row_id}/discard")
    def discard_item(row_id: int, person: Staff) -> JSONResponse:
        status = discard(intake.store, row_id, person.id)
        if status is None:
            raise QuarantineNotFoundError(f"no quarantined item {row_id}")
        if status != "open":
            return JSONResponse({"detail": f"item {row_id} is already {status}"}, 409)
        return JSONResponse({"id": row_id, "status": "discarded"})

    return api
