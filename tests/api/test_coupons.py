"""Coupons over HTTP: campaigns (admin), codes, validation (rate limited), redemption at a till."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from fideliza.core.codes import new_code
from tests.api.world import World, assert_problem, enrol, unique

TEN_OFF = {"type": "fixed", "amount": "10.00"}


def _campaign(client: TestClient, world: World, **fields: Any) -> dict[str, Any]:
    body = {"code": unique("c").lower(), "name": "Ten off", "discount": TEN_OFF, **fields}
    response = client.post(
        "/v1/coupon-campaigns",
        json=body,
        headers={**world.auth("admin"), "Idempotency-Key": unique("k")},
    )
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def _codes(client: TestClient, world: World, campaign_id: int, count: int = 1) -> list[str]:
    response = client.post(
        f"/v1/coupon-campaigns/{campaign_id}/codes",
        json={"count": count},
        headers={**world.auth("admin"), "Idempotency-Key": unique("k")},
    )
    assert response.status_code == 201, response.text
    found: list[str] = response.json()["codes"]
    return found


def test_a_till_validates_then_redeems_a_code_once(client: TestClient, world: World) -> None:
    campaign = _campaign(client, world)
    (code,) = _codes(client, world, campaign["id"])
    check = {"code": code, "amount": "30.00"}
    quote = client.post("/v1/coupons/validate", json=check, headers=world.auth("read"))
    assert quote.status_code == 200, quote.text
    assert quote.json()["discount"] == "10.00" and quote.json()["campaign"] == campaign["code"]
    body = {**check, "purchase_id": "T-1"}
    first = client.post("/v1/coupons/redeem", json=body, headers=world.auth("pos"))
    assert first.status_code == 201, first.text
    again = client.post("/v1/coupons/redeem", json=body, headers=world.auth("pos"))
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["id"] == first.json()["id"]
    other = client.post(
        "/v1/coupons/redeem", json={**check, "purchase_id": "T-2"}, headers=world.auth("pos")
    )
    assert_problem(other, 422, "coupon_not_valid", "code")


def test_unknown_and_used_codes_get_one_answer_and_the_admin_the_reason(
    client: TestClient, world: World
) -> None:
    campaign = _campaign(client, world)
    (code,) = _codes(client, world, campaign["id"])
    client.post(
        "/v1/coupons/redeem",
        json={"code": code, "amount": "30.00", "purchase_id": "T-1"},
        headers=world.auth("pos"),
    )
    answers = []
    for candidate in (code, new_code()):
        response = client.post(
            "/v1/coupons/validate",
            json={"code": candidate, "amount": "30.00"},
            headers=world.auth("read"),
        )
        body = assert_problem(response, 422, "coupon_not_valid", "code")
        answers.append((body["detail"], body["title"]))
    assert answers[0] == answers[1]
    used = client.post("/v1/coupons/lookup", json={"code": code}, headers=world.auth("admin"))
    assert used.json()["state"] == "used_up" and used.json()["uses"] == 1
    assert used.json()["redemptions"][0]["purchase"] == "T-1"
    unknown = client.post(
        "/v1/coupons/lookup", json={"code": new_code()}, headers=world.auth("admin")
    )
    assert unknown.json()["state"] == "unknown" and unknown.json()["found"] is False
    refused = client.post("/v1/coupons/lookup", json={"code": code}, headers=world.auth("pos"))
    assert refused.status_code == 403


def test_a_typo_is_told_apart_and_nothing_is_looked_up(client: TestClient, world: World) -> None:
    response = client.post(
        "/v1/coupons/validate",
        json={"code": "ABCD-EFGH-JKMN-PQR", "amount": "30.00"},
        headers=world.auth("read"),
    )
    assert_problem(response, 422, "malformed_code", "code")


def test_codes_of_another_program_do_not_exist_here(
    client: TestClient, world: World, other: World
) -> None:
    campaign = _campaign(client, world)
    (code,) = _codes(client, world, campaign["id"])
    response = client.post(
        "/v1/coupons/validate", json={"code": code, "amount": "30.00"}, headers=other.auth("read")
    )
    assert_problem(response, 422, "coupon_not_valid", "code")
    missing = client.get(f"/v1/coupon-campaigns/{campaign['id']}", headers=other.auth("read"))
    assert_problem(missing, 404, "not_found", "campaign_id")


def test_validation_is_rate_limited_per_key(client: TestClient, world: World) -> None:
    statuses = [
        client.post(
            "/v1/coupons/validate",
            json={"code": new_code(), "amount": "10.00"},
            headers=world.auth("read"),
        ).status_code
        for _ in range(61)
    ]
    assert statuses[:60] == [422] * 60
    assert statuses[60] == 429


def test_redeem_without_purchase_needs_an_idempotency_key(client: TestClient, world: World) -> None:
    campaign = _campaign(client, world, max_uses_per_code=None)
    (code,) = _codes(client, world, campaign["id"])
    body = {"code": code, "amount": "30.00"}
    refused = client.post("/v1/coupons/redeem", json=body, headers=world.auth("pos"))
    assert_problem(refused, 422, "validation_error", "Idempotency-Key")
    headers = {**world.auth("pos"), "Idempotency-Key": unique("k")}
    first = client.post("/v1/coupons/redeem", json=body, headers=headers)
    again = client.post("/v1/coupons/redeem", json=body, headers=headers)
    assert first.status_code == 201 and again.json() == first.json()
    state = client.post("/v1/coupons/lookup", json={"code": code}, headers=world.auth("admin"))
    assert state.json()["uses"] == 1


def test_campaigns_are_admin_only_and_bad_input_names_the_field(
    client: TestClient, world: World
) -> None:
    body = {"code": "spring", "name": "Spring", "discount": TEN_OFF}
    refused = client.post("/v1/coupon-campaigns", json=body, headers=world.auth("pos"))
    assert refused.status_code == 403
    bad = client.post(
        "/v1/coupon-campaigns",
        json={**body, "min_spend": "-5"},
        headers=world.auth("admin"),
    )
    assert_problem(bad, 422, "validation_error", "min_spend")
    extra = client.post(
        "/v1/coupon-campaigns", json={**body, "colour": "red"}, headers=world.auth("admin")
    )
    assert_problem(extra, 422, "validation_error", "colour")


def test_issue_to_a_member_pause_and_budget_are_visible(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    campaign = _campaign(client, world, budget_points=100, points_per_code=100)
    issued = client.post(
        f"/v1/coupon-campaigns/{campaign['id']}/issue",
        json={"member_id": member["id"], "source": "crm"},
        headers={**world.auth("admin"), "Idempotency-Key": unique("k")},
    )
    assert issued.status_code == 201, issued.text
    assert issued.json()["member_id"] == member["id"]
    read = client.get(f"/v1/coupon-campaigns/{campaign['id']}", headers=world.auth("read"))
    assert read.json()["budget"]["points_spent"] == 100 and read.json()["budget"]["exhausted"]
    spent = client.post(
        f"/v1/coupon-campaigns/{campaign['id']}/issue",
        json={"member_id": member["id"]},
        headers={**world.auth("admin"), "Idempotency-Key": unique("k")},
    )
    assert_problem(spent, 409, "budget_exhausted", "campaign")
    paused = client.patch(
        f"/v1/coupon-campaigns/{campaign['id']}",
        json={"active": False},
        headers=world.auth("admin"),
    )
    assert paused.status_code == 200 and paused.json()["active"] is False
    check = {"code": issued.json()["code"], "amount": "30.00", "member_id": member["id"]}
    refused = client.post("/v1/coupons/validate", json=check, headers=world.auth("read"))
    assert_problem(refused, 422, "coupon_not_valid", "code")
    listed = client.get("/v1/coupon-campaigns", headers=world.auth("read")).json()
    assert [c["code"] for c in listed] == [campaign["code"]]
