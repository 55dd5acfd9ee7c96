"""uvicorn on a background thread: `start` returns once it accepts connections, `stop`
ends it."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from api.support import FakeActions
from csautomation.api import EscalationActions
from csautomation.api.server import BackgroundServer, serving
from csautomation.errors import ServiceUnavailableError

AppFactory = Callable[[EscalationActions], FastAPI]


def test_background_server_serves_until_stopped(
    make_app: AppFactory, fake_actions: FakeActions
) -> None:
    app = make_app(fake_actions)
    with BackgroundServer(app) as server:
        assert server.port > 0
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/login").status_code == 200
            assert http.get("/api/escalations").status_code == 401
    with pytest.raises(httpx.ConnectError), httpx.Client(base_url=server.url) as http:
        http.get("/login")
    server.stop()  # stopping twice is harmless


def test_a_taken_port_is_reported(make_app: AppFactory, fake_actions: FakeActions) -> None:
    app = make_app(fake_actions)
    with BackgroundServer(app) as first:
        second = BackgroundServer(app, port=first.port, timeout=5)
        with pytest.raises(ServiceUnavailableError, match="did not start"):
            second.start()


@pytest.mark.asyncio
async def test_serving_on_this_loop_answers_and_a_taken_port_is_a_clear_error(
    make_app: AppFactory, fake_actions: FakeActions
) -> None:
    app = make_app(fake_actions)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/login")).status_code == 200
        taken = int(url.rsplit(":", 1)[1])
        with pytest.raises(ServiceUnavailableError, match="choose another port with --port"):
            async with serving(app, port=taken):
                pass  # pragma: no cover
