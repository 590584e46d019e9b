"""Operations: Prometheus /metrics, JSON logs with request ids, rate limits on sensitive flows."""

from __future__ import annotations

import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from fideliza.api.app import create_app
from fideliza.api.logging import json_handler
from fideliza.api.settings import ApiSettings
from fideliza.core.clock import FixedClock
from fideliza.db import unit_of_work
from fideliza.ledger.models import LedgerTransaction
from fideliza.programs.models import OutboxEvent
from tests.api.conftest import START
from tests.api.world import World, assert_problem, basket, earn, enrol, unique

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(client: TestClient) -> Samples:
    """Parses /metrics (checking the exposition format line by line)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    typed: set[str] = set()
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not an exposition line: {line!r}"
        name, labels, value = match.groups()
        assert name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") in typed
        key = (name, frozenset(_LABEL.findall(labels or "")))
        assert key not in samples, f"duplicate series {line!r}"
        samples[key] = float(value)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


HISTOGRAM = "fideliza_http_request_duration_seconds"
MEMBER_ROUTE = {"method": "GET", "route": "/v1/members/{member_id}"}


def test_request_metrics_count_each_request_once_by_route_template(
    client: TestClient, world: World
) -> None:
    member = enrol(client, world)
    before = scrape(client)
    for _ in range(2):
        found = client.get(f"/v1/members/{member['id']}", headers=world.auth("read"))
        assert found.status_code == 200
    missing = client.get("/v1/members/999999999", headers=world.auth("read"))
    assert missing.status_code == 404
    assert client.get("/v1/no/such/route").status_code == 404
    after = scrape(client)

    ok = {**MEMBER_ROUTE, "status": "2xx"}
    assert delta(before, after, "fideliza_http_requests_total", **ok) == 2
    assert delta(before, after, f"{HISTOGRAM}_count", **ok) == 2
    assert delta(before, after, f"{HISTOGRAM}_bucket", **ok, le="+Inf") == 2
    assert delta(before, after, f"{HISTOGRAM}_bucket", **ok, le="10") == 2  # well under 10 s
    assert 0 < delta(before, after, f"{HISTOGRAM}_sum", **ok) < 20
    bounds = sorted(
        (float(dict(labels)["le"]), count)
        for (name, labels), count in after.items()
        if name == f"{HISTOGRAM}_bucket" and set(ok.items()) < labels
    )
    counts = [count for _, count in bounds]
    assert counts == sorted(counts) and bounds[-1][0] == float("inf")  # cumulative buckets
    assert bounds[-1][1] == value(after, f"{HISTOGRAM}_count", **ok)

    not_found = {**MEMBER_ROUTE, "status": "4xx"}
    assert delta(before, after, "fideliza_http_requests_total", **not_found) == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "4xx"}
    assert delta(before, after, "fideliza_http_requests_total", **unmatched) == 1
    # Ids never become labels.
    assert not any("999999999" in str(labels) for _, labels in after)


def _ledger_kinds(world: World) -> Counter[str]:
    with world.factory() as db:
        rows = db.execute(
            select(LedgerTransaction.kind, func.count()).group_by(LedgerTransaction.kind)
        ).all()
    return Counter({kind: count for kind, count in rows})


def test_postings_are_counted_by_kind_once_committed(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    rows_before = _ledger_kinds(world)
    before = scrape(client)

    body = basket(member, START, amount="100.00")
    keyed = {**world.auth("pos"), "Idempotency-Key": unique("K")}
    assert client.post("/v1/purchases", json=body, headers=keyed).status_code == 201
    replay = client.post("/v1/purchases", json=body, headers=keyed)  # replayed: no new posting
    assert replay.headers.get("Idempotent-Replayed") == "true"
    again = client.post("/v1/purchases", json=body, headers=world.auth("pos"))
    assert again.status_code == 200  # the same external id: recorded before, nothing posted
    redemptions = f"/v1/members/{member['id']}/redemptions"
    redemption = {"points": 20, "reason": "cinema", "reference": unique("ORDER")}
    assert client.post(redemptions, json=redemption, headers=world.auth("pos")).status_code == 201
    by_key = {**world.auth("pos"), "Idempotency-Key": unique("K")}  # not grouped: one by one
    keyed_redemption = {"points": 5, "reason": "cinema"}
    assert client.post(redemptions, json=keyed_redemption, headers=by_key).status_code == 201
    refused = client.post(
        redemptions,
        json={**redemption, "reference": unique("ORDER"), "points": 10_000},
        headers=world.auth("pos"),
    )
    assert_problem(refused, 409, "insufficient_points", "points")  # rolled back: not counted
    holds = f"/v1/members/{member['id']}/holds"
    hold = client.post(
        holds,
        json={"points": 5, "reference": unique("H"), "reason": "coffee"},
        headers=world.auth("pos"),
    )
    assert hold.status_code == 201, hold.text
    released = client.post(f"/v1/holds/{hold.json()['id']}/release", headers=world.auth("pos"))
    assert released.status_code == 200, released.text
    returned = {
        "external_id": unique("R"),
        "purchase_external_id": body["external_id"],
        "occurred_at": (START + timedelta(hours=1)).isoformat(),
        "items": [{"sku": "CAK", "quantity": 1}],
    }
    assert client.post("/v1/returns", json=returned, headers=world.auth("pos")).status_code == 201

    after = scrape(client)
    posted = _ledger_kinds(world) - rows_before
    assert posted["earn"] == 1 and len(posted) >= 4  # earn, reserve, capture, release, reverse…
    for kind, count in posted.items():
        assert delta(before, after, "fideliza_ledger_transactions_total", kind=kind) == count
    counted = {
        dict(labels)["kind"]
        for (name, labels), _ in after.items()
        if name == "fideliza_ledger_transactions_total"
        and delta(before, after, name, **dict(labels))
    }
    assert counted == set(posted)


def test_outbox_lag_is_the_age_of_the_oldest_undispatched_event(
    client: TestClient, world: World
) -> None:
    old = START - timedelta(days=400)  # older than anything else waiting
    with unit_of_work(world.factory) as db:
        event = OutboxEvent(
            program_id=world.program_id, event_type="test.lag", payload={}, created_at=old
        )
        db.add(event)
        db.flush()
        event_id = event.id
    try:
        samples = scrape(client)
        assert value(samples, "fideliza_database_up") == 1
        assert value(samples, "fideliza_outbox_lag_seconds") == 400 * 86400
        assert value(samples, "fideliza_outbox_pending") >= 1
    finally:
        with unit_of_work(world.factory) as db:
            db.execute(
                update(OutboxEvent).where(OutboxEvent.id == event_id).values(dispatched_at=START)
            )
    assert value(scrape(client), "fideliza_outbox_lag_seconds") < 400 * 86400


@pytest.fixture
def make_client(database_url: str) -> Iterator[Any]:
    """Builds an app of its own (own settings, own clock) and a client on it."""
    clients: list[TestClient] = []

    def build(clock: FixedClock | None = None, **settings: Any) -> TestClient:
        app = create_app(
            database_url, clock=clock or FixedClock(START), settings=ApiSettings(**settings)
        )
        test_client = TestClient(app)
        test_client.__enter__()
        clients.append(test_client)
        return test_client

    yield build
    for test_client in clients:
        test_client.__exit__(None, None, None)


def test_metrics_can_be_turned_off(make_client: Any) -> None:
    bare = make_client(metrics_enabled=False)
    assert_problem(bare.get("/metrics"), 404, "not_found")
    assert "/metrics" not in bare.get("/openapi.json").json()["paths"]


def test_metrics_need_no_api_key(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the `fideliza` loggers write, as the JSON handler formats it."""
    stream = io.StringIO()
    handler = json_handler(stream)
    logger = logging.getLogger("fideliza")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_access_line_per_request_with_the_request_id(
    client: TestClient, world: World, log_lines: io.StringIO
) -> None:
    member = enrol(client, world)
    log_lines.truncate(0)
    log_lines.seek(0)
    response = client.get(
        f"/v1/members/{member['id']}",
        headers={**world.auth("read"), "X-Request-Id": "till-42.req:7"},
    )
    assert response.headers["x-request-id"] == "till-42.req:7"
    access = [line for line in _lines(log_lines) if line["logger"] == "fideliza.api.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["method"] == "GET" and line["route"] == "/v1/members/{member_id}"
    assert line["status"] == 200 and line["level"] == "info"
    assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
    assert line["program_id"] == world.program_id and isinstance(line["api_key_id"], int)
    assert world.keys["read"] not in log_lines.getvalue()  # never the key itself


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129, "-leading-dash", "a/b", "a;b"])
def test_an_insane_request_id_is_replaced(
    client: TestClient, log_lines: io.StringIO, sent: str | None
) -> None:
    headers = {} if sent is None else {"X-Request-Id": sent}
    response = client.get("/healthz", headers=headers)
    assert response.status_code == 200
    generated = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    (line,) = [line for line in _lines(log_lines) if line["logger"] == "fideliza.api.access"]
    assert line["request_id"] == generated and line["api_key_id"] is None


