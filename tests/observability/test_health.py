"""/health/live answers while the process runs; /health/ready answers 200 only when the
database answers and Temporal (when the app has a client) is serving, else 503 naming
what is not ready. No sign-in on either."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client

from api.support import FAST, NOW, SECRET, FakeActions, build_people
from csautomation.api import create_app
from csautomation.runtime.server import connect, free_port
from csautomation.store.repo import Store


def app_over(store: Store, temporal: Client | None = None) -> FastAPI:
    return create_app(
        store,
        build_people(),
        FakeActions(store),
        now=lambda: NOW,
        session_secret=SECRET,
        hasher=FAST,
        temporal=temporal,
    )


@pytest.fixture
def unreachable() -> Iterator[Store]:
    """A PostgreSQL store on a port where nothing listens."""
    s = Store(f"postgresql+psycopg://csauto@127.0.0.1:{free_port()}/csauto")
    yield s
    s.engine.dispose()


def asgi(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


def test_live_and_ready_with_a_working_store(http: httpx.Client) -> None:
    live = http.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "live"}
    ready = http.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok"}}


@pytest.mark.asyncio
async def test_not_ready_while_the_database_is_unreachable(unreachable: Store) -> None:
    async with asgi(app_over(unreachable)) as http:
        assert (await http.get("/health/live")).status_code == 200  # no database needed
        ready = await http.get("/health/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"].startswith("unreachable")
    assert "127.0.0.1" not in ready.text  # the details go to the log, not to anyone


@pytest.mark.asyncio
async def test_not_ready_while_temporal_is_unreachable(store: Store) -> None:
    client = await connect(f"127.0.0.1:{free_port()}", lazy=True)
    async with asgi(app_over(store, client)) as http:
        ready = await http.get("/health/ready")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["temporal"].startswith("unreachable")


@pytest.mark.asyncio
async def test_ready_with_the_store_and_a_serving_temporal(store: Store, client: Client) -> None:
    async with asgi(app_over(store, client)) as http:
        ready = await http.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "temporal": "ok"}
