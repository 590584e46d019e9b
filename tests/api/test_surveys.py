"""Surveys over HTTP: definitions (admin), invitations and scores (read), answers by link."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fideliza.api.app import create_app
from fideliza.api.routes.surveys import link_settings
from fideliza.api.settings import ApiSettings
from fideliza.core.clock import FixedClock
from fideliza.db import unit_of_work
from fideliza.ledger import service as ledger
from fideliza.programs import service as programs
from fideliza.rules import service as rules
from fideliza.surveys import service as surveys
from tests.api.conftest import START
from tests.api.world import World, assert_problem, enrol
from tests.integration.surveys.builders import csat_survey, nps_survey

SECRET = "an-api-test-secret-of-at-least-32-characters"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Links are signed with FIDELIZA_SECRET_KEY (unless the API settings carry a key)."""
    monkeypatch.setenv("FIDELIZA_SECRET_KEY", SECRET)


def _define(client: TestClient, world: World, definition: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/surveys", json=definition, headers=world.auth("admin"))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _invite(client: TestClient, world: World, member: dict[str, Any], case: str) -> str:
    """An after-case invitation for the member; returns its link's token."""
    with unit_of_work(world.factory) as db:
        (invitation,) = surveys.invite_after_case(
            db, program_id=world.program_id, member_id=member["id"], case_ref=case, now=START
        )
    return surveys.token_of(invitation, settings=link_settings(client.app.state.runtime))


def _answer_bonus(world: World) -> None:
    with unit_of_work(world.factory) as db:
        rules.create(
            db,
            program=programs.get(db, program_id=world.program_id),
            now=START,
            definition={
                "name": "thanks",
                "activity": "survey_answered",
                "actions": [{"type": "fixed_bonus", "points": 15}],
            },
        )


def test_admins_define_surveys_and_readers_list_them(client: TestClient, world: World) -> None:
    created = _define(client, world, nps_survey())
    assert (created["code"], created["version"], created["trigger"]) == ("nps", 1, "purchase")
    again = _define(client, world, nps_survey())
    assert again["version"] == 2

    refused = client.post("/v1/surveys", json=nps_survey("x1"), headers=world.auth("read"))
    assert_problem(refused, 403, "forbidden")
    bad = nps_survey("x2")
    bad["questions"][0]["type"] = "stars"
    assert_problem(
        client.post("/v1/surveys", json=bad, headers=world.auth("admin")),
        422,
        "validation_error",
        "questions[0].type",
    )

    listed = client.get("/v1/surveys", headers=world.auth("read")).json()["items"]
    assert [(s["code"], s["version"]) for s in listed] == [("nps", 2)]
    every = client.get(
        "/v1/surveys", params={"include_retired": "true"}, headers=world.auth("read")
    ).json()["items"]
    assert [s["version"] for s in every] == [1, 2]


def test_a_member_answers_once_by_link_without_an_api_key(client: TestClient, world: World) -> None:
    _answer_bonus(world)
    _define(client, world, csat_survey())
    member = enrol(client, world, locale="it")
    token = _invite(client, world, member, "C-1")

    shown = client.get(f"/v1/survey-answers/{token}")
    assert shown.status_code == 200, shown.text
    assert (shown.json()["locale"], shown.json()["title"]) == ("it", "Soddisfazione")

    assert_problem(
        client.post(f"/v1/survey-answers/{token}", json={"answers": {"satisfied": 9}}),
        422,
        "validation_error",
        "answers.satisfied",
    )
    answered = client.post(f"/v1/survey-answers/{token}", json={"answers": {"satisfied": 5}})
    assert answered.status_code == 201, answered.text
    assert answered.json() | {"kind": "csat", "score": 5, "points_earned": 15} == answered.json()
    assert_problem(
        client.post(f"/v1/survey-answers/{token}", json={"answers": {"satisfied": 4}}),
        409,
        "link_used",
        "token",
    )
    with world.factory() as db:
        assert ledger.balance(db, member_id=member["id"]).available == 15

    invitations = client.get(
        f"/v1/members/{member['id']}/survey-invitations", headers=world.auth("read")
    )
    assert invitations.status_code == 200
    (only,) = invitations.json()["items"]
    assert (only["trigger"], only["source_ref"], only["answered_at"] is not None) == (
        "case",
        "C-1",
        True,
    )

    scores = client.get(
        "/v1/surveys/scores", params={"kind": "csat"}, headers=world.auth("read")
    ).json()
    assert [(i["period"], i["responses"], i["score"]) for i in scores["items"]] == [
        ("2025-03", 1, "100.0")
    ]
    assert_problem(
        client.get("/v1/surveys/scores", params={"by": "moon"}, headers=world.auth("read")),
        422,
        "validation_error",
        "by",
    )
    naive = client.get(
        "/v1/surveys/scores", params={"since": "2025-03-01T00:00:00"}, headers=world.auth("read")
    )
    assert_problem(naive, 422, "validation_error", "since")
    later = client.get(
        "/v1/surveys/scores",
        params={"kind": "csat", "since": "2025-04-01T00:00:00+02:00"},
        headers=world.auth("read"),
    )
    assert later.json()["items"] == []


def test_forged_and_expired_links_are_refused(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    _define(client, world, csat_survey())
    member = enrol(client, world)
    token = _invite(client, world, member, "C-2")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (forged, "fzs1.1.1.x", "nonsense"):
        assert_problem(client.get(f"/v1/survey-answers/{bad}"), 404, "invalid_link", "token")
        assert_problem(
            client.post(f"/v1/survey-answers/{bad}", json={"answers": {"satisfied": 5}}),
            404,
            "invalid_link",
        )
    clock.advance(timedelta(days=8))
    assert_problem(
        client.post(f"/v1/survey-answers/{token}", json={"answers": {"satisfied": 5}}),
        410,
        "link_expired",
    )
    assert_problem(
        client.post(f"/v1/survey-answers/{token}", json={"answers": {"satisfied": 5}, "x": 1}),
        422,
        "validation_error",
    )


def test_other_programs_see_nothing(client: TestClient, world: World, other: World) -> None:
    _define(client, world, csat_survey())
    member = enrol(client, world)
    _invite(client, world, member, "C-3")
    assert client.get("/v1/surveys", headers=other.auth("read")).json()["items"] == []
    assert_problem(
        client.get(f"/v1/members/{member['id']}/survey-invitations", headers=other.auth("read")),
        404,
        "not_found",
    )


def test_the_answer_routes_are_rate_limited_per_address(database_url: str, world: World) -> None:
    clock = FixedClock(START)
    app: FastAPI = create_app(
        database_url,
        clock=clock,
        settings=ApiSettings(
            auth_failure_limit=0, sensitive_rate_limit=3, sensitive_rate_window_seconds=60
        ),
    )
    with TestClient(app) as limited:
        codes = [limited.get("/v1/survey-answers/fzs1.1.1.nope").status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]
        refused = limited.get("/v1/survey-answers/fzs1.1.1.nope")
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1
        clock.advance(timedelta(seconds=60))
        assert limited.get("/v1/survey-answers/fzs1.1.1.nope").status_code == 404
