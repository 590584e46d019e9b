"""Purchases, returns, events, balance, history, dry run, tiers, holds, redemptions, jobs."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fideliza.core.clock import FixedClock
from fideliza.db import unit_of_work
from fideliza.ledger.check import check_ledger
from fideliza.ledger.models import LedgerTransaction
from fideliza.programs import service as programs
from fideliza.rules import service as rules
from fideliza.tiers import service as tiers
from tests.api.conftest import START
from tests.api.world import World, assert_problem, basket, earn, enrol, unique


def _ledger_is_consistent(world: World) -> None:
    with world.factory() as db:
        assert check_ledger(db, program_id=world.program_id) == []


def test_a_purchase_earns_and_says_why(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    body = basket(member, START)
    first = client.post("/v1/purchases", json=body, headers=world.auth("pos"))
    assert first.status_code == 201, first.text
    result = first.json()
    assert result["points"] == 25 and result["replayed"] is False and not result["pending"]
    assert result["member_id"] == member["id"]
    assert [p["rule_id"] is not None for p in result["postings"]] == [True]
    assert "1 pt per euro" in result["postings"][0]["reason"]
    # The same till transaction again (a retry without Idempotency-Key): replayed, once.
    again = client.post("/v1/purchases", json=body, headers=world.auth("pos"))
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["transaction_id"] == result["transaction_id"]
    # The same id with other content is refused.
    other = client.post(
        "/v1/purchases", json={**body, "amount": "26.00"}, headers=world.auth("pos")
    )
    assert_problem(other, 422, "idempotency_error", "external_id")
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=world.auth("read"))
    assert balance.json() == {
        "member_id": member["id"],
        "points_name": "points",
        "available": 25,
        "pending": 0,
        "held": 0,
        "total": 25,
    }
    history = client.get(f"/v1/members/{member['id']}/history", headers=world.auth("read"))
    (line,) = history.json()["items"]
    assert line["points"] == 25 and line["kind"] == "earn" and line["account"] == "available"
    assert line["source_ref"] == body["external_id"] and "[rule " in line["why"]
    stored = client.get(f"/v1/purchases/{result['purchase_id']}", headers=world.auth("read"))
    assert stored.json()["amount"] == "25.00" and stored.json()["points_earned"] == 25


def test_purchase_errors(client: TestClient, world: World) -> None:
    stranger = {"external_id": unique("nobody")}
    missing = client.post("/v1/purchases", json=basket(stranger, START), headers=world.auth("pos"))
    assert_problem(missing, 404, "not_found", "member_id")
    assert_problem(
        client.get(f"/v1/purchases/{2**40}", headers=world.auth("read")),
        404,
        "not_found",
        "purchase_id",
    )


def test_a_return_takes_back_its_share(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    body = basket(member, START)
    client.post("/v1/purchases", json=body, headers=world.auth("pos"))
    returned = {
        "external_id": unique("R"),
        "purchase_external_id": body["external_id"],
        "occurred_at": (START + timedelta(hours=1)).isoformat(),
        "items": [{"sku": "CAK", "quantity": 2}],
    }
    first = client.post("/v1/returns", json=returned, headers=world.auth("pos"))
    assert first.status_code == 201, first.text
    assert first.json()["points_reversed"] == 10 and first.json()["amount"] == "10.00"
    again = client.post("/v1/returns", json=returned, headers=world.auth("pos"))
    assert again.status_code == 200 and again.json()["replayed"] is True
    too_many = client.post(
        "/v1/returns",
        json={**returned, "external_id": unique("R"), "items": [{"sku": "CAK", "quantity": 2}]},
        headers=world.auth("pos"),
    )
    assert_problem(too_many, 422, "validation_error", "items[0].quantity")
    unknown = client.post(
        "/v1/returns",
        json={**returned, "external_id": unique("R"), "purchase_external_id": "nope"},
        headers=world.auth("pos"),
    )
    assert_problem(unknown, 404, "not_found", "purchase_external_id")
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=world.auth("read"))
    assert balance.json()["available"] == 15
    _ledger_is_consistent(world)


def test_a_custom_event_earns_by_its_rule(client: TestClient, world: World) -> None:
    with unit_of_work(world.factory) as db:
        program = programs.get(db, program_id=world.program_id)
        rules.create(
            db,
            program=program,
            now=START,
            definition={
                "name": "visit",
                "activity": "store_visit",
                "actions": [{"type": "fixed_bonus", "points": 10}],
            },
        )
    member = enrol(client, world)
    event = {
        "external_id": unique("V"),
        "member_id": member["external_id"],
        "event_type": "store_visit",
        "occurred_at": START.isoformat(),
        "attributes": {"store": "S1"},
    }
    first = client.post("/v1/events", json=event, headers=world.auth("pos"))
    assert first.status_code == 201, first.text
    assert first.json()["points"] == 10 and first.json()["postings"][0]["reason"]
    again = client.post("/v1/events", json=event, headers=world.auth("pos"))
    assert again.status_code == 200 and again.json()["replayed"] is True
    bad = client.post(
        "/v1/events", json={**event, "event_type": "purchase"}, headers=world.auth("pos")
    )
    assert_problem(bad, 422, "validation_error", "event_type")


def test_history_pages_back_by_cursor(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    for hour in range(5):
        earn(client, world, member, START + timedelta(hours=hour), amount=f"{hour + 1}.00")
    path = f"/v1/members/{member['id']}/history"
    first = client.get(path, params={"limit": 2}, headers=world.auth("read")).json()
    assert [line["points"] for line in first["items"]] == [5, 4]
    second = client.get(
        path, params={"limit": 2, "cursor": first["next_cursor"]}, headers=world.auth("read")
    ).json()
    third = client.get(
        path, params={"limit": 2, "cursor": second["next_cursor"]}, headers=world.auth("read")
    ).json()
    assert [line["points"] for line in second["items"] + third["items"]] == [3, 2, 1]
    assert third["next_cursor"] is None
    assert all(line["why"] for line in first["items"] + second["items"] + third["items"])


def test_dry_run_explains_and_writes_nothing(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    body = {"member_id": member["external_id"], "occurred_at": START.isoformat(), "amount": "7.5"}
    result = client.post("/v1/dry-run", json=body, headers=world.auth("read"))
    assert result.status_code == 200, result.text
    assert result.json()["points"] == 7
    (check,) = result.json()["checks"]
    assert check["matched"] and check["name"] == "1 pt per euro"
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=world.auth("read"))
    assert balance.json()["total"] == 0
    stranger = client.post(
        "/v1/dry-run", json={**body, "member_id": "nobody"}, headers=world.auth("read")
    )
    assert_problem(stranger, 404, "not_found", "external_id")


def test_tier_status(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    assert (
        client.get(f"/v1/members/{member['id']}/tier", headers=world.auth("read")).json()[
            "configured"
        ]
        is False
    )
    with unit_of_work(world.factory) as db:
        tiers.configure(
            db,
            program=programs.get(db, program_id=world.program_id),
            now=START,
            config={
                "levels": [
                    {"code": "BRONZE", "name": "Bronze", "rank": 1, "threshold": "0"},
                    {"code": "GOLD", "name": "Gold", "rank": 2, "threshold": "40"},
                ],
                "policy": {"basis": "points", "period": "calendar_year"},
            },
        )
    earn(client, world, member, START)
    status = client.get(f"/v1/members/{member['id']}/tier", headers=world.auth("read")).json()
    assert status["configured"] is True and status["code"] == "BRONZE"
    assert status["next_code"] == "GOLD" and status["missing"] == "15.0000"
    assert (status["window_start"], status["window_end"]) == ("2025-01-01", "2025-12-31")
    assert [change["to_code"] for change in status["history"]] == ["BRONZE"]


def test_hold_then_capture_or_release(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    earn(client, world, member, START, amount="100.00")
    holds = f"/v1/members/{member['id']}/holds"
    body = {"points": 30, "reference": unique("H"), "reason": "free coffee"}
    held = client.post(holds, json=body, headers=world.auth("pos"))
    assert held.status_code == 201, held.text
    hold = held.json()
    assert hold["status"] == "held" and hold["expires_at"] == "2025-03-10T12:15:00Z"
    again = client.post(holds, json=body, headers=world.auth("pos"))
    assert again.status_code == 200 and again.json()["id"] == hold["id"]
    other = client.post(holds, json={**body, "points": 31}, headers=world.auth("pos"))
    assert_problem(other, 422, "idempotency_error", "reference")
    reserved = client.post(
        holds, json={**body, "reference": "redemption:x"}, headers=world.auth("pos")
    )
    assert_problem(reserved, 422, "validation_error", "reference")
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=world.auth("read"))
    assert (balance.json()["available"], balance.json()["held"]) == (70, 30)

    captured = client.post(f"/v1/holds/{hold['id']}/capture", headers=world.auth("pos"))
    assert captured.status_code == 200 and captured.json()["status"] == "captured"
    twice = client.post(f"/v1/holds/{hold['id']}/capture", headers=world.auth("pos"))
    assert_problem(twice, 409, "invalid_state", "hold_id")

    second = client.post(
        holds, json={**body, "reference": unique("H"), "points": 20}, headers=world.auth("pos")
    ).json()
    released = client.post(f"/v1/holds/{second['id']}/release", headers=world.auth("pos"))
    assert released.status_code == 200 and released.json()["status"] == "released"
    got = client.get(f"/v1/holds/{second['id']}", headers=world.auth("read"))
    assert got.json() == released.json()
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=world.auth("read"))
    assert (balance.json()["available"], balance.json()["held"]) == (70, 0)
    too_much = client.post(
        holds, json={**body, "reference": unique("H"), "points": 71}, headers=world.auth("pos")
    )
    assert_problem(too_much, 409, "insufficient_points", "points")
    _ledger_is_consistent(world)


def test_a_redemption_by_reference_happens_once(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    earn(client, world, member, START, amount="50.00")
    path = f"/v1/members/{member['id']}/redemptions"
    body = {"points": 20, "reason": "cinema ticket", "reference": unique("ORDER")}
    first = client.post(path, json=body, headers=world.auth("pos"))
    assert first.status_code == 201, first.text
    assert first.json()["available_after"] == 30 and first.json()["reference"] == body["reference"]
    again = client.post(path, json=body, headers=world.auth("pos"))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = client.post(path, json={**body, "points": 21}, headers=world.auth("pos"))
    assert_problem(other, 422, "idempotency_error", "reference")
    short = client.post(
        path, json={**body, "reference": unique("ORDER"), "points": 31}, headers=world.auth("pos")
    )
    assert_problem(short, 409, "insufficient_points", "points")
    keyless = client.post(path, json={"points": 1, "reason": "no key"}, headers=world.auth("pos"))
    assert_problem(keyless, 422, "validation_error", "Idempotency-Key")
    with world.factory() as db:
        captures = db.scalar(
            select(func.count()).where(
                LedgerTransaction.member_id == member["id"], LedgerTransaction.kind == "capture"
            )
        )
    assert captures == 1
    _ledger_is_consistent(world)


def test_a_suspended_member_cannot_redeem(client: TestClient, world: World) -> None:
    from fideliza.members import service as members

    member = enrol(client, world)
    earn(client, world, member, START)
    with unit_of_work(world.factory) as db:
        program = programs.get(db, program_id=world.program_id)
        found = members.get(db, program_id=program.id, member_id=member["id"])
        members.change_status(
            db, program=program, member=found, status="suspended", reason="fraud check", now=START
        )
    refused = client.post(
        f"/v1/members/{member['id']}/redemptions",
        json={"points": 1, "reason": "x", "reference": unique("O")},
        headers=world.auth("pos"),
    )
    assert_problem(refused, 409, "invalid_state", "member_id")


def test_an_admin_adjusts_with_a_reason(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    path = f"/v1/members/{member['id']}/adjustments"
    added = client.post(path, json={"points": 40, "reason": "goodwill"}, headers=world.auth())
    assert added.status_code == 201 and added.json()["available_after"] == 40
    taken = client.post(path, json={"points": -15, "reason": "typo"}, headers=world.auth())
    assert taken.json()["available_after"] == 25
    zero = client.post(path, json={"points": 0, "reason": "noop"}, headers=world.auth())
    assert_problem(zero, 422, "validation_error", "points")
    history = client.get(f"/v1/members/{member['id']}/history", headers=world.auth("read"))
    assert [line["why"] for line in history.json()["items"]] == ["typo", "goodwill"]


def test_jobs_release_stale_holds(client: TestClient, world: World, clock: FixedClock) -> None:
    member = enrol(client, world)
    earn(client, world, member, START)
    client.post(
        f"/v1/members/{member['id']}/holds",
        json={"points": 5, "reference": unique("H"), "reason": "forgotten"},
        headers=world.auth("pos"),
    )
    clock.advance(timedelta(minutes=20))
    report = client.post("/v1/jobs/run", headers=world.auth())
    assert report.status_code == 200, report.text
    assert report.json()["holds_released"] == 1 and report.json()["program"] == world.code
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=world.auth("read"))
    assert (balance.json()["available"], balance.json()["held"]) == (25, 0)
    again = client.post("/v1/jobs/run", headers=world.auth())
    assert again.json()["holds_released"] == 0
