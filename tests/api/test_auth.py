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
from fideliza.core.codes import new_code
from fideliza.core.errors import ValidationError
from fideliza.db import unit_of_work
from fideliza.programs import service as programs
from fideliza.programs.models import AuditLog
from tests.api.conftest import START
from tests.api.world import World, assert_problem, basket, earn, enrol, unique
from tests.integration.surveys.builders import nps_survey

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
    card: dict[str, Any]
    spend_id: int
    case_id: int
    reward_id: int
    redemption_id: int
    campaign_id: int
    coupon_code: str
    delivery_id: int
    rule_id: int


WEBHOOK = {"url": "https://93.184.216.34/hooks", "event_types": ["*"]}  # a public literal IP
COUPONS = {"name": "Matrix", "discount": {"type": "fixed", "amount": "1.00"}}
TIERS = {
    "levels": [{"code": "GOLD", "name": "Gold", "rank": 1, "threshold": "0"}],
    "policy": {"basis": "points", "period": "calendar_year"},
}


def rule_definition() -> dict[str, Any]:
    return {"name": unique("rule"), "actions": [{"type": "fixed_bonus", "points": 1}]}


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
    delivery = client.post(f"/v1/webhooks/{webhook['id']}/test", headers=world.auth()).json()
    [rule] = client.get("/v1/rules", headers=world.auth()).json()
    card = client.post("/v1/gift-cards", json={"amount": "20.00"}, headers=world.auth()).json()
    spent = client.post(
        "/v1/gift-cards/spends",
        json={"code": card["code"], "amount": "5.00", "reference": unique("S")},
        headers=world.auth("pos"),
    ).json()
    case = client.post(
        "/v1/cases",
        json={
            "member_id": member["id"],
            "category": "service",
            "channel": "phone",
            "severity": "low",
            "subject": "matrix",
        },
        headers=world.auth("pos"),
    ).json()
    reward = client.post(
        "/v1/rewards",
        json={"code": unique("rw"), "name": "Mug", "kind": "gift", "points_cost": 1},
        headers=world.auth(),
    ).json()
    redemption = client.post(
        f"/v1/members/{member['id']}/reward-redemptions",
        json={"reward_id": reward["id"], "reference": unique("RR")},
        headers=world.auth("pos"),
    ).json()
    campaign = client.post(
        "/v1/coupon-campaigns", json={**COUPONS, "code": unique("m").lower()}, headers=world.auth()
    ).json()
    (coupon_code,) = client.post(
        f"/v1/coupon-campaigns/{campaign['id']}/codes", json={"count": 1}, headers=world.auth()
    ).json()["codes"]
    return Objects(
        member=member,
        purchase=purchase,
        hold_id=hold["id"],
        key_id=key["id"],
        webhook_id=webhook["id"],
        card=card,
        spend_id=spent["transaction_id"],
        case_id=case["id"],
        reward_id=reward["id"],
        redemption_id=redemption["id"],
        campaign_id=campaign["id"],
        coupon_code=coupon_code,
        delivery_id=delivery["id"],
        rule_id=rule["id"],
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
    ("GET", "/v1/surveys", "read", None),
    ("POST", "/v1/surveys", "admin", lambda o: nps_survey(unique("s"))),
    ("GET", "/v1/surveys/scores", "read", None),
    ("GET", "/v1/members/{member}/survey-invitations", "read", None),
    # A survey link's routes: no API key is needed or looked at (the signed token is the key).
    ("GET", "/v1/survey-answers/{token}", "link", None),
    ("POST", "/v1/survey-answers/{token}", "link", lambda o: {"answers": {"x": 1}}),
    ("GET", "/v1/members/{member}/referral-code", "read", None),
    ("GET", "/v1/members/{member}/referrals", "read", None),
    (
        "POST",
        "/v1/referrals/enrolments",
        "pos",
        lambda o: {"external_id": unique("C"), "referral_code": "ABCD-EFGH"},
    ),
    ("GET", "/v1/referrals/config", "admin", None),
    ("PUT", "/v1/referrals/config", "admin", lambda o: {"referrer_points": 10}),
    ("GET", "/v1/lifecycle/config", "admin", None),
    ("PUT", "/v1/lifecycle/config", "admin", lambda o: {"welcome_points": 10}),
    ("POST", "/v1/gift-cards", "admin", lambda o: {"amount": "5.00"}),
    ("POST", "/v1/gift-cards/lookup", "pos", lambda o: {"code": o.card["code"]}),
    (
        "POST",
        "/v1/gift-cards/top-ups",
        "pos",
        lambda o: {"code": o.card["code"], "amount": "1.00", "reference": unique("U")},
    ),
    (
        "POST",
        "/v1/gift-cards/spends",
        "pos",
        lambda o: {"code": o.card["code"], "amount": "1.00", "reference": unique("S")},
    ),
    ("POST", "/v1/gift-cards/{card}/status", "admin", lambda o: {"status": "frozen"}),
    (
        "POST",
        "/v1/spends/{spend}/refunds",
        "pos",
        lambda o: {"amount": "0.50", "reference": unique("R")},
    ),
    (
        "POST",
        "/v1/members/{member}/wallet/spends",
        "pos",
        lambda o: {"amount": "1.00", "reference": unique("W")},
    ),
    ("GET", "/v1/members/{member}/wallets", "read", None),
    ("GET", "/v1/members/{member}/wallets/history", "read", None),
    (
        "POST",
        "/v1/cases",
        "pos",
        lambda o: {
            "member_id": o.member["id"],
            "category": "service",
            "channel": "phone",
            "severity": "low",
            "subject": "m",
        },
    ),
    ("GET", "/v1/cases", "read", None),
    ("GET", "/v1/cases/sla", "read", None),
    (
        "PUT",
        "/v1/cases/sla",
        "admin",
        lambda o: {"severity": "low", "first_response_minutes": 60, "resolution_minutes": 120},
    ),
    ("GET", "/v1/cases/{case}", "read", None),
    ("GET", "/v1/cases/{case}/history", "read", None),
    ("POST", "/v1/cases/{case}/assign", "pos", lambda o: {"assignee": "ana"}),
    ("POST", "/v1/cases/{case}/transitions", "pos", lambda o: {"state": "in_progress"}),
    ("POST", "/v1/cases/{case}/resolve", "pos", lambda o: {"resolution": "done"}),
    ("POST", "/v1/cases/{case}/reopen", "pos", lambda o: {"reason": "again"}),
    ("POST", "/v1/cases/{case}/notes", "pos", lambda o: {"note": "n"}),
    ("GET", "/v1/members/{member}/cases", "read", None),
    ("GET", "/v1/members/{member}/timeline", "read", None),
    ("POST", "/v1/me/cases", "member", lambda o: {"category": "product", "subject": "x"}),
    ("GET", "/v1/me/cases", "member", None),
    ("GET", "/v1/rewards", "read", None),
    (
        "POST",
        "/v1/rewards",
        "admin",
        lambda o: {"code": unique("rw"), "name": "Mug", "kind": "gift", "points_cost": 1},
    ),
    ("GET", "/v1/rewards/{reward}", "read", None),
    ("PATCH", "/v1/rewards/{reward}", "admin", lambda o: {"name": "Mug"}),
    ("GET", "/v1/members/{member}/rewards", "read", None),
    (
        "POST",
        "/v1/members/{member}/reward-redemptions",
        "pos",
        lambda o: {"reward_id": o.reward_id, "reference": unique("RR")},
    ),
    ("GET", "/v1/reward-redemptions/{redemption}", "read", None),
    ("POST", "/v1/reward-redemptions/{redemption}/capture", "pos", None),
    ("POST", "/v1/reward-redemptions/{redemption}/release", "pos", None),
    ("GET", "/v1/coupon-campaigns", "read", None),
    ("POST", "/v1/coupon-campaigns", "admin", lambda o: {**COUPONS, "code": unique("c").lower()}),
    ("GET", "/v1/coupon-campaigns/{campaign}", "read", None),
    ("PATCH", "/v1/coupon-campaigns/{campaign}", "admin", lambda o: {"active": True}),
    ("POST", "/v1/coupon-campaigns/{campaign}/codes", "admin", lambda o: {"count": 1}),
    ("POST", "/v1/coupon-campaigns/{campaign}/issue", "admin", lambda o: {"member_id": None}),
    ("POST", "/v1/coupons/validate", "read", lambda o: {"code": o.coupon_code, "amount": "5"}),
    (
        "POST",
        "/v1/coupons/redeem",
        "pos",
        lambda o: {"code": o.coupon_code, "amount": "5", "purchase_id": unique("T")},
    ),
    ("POST", "/v1/coupons/lookup", "admin", lambda o: {"code": o.coupon_code}),
    ("POST", "/v1/coupons/void", "admin", lambda o: {"code": o.coupon_code}),
    ("GET", "/v1/messaging/templates", "admin", None),
    (
        "PUT",
        "/v1/messaging/templates/{kind}/{channel}/{locale}",
        "admin",
        lambda o: {"subject": "Hola", "body_text": "Hola {{ member.first_name }}"},
    ),
    ("GET", "/v1/messaging/config", "admin", None),
    ("PATCH", "/v1/messaging/config", "admin", lambda o: {}),
    ("GET", "/v1/members/{member}/messages", "read", None),
    ("GET", "/v1/unsubscribe/{token}", "link", None),
    ("POST", "/v1/unsubscribe/{token}", "link", None),
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
    (
        "POST",
        "/v1/members/{member}/status",
        "admin",
        lambda o: {"status": "active", "reason": "matrix"},  # active → active: refused, 409
    ),
    ("POST", "/v1/jobs/run", "admin", None),
    ("GET", "/v1/api-keys", "admin", None),
    ("POST", "/v1/api-keys", "admin", lambda o: {"name": "k", "scopes": ["read"]}),
    ("DELETE", "/v1/api-keys/{key}", "admin", None),
    ("GET", "/v1/webhooks", "admin", None),
    ("POST", "/v1/webhooks", "admin", lambda o: WEBHOOK),
    ("GET", "/v1/webhooks/{webhook}", "admin", None),
    ("DELETE", "/v1/webhooks/{webhook}", "admin", None),
    ("GET", "/v1/webhooks/{webhook}/deliveries", "admin", None),
    ("GET", "/v1/webhooks/{webhook}/deliveries/{delivery}", "admin", None),
    ("POST", "/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver", "admin", None),
    ("POST", "/v1/webhooks/{webhook}/test", "admin", None),
    ("GET", "/v1/program/settings", "admin", None),
    ("PATCH", "/v1/program/settings", "admin", lambda o: {"hold_ttl_minutes": 20}),
    ("GET", "/v1/rules", "admin", None),
    ("POST", "/v1/rules", "admin", lambda o: {"definition": rule_definition()}),
    ("GET", "/v1/rules/{rule}", "admin", None),
    ("PATCH", "/v1/rules/{rule}", "admin", lambda o: {"active": True}),
    ("POST", "/v1/rules/{rule}/versions", "admin", lambda o: {"definition": rule_definition()}),
    ("GET", "/v1/tiers/config", "admin", None),
    ("PUT", "/v1/tiers/config", "admin", lambda o: TIERS),
]


