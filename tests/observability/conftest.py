"""The review app over a real SQLite store (the review tests' people and escalations),
with one token source for POST /v1/signals, served by uvicorn on 127.0.0.1; and helpers
that read a /metrics answer with prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.support import FAST, NOW, SECRET, FakeActions, build_people, populate
from csautomation.api import create_app
from csautomation.api.server import BackgroundServer
from csautomation.ingest.sources import Sources, SourceSpec
from csautomation.store.repo import Store
from factories import new_store

TOKEN = "observability-token-" + "t" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def sources() -> Sources:
    spec = SourceSpec(auth="token", secret_env="OBS_TOKEN", types=["usage_daily"])
    return Sources({"analytics": spec}, {"OBS_TOKEN": TOKEN})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = new_store(tmp_path)
    populate(s)
    yield s
    s.engine.dispose()


@pytest.fixture
def http(store: Store) -> Iterator[httpx.Client]:
    app = create_app(
        store,
        build_people(),
        FakeActions(store),
        now=lambda: NOW,
        session_secret=SECRET,
        hasher=FAST,
        sources=sources(),
    )
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def parse(text: str) -> tuple[set[str], Samples]:
    """The family names (as exposed: counters with `_total`) and every sample's value."""
    names: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return names, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(http: httpx.Client) -> tuple[set[str], Samples]:
    r = http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)
