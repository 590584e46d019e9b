"""The cache of verified API keys: it saves the database look-up, never a revocation here."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from fideliza.api.context import KEY_CACHE_SECONDS
from fideliza.apikeys import service as apikeys
from fideliza.apikeys.models import ApiKey
from fideliza.core.clock import FixedClock
from fideliza.db import unit_of_work
from tests.api.conftest import START
from tests.api.world import World, assert_problem


def _new_key(client: TestClient, world: World) -> tuple[int, dict[str, str]]:
    created = client.post(
        "/v1/api-keys", json={"name": "Till", "scopes": ["pos"]}, headers=world.auth()
    ).json()
    return created["id"], world.auth(key=created["key"])


def test_a_key_revoked_outside_the_api_stops_at_once(client: TestClient, world: World) -> None:
    key_id, headers = _new_key(client, world)
    assert client.get("/v1/program", headers=headers).status_code == 200  # now cached
    with unit_of_work(world.factory) as db:  # as the CLI revokes: its own session
        apikeys.revoke(db, program_id=world.program_id, key_id=key_id, now=START)
    problem = assert_problem(client.get("/v1/program", headers=headers), 401, "unauthenticated")
    assert "revoked" in problem["detail"]


def test_a_change_this_process_did_not_make_shows_within_the_cache_time(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    key_id, headers = _new_key(client, world)
    assert client.get("/v1/program", headers=headers).status_code == 200
    # A revocation through another worker: this process is not told, only the row changes.
    with unit_of_work(world.factory) as db:
        db.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=START))
    clock.advance(timedelta(seconds=KEY_CACHE_SECONDS / 2))
    assert client.get("/v1/program", headers=headers).status_code == 200  # trusted, cached
    clock.advance(timedelta(seconds=KEY_CACHE_SECONDS))
    problem = assert_problem(client.get("/v1/program", headers=headers), 401, "unauthenticated")
    assert "revoked" in problem["detail"]


def test_a_refused_key_is_never_cached(client: TestClient, world: World) -> None:
    key_id, headers = _new_key(client, world)
    with unit_of_work(world.factory) as db:
        db.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=START))
    assert_problem(client.get("/v1/program", headers=headers), 401, "unauthenticated")
    with unit_of_work(world.factory) as db:  # un-revoked (only a test can do this)
        db.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=None))
    assert client.get("/v1/program", headers=headers).status_code == 200
