"""Gift cards and wallets over real HTTP: issue, look up, top up, spend, refund, wallets."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from fideliza.api.app import create_app
from fideliza.api.settings import ApiSettings
from fideliza.core.clock import FixedClock
from fideliza.db import unit_of_work
from fideliza.giftcards import service as giftcards
from fideliza.giftcards.check import check_money_ledger
from fideliza.giftcards.models import GiftCard
from tests.api.conftest import SECRET_KEY, START
from tests.api.world import World, assert_problem, enrol, unique


def issue(client: TestClient, world: World, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/gift-cards", json={"amount": "50.00", **body}, headers=world.auth("admin")
    )
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


def spend(client: TestClient, world: World, code: str, amount: str, **body: Any) -> Any:
    body = {"code": code, "amount": amount, "reference": unique("T"), **body}
    return client.post("/v1/gift-cards/spends", json=body, headers=world.auth("pos"))


def consistent(world: World) -> None:
    with world.factory() as db:
        assert check_money_ledger(db, program_id=world.program_id) == []


def test_issue_shows_the_code_once_and_a_replay_does_not(client: TestClient, world: World) -> None:
    headers = {**world.auth("admin"), "Idempotency-Key": unique("issue")}
    body = {"amount": "25.50", "pin": "2468", "expires_at": "2026-01-01T00:00:00+00:00"}
    first = client.post("/v1/gift-cards", json=body, headers=headers)
    assert first.status_code == 201, first.text
    card = first.json()
    assert card["code"] and card["code"].replace("-", "").endswith(card["code_hint"])
    assert card["balance"] == "25.50" and card["currency"] == "EUR" and card["status"] == "active"

    again = client.post("/v1/gift-cards", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == card["id"] and again.json()["code"] is None
    consistent(world)


def test_issuing_needs_admin_and_refuses_bad_input(client: TestClient, world: World) -> None:
    pos = client.post("/v1/gift-cards", json={"amount": "5"}, headers=world.auth("pos"))
    assert_problem(pos, 403, "forbidden")
    for body, field in [
        ({"amount": "5.001"}, "amount"),
        ({"amount": "5", "currency": "USD"}, "currency"),
        ({"amount": "-1"}, "amount"),
        ({"amount": 5.5}, "amount"),
        ({"amount": "5", "pin": "12"}, "pin"),
        ({"amount": "5", "colour": "red"}, "colour"),
    ]:
        refused = client.post("/v1/gift-cards", json=body, headers=world.auth("admin"))
        assert_problem(refused, 422, "validation_error", field)


def test_spend_top_up_refund_and_their_replays(client: TestClient, world: World) -> None:
    card = issue(client, world, amount="30.00")
    code = card["code"]

    paid = spend(client, world, code, "12.35", reference="till-1")
    assert paid.status_code == 201, paid.text
    assert paid.json()["balance_after"] == "17.65" and paid.json()["replayed"] is False
    again = spend(client, world, code, "12.35", reference="till-1")
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["transaction_id"] == paid.json()["transaction_id"]
    assert_problem(spend(client, world, code, "1.00", reference="till-1"), 422, "idempotency_error")
    assert_problem(spend(client, world, code, "17.66"), 409, "insufficient_funds", "amount")
    assert_problem(spend(client, world, code, "1.00", currency="USD"), 422, "validation_error")

    topped = client.post(
        "/v1/gift-cards/top-ups",
        json={"code": code, "amount": "2.35", "reference": unique("U")},
        headers=world.auth("pos"),
    )
    assert topped.status_code == 201 and topped.json()["balance_after"] == "20.00"

    spend_id = paid.json()["transaction_id"]
    refunds = f"/v1/spends/{spend_id}/refunds"
    back = client.post(refunds, json={"amount": "12.00"}, headers=world.auth("pos"))
    assert_problem(back, 422, "validation_error", "Idempotency-Key")  # no reference, no key
    back = client.post(
        refunds,
        json={"amount": "12.00"},
        headers={**world.auth("pos"), "Idempotency-Key": unique("R")},
    )
    assert back.status_code == 201 and back.json()["refunds_id"] == spend_id
    too_much = client.post(
        refunds, json={"amount": "0.36", "reference": unique("R")}, headers=world.auth("pos")
    )
    assert_problem(too_much, 422, "refund_exceeds_spend", "amount")

    looked = client.post("/v1/gift-cards/lookup", json={"code": code}, headers=world.auth("pos"))
    assert looked.status_code == 200 and looked.json()["balance"] == "32.00"
    assert "code" not in looked.json()
    consistent(world)


def test_unknown_code_and_wrong_pin_give_the_same_answer(client: TestClient, world: World) -> None:
    card = issue(client, world, pin="1357")
    other = issue(client, world, pin="1357")
    with world.factory() as db:  # make `other` unknown, while its code stays well-formed
        db.execute(update(GiftCard).where(GiftCard.id == other["id"]).values(code_hash="0" * 64))
        db.commit()

    def look(code: str, pin: str | None) -> Any:
        return client.post(
            "/v1/gift-cards/lookup", json={"code": code, "pin": pin}, headers=world.auth("pos")
        )

    wrong_pin = assert_problem(look(card["code"], "0000"), 422, "card_not_accepted", "code")
    unknown = assert_problem(look(other["code"], "1357"), 422, "card_not_accepted", "code")
    assert wrong_pin["detail"] == unknown["detail"] and wrong_pin["title"] == unknown["title"]
    assert look(card["code"], "1357").status_code == 200
    assert_problem(look("NOT-A-CODE", None), 422, "malformed_code", "code")
    refused = spend(client, world, card["code"], "1.00", pin="9999")
    assert_problem(refused, 422, "card_not_accepted")


def test_another_program_cannot_use_the_card(
    client: TestClient, world: World, other: World
) -> None:
    card = issue(client, world)
    found = client.post(
        "/v1/gift-cards/lookup", json={"code": card["code"]}, headers=other.auth("pos")
    )
    assert_problem(found, 422, "card_not_accepted")
    paid = spend(client, world, card["code"], "1.00")
    refund = client.post(
        f"/v1/spends/{paid.json()['transaction_id']}/refunds",
        json={"amount": "1.00", "reference": unique("R")},
        headers=other.auth("pos"),
    )
    assert_problem(refund, 404, "not_found", "spend_transaction_id")


def test_freeze_and_close_through_the_api(client: TestClient, world: World) -> None:
    card = issue(client, world, amount="5.00")
    status = f"/v1/gift-cards/{card['id']}/status"
    frozen = client.post(status, json={"status": "frozen"}, headers=world.auth("admin"))
    assert frozen.status_code == 200 and frozen.json()["status"] == "frozen"
    assert_problem(spend(client, world, card["code"], "1.00"), 409, "card_frozen")
    closing = client.post(status, json={"status": "closed"}, headers=world.auth("admin"))
    assert_problem(closing, 409, "invalid_state", "status")
    assert_problem(
        client.post(status, json={"status": "frozen"}, headers=world.auth("pos")), 403, "forbidden"
    )


def test_wallet_balance_history_spend_and_refund(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    empty = client.get(f"/v1/members/{member['id']}/wallets", headers=world.auth("read"))
    assert empty.status_code == 200 and empty.json() == []
    with unit_of_work(world.factory) as db:
        for reference in ("reward-1", "reward-2"):
            giftcards.credit_wallet(
                db,
                program_id=world.program_id,
                member_id=member["id"],
                amount=Decimal("5.00"),
                reference=reference,
                reason="cashback",
                now=START,
            )

    wallets = client.get(f"/v1/members/{member['id']}/wallets", headers=world.auth("read"))
    assert wallets.json() == [{"currency": "EUR", "balance": "10.00"}]
    spends = f"/v1/members/{member['id']}/wallet/spends"
    paid = client.post(
        spends, json={"amount": "7.50", "reference": unique("W")}, headers=world.auth("pos")
    )
    assert paid.status_code == 201 and paid.json()["balance_after"] == "2.50"
    broke = client.post(
        spends, json={"amount": "2.51", "reference": unique("W")}, headers=world.auth("pos")
    )
    assert_problem(broke, 409, "insufficient_funds", "amount")
    back = client.post(
        f"/v1/spends/{paid.json()['transaction_id']}/refunds",
        json={"amount": "7.50", "reference": unique("R")},
        headers=world.auth("pos"),
    )
    assert back.status_code == 201 and back.json()["balance_after"] == "10.00"

    history = f"/v1/members/{member['id']}/wallets/history"
    first = client.get(history, params={"limit": 2}, headers=world.auth("read")).json()
    assert [line["kind"] for line in first["items"]] == ["refund", "spend"]
    rest = client.get(
        history, params={"limit": 2, "cursor": first["next_cursor"]}, headers=world.auth("read")
    ).json()
    assert [line["kind"] for line in rest["items"]] == ["credit", "credit"]
    assert rest["next_cursor"] is None
    assert rest["items"][0]["reason"] == "cashback" and rest["items"][0]["amount"] == "5.00"
    consistent(world)


def test_card_requests_are_rate_limited_per_key(database_url: str, world: World) -> None:
    app = create_app(
        database_url,
        clock=FixedClock(START),
        settings=ApiSettings(
            sensitive_rate_limit=3, sensitive_rate_window_seconds=60, secret_key=SECRET_KEY
        ),
    )
    with TestClient(app) as limited:
        card = issue(limited, world)
        statuses = [
            limited.post(
                "/v1/gift-cards/lookup",
                json={"code": card["code"], "pin": pin},
                headers=world.auth("pos"),
            ).status_code
            for pin in (None, "1111", None)
        ]
        assert statuses == [200, 200, 200]  # no PIN on this card: any PIN is ignored
        refused = spend(limited, world, card["code"], "1.00")
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) == 20
        # Another key still gets through.
        admin = limited.post(
            "/v1/gift-cards/lookup", json={"code": card["code"]}, headers=world.auth("admin")
        )
        assert admin.status_code == 200


def test_mangled_bodies_on_money_routes_never_break_the_server(
    client: TestClient, world: World
) -> None:
    from tests.api.test_fuzz import mangle

    member = enrol(client, world)
    card = issue(client, world, amount="500.00", pin="1234")
    paid = spend(client, world, card["code"], "50.00", pin="1234")
    seeds: list[tuple[str, dict[str, Any]]] = [
        (
            "/v1/gift-cards",
            {
                "amount": "5.00",
                "currency": "EUR",
                "pin": "1234",
                "member_id": member["id"],
                "expires_at": "2026-01-01T00:00:00+00:00",
                "reason": "gift",
            },
        ),
        ("/v1/gift-cards/lookup", {"code": card["code"], "pin": "1234"}),
        (
            "/v1/gift-cards/spends",
            {"code": card["code"], "pin": "1234", "amount": "0.01", "reference": "F1"},
        ),
        (
            "/v1/gift-cards/top-ups",
            {"code": card["code"], "pin": "1234", "amount": "0.01", "currency": "EUR"},
        ),
        (f"/v1/gift-cards/{card['id']}/status", {"status": "active", "reason": "r"}),
        (f"/v1/spends/{paid.json()['transaction_id']}/refunds", {"amount": "0.01"}),
        (f"/v1/members/{member['id']}/wallet/spends", {"amount": "0.01", "reference": "W"}),
    ]
    rng = random.Random(20251125)
    broken = []
    seen: set[int] = set()
    for attempt in range(150):
        path, seed = rng.choice(seeds)
        headers = {**world.auth(), "Idempotency-Key": f"fuzz-{attempt}"}
        response = client.post(path, json=mangle(seed, rng), headers=headers)
        seen.add(response.status_code // 100)
        if response.status_code >= 500:
            broken.append(f"{path}: {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
    assert not broken, "\n".join(broken)
    assert seen == {2, 4}  # the mangling let some requests through and refused others
    consistent(world)
