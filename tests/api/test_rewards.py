"""The rewards API over real HTTP handling: catalog, a member's view, two-phase redemptions."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from fideliza.programs.models import OutboxEvent
from tests.api.world import World, assert_problem, enrol, unique

MUG = {"code": "mug", "name": "Mug", "kind": "gift", "points_cost": 200, "stock": 1}


def funded(client: TestClient, world: World, points: int = 300) -> dict[str, Any]:
    member = enrol(client, world)
    response = client.post(
        f"/v1/members/{member['id']}/adjustments",
        json={"points": points, "reason": "seed"},
        headers=world.auth("admin"),
    )
    assert response.status_code == 201, response.text
    return member


def add_reward(client: TestClient, world: World, **fields: Any) -> dict[str, Any]:
    body = {**MUG, "code": unique("r"), **fields}
    response = client.post("/v1/rewards", json=body, headers=world.auth("admin"))
    assert response.status_code == 201, response.text
    reward: dict[str, Any] = response.json()
    return reward


def test_admins_manage_the_catalog_and_others_read_it(client: TestClient, world: World) -> None:
    refused = client.post("/v1/rewards", json=MUG, headers=world.auth("pos"))
    assert_problem(refused, 403, "forbidden")
    reward = add_reward(client, world, kind="cashback", value="5.00", budget_money="100")
    assert (reward["kind"], reward["value"], reward["stock"]) == ("cashback", "5.0000", 1)
    listed = client.get("/v1/rewards", headers=world.auth("read"))
    assert [r["id"] for r in listed.json()["items"]] == [reward["id"]]
    changed = client.patch(
        f"/v1/rewards/{reward['id']}", json={"stock": None, "name": "Cash"},
        headers=world.auth("admin"),
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert (changed.json()["stock"], changed.json()["name"]) == (None, "Cash")
    got = client.get(f"/v1/rewards/{reward['id']}", headers=world.auth("read"))
    assert got.json()["name"] == "Cash"


def test_bad_catalog_entries_name_the_field(client: TestClient, world: World) -> None:
    admin = world.auth("admin")
    bad = client.post("/v1/rewards", json={**MUG, "points_cost": "100"}, headers=admin)
    assert_problem(bad, 422, "validation_error", "points_cost")
    bad = client.post("/v1/rewards", json={**MUG, "kind": "cashback", "value": 5.5}, headers=admin)
    body = assert_problem(bad, 422, "validation_error", "value")
    assert "never a float" in body["detail"]
    bad = client.post("/v1/rewards", json={**MUG, "eligible_tiers": ["gold"]}, headers=admin)
    assert_problem(bad, 422, "validation_error", "eligible_tiers[0]")
    client.post("/v1/rewards", json=MUG, headers=admin)
    again = client.post("/v1/rewards", json=MUG, headers=admin)
    assert_problem(again, 409, "conflict", "code")


def test_redeem_then_capture_publishes_and_a_second_capture_is_refused(
    client: TestClient, world: World
) -> None:
    member = funded(client, world)
    reward = add_reward(client, world)
    pos = world.auth("pos")
    path = f"/v1/members/{member['id']}/reward-redemptions"
    reader = client.post(
        path, json={"reward_id": reward["id"], "reference": "t-1"}, headers=world.auth("read")
    )
    assert_problem(reader, 403, "forbidden")
    held = client.post(path, json={"reward_id": reward["id"], "reference": "t-1"}, headers=pos)
    assert held.status_code == 201, held.text
    redemption = held.json()
    assert (redemption["status"], redemption["points"]) == ("held", 200)
    replay = client.post(path, json={"reward_id": reward["id"], "reference": "t-1"}, headers=pos)
    assert replay.status_code == 200 and replay.json()["id"] == redemption["id"]

    catalog = client.get(f"/v1/members/{member['id']}/rewards", headers=world.auth("read"))
    entry = catalog.json()["rewards"][0]
    assert catalog.json()["points_available"] == 100
    assert (entry["eligible"], entry["reason_code"]) == (False, "reward_out_of_stock")

    captured = client.post(f"/v1/reward-redemptions/{redemption['id']}/capture", headers=pos)
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured"
    twice = client.post(f"/v1/reward-redemptions/{redemption['id']}/capture", headers=pos)
    assert_problem(twice, 409, "invalid_state", "redemption_id")
    with world.factory() as db:
        event = db.scalar(
            select(OutboxEvent).where(
                OutboxEvent.program_id == world.program_id,
                OutboxEvent.event_type == "reward.redeemed",
            )
        )
        assert event is not None and event.payload["id"] == redemption["id"]
    got = client.get(f"/v1/reward-redemptions/{redemption['id']}", headers=world.auth("read"))
    assert got.json()["status"] == "captured"


def test_refusals_say_why(client: TestClient, world: World) -> None:
    member = funded(client, world, points=100)
    pos = world.auth("pos")
    path = f"/v1/members/{member['id']}/reward-redemptions"
    dear = add_reward(client, world, points_cost=150)
    poor = client.post(path, json={"reward_id": dear["id"], "reference": "a"}, headers=pos)
    body = assert_problem(poor, 409, "insufficient_points", "points")
    assert body["detail"].endswith(
        "the reward costs 150 points; the member has 100 available (50 missing)"
    )
    gone = add_reward(client, world, points_cost=10, stock=0)
    empty = client.post(path, json={"reward_id": gone["id"], "reference": "b"}, headers=pos)
    assert_problem(empty, 409, "reward_out_of_stock", "reward_id")
    keyless = client.post(path, json={"reward_id": gone["id"]}, headers=pos)
    assert_problem(keyless, 422, "validation_error", "Idempotency-Key")
    reserved = client.post(path, json={"reward_id": gone["id"], "reference": "key:x"}, headers=pos)
    assert_problem(reserved, 422, "validation_error", "reference")
    unknown = client.post(path, json={"reward_id": 999999999, "reference": "c"}, headers=pos)
    assert_problem(unknown, 404, "not_found", "reward_id")


def test_an_idempotency_key_stands_for_a_reference(client: TestClient, world: World) -> None:
    member = funded(client, world)
    reward = add_reward(client, world, stock=5, points_cost=100)
    path = f"/v1/members/{member['id']}/reward-redemptions"
    headers = {**world.auth("pos"), "Idempotency-Key": unique("k")}
    first = client.post(path, json={"reward_id": reward["id"]}, headers=headers)
    assert first.status_code == 201, first.text
    second = client.post(path, json={"reward_id": reward["id"]}, headers=headers)
    assert second.json()["id"] == first.json()["id"]
    assert first.json()["reference"].startswith("key:")
    stock = client.get(f"/v1/rewards/{reward['id']}", headers=world.auth("read")).json()["stock"]
    assert stock == 4


def test_release_gives_points_and_stock_back(client: TestClient, world: World) -> None:
    member = funded(client, world)
    reward = add_reward(client, world)
    pos = world.auth("pos")
    path = f"/v1/members/{member['id']}/reward-redemptions"
    held = client.post(path, json={"reward_id": reward["id"], "reference": "r"}, headers=pos)
    released = client.post(f"/v1/reward-redemptions/{held.json()['id']}/release", headers=pos)
    assert released.json()["status"] == "released"
    again = client.post(f"/v1/reward-redemptions/{held.json()['id']}/release", headers=pos)
    assert_problem(again, 409, "invalid_state", "redemption_id")
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=world.auth("read"))
    assert balance.json()["available"] == 300
    assert client.get(f"/v1/rewards/{reward['id']}", headers=pos).json()["stock"] == 1


def test_other_programs_see_nothing(client: TestClient, world: World, other: World) -> None:
    member = funded(client, world)
    reward = add_reward(client, world)
    held = client.post(
        f"/v1/members/{member['id']}/reward-redemptions",
        json={"reward_id": reward["id"], "reference": "x"},
        headers=world.auth("pos"),
    )
    stranger = other.auth("admin")
    assert_problem(client.get(f"/v1/rewards/{reward['id']}", headers=stranger), 404, "not_found")
    assert_problem(
        client.get(f"/v1/reward-redemptions/{held.json()['id']}", headers=stranger),
        404,
        "not_found",
    )
    assert_problem(
        client.get(f"/v1/members/{member['id']}/rewards", headers=stranger), 404, "not_found"
    )
