"""Group commit: concurrent purchases and redemptions share a batch, each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fideliza.api.grouping import (
    GroupCommit,
    purchase_groups,
    redemption_groups,
    write_purchases,
)
from fideliza.core.errors import IdempotencyError, InsufficientPoints, NotFound
from fideliza.coupons.models import CouponCode
from fideliza.db import unit_of_work
from fideliza.ledger import redemptions
from fideliza.ledger import service as ledger
from fideliza.ledger.redemptions import RedemptionRequest
from fideliza.programs import service as programs
from fideliza.programs.models import OutboxEvent
from fideliza.purchases import service as purchases_service
from fideliza.purchases.ingest import Outcome
from tests.api.conftest import START
from tests.api.world import World, basket, earn, enrol, unique
from tests.integration.coupons.builders import campaign

Groups = GroupCommit[Mapping[str, Any], Outcome]


def record_all(groups: Groups, world: World, bodies: list[dict[str, Any]]) -> list[Any]:
    """Submits `bodies` from concurrent tasks of one event loop; each one's outcome or error.

    The tasks all queue before the writer task they start gets to run, so they share a batch
    (up to its maximum size)."""

    async def send(body: dict[str, Any]) -> Any:
        return await groups.submit(program_id=world.program_id, item=body, now=START)

    async def everyone() -> list[Any]:
        return await asyncio.gather(*(send(body) for body in bodies), return_exceptions=True)

    return asyncio.run(everyone())


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
    answers = record_all(purchase_groups(world.factory), world, bodies)
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
    answers = record_all(purchase_groups(world.factory), world, bodies)
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
    answers = record_all(purchase_groups(world.factory), world, bodies)
    assert sizes == [3, 1, 1, 1]
    assert [a.points for a in answers] == [7, 7, 7]
    assert [available(world, m) for m in members] == [7, 7, 7]


def test_a_purchase_alone_is_written_at_once(
    client: TestClient, world: World, batch_sizes: list[int]
) -> None:
    member = enrol(client, world)
    [outcome] = record_all(purchase_groups(world.factory), world, [basket(member, START, "3.00")])
    assert outcome.points == 3 and available(world, member) == 3
    assert batch_sizes == [1]


def test_a_batch_is_at_most_max_batch_and_the_rest_follows(
    client: TestClient, world: World, batch_sizes: list[int]
) -> None:
    member = enrol(client, world)
    groups = GroupCommit(world.factory, write_purchases, max_batch=4)
    answers = record_all(groups, world, [basket(member, START, "1.00") for _ in range(10)])
    assert batch_sizes == [4, 4, 2]
    assert [a.points for a in answers] == [1] * 10 and available(world, member) == 10


def test_a_batch_publishes_each_purchase_and_issues_its_coupons(
    client: TestClient, world: World, batch_sizes: list[int]
) -> None:
    with unit_of_work(world.factory) as db:
        program = programs.get(db, program_id=world.program_id)
        offer = campaign(db, program, START, trigger="purchase", trigger_min_amount="15.00")
    members = [enrol(client, world) for _ in range(2)]
    bodies = [basket(m, START, amount) for m in members for amount in ("10.00", "20.00")]
    answers = record_all(purchase_groups(world.factory), world, bodies)
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


# --- one-step redemptions ----------------------------------------------------------------------


def redeem_all(world: World, requests: list[RedemptionRequest]) -> list[Any]:
    """Submits `requests` together (one batch, as `record_all` does); each answer or error."""
    groups = redemption_groups(world.factory)

    async def everyone() -> list[Any]:
        return await asyncio.gather(
            *(
                groups.submit(program_id=world.program_id, item=request, now=START)
                for request in requests
            ),
            return_exceptions=True,
        )

    return asyncio.run(everyone())


@pytest.fixture
def redemption_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    redeem_many = redemptions.redeem_many

    def counted(*args: Any, **kwargs: Any) -> Any:
        sizes.append(len(kwargs["requests"]))
        return redeem_many(*args, **kwargs)

    monkeypatch.setattr(redemptions, "redeem_many", counted)
    return sizes


def spend(member: dict[str, Any], points: int, reference: str) -> RedemptionRequest:
    return RedemptionRequest(
        member_id=member["id"], points=points, reference=f"redemption:{reference}", reason="cafe"
    )


def test_concurrent_redemptions_share_one_batch_each_with_its_answer(
    client: TestClient, world: World, redemption_batches: list[int]
) -> None:
    ana, bea = enrol(client, world), enrol(client, world)
    earn(client, world, ana, START, amount="30.00")
    earn(client, world, bea, START, amount="10.00")
    answers = redeem_all(
        world,
        [
            spend(ana, 10, "a1"),
            spend(bea, 4, "b1"),
            spend(ana, 15, "a2"),
            spend(ana, 10, "a3"),  # 5 left: refused, the others stand
            spend(ana, 10, "a1"),  # the first one again: a replay
            spend(bea, 5, "a2"),  # another member's reference
            spend({"id": 10**9}, 1, "nobody"),
        ],
    )
    assert redemption_batches == [7]
    first, bea_first, second, short, again, stolen, nobody = answers
    assert (first.points, first.available_after, first.replayed) == (10, 20, False)
    assert (second.points, second.available_after) == (15, 5)
    assert bea_first.available_after == 6
    assert isinstance(short, InsufficientPoints) and short.field == "points"
    assert again.replayed and again.hold_id == first.hold_id
    assert isinstance(stolen, IdempotencyError) and stolen.field == "reference"
    assert isinstance(nobody, NotFound) and nobody.field == "member_id"
    assert available(world, ana) == 5 and available(world, bea) == 6


def test_a_redemption_batch_that_fails_whole_is_retried_one_by_one(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [enrol(client, world) for _ in range(3)]
    for member in members:
        earn(client, world, member, START, amount="10.00")
    redeem_many = redemptions.redeem_many
    sizes: list[int] = []

    def fails_in_bulk(*args: Any, **kwargs: Any) -> Any:
        sizes.append(len(kwargs["requests"]))
        if len(kwargs["requests"]) > 1:
            raise RuntimeError("a database error")
        return redeem_many(*args, **kwargs)

    monkeypatch.setattr(redemptions, "redeem_many", fails_in_bulk)
    answers = redeem_all(world, [spend(m, 3, unique("r")) for m in members])
    assert sizes == [3, 1, 1, 1]
    assert [a.available_after for a in answers] == [7, 7, 7]
