"""Cases over HTTP: open, work, resolve with a gesture, reopen, lists, SLA and the timeline."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from fideliza.core.clock import FixedClock
from tests.api.conftest import START
from tests.api.test_fuzz import mangle
from tests.api.world import World, assert_problem, earn, enrol, unique


def _open(client: TestClient, world: World, member: dict[str, Any], **fields: Any) -> dict:
    body = {
        "member_id": member["id"],
        "category": "service",
        "channel": "phone",
        "severity": "high",
        "subject": "Rude answer at the counter",
        **fields,
    }
    response = client.post("/v1/cases", json=body, headers=world.auth("pos"))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_a_case_from_opening_to_closure(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    member = enrol(client, world)
    purchase = earn(client, world, member, START)
    case = _open(client, world, member, purchase_id=purchase["purchase_id"])
    assert case["state"] == "open" and case["allowed_states"] == ["in_progress", "resolved"]
    assert case["response_due_at"].startswith("2025-03-10T16:00:00")
    assert case["breached_response"] is False and case["resolution"] is None
    url = f"/v1/cases/{case['id']}"

    assigned = client.post(f"{url}/assign", json={"assignee": "lucia"}, headers=world.auth("pos"))
    assert assigned.status_code == 200 and assigned.json()["assignee"] == "lucia"
    clock.advance(timedelta(hours=5))  # past the 4-hour first-response deadline
    late = client.get(url, headers=world.auth("read")).json()
    assert late["breached_response"] is True
    started = client.post(
        f"{url}/transitions", json={"state": "in_progress"}, headers=world.auth("pos")
    )
    assert started.status_code == 200 and started.json()["state"] == "in_progress"
    refused = client.post(f"{url}/transitions", json={"state": "open"}, headers=world.auth("pos"))
    body = assert_problem(refused, 409, "invalid_state", "state")
    assert "allowed from in_progress: resolved" in body["detail"]

    resolution = {
        "resolution": "Apologized in person and called back",
        "apologized": True,
        "called_back_at": (START + timedelta(hours=4)).isoformat(),
        "gesture": {"goodwill_points": 30, "refund_reference": "RF-1"},
    }
    as_pos = client.post(f"{url}/resolve", json=resolution, headers=world.auth("pos"))
    assert_problem(as_pos, 403, "forbidden")
    resolved = client.post(f"{url}/resolve", json=resolution, headers=world.auth("admin"))
    assert resolved.status_code == 200, resolved.text
    done = resolved.json()
    assert done["state"] == "resolved" and done["breached_response"] is True
    assert done["resolution"]["apologized"] is True
    assert done["resolution"]["goodwill_points"] == 30
    assert done["resolution"]["refund_reference"] == "RF-1"
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=world.auth("read")).json()
    assert balance["available"] == 25 + 30

    closed = client.post(f"{url}/transitions", json={"state": "closed"}, headers=world.auth("pos"))
    assert closed.json()["state"] == "closed" and closed.json()["allowed_states"] == ["open"]
    reopened = client.post(f"{url}/reopen", json={"reason": "No"}, headers=world.auth("pos"))
    assert reopened.json()["state"] == "open" and reopened.json()["reopen_count"] == 1
    again = client.post(f"{url}/resolve", json=resolution, headers=world.auth("admin"))
    assert_problem(again, 409, "invalid_state", "goodwill_points")
    note = client.post(f"{url}/notes", json={"note": "Manager informed"}, headers=world.auth("pos"))
    assert note.status_code == 201 and note.json()["kind"] == "note"

    history = client.get(f"{url}/history", headers=world.auth("read")).json()
    assert [(e["kind"], e["to_state"]) for e in history] == [
        ("opened", "open"),
        ("assigned", None),
        ("moved", "in_progress"),
        ("resolved", "resolved"),
        ("moved", "closed"),
        ("reopened", "open"),
        ("note", None),
    ]
    assert all(e["actor"].startswith("apikey:") for e in history)


def test_bad_input_is_refused_naming_the_field(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    base = {
        "member_id": member["id"],
        "category": "service",
        "channel": "phone",
        "severity": "high",
        "subject": "x",
    }
    for change, field in [
        ({"severity": "urgent"}, "severity"),
        ({"category": "weather"}, "category"),
        ({"subject": ""}, "subject"),
        ({"colour": "red"}, "colour"),
    ]:
        response = client.post("/v1/cases", json={**base, **change}, headers=world.auth("pos"))
        problem = assert_problem(response, 422, "validation_error")
        assert field in (problem["field"] or ""), problem
    missing = client.post("/v1/cases", json={**base, "member_id": 2**40}, headers=world.auth("pos"))
    assert_problem(missing, 404, "not_found", "member_id")
    assert_problem(
        client.get(f"/v1/cases/{2**40}", headers=world.auth("read")), 404, "not_found", "case_id"
    )
    sla = client.put(
        "/v1/cases/sla",
        json={"severity": "high", "first_response_minutes": 60, "resolution_minutes": 30},
        headers=world.auth("admin"),
    )
    assert_problem(sla, 422, "validation_error", "resolution_minutes")


def test_lists_filter_and_page_and_programs_stay_apart(
    client: TestClient, world: World, other: World, clock: FixedClock
) -> None:
    member = enrol(client, world)
    answer = client.put(
        "/v1/cases/sla",
        json={"severity": "low", "first_response_minutes": 10, "resolution_minutes": 600},
        headers=world.auth("admin"),
    )
    assert answer.status_code == 200, answer.text
    slas = {s["severity"]: s for s in client.get("/v1/cases/sla", headers=world.auth()).json()}
    assert slas["low"]["default"] is False and slas["high"]["default"] is True
    low = _open(client, world, member, severity="low")
    high = _open(client, world, member, severity="high", assignee="ana")
    third = _open(client, world, member, severity="critical")
    clock.advance(timedelta(minutes=30))

    def ids(query: str, scope: str = "read", on: World = world) -> list[int]:
        response = client.get(f"/v1/cases?{query}", headers=on.auth(scope))
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    assert ids("") == [third["id"], high["id"], low["id"]]
    assert ids("breached=true") == [low["id"]]
    assert ids("breached=false") == [third["id"], high["id"]]
    assert ids("severity=high") == [high["id"]]
    assert ids("assignee=ana") == [high["id"]]
    assert ids("state=resolved") == []
    assert ids("", on=other) == []
    first = client.get("/v1/cases?limit=2", headers=world.auth("read")).json()
    rest = client.get(
        f"/v1/cases?limit=2&cursor={first['next_cursor']}", headers=world.auth("read")
    ).json()
    assert [c["id"] for c in first["items"] + rest["items"]] == ids("")
    assert rest["next_cursor"] is None
    bad = client.get("/v1/cases?state=pending", headers=world.auth("read"))
    assert_problem(bad, 422, "validation_error")
    mine = client.get(f"/v1/members/{member['id']}/cases", headers=world.auth("read")).json()
    assert len(mine["items"]) == 3
    elsewhere = client.get(f"/v1/cases/{low['id']}", headers=other.auth("read"))
    assert_problem(elsewhere, 404, "not_found", "case_id")


def test_the_member_timeline(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    earn(client, world, member, START - timedelta(days=2))
    earn(client, world, member, START - timedelta(days=1), amount="10.00")
    case = _open(client, world, member)
    url = f"/v1/members/{member['id']}/timeline"
    page = client.get(url, headers=world.auth("read"))
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    assert items[0]["kind"] == "case" and items[0]["id"] == case["id"]
    assert [i["kind"] for i in items].count("purchase") == 2
    assert [i["points"] for i in items if i["kind"] == "points"] == [10, 25]
    one = client.get(f"{url}?limit=1&kinds=purchase", headers=world.auth("read")).json()
    assert [i["amount"] for i in one["items"]] == ["10.00"]
    two = client.get(
        f"{url}?limit=1&kinds=purchase&before={one['next_cursor']}", headers=world.auth("read")
    ).json()
    assert [i["kind"] for i in two["items"]] == ["purchase"] and two["next_cursor"] is None
    assert_problem(
        client.get(f"{url}?kinds=tweets", headers=world.auth("read")),
        422,
        "validation_error",
        "kinds[0]",
    )
    assert_problem(
        client.get(f"{url}?before={unique('x')}", headers=world.auth("read")),
        422,
        "validation_error",
        "before",
    )
    assert_problem(
        client.get(f"/v1/members/{2**40}/timeline", headers=world.auth("read")),
        404,
        "not_found",
        "member_id",
    )


def test_a_member_complains_through_the_app(client: TestClient, world: World) -> None:
    ana, bea = enrol(client, world), enrol(client, world, first_name="Bea")
    purchase = earn(client, world, ana, START)
    token = client.post(f"/v1/members/{ana['id']}/tokens", json={}, headers=world.auth("pos"))
    mine = {"Authorization": f"Bearer {token.json()['token']}"}
    body = {"category": "product", "subject": "Stale cake", "purchase_id": purchase["purchase_id"]}
    opened = client.post("/v1/me/cases", json=body, headers=mine)
    assert opened.status_code == 201, opened.text
    case = opened.json()
    assert (case["member_id"], case["opened_by"], case["severity"]) == (
        ana["id"],
        "member",
        "medium",
    )
    assert case["channel"] == "app"
    _open(client, world, bea)  # someone else's case stays out of Ana's list
    listed = client.get("/v1/me/cases", headers=mine).json()["items"]
    assert [c["id"] for c in listed] == [case["id"]]
    wrong = client.post("/v1/me/cases", json={**body, "severity": "critical"}, headers=mine)
    assert_problem(wrong, 422, "validation_error")
    assert client.post("/v1/me/cases", json=body, headers=world.auth("pos")).status_code == 401


# Every case route: (method, path, the scope it needs, its body). `{member}` and `{case}` are
# ids of objects of the program aimed at. (The lead adds these to test_auth's ROUTES.)
ROUTES: list[tuple[str, str, str, Any]] = [
    ("POST", "/v1/cases", "pos", lambda m: {**_CASE, "member_id": m}),
    ("GET", "/v1/cases", "read", None),
    ("GET", "/v1/cases/sla", "read", None),
    ("PUT", "/v1/cases/sla", "admin", lambda m: _SLA),
    ("GET", "/v1/cases/{case}", "read", None),
    ("GET", "/v1/cases/{case}/history", "read", None),
    ("POST", "/v1/cases/{case}/assign", "pos", lambda m: {"assignee": "ana"}),
    ("POST", "/v1/cases/{case}/transitions", "pos", lambda m: {"state": "in_progress"}),
    ("POST", "/v1/cases/{case}/resolve", "pos", lambda m: {"resolution": "done"}),
    ("POST", "/v1/cases/{case}/reopen", "pos", lambda m: {"reason": "again"}),
    ("POST", "/v1/cases/{case}/notes", "pos", lambda m: {"note": "n"}),
    ("GET", "/v1/members/{member}/cases", "read", None),
    ("GET", "/v1/members/{member}/timeline", "read", None),
]
_CASE = {"category": "service", "channel": "phone", "severity": "low", "subject": "matrix"}
_SLA = {"severity": "low", "first_response_minutes": 60, "resolution_minutes": 120}
GRANTS = {"read": {"read"}, "pos": {"read", "pos"}, "admin": {"read", "pos", "admin"}}


def test_each_scope_on_each_case_route(client: TestClient, world: World) -> None:
    """A scope reaches the routes it grants; every other route answers 403."""
    failures = []
    for scope in ("read", "pos", "admin"):
        member = enrol(client, world)
        case = _open(client, world, member)
        for method, template, needed, body in ROUTES:
            path = template.format(member=member["id"], case=case["id"])
            response = client.request(
                method, path, json=body(member["id"]) if body else None, headers=world.auth(scope)
            )
            allowed = needed in GRANTS[scope]
            if (allowed and response.status_code in (401, 403, 404)) or response.status_code >= 500:
                failures.append(f"{scope} {method} {template}: {response.status_code}")
            if not allowed and response.status_code != 403:
                failures.append(f"{scope} {method} {template}: {response.status_code}, not 403")
    assert not failures, "\n".join(failures)
    served = {
        (method.upper(), path)
        for path, operations in client.get("/openapi.json").json()["paths"].items()
        if "/cases" in path or path.endswith("/timeline")
        for method in operations
    }
    listed = {
        (m, p.replace("{member}", "{member_id}").replace("{case}", "{case_id}"))
        for m, p, _, _ in ROUTES
    } | {("POST", "/v1/me/cases"), ("GET", "/v1/me/cases")}
    assert served == listed


def test_mangled_case_bodies_never_break_the_server(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    purchase = earn(client, world, member, START)
    case = _open(client, world, member)
    url = f"/v1/cases/{case['id']}"
    seeds: list[tuple[str, dict[str, Any]]] = [
        ("/v1/cases", {**_CASE, "member_id": member["id"], "purchase_id": purchase["purchase_id"]}),
        (f"{url}/assign", {"assignee": "ana", "note": "n"}),
        (f"{url}/transitions", {"state": "in_progress", "note": "n"}),
        (
            f"{url}/resolve",
            {
                "resolution": "r",
                "apologized": True,
                "called_back_at": START.isoformat(),
                "gesture": {"goodwill_points": 5, "refund_reference": "RF"},
            },
        ),
        (f"{url}/reopen", {"reason": "r"}),
        (f"{url}/notes", {"note": "n"}),
    ]
    rng = random.Random(20251125)
    broken = []
    for _ in range(150):
        path, seed = rng.choice(seeds)
        body = mangle(seed, rng)
        response = client.post(path, json=body, headers=world.auth())
        if response.status_code >= 500 or (
            response.status_code >= 400
            and not response.headers["content-type"].startswith("application/problem+json")
        ):
            broken.append(f"{path} {body!r}: {response.status_code}")
    sla = client.put("/v1/cases/sla", json=mangle(_SLA, rng), headers=world.auth())
    assert sla.status_code < 500
    assert not broken, "\n".join(broken[:5])
