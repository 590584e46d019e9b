"""API keys (hashed, shown once, revocable, last use) and the authorization matrix."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fideliza.apikeys import service as apikeys
from fideliza.apikeys.domain import Scope, granted, new_key, parse_scopes, prefix_of
from fideliza.apikeys.models import ApiKey
from fideliza.core.clock import FixedClock
from fideliza.core.errors import ValidationError
from fideliza.db import unit_of_work
from fideliza.programs import service as programs
from fideliza.programs.models import AuditLog
from tests.api.conftest import START
from tests.api.world import World, assert_problem, basket, earn, enrol, unique

# --- keys ---------------------------------------------------------------------------------------


def test_generated_keys_are_well_formed_and_distinct() -> None:
    keys = [new_key() for _ in range(50)]
    assert len({k.plaintext for k in keys}) == 50
    for key in keys:
        assert re.fullmatch(r"fzk_[a-z0-9]{10}_[A-Za-z0-9]{43}", key.plaintext)
        assert prefix_of(key.plaintext) == key.prefix
        assert key.digest == hashlib.sha256(key.plaintext.encode()).hexdigest()
    assert prefix_of("fzk_short") is None
    assert prefix_of(keys[0].plaintext.replace("_", "-")) is None


def test_scopes_parse_from_a_list_or_a_cli_string() -> None:
    assert parse_scopes(["read", "pos", "read"]) == [Scope.POS, Scope.READ]
    assert parse_scopes("pos, read") == [Scope.POS, Scope.READ]


def test_scopes_include_the_ones_below() -> None:
    assert granted(["admin"]) == {Scope.ADMIN, Scope.POS, Scope.READ}
    assert granted(["pos"]) == {Scope.POS, Scope.READ}
    assert granted(["read"]) == {Scope.READ}
    assert granted(["future-scope"]) == frozenset()


def test_create_stores_only_the_hash_and_shows_the_key_once(world: World) -> None:
    with unit_of_work(world.factory) as db:
        program = programs.get(db, program_id=world.program_id)
        row, plaintext = apikeys.create(
            db, program=program, name="Till 3", scopes=["pos", "read"], now=START, actor="cli"
        )
        stored = db.execute(select(ApiKey.__table__).where(ApiKey.id == row.id)).one()
        assert plaintext not in [str(value) for value in stored]
        assert stored.secret_hash == hashlib.sha256(plaintext.encode()).hexdigest()
        assert stored.scopes == ["pos", "read"]
        assert plaintext.startswith(f"fzk_{row.prefix}_")
        audit = db.scalars(
            select(AuditLog.action).where(
                AuditLog.program_id == program.id, AuditLog.subject == row.prefix
            )
        ).all()
        assert audit == ["fideliza.apikey.created"]


@pytest.mark.parametrize(
    ("name", "scopes", "field"),
    [("", ["read"], "name"), ("x", [], "scopes"), ("x", ["root"], "scopes[0]")],
)
def test_create_refuses_bad_input(world: World, name: str, scopes: list[str], field: str) -> None:
    with world.factory() as db:
        program = programs.get(db, program_id=world.program_id)
        with pytest.raises(ValidationError) as error:
            apikeys.create(db, program=program, name=name, scopes=scopes, now=START)
        assert error.value.field == field


def test_keys_through_the_api(client: TestClient, world: World) -> None:
    created = client.post(
        "/v1/api-keys", json={"name": "Shop", "scopes": ["pos"]}, headers=world.auth()
    )
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert body["scopes"] == ["pos"] and body["display"].startswith(f"fzk_{prefix_of(key)}_")
    listed = client.get("/v1/api-keys", headers=world.auth()).json()
    assert [k["name"] for k in listed] == ["admin", "pos", "read", "Shop"]
    assert all("key" not in k for k in listed) and key not in str(listed)
    assert client.get("/v1/program", headers=world.auth(key=key)).json()["code"] == world.code
    bad = client.post("/v1/api-keys", json={"name": "X", "scopes": ["root"]}, headers=world.auth())
    assert_problem(bad, 422, "validation_error", "scopes[0]")


def test_a_revoked_key_stops_at_once(client: TestClient, world: World) -> None:
    created = client.post(
        "/v1/api-keys", json={"name": "Old till", "scopes": ["pos"]}, headers=world.auth()
    ).json()
    headers = world.auth(key=created["key"])
    assert client.get("/v1/program", headers=headers).status_code == 200
    revoked = client.delete(f"/v1/api-keys/{created['id']}", headers=world.auth())
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    again = client.delete(f"/v1/api-keys/{created['id']}", headers=world.auth())
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    problem = assert_problem(client.get("/v1/program", headers=headers), 401, "unauthenticated")
    assert "revoked" in problem["detail"]


def test_an_expired_key_is_refused(client: TestClient, world: World, clock: FixedClock) -> None:
    created = client.post(
        "/v1/api-keys",
        json={"name": "Temp", "scopes": ["read"], "expires_at": "2025-03-11T12:00:00Z"},
        headers=world.auth(),
    ).json()
    assert client.get("/v1/program", headers=world.auth(key=created["key"])).status_code == 200
    clock.advance(timedelta(days=1))
    problem = assert_problem(
        client.get("/v1/program", headers=world.auth(key=created["key"])), 401, "unauthenticated"
    )
    assert "expired" in problem["detail"]


def test_last_use_is_recorded_at_most_once_a_minute(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    def last_used() -> Any:
        keys = client.get("/v1/api-keys", headers=world.auth()).json()
        return next(k["last_used_at"] for k in keys if k["name"] == "read")

    assert last_used() is None
    client.get("/v1/program", headers=world.auth("read"))
    first = last_used()
    assert first == "2025-03-10T12:00:00Z"
    clock.advance(timedelta(seconds=30))
    client.get("/v1/program", headers=world.auth("read"))
    assert last_used() == first
    clock.advance(timedelta(seconds=31))
    client.get("/v1/program", headers=world.auth("read"))
    assert last_used() == "2025-03-10T12:01:01Z"


# --- the authorization matrix -------------------------------------------------------------------


@dataclass
class Objects:
    """One of each object in a program, to aim the routes at."""

    member: dict[str, Any]
    purchase: dict[str, Any]
    hold_id: int
    key_id: int
    webhook_id: int


WEBHOOK = {"url": "https://93.184.216.34/hooks", "event_types": ["*"]}  # a public literal IP


def objects_of(client: TestClient, world: World) -> Objects:
    member = enrol(client, world, email=f"{unique('e')}@example.com")
    purchase = earn(client, world, member, START, amount="500.00")
    purchase["external_id"] = client.get(
        f"/v1/purchases/{purchase['purchase_id']}", headers=world.auth("read")
    ).json()["external_id"]
    hold = client.post(
        f"/v1/members/{member['id']}/holds",
        json={"points": 1, "reference": unique("H"), "reason": "matrix"},
        headers=world.auth("pos"),
    ).json()
    key = client.post(
        "/v1/api-keys", json={"name": "spare", "scopes": ["read"]}, headers=world.auth()
    ).json()
    webhook = client.post("/v1/webhooks", json=WEBHOOK, headers=world.auth()).json()
    return Objects(
        member=member,
        purchase=purchase,
        hold_id=hold["id"],
        key_id=key["id"],
        webhook_id=webhook["id"],
    )


Body = Callable[[Objects], dict[str, Any]] | None

# Every /v1 route: (method, path, the scope it needs, its body). `{member}`, `{purchase}`,
# `{hold}` and `{key}` are the ids of objects of the program aimed at.
ROUTES: list[tuple[str, str, str, Body]] = [
    ("GET", "/v1/program", "read", None),
    ("GET", "/v1/members", "read", None),
    ("POST", "/v1/members", "pos", lambda o: {"external_id": unique("C")}),
    ("POST", "/v1/members/lookup", "read", lambda o: {"email": o.member["email"]}),
    ("GET", "/v1/members/{member}", "read", None),
    ("PATCH", "/v1/members/{member}", "pos", lambda o: {"first_name": "Eva"}),
    ("GET", "/v1/members/{member}/balance", "read", None),
    ("GET", "/v1/members/{member}/history", "read", None),
    ("GET", "/v1/members/{member}/tier", "read", None),
    ("POST", "/v1/members/{member}/tokens", "pos", lambda o: {}),
    # A member token's routes: no API key opens them (the `member` scope is a member token).
    ("GET", "/v1/me", "member", None),
    ("PATCH", "/v1/me", "member", lambda o: {"first_name": "Eva"}),
    ("GET", "/v1/me/balance", "member", None),
    ("GET", "/v1/me/history", "member", None),
    ("GET", "/v1/me/tier", "member", None),
    ("POST", "/v1/purchases", "pos", lambda o: basket(o.member, START, "3.00", items=[])),
    ("GET", "/v1/purchases/{purchase}", "read", None),
    (
        "POST",
        "/v1/returns",
        "pos",
        lambda o: {
            "external_id": unique("R"),
            "purchase_external_id": o.purchase["external_id"],
            "occurred_at": START.isoformat(),
            "amount": "1.00",
        },
    ),
    (
        "POST",
        "/v1/events",
        "pos",
        lambda o: {
            "external_id": unique("E"),
            "member_id": o.member["external_id"],
            "event_type": "store_visit",
            "occurred_at": START.isoformat(),
        },
    ),
    ("POST", "/v1/dry-run", "read", lambda o: {"occurred_at": START.isoformat(), "amount": "5"}),
    (
        "POST",
        "/v1/members/{member}/holds",
        "pos",
        lambda o: {"points": 1, "reference": unique("H"), "reason": "matrix"},
    ),
    ("GET", "/v1/holds/{hold}", "read", None),
    ("POST", "/v1/holds/{hold}/capture", "pos", None),
    ("POST", "/v1/holds/{hold}/release", "pos", None),
    (
        "POST",
        "/v1/members/{member}/redemptions",
        "pos",
        lambda o: {"points": 1, "reason": "matrix", "reference": unique("X")},
    ),
    (
        "POST",
        "/v1/members/{member}/adjustments",
        "admin",
        lambda o: {"points": 5, "reason": "goodwill"},
    ),
    ("POST", "/v1/jobs/run", "admin", None),
    ("GET", "/v1/api-keys", "admin", None),
    ("POST", "/v1/api-keys", "admin", lambda o: {"name": "k", "scopes": ["read"]}),
    ("DELETE", "/v1/api-keys/{key}", "admin", None),
    ("GET", "/v1/webhooks", "admin", None),
    ("POST", "/v1/webhooks", "admin", lambda o: WEBHOOK),
    ("GET", "/v1/webhooks/{webhook}", "admin", None),
    ("DELETE", "/v1/webhooks/{webhook}", "admin", None),
]


def _path(template: str, objects: Objects) -> str:
    return template.format(
        member=objects.member["id"],
        purchase=objects.purchase["purchase_id"],
        hold=objects.hold_id,
        key=objects.key_id,
        webhook=objects.webhook_id,
    )


def test_the_matrix_covers_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    served = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/v1")
        for method in operations
    }
    listed = {
        (method, re.sub(r"\{(member|purchase|hold|key|webhook)\}", _param, path))
        for method, path, _, _ in ROUTES
    }
    assert served == listed


def _param(match: re.Match[str]) -> str:
    return {
        "member": "{member_id}",
        "purchase": "{purchase_id}",
        "hold": "{hold_id}",
        "key": "{key_id}",
        "webhook": "{webhook_id}",
    }[match.group(1)]


def test_each_scope_on_each_route(client: TestClient, world: World) -> None:
    """A scope reaches the routes it grants; every other route answers 403 before any lookup."""
    failures = []
    for scope in ("read", "pos", "admin"):
        objects = objects_of(client, world)
        for method, template, needed, body in ROUTES:
            response = client.request(
                method,
                _path(template, objects),
                json=body(objects) if body else None,
                headers=world.auth(scope),
            )
            if needed == "member":
                if response.status_code != 401:
                    failures.append(f"{scope} {method} {template}: {response.status_code}, not 401")
                continue
            allowed = Scope(needed) in granted([scope])
            if (allowed and response.status_code in (401, 403, 404)) or response.status_code >= 500:
                failures.append(f"{scope} {method} {template}: {response.status_code}")
            if not allowed and (
                response.status_code != 403 or response.json()["code"] != "forbidden"
            ):
                failures.append(f"{scope} {method} {template}: {response.status_code}, not 403")
    assert not failures, "\n".join(failures)


def _same_problem(mine: Any, absent: Any) -> bool:
    """The two 404s are the same, but for the number they name."""
    a, b = mine.json(), absent.json()

    def shape(detail: str) -> str:
        return re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'X'", detail))

    return (
        mine.status_code == absent.status_code == 404
        and a["code"] == b["code"] == "not_found"
        and a["field"] == b["field"]
        and shape(a["detail"]) == shape(b["detail"])
        and set(a) == set(b)
    )


def test_another_program_s_objects_are_as_absent_ones(
    client: TestClient, world: World, other: World
) -> None:
    """Program X's admin key aimed at program Y's objects: the very 404 of a missing object."""
    theirs = objects_of(client, other)
    missing = Objects(
        member={"id": 2**62, "external_id": unique("nobody"), "email": "no@body.es"},
        purchase={"purchase_id": 2**62, "external_id": unique("nothing")},
        hold_id=2**62,
        key_id=2**62,
        webhook_id=2**62,
    )
    failures, compared = [], 0
    for method, template, _, body in ROUTES:
        needs_object = "{" in template or template in (
            "/v1/members/lookup",
            "/v1/purchases",
            "/v1/returns",
            "/v1/events",
        )
        if not needs_object:
            continue
        compared += 1
        responses = [
            client.request(
                method,
                _path(template, target),
                json=body(target) if body else None,
                headers=world.auth(),
            )
            for target in (theirs, missing)
        ]
        if not _same_problem(*responses):
            failures.append(f"{method} {template}: {[r.text for r in responses]}")
    assert not failures, "\n".join(failures)
    assert compared == 20
    # And nothing of theirs moved.
    balance = client.get(
        f"/v1/members/{theirs.member['id']}/balance", headers=other.auth("read")
    ).json()
    assert (balance["available"], balance["held"]) == (499, 1)
    assert client.get(f"/v1/holds/{theirs.hold_id}", headers=other.auth()).json()["status"] == (
        "held"
    )
    keys = client.get("/v1/api-keys", headers=other.auth()).json()
    assert all(k["revoked_at"] is None for k in keys)


def test_a_member_token_opens_the_me_routes_only(client: TestClient, world: World) -> None:
    """A member token is refused (401) by every API-key route and accepted by the /me ones."""
    objects = objects_of(client, world)
    issued = client.post(
        f"/v1/members/{objects.member['id']}/tokens", json={}, headers=world.auth("pos")
    )
    headers = {"Authorization": f"Bearer {issued.json()['token']}"}
    failures = []
    for method, template, needed, body in ROUTES:
        response = client.request(
            method,
            _path(template, objects),
            json=body(objects) if body else None,
            headers=headers,
        )
        expected = 200 if needed == "member" else 401
        if response.status_code != expected:
            failures.append(f"{method} {template}: {response.status_code}, not {expected}")
    assert not failures, "\n".join(failures)