def _path(template: str, objects: Objects) -> str:
    return template.format(
        member=objects.member["id"],
        purchase=objects.purchase["purchase_id"],
        hold=objects.hold_id,
        key=objects.key_id,
        webhook=objects.webhook_id,
        token="fzs1.1.1.forged",
        card=objects.card["id"],
        spend=objects.spend_id,
        case=objects.case_id,
        reward=objects.reward_id,
        redemption=objects.redemption_id,
        campaign=objects.campaign_id,
        kind="birthday",
        channel="email",
        locale="es",
        delivery=objects.delivery_id,
        rule=objects.rule_id,
    )


PLACEHOLDERS = (
    "member|purchase|hold|key|webhook|token|card|spend|case|reward|redemption|campaign"
    "|kind|channel|locale|delivery|rule"
)
PLACEHOLDER = rf"\{{({PLACEHOLDERS})\}}"


def test_the_matrix_covers_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    served = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/v1")
        for method in operations
    }
    listed = {(method, re.sub(PLACEHOLDER, _param, path)) for method, path, _, _ in ROUTES}
    assert served == listed


def _param(match: re.Match[str]) -> str:
    return {
        "member": "{member_id}",
        "purchase": "{purchase_id}",
        "hold": "{hold_id}",
        "key": "{key_id}",
        "webhook": "{webhook_id}",
        "token": "{token}",
        "card": "{card_id}",
        "spend": "{spend_id}",
        "case": "{case_id}",
        "reward": "{reward_id}",
        "redemption": "{redemption_id}",
        "campaign": "{campaign_id}",
        "kind": "{kind}",
        "channel": "{channel}",
        "locale": "{locale}",
        "delivery": "{delivery_id}",
        "rule": "{rule_id}",
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
            if needed == "link":
                if response.status_code != 404 or response.json()["code"] != "invalid_link":
                    failures.append(f"{scope} {method} {template}: {response.status_code}, not 404")
                continue
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
        card={"id": 2**62, "code": "2222-2222-2222-2222"},
        spend_id=2**62,
        case_id=2**62,
        reward_id=2**62,
        redemption_id=2**62,
        campaign_id=2**62,
        coupon_code=new_code(),
        delivery_id=2**62,
        rule_id=2**62,
    )
    failures, compared = [], 0
    for method, template, needed, body in ROUTES:
        if needed == "link" or "{kind}" in template:  # a template is named, not an object
            continue
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
    assert compared == 57
    # And nothing of theirs moved.
    balance = client.get(
        f"/v1/members/{theirs.member['id']}/balance", headers=other.auth("read")
    ).json()
    # 500 earned; 1 held by a points hold and 1 by a reward redemption.
    assert (balance["available"], balance["held"]) == (498, 2)
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
        if needed == "link":
            continue
        if needed == "member":
            if not 200 <= response.status_code < 300:
                failures.append(f"{method} {template}: {response.status_code}, not 2xx")
        elif response.status_code != 401:
            failures.append(f"{method} {template}: {response.status_code}, not 401")
    assert not failures, "\n".join(failures)
