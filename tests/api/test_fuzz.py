"""Mangled bodies on every writing route: always a 2xx or a 4xx problem, never a 5xx."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import START
from tests.api.world import World, earn, enrol

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**31,
    2**63,
    -(2**63),
    1.5,
    1e308,
    "",
    " ",
    "x" * 300,
    "-1",
    "1e5",
    "2025-03-10",
    "2025-03-10T12:00:00",
    "\u202e",
    "😀",
    [],
    {},
    [1],
    {"a": 1},
    "7000000000000005",
    "a@b.es",
    "store_visit",
    "redemption:x",
]
EXTRA_FIELDS = ["points", "tier_code", "status", "program_id", "id", "balance"]


def mangle(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """Drops, adds and replaces fields at random, down to three levels."""
    if isinstance(value, dict):
        result = dict(value)
        if result and rng.random() < 0.3:
            del result[rng.choice(sorted(result))]
        if rng.random() < 0.2:
            result[rng.choice(EXTRA_FIELDS)] = rng.choice(ODD_VALUES)
        for name in list(result):
            if rng.random() < 0.3:
                result[name] = rng.choice(ODD_VALUES)
            elif depth < 3:
                result[name] = mangle(result[name], rng, depth + 1)
        return result
    if isinstance(value, list):
        extra = [rng.choice(ODD_VALUES)] if rng.random() < 0.2 else []
        return [mangle(item, rng, depth + 1) for item in value] + extra
    return rng.choice(ODD_VALUES) if rng.random() < 0.3 else value


def test_mangled_bodies_never_break_the_server(client: TestClient, world: World) -> None:
    member = enrol(client, world, email="fuzz@example.com")
    purchase = earn(client, world, member, START, amount="100.00")
    external = client.get(
        f"/v1/purchases/{purchase['purchase_id']}", headers=world.auth("read")
    ).json()["external_id"]
    at = START.isoformat()
    item = {"sku": "COF", "category": "coffee", "quantity": 1, "unit_price": "5.00"}
    seeds: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/v1/members",
            {
                "external_id": "F1",
                "email": "f@x.es",
                "phone": "600000000",
                "birthday": "1990-01-01",
                "consent": {"email": True},
                "attributes": {"a": 1},
            },
        ),
        ("POST", "/v1/members/lookup", {"card": member["card"]["number"]}),
        ("PATCH", f"/v1/members/{member['id']}", {"first_name": "B", "locale": "en"}),
        (
            "POST",
            "/v1/purchases",
            {
                "external_id": "FT",
                "member_id": member["external_id"],
                "occurred_at": at,
                "amount": "5.00",
                "items": [item],
            },
        ),
        (
            "POST",
            "/v1/returns",
            {
                "external_id": "FR",
                "purchase_external_id": external,
                "occurred_at": at,
                "items": [{"sku": "COF", "quantity": 1}],
            },
        ),
        (
            "POST",
            "/v1/events",
            {
                "external_id": "FE",
                "member_id": member["external_id"],
                "event_type": "store_visit",
                "occurred_at": at,
            },
        ),
        ("POST", "/v1/dry-run", {"occurred_at": at, "amount": "5.00", "items": [item]}),
        (
            "POST",
            f"/v1/members/{member['id']}/holds",
            {"points": 1, "reference": "FH", "reason": "r", "ttl_minutes": 5},
        ),
        (
            "POST",
            f"/v1/members/{member['id']}/redemptions",
            {"points": 1, "reason": "r", "reference": "FX"},
        ),
        ("POST", f"/v1/members/{member['id']}/adjustments", {"points": 1, "reason": "r"}),
        ("POST", "/v1/api-keys", {"name": "k", "scopes": ["read"]}),
    ]
    rng = random.Random(20250310)
    seen: Counter[int] = Counter()
    broken = []
    for attempt in range(250):
        method, path, seed = rng.choice(seeds)
        body = mangle(seed, rng)
        headers = {**world.auth(), "Content-Type": "application/json"}
        if rng.random() < 0.3:
            headers["Idempotency-Key"] = rng.choice(["k1", "k2", f"k{attempt}"])
        response = client.request(method, path, content=json.dumps(body), headers=headers)
        seen[response.status_code] += 1
        is_problem = response.headers["content-type"].startswith("application/problem+json")
        if response.status_code >= 500 or (response.status_code >= 400) != is_problem:
            broken.append(f"{response.status_code} {method} {path} {body}: {response.text}")
    assert not broken, "\n".join(broken[:10])
    assert seen[422] and (seen[200] + seen[201])  # both the good and the bad were exercised
