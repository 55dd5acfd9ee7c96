"""The review app's fixtures: the store and people of `support`, the fake actions, and
factories that build the app or serve it with uvicorn for any `EscalationActions`, so a
full-stack test can pass `TemporalActions` (with a real worker) instead of the fake."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.support import FAST, NOW, SECRET, FakeActions, build_people, populate
from csautomation.api import EscalationActions, create_app
from csautomation.api.server import BackgroundServer
from csautomation.escalation.people import People
from csautomation.store.repo import Store

AppFactory = Callable[[EscalationActions], FastAPI]


@pytest.fixture(scope="session")
def people() -> People:
    return build_people()


@pytest.fixture
def store(store: Store) -> Store:
    populate(store)
    return store


@pytest.fixture
def fake_actions(store: Store) -> FakeActions:
    return FakeActions(store)


@pytest.fixture
def make_app(store: Store, people: People) -> AppFactory:
    """Builds the app over the test store and people for any `EscalationActions`."""

    def build(actions: EscalationActions) -> FastAPI:
        return create_app(
            store, people, actions, now=lambda: NOW, session_secret=SECRET, hasher=FAST
        )

    return build


@pytest.fixture
def client(make_app: AppFactory, fake_actions: FakeActions) -> Iterator[TestClient]:
    with TestClient(make_app(fake_actions), follow_redirects=False) as c:
        yield c


@pytest.fixture
def serve_app(make_app: AppFactory) -> Iterator[Callable[[EscalationActions], str]]:
    """Serves the app with uvicorn on 127.0.0.1 (a free port) for any `EscalationActions`
    and returns its base URL; every server started is stopped after the test."""
    servers: list[BackgroundServer] = []

    def start(actions: EscalationActions) -> str:
        server = BackgroundServer(make_app(actions)).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()
