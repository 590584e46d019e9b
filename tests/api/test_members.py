"""Members over HTTP: enrol, read, look up, update the profile (and nothing else), list."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fideliza.members.domain import new_card_number
from tests.api.conftest import START
from tests.api.world import World, assert_problem, earn, enrol, unique

UNUSED_CARD = new_card_number("0" * 14)  # valid (Luhn), never issued: random cards start 7…


def test_enrol_is_idempotent_by_external_id(client: TestClient, world: World) -> None:
    body = {"external_id": unique("C"), "email": "Ana@Example.com", "phone": "+34 600 11 22 33"}
    first = client.post("/v1/members", json=body, headers=world.auth("pos"))
    assert first.status_code == 201
    member = first.json()
    assert member["email"] == "ana@example.com" and member["phone"] == "+34600112233"
    assert member["status"] == "active" and member["tier_code"] is None
    card = member["card"]
    assert len(card["number"]) == 16 and card["qr"] == f"FIDELIZA:{world.code}:{card['number']}"
    again = client.post("/v1/members", json=body, headers=world.auth("pos"))
    assert again.status_code == 200 and again.json() == member
    other = client.post(
        "/v1/members", json={**body, "first_name": "Eva"}, headers=world.auth("pos")
    )
    assert_problem(other, 422, "idempotency_error", "external_id")


def test_enrol_validates_the_profile(client: TestClient, world: World) -> None:
    bad = client.post(
        "/v1/members",
        json={"external_id": "x", "email": "not-an-email", "locale": "fr"},
        headers=world.auth("pos"),
    )
    problem = assert_problem(bad, 422, "validation_error", "email")
    assert {e["field"] for e in problem["errors"]} == {"email", "locale"}
    assert_problem(
        client.post("/v1/members", json={"external_id": ""}, headers=world.auth("pos")),
        422,
        "validation_error",
        "external_id",
    )


def test_get_and_look_up(client: TestClient, world: World) -> None:
    member = enrol(client, world, email=f"{unique('e')}@x.es", phone="600123456")
    assert client.get(f"/v1/members/{member['id']}", headers=world.auth("read")).json() == member
    number = member["card"]["number"]
    spaced = " ".join(number[i : i + 4] for i in range(0, 16, 4))
    for query in (
        {"card": spaced},
        {"email": member["email"].upper()},
        {"phone": "600 12 34 56"},
        {"external_id": member["external_id"]},
    ):
        found = client.post("/v1/members/lookup", json=query, headers=world.auth("read"))
        assert found.status_code == 200, (query, found.text)
        assert found.json()["id"] == member["id"]


@pytest.mark.parametrize(
    ("query", "status", "code", "field"),
    [
        ({}, 422, "validation_error", "lookup"),
        ({"email": "a@b.es", "phone": "600000000"}, 422, "validation_error", "lookup"),
        ({"card": "1234 5678 9012 3456"}, 422, "validation_error", "card"),
        ({"email": "nobody@nowhere.es"}, 404, "not_found", "email"),
        ({"card": UNUSED_CARD}, 404, "not_found", "card"),
        ({"birthday": "2000-01-01"}, 422, "validation_error", "birthday"),
    ],
)
def test_lookup_errors(
    client: TestClient,
    world: World,
    query: dict[str, str],
    status: int,
    code: str,
    field: str,
) -> None:
    response = client.post("/v1/members/lookup", json=query, headers=world.auth("read"))
    assert_problem(response, status, code, field)


def test_profile_update_changes_the_profile_only(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    path = f"/v1/members/{member['id']}"
    updated = client.patch(
        path,
        json={"first_name": "Eva", "consent": {"email": True}, "attributes": {"segment": "vip"}},
        headers=world.auth("pos"),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["first_name"] == "Eva"
    assert updated.json()["last_name"] == member["last_name"]  # untouched: not sent
    assert updated.json()["consent"] == {"email": True}
    # Mass assignment: nothing but the profile can be set, even alongside good fields.
    for field, value in [
        ("points", 1000),
        ("tier_code", "gold"),
        ("status", "closed"),
        ("program_id", 1),
        ("id", 1),
        ("external_id", "someone-else"),
        ("card", {"number": UNUSED_CARD}),
        ("enrolled_at", "2020-01-01T00:00:00Z"),
    ]:
        refused = client.patch(
            path, json={"first_name": "Mallory", field: value}, headers=world.auth("pos")
        )
        assert_problem(refused, 422, "validation_error", field)
    after = client.get(path, headers=world.auth("read")).json()
    assert after == updated.json()
    balance = client.get(f"{path}/balance", headers=world.auth("read")).json()
    assert balance["total"] == 0


def test_list_members_by_cursor(client: TestClient, world: World) -> None:
    enrolled = [enrol(client, world)["id"] for _ in range(5)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/members", params=params, headers=world.auth("read")).json()
        seen += [m["id"] for m in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == enrolled and pages == 3
    suspended = client.get(
        "/v1/members", params={"status": "suspended"}, headers=world.auth("read")
    ).json()
    assert suspended == {"items": [], "next_cursor": None}


def test_an_admin_suspends_reactivates_and_closes_a_member(
    client: TestClient, world: World
) -> None:
    member = enrol(client, world)
    earn(client, world, member, START, amount="20.00")
    status = f"/v1/members/{member['id']}/status"
    redeem = f"/v1/members/{member['id']}/redemptions"

    def spend(reference: str) -> Any:
        body = {"points": 5, "reason": "cinema", "reference": reference}
        return client.post(redeem, json=body, headers=world.auth("pos"))

    suspend = {"status": "suspended", "reason": "fraud check"}
    refused = client.post(status, json=suspend, headers=world.auth("pos"))
    assert_problem(refused, 403, "forbidden")
    suspended = client.post(status, json=suspend, headers=world.auth())
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    assert_problem(spend(unique("R")), 409, "invalid_state", "member_id")
    back = client.post(status, json={"status": "active", "reason": "cleared"}, headers=world.auth())
    assert back.json()["status"] == "active" and spend(unique("R")).status_code == 201
    closed = client.post(status, json={"status": "closed", "reason": "asked"}, headers=world.auth())
    assert closed.json()["status"] == "closed"
    final = client.post(status, json={"status": "active", "reason": "oops"}, headers=world.auth())
    assert_problem(final, 409, "invalid_state", "status")
    blank = client.post(status, json={"status": "active", "reason": "  "}, headers=world.auth())
    assert_problem(blank, 422, "validation_error", "reason")
