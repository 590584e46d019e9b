"""Idempotency-Key: replays, mismatches, keys in flight, retention; sequential and concurrent."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fideliza.api.app import create_app
from fideliza.api.idempotency import fingerprint
from fideliza.apikeys import service as apikeys
from fideliza.apikeys.domain import Claimed, prefix_of
from fideliza.apikeys.models import ApiKey, IdempotencyRecord
from fideliza.core.clock import FixedClock
from fideliza.db import unit_of_work
from fideliza.ledger.models import LedgerTransaction
from tests.api.conftest import START
from tests.api.world import World, assert_problem, earn, enrol, unique


def _count(world: World, member_id: int, kind: str) -> int:
    with world.factory() as db:
        found = db.scalar(
            select(func.count()).where(
                LedgerTransaction.member_id == member_id, LedgerTransaction.kind == kind
            )
        )
    return int(found or 0)


def _redeem(
    client: TestClient | httpx.Client,
    world: World,
    member: dict[str, Any],
    key: str | None,
    points: int = 10,
    **extra: Any,
) -> httpx.Response:
    headers = world.auth("pos")
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(
        f"/v1/members/{member['id']}/redemptions",
        json={"points": points, "reason": "coffee", **extra},
        headers=headers,
    )


def _funded(client: TestClient, world: World, amount: str = "100.00") -> dict[str, Any]:
    member = enrol(client, world)
    earn(client, world, member, START, amount=amount)
    return member


def test_the_same_key_and_body_replay_the_first_response(client: TestClient, world: World) -> None:
    member = _funded(client, world)
    key = unique("idem")
    first = _redeem(client, world, member, key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = _redeem(client, world, member, key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    # The same JSON written otherwise (key order, spacing) is the same request.
    reordered = client.post(
        f"/v1/members/{member['id']}/redemptions",
        content=b'{ "reason" : "coffee",   "points": 10 }',
        headers={**world.auth("pos"), "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert reordered.status_code == 201 and reordered.content == first.content
    assert _count(world, member["id"], "capture") == 1
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=world.auth("read"))
    assert balance.json()["available"] == 90


def test_the_same_key_for_another_request_is_refused(client: TestClient, world: World) -> None:
    member = _funded(client, world)
    key = unique("idem")
    assert _redeem(client, world, member, key).status_code == 201
    other_body = _redeem(client, world, member, key, points=11)
    problem = assert_problem(other_body, 422, "idempotency_error", "Idempotency-Key")
    assert problem["instance"] == f"/v1/members/{member['id']}/redemptions"
    other_route = client.post(
        "/v1/members",
        json={"external_id": unique("C")},
        headers={**world.auth("pos"), "Idempotency-Key": key},
    )
    assert_problem(other_route, 422, "idempotency_error", "Idempotency-Key")
    assert _count(world, member["id"], "capture") == 1


def test_keys_belong_to_their_api_key(client: TestClient, world: World) -> None:
    key = unique("idem")
    first = client.post(
        "/v1/members",
        json={"external_id": unique("C")},
        headers={**world.auth("pos"), "Idempotency-Key": key},
    )
    second = client.post(
        "/v1/members",
        json={"external_id": unique("C")},
        headers={**world.auth("admin"), "Idempotency-Key": key},
    )
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


def _claim_like(world: World, scope: str, method: str, path: str, body: Any, key: str) -> Claimed:
    """Claims `key` as a request still running would have (same fingerprint)."""
    prefix = prefix_of(world.keys[scope])
    with unit_of_work(world.factory) as db:
        api_key_id = db.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))
        assert api_key_id is not None
        claim = apikeys.claim(
            db,
            api_key_id=api_key_id,
            key=key,
            fingerprint=fingerprint(method=method, path=path, query="", body=body),
            now=START,
            lease=timedelta(seconds=60),
            retention=timedelta(hours=24),
        )
    assert isinstance(claim, Claimed)
    return claim


def test_a_key_in_flight_is_409_with_retry_after(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    member = _funded(client, world)
    key = unique("idem")
    path = f"/v1/members/{member['id']}/redemptions"
    _claim_like(world, "pos", "POST", path, {"points": 10, "reason": "coffee"}, key)
    busy = _redeem(client, world, member, key)
    assert_problem(busy, 409, "request_in_flight", "Idempotency-Key")
    assert busy.headers["retry-after"] == "1"
    assert _count(world, member["id"], "capture") == 0
    # The worker that claimed it died: once its lease is over, a retry takes the key over.
    clock.advance(timedelta(seconds=61))
    taken = _redeem(client, world, member, key)
    assert taken.status_code == 201, taken.text
    assert _count(world, member["id"], "capture") == 1


def test_a_client_error_is_an_answer_and_is_replayed(client: TestClient, world: World) -> None:
    member = _funded(client, world, amount="5.00")
    key = unique("idem")
    short = _redeem(client, world, member, key)
    assert_problem(short, 409, "insufficient_points", "points")
    earn(client, world, member, START, amount="50.00")
    again = _redeem(client, world, member, key)
    assert again.status_code == 409 and again.headers["idempotent-replayed"] == "true"
    assert again.content == short.content
    assert again.headers["content-type"].startswith("application/problem+json")
    assert _count(world, member["id"], "capture") == 0


def test_an_unexpected_failure_forgets_the_key(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fideliza.ledger import redemptions

    member = _funded(client, world)
    key = unique("idem")
    real_redeem = redemptions.redeem_many
    failures = iter([RuntimeError("the disk is full")])

    def flaky(*args: Any, **kwargs: Any) -> Any:
        answers = real_redeem(*args, **kwargs)  # the postings are written, not committed
        error = next(failures, None)
        if error is not None:
            raise error
        return answers

    monkeypatch.setattr(redemptions, "redeem_many", flaky)
    with TestClient(client.app, raise_server_exceptions=False) as bare:
        crashed = _redeem(bare, world, member, key)
    assert_problem(crashed, 500, "internal_error")
    assert _count(world, member["id"], "reserve") == 0  # rolled back, hold and all
    retried = _redeem(client, world, member, key)
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert _count(world, member["id"], "capture") == 1


def test_keys_are_kept_for_their_retention_then_purged(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    member = _funded(client, world)
    key = unique("idem")
    assert _redeem(client, world, member, key, points=10).status_code == 201
    clock.advance(timedelta(hours=23, minutes=59))
    assert _redeem(client, world, member, key, points=10).headers["idempotent-replayed"] == "true"
    clock.advance(timedelta(minutes=2))  # 24 h and 1 min: forgotten
    with world.factory() as db:
        records = db.scalar(
            select(func.count()).where(
                IdempotencyRecord.key == key, IdempotencyRecord.status == "done"
            )
        )
    assert records == 1
    report = client.post("/v1/jobs/run", headers=world.auth())
    assert report.json()["idempotency_keys_purged"] >= 1
    with world.factory() as db:
        left = db.scalar(select(func.count()).where(IdempotencyRecord.key == key))
    assert left == 0


def test_an_expired_key_may_be_used_again(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    member = enrol(client, world)
    key = unique("idem")
    path = f"/v1/members/{member['id']}"
    first = client.patch(
        path, json={"first_name": "Eva"}, headers={**world.auth("pos"), "Idempotency-Key": key}
    )
    assert first.status_code == 200
    clock.advance(timedelta(hours=25))
    other = client.patch(
        path, json={"first_name": "Sol"}, headers={**world.auth("pos"), "Idempotency-Key": key}
    )
    assert other.status_code == 200 and other.json()["first_name"] == "Sol"


def test_a_key_creation_replay_never_shows_the_secret_again(
    client: TestClient, world: World
) -> None:
    headers = {**world.auth(), "Idempotency-Key": unique("idem")}
    body = {"name": "Kiosk", "scopes": ["pos"]}
    first = client.post("/v1/api-keys", json=body, headers=headers)
    assert first.status_code == 201 and first.json()["key"].startswith("fzk_")
    again = client.post("/v1/api-keys", json=body, headers=headers)
    assert again.status_code == 201 and again.json()["key"] is None
    assert again.json()["id"] == first.json()["id"]
    with world.factory() as db:
        stored = db.scalars(select(IdempotencyRecord.response_body)).all()
    assert not any(first.json()["key"] in text for text in stored if text)


# --- concurrency, over real HTTP ----------------------------------------------------------------


@contextmanager
def served(database_url: str, clock: FixedClock) -> Iterator[str]:
    """The API served by uvicorn on a free loopback port, in a thread."""
    app = create_app(database_url, clock=clock)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def all_at_once(
    base_url: str, count: int, send: Callable[[httpx.Client], httpx.Response]
) -> list[httpx.Response]:
    """Sends `count` requests to `base_url` from as many threads, released together."""
    barrier = threading.Barrier(count)
    results: list[httpx.Response | BaseException] = [RuntimeError("not sent")] * count

    def run(index: int, client: httpx.Client) -> None:
        barrier.wait()
        try:
            results[index] = send(client)
        except BaseException as error:  # reported below, with the others
            results[index] = error

    clients = [httpx.Client(base_url=base_url, timeout=60) for _ in range(count)]
    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    for client in clients:
        client.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return [r for r in results if isinstance(r, httpx.Response)]


@pytest.fixture
def server(database_url: str, clock: FixedClock) -> Iterator[str]:
    with served(database_url, clock) as url:
        yield url


THREADS = 8


def test_concurrent_retries_with_one_key_redeem_once(
    client: TestClient, world: World, server: str
) -> None:
    member = _funded(client, world)
    key = unique("idem")
    responses = all_at_once(server, THREADS, lambda http: _redeem(http, world, member, key))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, [r.text for r in responses]
    created = [r for r in responses if r.status_code == 201]
    assert created and len({r.content for r in created}) == 1
    assert all(r.json()["code"] == "request_in_flight" for r in responses if r.status_code == 409)
    assert _count(world, member["id"], "reserve") == 1
    assert _count(world, member["id"], "capture") == 1
    with httpx.Client(base_url=server) as http:
        late = _redeem(http, world, member, key)
    assert late.status_code == 201 and late.headers["idempotent-replayed"] == "true"
    assert late.content == created[0].content


def test_concurrent_copies_of_one_purchase_earn_once(
    client: TestClient, world: World, server: str
) -> None:
    member = enrol(client, world)
    body = {
        "external_id": unique("T"),
        "member_id": member["external_id"],
        "occurred_at": START.isoformat(),
        "amount": "12.00",
    }
    responses = all_at_once(
        server,
        THREADS,
        lambda http: http.post("/v1/purchases", json=body, headers=world.auth("pos")),
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 200: THREADS - 1}, [r.text for r in responses]
    assert {json.dumps(r.json()["transaction_id"]) for r in responses} == {
        json.dumps(responses[0].json()["transaction_id"])
    }
    assert _count(world, member["id"], "earn") == 1


def test_concurrent_redemptions_of_the_last_points_have_one_winner(
    client: TestClient, world: World, server: str
) -> None:
    member = _funded(client, world, amount="10.00")
    responses = all_at_once(
        server,
        THREADS,
        lambda http: _redeem(http, world, member, None, points=10, reference=unique("O")),
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: THREADS - 1}, [r.text for r in responses]
    assert all(r.json()["code"] == "insufficient_points" for r in responses if r.status_code == 409)
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=world.auth("read"))
    assert (balance.json()["available"], balance.json()["held"]) == (0, 0)
