"""/v1/webhooks/{id}/deliveries: the delivery log over the API (newest first, filtered, paged),
one delivery with its attempts, redelivery of a delivered or failed event, and a test event —
all through a real local receiver and the real dispatcher."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fideliza.core.clock import FixedClock
from fideliza.programs.models import AuditLog
from fideliza.webhooks import service as webhooks
from fideliza.webhooks.domain import RetryPolicy
from tests.api.world import World, assert_problem, enrol, unique
from tests.webhooks.receiver import receiver, verify

ALLOW = "FIDELIZA_WEBHOOK_ALLOW_PRIVATE_ADDRESSES"
PUBLIC = "https://93.184.216.34/hooks"  # a literal public address: no DNS needed


@pytest.fixture(autouse=True)
def _local_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW, "true")  # the receiver listens on 127.0.0.1


def register(client: TestClient, world: World, url: str, types: list[str]) -> dict[str, Any]:
    response = client.post(
        "/v1/webhooks", json={"url": url, "event_types": types}, headers=world.auth()
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def dispatch(world: World, clock: FixedClock, **options: Any) -> webhooks.DispatchReport:
    return webhooks.dispatch_due(
        world.factory, now=clock.now(), program_id=world.program_id, allow_private=True, **options
    )


def deliveries(client: TestClient, world: World, hook_id: int, query: str = "") -> dict[str, Any]:
    response = client.get(f"/v1/webhooks/{hook_id}/deliveries{query}", headers=world.auth())
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def test_the_log_lists_newest_first_with_filters_and_pages(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    # 1st enrolment: 200; 2nd: 500 then given up (one attempt allowed); 3rd: 200.
    with receiver(statuses=[200, 500, 200]) as hook:
        created = register(client, world, hook.url, ["member.*"])
        hook_id = created["id"]
        assert deliveries(client, world, hook_id) == {"items": [], "next_cursor": None}
        enrolled = [enrol(client, world) for _ in range(3)]
        dispatch(world, clock, policy=RetryPolicy(max_attempts=1))
    assert len(hook.requests) == 3
    page = deliveries(client, world, hook_id)
    items = page["items"]
    assert [item["status"] for item in items] == ["delivered", "failed", "delivered"]
    assert [item["id"] for item in items] == sorted((item["id"] for item in items), reverse=True)
    assert {item["event_type"] for item in items} == {"member.enrolled"}
    assert all(item["webhook_id"] == hook_id and item["attempts"] == 1 for item in items)
    sent_ids = [request.headers["webhook-id"] for request in hook.requests]
    assert [item["event_id"] for item in reversed(items)] == sent_ids

    failed = deliveries(client, world, hook_id, "?status=failed")["items"]
    assert [item["id"] for item in failed] == [items[1]["id"]]
    assert deliveries(client, world, hook_id, "?event_type=points.earned")["items"] == []
    assert len(deliveries(client, world, hook_id, "?event_type=member.enrolled")["items"]) == 3

    first = deliveries(client, world, hook_id, "?limit=2")
    assert [item["id"] for item in first["items"]] == [items[0]["id"], items[1]["id"]]
    second = deliveries(client, world, hook_id, f"?limit=2&cursor={first['next_cursor']}")
    assert [item["id"] for item in second["items"]] == [items[2]["id"]]
    assert second["next_cursor"] is None
    # The payload of the oldest delivery is the first member's.
    oldest = client.get(f"/v1/webhooks/{hook_id}/deliveries/{items[2]['id']}", headers=world.auth())
    assert oldest.json()["payload"]["member_id"] == enrolled[0]["id"]


def test_one_delivery_shows_every_attempt(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    with receiver(statuses=[503]) as hook:
        hook_id = register(client, world, hook.url, ["member.enrolled"])["id"]
        member = enrol(client, world)
        dispatch(world, clock)
        [pending] = deliveries(client, world, hook_id)["items"]
        assert pending["status"] == "pending"
        assert pending["next_attempt_at"] == "2025-03-10T12:00:30Z"  # 30 s backoff
        clock.advance(timedelta(seconds=30))
        dispatch(world, clock)
    detail = client.get(f"/v1/webhooks/{hook_id}/deliveries/{pending['id']}", headers=world.auth())
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert (body["status"], body["attempts"], body["next_attempt_at"]) == ("delivered", 2, None)
    assert body["delivered_at"] == "2025-03-10T12:00:30Z"
    assert body["payload"] == {"member_id": member["id"], "external_id": member["external_id"]}
    log = [(a["attempt"], a["status_code"], a["error"]) for a in body["attempt_log"]]
    assert log == [(1, 503, "HTTP 503"), (2, 200, None)]
    assert all(a["duration_ms"] >= 0 for a in body["attempt_log"])
    assert [a["attempted_at"] for a in body["attempt_log"]] == [
        "2025-03-10T12:00:00Z",
        "2025-03-10T12:00:30Z",
    ]


def test_redeliver_queues_a_failed_event_again_with_a_fresh_budget(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    one_try = RetryPolicy(max_attempts=1)
    with receiver(statuses=[500, 500]) as hook:
        created = register(client, world, hook.url, ["member.enrolled"])
        hook_id = created["id"]
        enrol(client, world)
        dispatch(world, clock, policy=one_try)
        [failed] = deliveries(client, world, hook_id)["items"]
        assert failed["status"] == "failed"
        url = f"/v1/webhooks/{hook_id}/deliveries/{failed['id']}/redeliver"
        key = {"Idempotency-Key": unique("rd"), **world.auth()}
        clock.advance(timedelta(hours=1))
        queued = client.post(url, headers=key)
        assert queued.status_code == 200, queued.text
        assert queued.json()["status"] == "pending"
        assert queued.json()["redelivered_at"] == queued.json()["next_attempt_at"]
        # A retry of the same request replays its answer; it queues nothing more.
        replay = client.post(url, headers=key)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == queued.json()
        # Still pending: a second redelivery is refused until it is done.
        assert_problem(client.post(url, headers=world.auth()), 409, "invalid_state", "delivery_id")
        # The fresh budget: the 2nd attempt fails (500) and is retried, not given up.
        retry = dispatch(world, clock, policy=RetryPolicy(max_attempts=2))
        assert (retry.retrying, retry.failed) == (1, 0)
        clock.advance(timedelta(seconds=30))
        assert dispatch(world, clock, policy=RetryPolicy(max_attempts=2)).delivered == 1
    assert len({r.headers["webhook-id"] for r in hook.requests}) == 1  # the same event
    assert verify(created["secret"], hook.requests[-1], now=int(clock.now().timestamp()))
    detail = client.get(f"/v1/webhooks/{hook_id}/deliveries/{failed['id']}", headers=world.auth())
    log = [(a["attempt"], a["status_code"]) for a in detail.json()["attempt_log"]]
    assert log == [(1, 500), (2, 500), (3, 200)]
    with world.factory() as db:
        actions = db.scalars(
            select(AuditLog.action).where(
                AuditLog.program_id == world.program_id, AuditLog.subject == str(failed["id"])
            )
        ).all()
    assert actions == ["fideliza.webhook.redelivered"]


def test_a_delivered_event_can_be_sent_again(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    with receiver() as hook:
        hook_id = register(client, world, hook.url, ["member.enrolled"])["id"]
        enrol(client, world)
        dispatch(world, clock)
        [delivered] = deliveries(client, world, hook_id)["items"]
        url = f"/v1/webhooks/{hook_id}/deliveries/{delivered['id']}/redeliver"
        assert client.post(url, headers=world.auth()).json()["delivered_at"] is None
        assert dispatch(world, clock).delivered == 1
    assert len(hook.requests) == 2
    assert hook.requests[0].body == hook.requests[1].body


def test_a_test_event_goes_to_that_endpoint_only(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    with receiver() as mine, receiver() as others:
        hook_id = register(client, world, mine.url, ["points.earned"])["id"]
        register(client, world, others.url, ["*"])
        sent = client.post(f"/v1/webhooks/{hook_id}/test", headers=world.auth())
        assert sent.status_code == 201, sent.text
        assert (sent.json()["event_type"], sent.json()["status"]) == ("webhook.test", "pending")
        assert dispatch(world, clock).delivered == 1
    assert others.requests == []
    [request] = mine.requests
    assert request.json()["type"] == "webhook.test"
    assert request.json()["data"] == {"webhook_id": hook_id, "test": True}
    detail = client.get(
        f"/v1/webhooks/{hook_id}/deliveries/{sent.json()['id']}", headers=world.auth()
    ).json()
    assert [(a["attempt"], a["status_code"]) for a in detail["attempt_log"]] == [(1, 200)]


def test_deactivated_endpoints_take_no_redelivery_nor_test(
    client: TestClient, world: World, clock: FixedClock
) -> None:
    with receiver() as hook:
        hook_id = register(client, world, hook.url, ["member.enrolled"])["id"]
        enrol(client, world)
        dispatch(world, clock)
    [delivered] = deliveries(client, world, hook_id)["items"]
    assert client.delete(f"/v1/webhooks/{hook_id}", headers=world.auth()).status_code == 200
    url = f"/v1/webhooks/{hook_id}/deliveries/{delivered['id']}/redeliver"
    assert_problem(client.post(url, headers=world.auth()), 409, "invalid_state", "webhook_id")
    test = client.post(f"/v1/webhooks/{hook_id}/test", headers=world.auth())
    assert_problem(test, 409, "invalid_state", "webhook_id")
    # The log stays readable.
    assert deliveries(client, world, hook_id)["items"][0]["status"] == "delivered"


def test_another_program_s_deliveries_are_as_absent_ones(
    client: TestClient, world: World, other: World
) -> None:
    theirs = register(client, other, PUBLIC, ["*"])
    sent = client.post(f"/v1/webhooks/{theirs['id']}/test", headers=other.auth()).json()
    mine = register(client, world, PUBLIC, ["*"])
    for path in (
        f"/v1/webhooks/{theirs['id']}/deliveries",
        f"/v1/webhooks/{theirs['id']}/deliveries/{sent['id']}",
    ):
        assert_problem(client.get(path, headers=world.auth()), 404, "not_found", "webhook_id")
    # Their delivery under my endpoint: the same 404 as a delivery that does not exist.
    for delivery_id in (sent["id"], 2**62):
        url = f"/v1/webhooks/{mine['id']}/deliveries/{delivery_id}"
        assert_problem(client.get(url, headers=world.auth()), 404, "not_found", "delivery_id")
        redeliver = client.post(f"{url}/redeliver", headers=world.auth())
        assert_problem(redeliver, 404, "not_found", "delivery_id")
    assert_problem(
        client.post(f"/v1/webhooks/{theirs['id']}/test", headers=world.auth()),
        404,
        "not_found",
        "webhook_id",
    )


@pytest.mark.parametrize("scope", ["read", "pos"])
def test_only_admin_keys(client: TestClient, world: World, scope: str) -> None:
    hook_id = register(client, world, PUBLIC, ["*"])["id"]
    sent = client.post(f"/v1/webhooks/{hook_id}/test", headers=world.auth()).json()
    for method, path in (
        ("GET", f"/v1/webhooks/{hook_id}/deliveries"),
        ("GET", f"/v1/webhooks/{hook_id}/deliveries/{sent['id']}"),
        ("POST", f"/v1/webhooks/{hook_id}/deliveries/{sent['id']}/redeliver"),
        ("POST", f"/v1/webhooks/{hook_id}/test"),
    ):
        response = client.request(method, path, headers=world.auth(scope))
        assert_problem(response, 403, "forbidden")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?status=lost", "status"),
        ("?event_type=Points", "event_type"),
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?cursor=nope", "cursor"),
    ],
)
def test_bad_filters_name_the_field(
    client: TestClient, world: World, query: str, field: str
) -> None:
    hook_id = register(client, world, PUBLIC, ["*"])["id"]
    response = client.get(f"/v1/webhooks/{hook_id}/deliveries{query}", headers=world.auth())
    assert_problem(response, 422, "validation_error", field)
