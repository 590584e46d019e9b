"""Messaging over HTTP: templates and settings (admin), a member's send log (read), and the
public unsubscribe link, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from fideliza.api.app import create_app
from fideliza.api.routes.messaging import public_router
from fideliza.api.settings import ApiSettings
from fideliza.core.clock import FixedClock
from fideliza.db import unit_of_work
from fideliza.members.models import Member
from fideliza.messaging import service as messaging
from fideliza.messaging.channels import MessagingSettings
from fideliza.messaging.domain import unsubscribe_token
from tests.api.conftest import SECRET_KEY, START
from tests.api.world import World, assert_problem, enrol
from tests.integration.messaging.support import MemorySender


@pytest.fixture(scope="module")
def public_app(database_url: str) -> FastAPI:
    """An app with the public unsubscribe routes (registered by hand until app.py does it
    without the JSON body check; see the router's comment)."""
    settings = ApiSettings(auth_failure_limit=0, secret_key=SECRET_KEY)
    app = create_app(database_url, clock=FixedClock(START), settings=settings)
    if not any(getattr(r, "path", "") == "/v1/unsubscribe/{token}" for r in app.routes):
        app.include_router(public_router)
    return app


@pytest.fixture
def public(public_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(public_app) as test_client:
        yield test_client


TEMPLATE = {
    "subject": "Feliz cumpleaños, {{ member.first_name }}",
    "body_text": "Hola {{ member.first_name }}. Baja: {{ unsubscribe_url }}",
}


def test_templates_are_admin_only_and_checked(client: TestClient, world: World) -> None:
    path = "/v1/messaging/templates/birthday/email/es"
    assert_problem(client.put(path, json=TEMPLATE, headers=world.auth("pos")), 403, "forbidden")
    saved = client.put(path, json=TEMPLATE, headers=world.auth())
    assert saved.status_code == 200, saved.text
    assert saved.json()["kind"] == "birthday" and saved.json()["locale"] == "es"
    bad = client.put(
        path, json={**TEMPLATE, "body_text": "{{ member.apodo }}"}, headers=world.auth()
    )
    body = assert_problem(bad, 422, "validation_error", "body_text")
    assert "apodo" in body["detail"]
    unknown = client.put(
        "/v1/messaging/templates/newsletter/email/es", json=TEMPLATE, headers=world.auth()
    )
    assert_problem(unknown, 422, "validation_error", "template")
    extra = client.put(path, json={**TEMPLATE, "colour": "red"}, headers=world.auth())
    assert extra.status_code == 422
    listed = client.get("/v1/messaging/templates", headers=world.auth())
    assert [(t["kind"], t["subject"]) for t in listed.json()["items"]] == [
        ("birthday", TEMPLATE["subject"])
    ]
    assert client.get("/v1/messaging/templates", headers=world.auth("read")).status_code == 403


def test_config_patch_validates_the_whole(client: TestClient, world: World) -> None:
    changed = client.patch(
        "/v1/messaging/config",
        json={"quiet_hours": {"start": "21:00", "end": "09:00"}},
        headers=world.auth(),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["config"]["quiet_hours"] == {"start": "21:00", "end": "09:00"}
    bad = client.patch(
        "/v1/messaging/config",
        json={"frequency_cap": {"messages": 0, "days": 7}},
        headers=world.auth(),
    )
    assert_problem(bad, 422, "validation_error", "frequency_cap.messages")
    kept = client.get("/v1/messaging/config", headers=world.auth()).json()["config"]
    assert kept["frequency_cap"] == {"messages": 3, "days": 7}


def test_send_log_and_one_click_unsubscribe(
    client: TestClient, public: TestClient, world: World
) -> None:
    member = enrol(
        client, world, email="ana@example.com", consent={"email": True, "marketing": True}
    )
    client.put("/v1/messaging/templates/welcome/email/es", json=TEMPLATE, headers=world.auth())
    with unit_of_work(world.factory) as db:
        messaging.enqueue(
            db,
            program_id=world.program_id,
            member_id=member["id"],
            template="welcome",
            context={},
            key=f"welcome:{member['id']}",
            now=START,
        )
    settings = MessagingSettings(secret_key=SecretStr(SECRET_KEY))
    sender = MemorySender()
    messaging.dispatch_due(
        world.factory, now=START, sender=sender, settings=settings, program_id=world.program_id
    )
    log = client.get(f"/v1/members/{member['id']}/messages", headers=world.auth("read"))
    assert log.status_code == 200
    [entry] = log.json()["items"]
    assert entry["status"] == "sent" and entry["kind"] == "welcome" and entry["attempts"] == 1
    link = sender.sent[0].unsubscribe_url or ""
    path = link[link.index("/v1/unsubscribe/") :]
    page = public.get(path)  # no API key: the token is the credential
    assert page.status_code == 200 and '<form method="post"' in page.text
    _assert_marketing(world, member["id"], True)  # a GET changes nothing
    done = public.post(path, data={"List-Unsubscribe": "One-Click"})  # RFC 8058
    assert done.status_code == 200 and "Baja registrada" in done.text
    assert public.post(path).status_code == 200  # twice is fine
    _assert_marketing(world, member["id"], False)
    forged = unsubscribe_token(secret=b"x" * 40, program_id=world.program_id, member_id=1)
    assert_problem(public.post(f"/v1/unsubscribe/{forged}"), 404, "invalid_link", "token")
    assert_problem(public.get("/v1/unsubscribe/fzs1.1.1.forged"), 404, "invalid_link", "token")
    other = client.get(f"/v1/members/{10**9}/messages", headers=world.auth("read"))
    assert_problem(other, 404, "not_found", "member_id")


def _assert_marketing(world: World, member_id: int, expected: bool) -> None:
    with world.factory() as db:
        found = db.get(Member, member_id)
        assert found is not None and found.consent.get("marketing") is expected
