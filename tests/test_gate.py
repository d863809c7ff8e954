"""The API's gate (chatbot/http/gate.py) reads which requests are the API's from the app's own router: a route
added to the API is guarded, answers 404/405 in the API's shape and keeps the app mounted at ``/`` out of its
paths, without anyone editing the gate. Served for real: ``create_api`` under uvicorn on a free port, with a
stand-in for the Gradio app mounted at ``/`` as ``app.build_server`` mounts it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import make_settings
from fake_upstream import FakeUpstream
from fastapi import APIRouter
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

import app as switchboard
from chatbot.core.store import open_store
from chatbot.core.upstream import Upstream
from chatbot.http.gate import is_open
from chatbot.http.routes import create_api

TOKEN = "token-gate-0123456789abcdefghij"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def ui(scope: Scope, receive: Receive, send: Send) -> None:
    """Stands in for the Gradio app: answers every path it is given."""
    await PlainTextResponse("ui")(scope, receive, send)


@pytest.fixture(scope="module")
def server(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("gate") / "switchboard.db"
    settings = make_settings(fake_upstream.base_url, CHATBOT_DB=str(db), CHATBOT_API_TOKENS=TOKEN)
    api = create_api(settings, Upstream(settings), open_store(settings))

    @api.get("/reports/{report_id}")  # a route the gate has never heard of
    async def report(report_id: str) -> dict[str, str]:
        return {"report": report_id}

    @api.get("/status", openapi_extra={"security": []})  # declared open, as OpenAPI spells it
    async def status() -> dict[str, str]:
        return {"status": "ok"}

    teams = APIRouter(prefix="/teams")

    @teams.get("/{team}")  # a router included the usual way (FastAPI keeps it as one entry of the app's routes)
    async def team(team: str) -> dict[str, str]:
        return {"team": team}

    api.include_router(teams)
    api.mount("/", ui)
    with switchboard.serve_in_thread(api) as running:
        yield running.url


def test_a_route_added_to_the_api_is_guarded_without_editing_the_gate(server: str) -> None:
    """Measured with the hand-kept table (API_METHODS): GET /reports/7 answered 200 without a token."""
    refused = httpx.get(server + "reports/7", timeout=10)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "unauthorized"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    answered = httpx.get(server + "reports/7", headers=BEARER, timeout=10)
    assert answered.status_code == 200 and answered.json() == {"report": "7"}


def test_a_route_of_an_included_router_is_guarded(server: str) -> None:
    assert httpx.get(server + "teams/red", timeout=10).status_code == 401
    assert httpx.get(server + "teams/red", headers=BEARER, timeout=10).json() == {"team": "red"}
    assert httpx.delete(server + "teams/red", headers=BEARER, timeout=10).status_code == 405


def test_a_new_routes_wrong_method_and_unknown_paths_are_the_apis_json(server: str) -> None:
    wrong = httpx.post(server + "reports/7", headers=BEARER, timeout=10)
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["allow"] == "GET"
    for path in ("reports", "reports/7/pages"):  # in the route's namespace, served by no route
        missing = httpx.get(server + path, headers=BEARER, timeout=10)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found", path
        assert missing.text != "ui"


def test_a_route_declared_open_answers_anyone(server: str) -> None:
    assert httpx.get(server + "status", timeout=10).json() == {"status": "ok"}


def test_other_paths_reach_the_app_mounted_at_the_root_untouched(server: str) -> None:
    for path in ("", "config", "reportsx", "gradio_api/info"):
        response = httpx.get(server + path, timeout=10)
        assert response.status_code == 200 and response.text == "ui", path
    assert httpx.get(server + "chat", timeout=10).json()["error"]["code"] == "method_not_allowed"
    assert httpx.post(server + "chat", json={"message": "hi"}, timeout=10).status_code == 401


def test_only_an_empty_security_requirement_opens_a_route(tmp_path: Path) -> None:
    settings = make_settings(None, CHATBOT_DB=str(tmp_path / "s.db"))
    store = open_store(settings)
    api = create_api(settings, Upstream(settings), store)
    asyncio.run(store.close())
    opened = [route.path for route in api.router.routes if is_open(route)]
    assert opened == []  # every route of the API as shipped needs the gate
