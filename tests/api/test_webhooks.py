"""/v1/webhooks: admin keys register endpoints (secret shown once), list and deactivate them;
an event written by the API reaches a real local receiver, signed (issue 3, part 5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from fideliza.api.app import create_app
from fideliza.api.routes import webhooks as routes
from fideliza.api.settings import ApiSettings
from fideliza.api.validation import checked_body
from fideliza.core.clock import FixedClock
from fideliza.webhooks import service as webhooks
from fideliza.webhooks.models import WebhookEndpoint
from tests.api.conftest import START
from tests.api.world import World, assert_problem, enrol, unique
from tests.webhooks.receiver import receiver, verify

ALLOW = "FIDELIZA_WEBHOOK_ALLOW_PRIVATE_ADDRESSES"
PUBLIC = "https://93.184.216.34/hooks"  # a literal public address: no DNS needed


@pytest.fixture(scope="module")
def hooks_app(database_url: str, clock: FixedClock) -> FastAPI:
    app = create_app(database_url, clock=clock, settings=ApiSettings(auth_failure_limit=0))
    if not any(getattr(r, "path", "").startswith("/v1/webhooks") for r in app.routes):
        app.include_router(routes.router, dependencies=[Depends(checked_body)])
    return app


@pytest.fixture
def api(hooks_app: FastAPI, clock: FixedClock) -> Iterator[TestClient]:
    clock.set(START)
    with TestClient(hooks_app) as test_client:
        yield test_client


def register(api: TestClient, world: World, url: str = PUBLIC, **extra: Any) -> dict[str, Any]:
    body = {"url": url, "event_types": ["member.enrolled"], **extra}
    response = api.post("/v1/webhooks", json=body, headers=world.auth())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_register_shows_the_secret_once(api: TestClient, world: World) -> None:
    created = register(api, world, description="shop", event_types=["points.*", "*"])
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["*", "points.*"]
    assert (created["url"], created["active"], created["description"]) == (PUBLIC, True, "shop")
    listed = api.get("/v1/webhooks", headers=world.auth()).json()
    assert [row["id"] for row in listed] == [created["id"]]
    assert "secret" not in listed[0]
    one = api.get(f"/v1/webhooks/{created['id']}", headers=world.auth()).json()
    assert "secret" not in one and one["id"] == created["id"]


def test_a_replayed_creation_does_not_show_the_secret_again(api: TestClient, world: World) -> None:
    key = {"Idempotency-Key": unique("wh"), **world.auth()}
    body = {"url": PUBLIC, "event_types": ["*"]}
    first = api.post("/v1/webhooks", json=body, headers=key)
    again = api.post("/v1/webhooks", json=body, headers=key)
    assert first.json()["secret"].startswith("whsec_")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["secret"] is None
    assert again.json()["id"] == first.json()["id"]
    with world.factory() as db:
        row = db.get(WebhookEndpoint, first.json()["id"])
        assert row is not None and row.secret == first.json()["secret"]
        assert len(webhooks.list_endpoints(db, program_id=world.program_id)) == 1


def test_delete_deactivates_for_good(api: TestClient, world: World) -> None:
    created = register(api, world)
    gone = api.delete(f"/v1/webhooks/{created['id']}", headers=world.auth())
    assert gone.status_code == 200
    assert gone.json()["active"] is False
    assert gone.json()["deactivated_at"] == "2025-03-10T12:00:00Z"
    again = api.delete(f"/v1/webhooks/{created['id']}", headers=world.auth())
    assert again.json() == gone.json()


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5/h", "http://192.168.1.1/h", "http://127.0.0.1:9/h", "http://[::1]/h"]
)
def test_private_urls_are_refused_by_default(
    api: TestClient, world: World, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ALLOW, raising=False)
    response = api.post(
        "/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=world.auth()
    )
    assert_problem(response, 422, "forbidden_destination", "url")
    monkeypatch.setenv(ALLOW, "true")
    assert register(api, world, url=url)["url"] == url


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://x.com/", "event_types": ["*"]}, "url"),
        ({"url": PUBLIC, "event_types": ["Bad Type"]}, "event_types[0]"),
        ({"url": PUBLIC, "event_types": []}, "event_types"),
        ({"url": PUBLIC, "event_types": ["*"], "secret": "mine"}, "secret"),
        ({"url": PUBLIC, "event_types": ["*"], "program_id": 1}, "program_id"),
    ],
)
def test_bad_input_names_the_field(
    api: TestClient, world: World, body: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/webhooks", json=body, headers=world.auth())
    assert response.status_code == 422, response.text
    assert field in (response.json()["field"] or ""), response.json()


@pytest.mark.parametrize("scope", ["pos", "read"])
def test_only_admin_keys(api: TestClient, world: World, scope: str) -> None:
    created = register(api, world)
    for method, path, body in [
        ("POST", "/v1/webhooks", {"url": PUBLIC, "event_types": ["*"]}),
        ("GET", "/v1/webhooks", None),
        ("GET", f"/v1/webhooks/{created['id']}", None),
        ("DELETE", f"/v1/webhooks/{created['id']}", None),
    ]:
        response = api.request(method, path, json=body, headers=world.auth(scope))
        assert_problem(response, 403, "forbidden")


def test_another_program_s_endpoints_are_as_absent_ones(
    api: TestClient, world: World, other: World
) -> None:
    theirs = register(api, other)
    for method in ("GET", "DELETE"):
        mine = api.request(method, f"/v1/webhooks/{theirs['id']}", headers=world.auth())
        absent = api.request(method, f"/v1/webhooks/{2**62}", headers=world.auth())
        assert_problem(mine, 404, "not_found", "webhook_id")
        assert mine.json()["field"] == absent.json()["field"]
        assert mine.json()["detail"].replace(str(theirs["id"]), "N") == absent.json()[
            "detail"
        ].replace(str(2**62), "N")
    assert api.get("/v1/webhooks", headers=world.auth()).json() == []
    assert api.get(f"/v1/webhooks/{theirs['id']}", headers=other.auth()).json()["active"]


def test_an_enrolment_reaches_the_receiver_signed(
    api: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW, "true")
    with receiver(statuses=[503]) as hook:
        created = register(api, world, url=hook.url)
        member = enrol(api, world)
        first = webhooks.dispatch_due(
            world.factory, now=START, program_id=world.program_id, allow_private=True
        )
        assert first.retrying == 1
        later = START.replace(minute=1)
        second = webhooks.dispatch_due(
            world.factory, now=later, program_id=world.program_id, allow_private=True
        )
        assert second.delivered == 1
    ids = {r.headers["webhook-id"] for r in hook.requests}
    assert len(hook.requests) == 2 and len(ids) == 1
    assert verify(created["secret"], hook.requests[1], now=int(later.timestamp()))
    event = hook.requests[1].json()
    assert event["type"] == "member.enrolled"
    assert event["data"] == {"member_id": member["id"], "external_id": member["external_id"]}
    with world.factory() as db:
        assert db.scalar(select(WebhookEndpoint.active).where(WebhookEndpoint.id == created["id"]))
