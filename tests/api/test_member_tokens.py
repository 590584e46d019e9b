"""Member tokens: an app acts as one member, sees only that member, and nothing else."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fideliza.api.app import create_app
from fideliza.api.settings import ApiSettings
from fideliza.apikeys import member_tokens
from fideliza.core.clock import FixedClock
from fideliza.db import unit_of_work
from fideliza.members import service as members
from fideliza.programs import service as programs
from tests.api.conftest import SECRET_KEY, START
from tests.api.world import World, assert_problem, earn, enrol


def _token(client: TestClient, world: World, member_id: int, **body: Any) -> str:
    response = client.post(f"/v1/members/{member_id}/tokens", json=body, headers=world.auth("pos"))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_member_token_reads_that_member_only(client: TestClient, world: World) -> None:
    ana, bea = enrol(client, world), enrol(client, world, first_name="Bea")
    earn(client, world, ana, START, "30.00")
    earn(client, world, bea, START, "70.00")
    issued = client.post(f"/v1/members/{ana['id']}/tokens", json={}, headers=world.auth("pos"))
    assert issued.status_code == 201
    assert issued.json()["expires_at"].startswith((START + timedelta(minutes=15)).isoformat()[:16])
    headers = _bearer(issued.json()["token"])
    assert client.get("/v1/me", headers=headers).json()["id"] == ana["id"]
    assert client.get("/v1/me/balance", headers=headers).json()["available"] == 30
    lines = client.get("/v1/me/history", headers=headers).json()["items"]
    assert [line["points"] for line in lines] == [30]
    assert client.get("/v1/me/tier", headers=headers).status_code == 200
    # The member token is not an API key: Bea's data stays out of reach on every key route.
    for path in (f"/v1/members/{bea['id']}", f"/v1/members/{bea['id']}/balance", "/v1/members"):
        assert_problem(client.get(path, headers=headers), 401, "unauthenticated")


def test_a_member_changes_their_profile_but_never_points_tier_or_status(
    client: TestClient, world: World
) -> None:
    member = enrol(client, world)
    headers = _bearer(_token(client, world, member["id"]))
    changed = client.patch("/v1/me", json={"first_name": "Anita"}, headers=headers)
    assert changed.status_code == 200 and changed.json()["first_name"] == "Anita"
    for field, value in (("points", 1000), ("tier_code", "GOLD"), ("status", "active")):
        refused = client.patch("/v1/me", json={field: value}, headers=headers)
        assert_problem(refused, 422, "validation_error", field)
    assert client.get("/v1/me/balance", headers=headers).json()["available"] == 0


def test_api_keys_are_refused_on_member_routes(client: TestClient, world: World) -> None:
    for scope in ("admin", "pos", "read"):
        assert_problem(client.get("/v1/me", headers=world.auth(scope)), 401, "unauthenticated")
    assert_problem(client.get("/v1/me"), 401, "unauthenticated")


def test_only_pos_issues_tokens_and_only_for_its_own_members(
    client: TestClient, world: World, other: World
) -> None:
    member = enrol(client, world)
    path = f"/v1/members/{member['id']}/tokens"
    assert_problem(client.post(path, json={}, headers=world.auth("read")), 403, "forbidden")
    # Another program's key gets the same 404 as for a member that does not exist.
    assert_problem(client.post(path, json={}, headers=other.auth("pos")), 404, "not_found")
    missing = client.post("/v1/members/999999999/tokens", json={}, headers=world.auth("pos"))
    assert_problem(missing, 404, "not_found")
    too_long = client.post(path, json={"ttl_minutes": 24 * 60 + 1}, headers=world.auth("pos"))
    assert_problem(too_long, 422, "validation_error", "ttl_minutes")


def test_forged_expired_and_closed_tokens_are_refused(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    member = enrol(client, world)
    token = _token(client, world, member["id"], ttl_minutes=5)
    body, signature = token.split(".")
    # Another member's id in the claims breaks the signature.
    forged_claims = member_tokens.sign(
        program_id=world.program_id,
        member_id=member["id"] + 1,
        now=START,
        ttl=timedelta(minutes=5),
        secret=SECRET_KEY,
    ).split(".")[0]
    for forged in (f"{forged_claims}.{signature}", f"{body}.{signature[:-2]}xx", "fzm_x.y"):
        assert_problem(client.get("/v1/me", headers=_bearer(forged)), 401, "unauthenticated")
    signed_elsewhere = member_tokens.sign(
        program_id=world.program_id,
        member_id=member["id"],
        now=START,
        ttl=timedelta(minutes=5),
        secret="another-server-secret-0123456789abcdef",
    )
    assert_problem(client.get("/v1/me", headers=_bearer(signed_elsewhere)), 401, "unauthenticated")
    clock.set(START + timedelta(minutes=5))
    expired = client.get("/v1/me", headers=_bearer(token))
    assert "expired" in assert_problem(expired, 401, "unauthenticated")["detail"]
    clock.set(START)
    fresh = _token(client, world, member["id"])
    with unit_of_work(world.factory) as db:
        program = programs.get(db, program_id=world.program_id)
        found = members.get(db, program_id=program.id, member_id=member["id"])
        members.change_status(
            db, program=program, member=found, status="closed", reason="asked", now=START
        )
    assert_problem(client.get("/v1/me", headers=_bearer(fresh)), 401, "unauthenticated")


def test_without_a_secret_member_tokens_are_off(database_url: str, world: World) -> None:
    app = create_app(
        database_url, clock=FixedClock(START), settings=ApiSettings(auth_failure_limit=0)
    )
    with TestClient(app) as client:
        member = enrol(client, world)
        refused = client.post(
            f"/v1/members/{member['id']}/tokens", json={}, headers=world.auth("pos")
        )
        assert_problem(refused, 503, "not_configured", "FIDELIZA_SECRET_KEY")


@pytest.mark.parametrize("secret", ["", "short"])
def test_a_short_secret_is_refused(secret: str) -> None:
    with pytest.raises(Exception, match="at least 32"):
        member_tokens.sign(
            program_id=1, member_id=1, now=START, ttl=timedelta(minutes=1), secret=secret or "x"
        )
