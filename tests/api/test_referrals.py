"""Referral and lifecycle routes: codes, enrolment with a code, a member's referrals, config."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from fideliza.db import unit_of_work
from fideliza.ledger import service as ledger
from fideliza.programs.models import OutboxEvent
from fideliza.referrals import service as referrals
from fideliza.rules import service as rules
from tests.api.conftest import START
from tests.api.world import World, assert_problem, enrol, unique

CONFIG = {"trigger": "first_purchase", "referrer_points": 300, "referred_points": 100}


def configure(client: TestClient, world: World, config: dict[str, object] = CONFIG) -> None:
    response = client.put("/v1/referrals/config", json=config, headers=world.auth("admin"))
    assert response.status_code == 200, response.text


def code_of(client: TestClient, world: World, member: dict[str, object]) -> str:
    response = client.get(f"/v1/members/{member['id']}/referral-code", headers=world.auth("read"))
    assert response.status_code == 200, response.text
    code: str = response.json()["code"]
    return code


def test_config_is_admin_only_and_validated(client: TestClient, world: World) -> None:
    empty = client.get("/v1/referrals/config", headers=world.auth("admin"))
    assert empty.json() == {"configured": False, "config": None}
    refused = client.put("/v1/referrals/config", json=CONFIG, headers=world.auth("pos"))
    assert_problem(refused, 403, "forbidden")
    bad = client.put(
        "/v1/referrals/config", json={**CONFIG, "referrer_points": -1}, headers=world.auth()
    )
    assert_problem(bad, 422, "validation_error", "referrer_points")
    configure(client, world)
    stored = client.get("/v1/referrals/config", headers=world.auth("admin")).json()
    assert stored["configured"] and stored["config"]["referrer_points"] == 300


def test_a_members_code_is_stable(client: TestClient, world: World) -> None:
    ana = enrol(client, world)
    first = code_of(client, world, ana)
    assert code_of(client, world, ana) == first
    assert "-" in first  # grouped for people
    missing = client.get("/v1/members/999999/referral-code", headers=world.auth("read"))
    assert_problem(missing, 404, "not_found", "member_id")


def test_enrol_with_a_code_then_a_purchase_pays_both_members(
    client: TestClient, world: World
) -> None:
    configure(client, world)
    ana = enrol(client, world, email="ana@example.com")
    code = code_of(client, world, ana)
    body = {"external_id": unique("B"), "first_name": "Bea", "referral_code": code.lower()}
    created = client.post("/v1/referrals/enrolments", json=body, headers=world.auth("pos"))
    assert created.status_code == 201, created.text
    result = created.json()
    assert result["referral"]["state"] == "pending"
    assert result["referral"]["referrer_member_id"] == ana["id"]
    bea = result["member"]
    assert bea["external_id"] == body["external_id"] and bea["card"]["number"]
    again = client.post("/v1/referrals/enrolments", json=body, headers=world.auth("pos"))
    assert again.status_code == 200 and again.json()["referral"]["id"] == result["referral"]["id"]

    purchase = {
        "external_id": unique("T"),
        "member_id": bea["external_id"],
        "occurred_at": START.isoformat(),
        "amount": "20.00",
        "currency": "EUR",
    }
    assert client.post("/v1/purchases", json=purchase, headers=world.auth("pos")).status_code == 201
    with unit_of_work(world.factory) as db:
        # The world's program has no return window: the reward is due at once.
        assert referrals.pay_due(db, program_id=world.program_id, now=START) == 1
    listed = client.get(f"/v1/members/{ana['id']}/referrals", headers=world.auth("read"))
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert (item["state"], item["referrer_points"], item["referred_points"]) == (
        "rewarded",
        300,
        100,
    )
    only_pending = client.get(
        f"/v1/members/{ana['id']}/referrals?state=pending", headers=world.auth("read")
    )
    assert only_pending.json()["items"] == []
    with world.factory() as db:
        assert ledger.balance(db, member_id=ana["id"]).available == 300
        assert ledger.balance(db, member_id=bea["id"]).available == 120  # 100 + 20 earned
        event = db.scalar(
            select(OutboxEvent).where(
                OutboxEvent.program_id == world.program_id,
                OutboxEvent.event_type == "referral.completed",
            )
        )
        assert event is not None and event.payload["referrer_member_id"] == ana["id"]


def test_bad_codes_and_self_referrals_are_refused_with_nothing_written(
    client: TestClient, world: World
) -> None:
    configure(client, world)
    ana = enrol(client, world, email="ana@example.com")
    code = code_of(client, world, ana)
    cases = [
        ({"referral_code": "0000-OOOO"}, 422, "validation_error"),
        ({"referral_code": referrals.display("23456789ABCDEF" + "G")}, 422, "validation_error"),
        ({"referral_code": code, "email": "ANA+x@example.com"}, 422, "validation_error"),
    ]
    for extra, status, error in cases:
        external_id = unique("X")
        response = client.post(
            "/v1/referrals/enrolments",
            json={"external_id": external_id, **extra},
            headers=world.auth("pos"),
        )
        assert_problem(response, status, error, "referral_code")
        lookup = client.post(
            "/v1/members/lookup", json={"external_id": external_id}, headers=world.auth("read")
        )
        assert lookup.status_code == 404
    missing = client.post(
        "/v1/referrals/enrolments", json={"external_id": unique("X")}, headers=world.auth("pos")
    )
    assert_problem(missing, 422, "validation_error", "referral_code")
    read_only = client.post(
        "/v1/referrals/enrolments",
        json={"external_id": unique("X"), "referral_code": code},
        headers=world.auth("read"),
    )
    assert_problem(read_only, 403, "forbidden")


def test_a_code_from_another_program_is_unknown(
    client: TestClient, world: World, other: World
) -> None:
    configure(client, world)
    configure(client, other)
    ana = enrol(client, other)
    code = code_of(client, other, ana)
    response = client.post(
        "/v1/referrals/enrolments",
        json={"external_id": unique("X"), "referral_code": code},
        headers=world.auth("pos"),
    )
    assert_problem(response, 404, "not_found", "referral_code")


def test_lifecycle_config_round_trip_and_appreciation_rule(
    client: TestClient, world: World
) -> None:
    config = {
        "welcome_points": 50,
        "birthday": {"points": 200, "mode": "month"},
        "appreciation_days": [
            {"name": "Spring", "start": "2025-03-14", "end": "2025-03-15", "multiplier": "2"}
        ],
    }
    saved = client.put("/v1/lifecycle/config", json=config, headers=world.auth())
    assert saved.status_code == 200, saved.text
    read = client.get("/v1/lifecycle/config", headers=world.auth()).json()
    assert read["configured"] and read["config"]["birthday"] == {"points": 200, "mode": "month"}
    with world.factory() as db:
        names = [r.name for r in rules.list_rules(db, program_id=world.program_id)]
    assert "Appreciation day: Spring" in names
    bad = client.put(
        "/v1/lifecycle/config",
        json={"birthday": {"points": 10, "mode": "week"}},
        headers=world.auth(),
    )
    assert_problem(bad, 422, "validation_error", "birthday.mode")
    assert_problem(client.get("/v1/lifecycle/config", headers=world.auth("read")), 403, "forbidden")
