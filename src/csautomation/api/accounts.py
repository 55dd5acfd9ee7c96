"""Accounts over HTTP: PUT /v1/accounts, a batch upsert.

        auth: as for POST /v1/signals, a source's token (Authorization: Bearer) or its
              HMAC signature (X-Csauto-Source, X-Csauto-Timestamp, X-Csauto-Signature)
        body: {"accounts": [...]} or a list of accounts, up to 1,000 (docs/data.md)
        200  every account stored (created, updated, or unchanged): counts in the body
        422  some account is bad: `errors` names each (index, field, message); the good
             ones were stored all the same
        401  no source proven; 413 body or batch too large; 503 the store is down (retry)

An account is stored by its id, so the same request sent again changes nothing. Signals
held because their account was not known yet are released when it arrives.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from csautomation.api.intake import MAX_BODY
from csautomation.facts.model import Account
from csautomation.ingest.accounts import MAX_BATCH, AccountsReport, check_account, upsert
from csautomation.ingest.accounts import release_held as release
from csautomation.ingest.batch import Rejected
from csautomation.ingest.sources import SourceAuthError, Sources
from csautomation.ingest.validate import read_json
from csautomation.store.repo import Store

__all__ = ["router"]

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JSONResponse:
    body: dict[str, Any] = {"detail": message}
    if status == 422:
        body["errors"] = [{"index": None, "field": "body", "message": message}]
    return JSONResponse(body, status)


def _items(data: Any) -> list[Any] | None:
    if isinstance(data, dict) and set(data) == {"accounts"} and isinstance(data["accounts"], list):
        return list(data["accounts"])
    if isinstance(data, list):
        return data
    return None


def _parse(body: bytes) -> Any:
    """The JSON body, or a refusal: not JSON, too deep, or a number too long to read (the
    bounds of POST /v1/signals)."""
    data, why = read_json(body)
    if why:
        return _error(422, f"the body cannot be read: {why}")
    return data


def store_accounts(store: Store, items: list[Any], by: str) -> AccountsReport:
    """Validate each item, upsert the valid ones, release their held signals."""
    report = AccountsReport("PUT /v1/accounts", rows=len(items))
    good: list[Account] = []
    for index, item in enumerate(items):
        checked = check_account(item)
        if isinstance(checked, Account):
            good.append(checked)
        else:
            report.rejected.extend(Rejected(index, f, m) for f, m in checked)
    report.accepted = len(good)
    report.created, report.updated = upsert(store, good)
    report.released = release(store, {a.id for a in good}, by)
    return report


def router(store: Store, sources: Sources) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["accounts"])

    @api.put(
        "/accounts",
        summary="Create or update accounts, up to 1,000",
        description=(__doc__ or "").split("\n\n")[2],
        responses={
            401: {"description": "no source proven"},
            413: {"description": "body or batch too large"},
            422: {"description": "field errors; the good accounts were stored"},
            503: {"description": "the store is unavailable; nothing was stored"},
        },
    )
    async def put_accounts(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, f"the body is over {MAX_BODY // 1024 // 1024} MB")
        try:
            caller = sources.authenticate(request.headers, body)
        except SourceAuthError as exc:
            return JSONResponse({"detail": str(exc)}, 401, {"www-authenticate": "Bearer"})
        data = _parse(body)
        if isinstance(data, JSONResponse):
            return data
        items = _items(data)
        if items is None:
            return _error(422, 'expected {"accounts": [...]} or a list of accounts')
        if not items:
            return _error(422, "no accounts in the body")
        if len(items) > MAX_BATCH:
            return _error(413, f"at most {MAX_BATCH} accounts per request; got {len(items)}")
        try:
            report = await asyncio.to_thread(store_accounts, store, items, f"source:{caller.name}")
        except Exception:  # the request edge: logged, answered 503, the client retries
            log.exception("account upsert failed")
            return JSONResponse({"detail": "the store is unavailable; retry"}, 503)
        return JSONResponse(report.to_json(), 422 if report.rejected else 200)

    return api