def test_an_error_is_logged_with_the_request_id(
    client: TestClient, world: World, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fideliza.api.routes import members as routes

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(routes.members, "get", broken)
    with TestClient(client.app, raise_server_exceptions=False) as bare:
        response = bare.get(
            "/v1/members/1", headers={**world.auth("read"), "X-Request-Id": "crash-1"}
        )
    assert_problem(response, 500, "internal_error")
    assert response.headers["x-request-id"] == "crash-1"
    lines = _lines(log_lines)
    (error,) = [line for line in lines if line["level"] == "error"]
    assert error["request_id"] == "crash-1" and error["error"] == "RuntimeError"
    assert "boom" in error["traceback"]
    (access,) = [line for line in lines if line["logger"] == "fideliza.api.access"]
    assert access["request_id"] == "crash-1" and access["status"] == 500


def _lookup(client: TestClient, world: World, query: dict[str, str], scope: str = "read") -> Any:
    return client.post("/v1/members/lookup", json=query, headers=world.auth(scope))


def test_lookups_beyond_the_limit_get_429_for_that_key_only(
    make_client: Any, world: World, other: World
) -> None:
    clock = FixedClock(START)
    limited = make_client(clock, sensitive_rate_limit=3, sensitive_rate_window_seconds=60)
    member = enrol(limited, world, email=f"{unique('ana')}@example.com")
    queries = [
        {"email": member["email"]},
        {"card": member["card"]["number"]},
        {"phone": "+34600000000"},  # not found (404) counts too: it is a probe all the same
    ]
    assert [_lookup(limited, world, q).status_code for q in queries] == [200, 200, 404]

    refused = _lookup(limited, world, {"email": member["email"]})
    assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    assert int(refused.headers["Retry-After"]) == 20  # one token every 60 s / 3
    # Other keys, of this program or another, are not affected; nor are other routes.
    assert _lookup(limited, world, {"email": member["email"]}, "admin").status_code == 200
    assert _lookup(limited, other, {"email": "nobody@example.com"}).status_code == 404
    read = limited.get(f"/v1/members/{member['id']}", headers=world.auth("read"))
    assert read.status_code == 200

    clock.set(START + timedelta(seconds=19))
    assert _lookup(limited, world, {"email": member["email"]}).status_code == 429
    clock.set(START + timedelta(seconds=20))  # one token is back, and only one
    assert _lookup(limited, world, {"email": member["email"]}).status_code == 200
    assert _lookup(limited, world, {"email": member["email"]}).status_code == 429


def test_lookup_limit_can_be_turned_off(make_client: Any, world: World) -> None:
    unlimited = make_client(sensitive_rate_limit=0)
    statuses = {_lookup(unlimited, world, {"email": "x@example.com"}).status_code for _ in range(5)}
    assert statuses == {404}


def test_repeated_failed_authentications_block_the_address(make_client: Any, world: World) -> None:
    clock = FixedClock(START)
    guarded = make_client(clock, auth_failure_limit=2, auth_failure_window_seconds=60)
    member = enrol(guarded, world)  # successes do not count
    wrong = {"Authorization": "Bearer fzk_wrong"}
    for _ in range(2):
        assert_problem(guarded.get("/v1/members", headers=wrong), 401, "unauthenticated")
    # Now even a valid key is refused from this address, before it is checked.
    blocked = guarded.get(f"/v1/members/{member['id']}", headers=world.auth("read"))
    assert_problem(blocked, 429, "rate_limited")
    assert int(blocked.headers["Retry-After"]) == 30
    assert blocked.headers["x-request-id"]
    assert guarded.get("/healthz").status_code == 200  # operations stay open
    clock.set(START + timedelta(seconds=30))
    allowed = guarded.get(f"/v1/members/{member['id']}", headers=world.auth("read"))
    assert allowed.status_code == 200


def test_purchase_metrics_and_earn_helper_agree(client: TestClient, world: World) -> None:
    """`earn` (the helper every API test uses) goes through the counted path."""
    member = enrol(client, world)
    before = scrape(client)
    earn(client, world, member, START)
    after = scrape(client)
    route = {"method": "POST", "route": "/v1/purchases", "status": "2xx"}
    assert delta(before, after, "fideliza_http_requests_total", **route) == 1
    assert delta(before, after, "fideliza_ledger_transactions_total", kind="earn") == 1


def test_the_access_log_never_writes_a_link_s_credential() -> None:
    from fideliza.api.telemetry import loggable_path

    assert loggable_path("/v1/survey-answers/fzs1.12.99.c2lnbg") == "/v1/survey-answers/[redacted]"
    assert loggable_path("/v1/unsubscribe/abc.def") == "/v1/unsubscribe/[redacted]"
    assert loggable_path("/v1/members/12/balance") == "/v1/members/12/balance"
