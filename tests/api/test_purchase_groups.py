"""Group commit of purchases: concurrent requests share a batch, each gets its own answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fideliza.api.grouping import PurchaseGroups
from fideliza.core.errors import IdempotencyError, NotFound
from fideliza.coupons.models import CouponCode
from fideliza.db import unit_of_work
from fideliza.ledger import service as ledger
from fideliza.programs import service as programs
from fideliza.programs.models import OutboxEvent
from fideliza.purchases import service as purchases_service
from tests.api.conftest import START
from tests.api.world import World, basket, enrol
from tests.integration.coupons.builders import campaign


@contextmanager
def one_batch(groups: PurchaseGroups, program_id: int, count: int) -> Iterator[None]:
    """Holds the program's writing lock until `count` purchases are queued, so that they
    are all written by one batch when it is let go."""
    group = groups._program(program_id)
    with group.writing:
        yield
        deadline = time.monotonic() + 10
        while len(group.queue) < count:
            assert time.monotonic() < deadline, "the requests did not queue"
            time.sleep(0.005)


def record_all(groups: PurchaseGroups, world: World, bodies: list[dict[str, Any]]) -> list[Any]:
    """Records `bodies` from one thread each, all in one batch; each one's outcome or error."""
    answers: list[Any] = [None] * len(bodies)

    def send(index: int) -> None:
        try:
            answers[index] = groups.record(
                program_id=world.program_id, data=bodies[index], now=START
            )
        except Exception as error:
            answers[index] = error

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    with one_batch(groups, world.program_id, len(bodies)):
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    ingest = purchases_service.ingest_purchases

    def counted(*args: Any, **kwargs: Any) -> Any:
        sizes.append(len(kwargs["purchases"]))
        return ingest(*args, **kwargs)

    monkeypatch.setattr(purchases_service, "ingest_purchases", counted)
    return sizes


def available(world: World, member: dict[str, Any]) -> int:
    with world.factory() as db:
        return ledger.balance(db, member_id=member["id"]).available


def test_concurrent_purchases_share_one_batch(
    client: TestClient, world: World, batch_sizes: list[int]
) -> None:
    members = [enrol(client, world) for _ in range(3)]
    bodies = [basket(m, START, amount) for m in members for amount in ("10.00", "20.00")]
    groups = PurchaseGroups(world.factory)
    answers = record_all(groups, world, bodies)
    assert batch_sizes == [6]
    assert [a.external_id for a in answers] == [b["external_id"] for b in bodies]
    assert [a.points for a in answers] == [10, 20] * 3
    assert not any(a.replayed for a in answers)
    assert len({a.purchase_id for a in answers}) == 6
    assert [available(world, m) for m in members] == [30, 30, 30]


def test_each_request_gets_its_own_error_and_the_rest_are_recorded(
    client: TestClient, world: World, batch_sizes: list[int]
) -> None:
    member = enrol(client, world)
    first = basket(member, START, "10.00")
    bodies = [
        first,
        {**first, "amount": "99.00"},  # the same id with other content
        basket({"external_id": "nobody"}, START),  # no such member
        dict(first),  # the same purchase again: a replay
        basket(member, START, "5.00"),
        {**basket(member, START), "amount": "-1"},  # refused before the engine
    ]
    answers = record_all(PurchaseGroups(world.factory), world, bodies)
    assert batch_sizes == [5]
    assert answers[0].points == 10 and not answers[0].replayed
    assert isinstance(answers[1], IdempotencyError) and answers[1].field == "external_id"
    assert isinstance(answers[2], NotFound) and answers[2].field == "member_id"
    assert answers[3].replayed and answers[3].purchase_id == answers[0].purchase_id
    assert answers[4].points == 5
    assert getattr(answers[5], "field", None) == "amount"
    assert available(world, member) == 15


def test_a_batch_that_fails_whole_is_retried_one_by_one(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [enrol(client, world) for _ in range(3)]
    ingest = purchases_service.ingest_purchases
    sizes: list[int] = []

    def fails_in_bulk(*args: Any, **kwargs: Any) -> Any:
        sizes.append(len(kwargs["purchases"]))
        if len(kwargs["purchases"]) > 1:
            raise RuntimeError("a database error")
        return ingest(*args, **kwargs)

    monkeypatch.setattr(purchases_service, "ingest_purchases", fails_in_bulk)
    bodies = [basket(m, START, "7.00") for m in members]
    answers = record_all(PurchaseGroups(world.factory), world, bodies)
    assert sizes == [3, 1, 1, 1]
    assert [a.points for a in answers] == [7, 7, 7]
    assert [available(world, m) for m in members] == [7, 7, 7]


def test_a_purchase_alone_is_written_at_once(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    groups = PurchaseGroups(world.factory)
    record: Callable[..., Any] = groups.record
    outcome = record(program_id=world.program_id, data=basket(member, START, "3.00"), now=START)
    assert outcome.points == 3 and available(world, member) == 3


def test_a_batch_publishes_each_purchase_and_issues_its_coupons(
    client: TestClient, world: World, batch_sizes: list[int]
) -> None:
    with unit_of_work(world.factory) as db:
        program = programs.get(db, program_id=world.program_id)
        offer = campaign(db, program, START, trigger="purchase", trigger_min_amount="15.00")
    members = [enrol(client, world) for _ in range(2)]
    bodies = [basket(m, START, amount) for m in members for amount in ("10.00", "20.00")]
    answers = record_all(PurchaseGroups(world.factory), world, bodies)
    assert batch_sizes == [4]
    with world.factory() as db:
        events = db.scalars(
            select(OutboxEvent.payload).where(
                OutboxEvent.program_id == world.program_id,
                OutboxEvent.event_type == "points.earned",
            )
        ).all()
        issued = db.scalars(
            select(CouponCode.source_ref).where(CouponCode.campaign_id == offer.id)
        ).all()
        assert sorted(e["purchase"] for e in events) == sorted(b["external_id"] for b in bodies)
        # Only the €20 purchases qualify, one coupon each.
        assert sorted(issued) == sorted(f"purchase:{a.purchase_id}" for a in answers[1::2])
