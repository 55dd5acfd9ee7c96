"""The API's operations routes, unauthenticated, for probes and Prometheus:

GET /health/live    the process is up (no dependency)
GET /health/ready   the database answers, and Temporal when the app has a client
GET /metrics        Prometheus metrics (keep it private)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client.registry import Collector
from sqlalchemy import text
from temporalio.client import Client

from csautomation import metrics
from csautomation.store.repo import Store

__all__ = ["checks_of", "install"]

log = logging.getLogger(__name__)

CHECK_SECONDS = 3.0


def install(
    app: FastAPI, store: Store, temporal: Client | None, extra: Iterable[Collector] = ()
) -> None:
    """Liveness, readiness and metrics: unauthenticated, for probes and Prometheus."""
    registry = metrics.api_registry(store, extra)

    @app.get("/health/live", tags=["operations"], summary="The process is up (no dependency)")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get(
        "/health/ready",
        tags=["operations"],
        summary="The database answers (and Temporal, when the app has a client)",
        responses={503: {"description": "`checks` names what is not ready"}},
    )
    async def ready() -> JSONResponse:
        checks = await checks_of(store, temporal)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503
        )

    # a plain def: FastAPI runs it on a worker thread, off the loop, as the store's
    # queries need
    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (keep it private)")
    def scrape(request: Request) -> Response:
        body, kind = metrics.exposition(registry, request.headers.get("accept", ""))
        return Response(body, media_type=kind)


async def checks_of(store: Store, temporal: Client | None = None) -> dict[str, str]:
    """Each dependency's readiness: "ok", or in a few words why not (the details go to
    the log: the answer is unauthenticated)."""
    checks = {"database": _database(store)}
    if temporal is not None:
        checks["temporal"] = _temporal(temporal)
    results = await asyncio.gather(*checks.values())
    return dict(zip(checks, results, strict=True))


async def _database(store: Store) -> str:
    def select_one() -> None:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        # the thread may outlive the timeout (a driver's connect has its own), not the answer
        await asyncio.wait_for(asyncio.to_thread(select_one), CHECK_SECONDS)
    except TimeoutError:
        return "no answer in time"
    except Exception as exc:  # the probe's edge: any failure is "not ready", logged
        log.warning("readiness: the database did not answer: %s", exc)
        return f"unreachable ({type(exc).__name__})"
    return "ok"


async def _temporal(client: Client) -> str:
    try:
        serving = await asyncio.wait_for(
            client.service_client.check_health(timeout=timedelta(seconds=CHECK_SECONDS)),
            CHECK_SECONDS + 1,
        )
    except TimeoutError:
        return "no answer in time"
    except Exception as exc:  # the probe's edge: RPCError, or the bridge's RuntimeError
        log.warning("readiness: Temporal did not answer: %s", exc)
        return f"unreachable ({type(exc).__name__})"
    return "ok" if serving else "not serving"
