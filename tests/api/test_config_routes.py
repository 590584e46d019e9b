"""/v1/program/settings, /v1/rules and /v1/tiers/config: an admin key configures the program
over the API, each change validated as a whole, audited, and felt by the next purchase."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from fideliza.api.app import create_app
from fideliza.api.routes import config
from fideliza.api.settings import ApiSettings
from fideliza.api.validation import checked_body
from fideliza.core.clock import FixedClock
from fideliza.ledger.models import Lot
from fideliza.programs.models import AuditLog
from tests.api.conftest import START
from tests.api.world import World, assert_problem, basket, enrol, unique

BONUS: dict[str, Any] = {
    "name": "Big basket bonus",
    "conditions": {"min_amount": "20.00"},
    "actions": [{"type": "fixed_bonus", "points": 50}],
}
LADDER: dict[str, Any] = {
    "levels": [
        {"code": "BRONZE", "name": "Bronze", "rank": 1, "threshold": "0"},
        {"code": "SILVER", "name": "Silver", "rank": 2, "threshold": "40", "multiplier": "1.5"},
    ],
    "policy": {"basis": "points", "period": "calendar_year"},
}


@pytest.fixture(scope="module")
def config_app(database_url: str, clock: FixedClock) -> FastAPI:
    app = create_app(database_url, clock=clock, settings=ApiSettings(auth_failure_limit=0))
    # Until app.py includes the router (a wiring request), the tests include it themselves.
    if not any(getattr(route, "path", "") == "/v1/rules" for route in app.routes):
        app.include_router(config.router, dependencies=[Depends(checked_body)])
    return app


@pytest.fixture
def api(config_app: FastAPI, clock: FixedClock) -> Iterator[TestClient]:
    clock.set(START)
    with TestClient(config_app) as test_client:
        yield test_client


def audit_actions(world: World) -> list[str]:
    with world.factory() as db:
        query = select(AuditLog.action).where(AuditLog.program_id == world.program_id)
        return list(db.scalars(query.order_by(AuditLog.id)))


def buy(api: TestClient, world: World, member: dict[str, Any], amount: str) -> dict[str, Any]:
    response = api.post(
        "/v1/purchases", json=basket(member, START, amount, items=[]), headers=world.auth("pos")
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


# --- program settings ---------------------------------------------------------------------------


def test_settings_read_and_change_and_the_next_lot_feels_it(api: TestClient, world: World) -> None:
    got = api.get("/v1/program/settings", headers=world.auth())
    assert got.status_code == 200, got.text
    assert got.json() == {
        "return_window_days": 0,
        "expiry": {"mode": "never"},
        "rounding": "floor",
        "hold_ttl_minutes": 15,
        "allow_negative_on_return": True,
    }
    patched = api.patch(
        "/v1/program/settings",
        json={"expiry": {"mode": "days", "days": 365}, "hold_ttl_minutes": 30},
        headers=world.auth(),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["expiry"] == {"mode": "days", "days": 365}
    assert patched.json()["hold_ttl_minutes"] == 30
    assert patched.json()["rounding"] == "floor"  # untouched
    assert api.get("/v1/program/settings", headers=world.auth()).json() == patched.json()
    assert audit_actions(world).count("fideliza.program.settings_changed") == 1
    # An empty change changes nothing, and is not audited.
    assert api.patch("/v1/program/settings", json={}, headers=world.auth()).json() == patched.json()
    assert audit_actions(world).count("fideliza.program.settings_changed") == 1
    # A purchase after the change earns a lot that expires 365 days on.
    member = enrol(api, world)
    bought = buy(api, world, member, "10.00")
    with world.factory() as db:
        lot = db.scalar(select(Lot).where(Lot.earn_transaction_id == bought["transaction_id"]))
        assert lot is not None and lot.expires_at == START + timedelta(days=365)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expiry": {"mode": "days"}}, "expiry.days.days"),
        ({"expiry": {"mode": "someday"}}, "expiry"),
        ({"hold_ttl_minutes": 0}, "hold_ttl_minutes"),
        ({"rounding": "up"}, "rounding"),
        ({"tier_policy": {}}, "tier_policy"),
        ({"allow_negative_on_return": "false"}, "allow_negative_on_return"),
    ],
)
def test_bad_settings_name_the_field_and_change_nothing(
    api: TestClient, world: World, body: dict[str, Any], field: str
) -> None:
    before = api.get("/v1/program/settings", headers=world.auth()).json()
    response = api.patch("/v1/program/settings", json=body, headers=world.auth())
    # A discriminated union's tag is part of the path (`expiry.days.days`: the `days` variant).
    assert_problem(response, 422, "validation_error", field)
    assert api.get("/v1/program/settings", headers=world.auth()).json() == before


# --- rules --------------------------------------------------------------------------------------


def test_rules_are_created_versioned_and_switched_off(api: TestClient, world: World) -> None:
    [existing] = api.get("/v1/rules", headers=world.auth()).json()
    assert (existing["name"], existing["version"], existing["active"]) == ("1 pt per euro", 1, True)
    created = api.post("/v1/rules", json={"definition": BONUS}, headers=world.auth())
    assert created.status_code == 201, created.text
    rule = created.json()
    assert (rule["name"], rule["version"], rule["active"]) == (BONUS["name"], 1, True)
    assert rule["definition"]["actions"] == [{"type": "fixed_bonus", "points": 50}]
    assert rule["updated_by"].startswith("apikey:")
    member = enrol(api, world)
    first = buy(api, world, member, "25.00")
    assert first["points"] == 25 + 50
    assert {(p["rule_id"], p["rule_version"]) for p in first["postings"]} == {
        (existing["id"], 1),
        (rule["id"], 1),
    }
    # Version 2 gives 80; the first purchase keeps naming version 1.
    richer = {**BONUS, "actions": [{"type": "fixed_bonus", "points": 80}]}
    url = f"/v1/rules/{rule['id']}"
    version = api.post(f"{url}/versions", json={"definition": richer}, headers=world.auth())
    assert version.status_code == 201, version.text
    assert version.json()["version"] == 2
    assert [v["version"] for v in version.json()["versions"]] == [1, 2]
    assert version.json()["versions"][0]["definition"]["actions"][0]["points"] == 50
    second = buy(api, world, member, "25.00")
    assert second["points"] == 25 + 80
    assert (rule["id"], 2) in {(p["rule_id"], p["rule_version"]) for p in second["postings"]}
    # Switched off: it earns nothing more.
    off = api.patch(url, json={"active": False}, headers=world.auth())
    assert off.status_code == 200, off.text
    assert off.json()["active"] is False
    assert buy(api, world, member, "25.00")["points"] == 25
    listed = api.get("/v1/rules", headers=world.auth()).json()
    assert [(r["id"], r["version"], r["active"]) for r in listed] == [
        (existing["id"], 1, True),
        (rule["id"], 2, False),
    ]
    assert api.get(url, headers=world.auth()).json() == off.json()
    actions = audit_actions(world)
    for action in ("fideliza.rule.created", "fideliza.rule.updated", "fideliza.rule.deactivated"):
        assert action in actions


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # The shape, checked by the API's schema (a tagged union's tag is part of the path).
        (
            {"actions": [{"type": "fixed_bonus", "points": 1.5}]},
            "definition.actions[0].fixed_bonus.points",
        ),
        ({"colour": "red"}, "definition.colour"),
        ({"conditions": {"min_amount": 20.0}}, "definition.conditions.min_amount"),
        ({"actions": []}, "definition.actions"),
        # What no schema states, checked by the rules' own parser.
        (
            {"conditions": {"min_amount": "20.00", "max_amount": "10.00"}},
            "definition.conditions.max_amount",
        ),
        (
            {"conditions": {"time_window": {"start": "08:00", "end": "08:00"}}},
            "definition.conditions.time_window.end",
        ),
        ({"conditions": {"date_range": {}}}, "definition.conditions.date_range"),
        (
            {"conditions": {"items": {"include_skus": ["A"], "exclude_skus": ["A"]}}},
            "definition.conditions.items.exclude_skus",
        ),
    ],
)
def test_a_bad_definition_names_its_path(
    api: TestClient, world: World, change: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/rules", json={"definition": {**BONUS, **change}}, headers=world.auth())
    assert_problem(response, 422, "validation_error", field)
    assert len(api.get("/v1/rules", headers=world.auth()).json()) == 1


def test_integral_numbers_written_with_a_point_are_integers(api: TestClient, world: World) -> None:
    # JSON Schema's `integer` admits 50.0; it is stored as 50.
    body = {**BONUS, "actions": [{"type": "fixed_bonus", "points": 50.0}]}
    created = api.post("/v1/rules", json={"definition": body}, headers=world.auth())
    assert created.status_code == 201, created.text
    assert created.json()["definition"]["actions"] == [{"type": "fixed_bonus", "points": 50}]


def test_rule_names_are_unique(api: TestClient, world: World) -> None:
    assert api.post("/v1/rules", json={"definition": BONUS}, headers=world.auth()).is_success
    again = api.post("/v1/rules", json={"definition": BONUS}, headers=world.auth())
    assert_problem(again, 409, "conflict", "definition.name")


def test_a_retried_creation_creates_one_rule(api: TestClient, world: World) -> None:
    headers = {"Idempotency-Key": unique("rule"), **world.auth()}
    first = api.post("/v1/rules", json={"definition": BONUS}, headers=headers)
    again = api.post("/v1/rules", json={"definition": BONUS}, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(api.get("/v1/rules", headers=world.auth()).json()) == 2


def test_another_program_s_rules_are_as_absent_ones(
    api: TestClient, world: World, other: World
) -> None:
    [theirs] = api.get("/v1/rules", headers=other.auth()).json()
    for target in (theirs["id"], 2**62):
        url = f"/v1/rules/{target}"
        assert_problem(api.get(url, headers=world.auth()), 404, "not_found", "rule_id")
        patched = api.patch(url, json={"active": False}, headers=world.auth())
        assert_problem(patched, 404, "not_found", "rule_id")
        versioned = api.post(f"{url}/versions", json={"definition": BONUS}, headers=world.auth())
        assert_problem(versioned, 404, "not_found", "rule_id")
    assert api.get(f"/v1/rules/{theirs['id']}", headers=other.auth()).json()["active"] is True


# --- tiers --------------------------------------------------------------------------------------


def test_tiers_are_set_read_and_used(api: TestClient, world: World) -> None:
    empty = api.get("/v1/tiers/config", headers=world.auth())
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"configured": False, "config": None}
    put = api.put("/v1/tiers/config", json=LADDER, headers=world.auth())
    assert put.status_code == 200, put.text
    shown = put.json()
    assert shown["configured"] is True
    assert [
        (lv["code"], lv["threshold"], lv["multiplier"]) for lv in shown["config"]["levels"]
    ] == [
        ("BRONZE", "0", "1"),
        ("SILVER", "40", "1.5"),
    ]
    assert shown["config"]["policy"] == {
        "basis": "points",
        "period": "calendar_year",
        "grace_periods": 0,
    }
    assert api.get("/v1/tiers/config", headers=world.auth()).json() == shown
    assert "fideliza.tiers.configured" in audit_actions(world)
    # 50 points this year: the member reaches SILVER.
    member = enrol(api, world)
    bought = buy(api, world, member, "50.00")
    assert bought["tier_change"]["to_code"] == "SILVER"
    tier = api.get(f"/v1/members/{member['id']}/tier", headers=world.auth("read")).json()
    assert tier["code"] == "SILVER"
    # A rolling window replaces the calendar year.
    rolling = {**LADDER, "policy": {"basis": "points", "period": "rolling_months", "months": 6}}
    again = api.put("/v1/tiers/config", json=rolling, headers=world.auth())
    assert again.json()["config"]["policy"]["months"] == 6


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"levels": [LADDER["levels"][0], {**LADDER["levels"][1], "threshold": "0"}]},
            "levels[1].threshold",
        ),
        ({"levels": [LADDER["levels"][0], {**LADDER["levels"][1], "rank": 1}]}, "levels[1].rank"),
        ({"levels": [{**LADDER["levels"][0], "threshold": "0.5"}]}, "levels[0].threshold"),
        (
            {"policy": {"basis": "points", "period": "rolling_months"}},
            "policy.rolling_months.months",
        ),
        (
            {"policy": {"basis": "points", "period": "calendar_year", "months": 3}},
            "policy.calendar_year.months",
        ),
        ({"levels": []}, "levels"),
    ],
)
def test_a_bad_ladder_names_the_field_and_keeps_the_old_one(
    api: TestClient, world: World, change: dict[str, Any], field: str
) -> None:
    assert api.put("/v1/tiers/config", json=LADDER, headers=world.auth()).is_success
    before = api.get("/v1/tiers/config", headers=world.auth()).json()
    response = api.put("/v1/tiers/config", json={**LADDER, **change}, headers=world.auth())
    assert_problem(response, 422, "validation_error", field)
    assert api.get("/v1/tiers/config", headers=world.auth()).json() == before


# --- scopes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["read", "pos"])
def test_only_admin_keys(api: TestClient, world: World, scope: str) -> None:
    [rule] = api.get("/v1/rules", headers=world.auth()).json()
    for method, path, body in (
        ("GET", "/v1/program/settings", None),
        ("PATCH", "/v1/program/settings", {"hold_ttl_minutes": 20}),
        ("GET", "/v1/rules", None),
        ("POST", "/v1/rules", {"definition": BONUS}),
        ("GET", f"/v1/rules/{rule['id']}", None),
        ("POST", f"/v1/rules/{rule['id']}/versions", {"definition": BONUS}),
        ("PATCH", f"/v1/rules/{rule['id']}", {"active": False}),
        ("GET", "/v1/tiers/config", None),
        ("PUT", "/v1/tiers/config", LADDER),
    ):
        response = api.request(method, path, json=body, headers=world.auth(scope))
        assert_problem(response, 403, "forbidden")
    assert api.get(f"/v1/rules/{rule['id']}", headers=world.auth()).json()["active"] is True
