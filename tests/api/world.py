"""Builders for API tests: a program with keys, and requests that say only what matters."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fideliza.apikeys import service as apikeys
from fideliza.db import unit_of_work
from fideliza.rules import service as rules
from tests.factories import make_program

ONE_PER_EURO = {
    "name": "1 pt per euro",
    "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
}
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "field", "instance"}


@dataclass(frozen=True)
class World:
    """A program, its keys by scope, and the session factory of its database."""

    program_id: int
    code: str
    keys: dict[str, str]
    factory: sessionmaker[Session]

    def auth(self, scope: str = "admin", *, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.keys[scope]}"}


def make_world(factory: sessionmaker[Session], *, now: datetime, **settings: Any) -> World:
    with unit_of_work(factory) as db:
        program = make_program(db, now=now, settings={"return_window_days": 0, **settings})
        rules.create(db, program=program, definition=ONE_PER_EURO, now=now)
        keys = {
            scope: apikeys.create(db, program=program, name=scope, scopes=[scope], now=now)[1]
            for scope in ("admin", "pos", "read")
        }
        return World(program_id=program.id, code=program.code, keys=keys, factory=factory)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def enrol(client: TestClient, world: World, **profile: Any) -> dict[str, Any]:
    body = {"external_id": unique("C"), "first_name": "Ana", **profile}
    response = client.post("/v1/members", json=body, headers=world.auth("pos"))
    assert response.status_code == 201, response.text
    member: dict[str, Any] = response.json()
    return member


def basket(member: dict[str, Any], at: datetime, amount: str = "25.00", **extra: Any) -> dict:
    return {
        "external_id": unique("T"),
        "member_id": member["external_id"],
        "occurred_at": at.isoformat(),
        "amount": amount,
        "currency": "EUR",
        "items": [
            {"sku": "COF", "category": "coffee", "quantity": 2, "unit_price": "5.00"},
            {"sku": "CAK", "category": "cake", "quantity": 3, "unit_price": "5.00"},
        ],
        **extra,
    }


def earn(
    client: TestClient, world: World, member: dict[str, Any], at: datetime, amount: str = "25.00"
) -> dict[str, Any]:
    response = client.post(
        "/v1/purchases", json=basket(member, at, amount), headers=world.auth("pos")
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_problem(
    response: Any, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """The response is problem+json with this status, code and field."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS, body
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"] == f"urn:fideliza:problem:{code}"
    assert body["detail"]
    if field is not None:
        assert body["field"] == field, body
    return body
