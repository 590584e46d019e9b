"""One-step redemptions in batches (`ledger.redemptions.redeem_many`) on SQLite and PostgreSQL:
each answer, and every row written, as redeeming one request after the other would give."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from fideliza.core.errors import (
    FidelizaError,
    IdempotencyError,
    InsufficientPoints,
    InvalidState,
    NotFound,
    ValidationError,
)
from fideliza.ledger import redemptions
from fideliza.ledger import service as ledger
from fideliza.ledger.check import check_ledger
from fideliza.ledger.models import Allocation, Entry, Hold, LedgerTransaction, Lot
from fideliza.ledger.redemptions import Redeemed, RedemptionRequest, redeem_many
from fideliza.ledger.service import EarnLine
from fideliza.members import service as members
from fideliza.members.models import Member
from fideliza.programs.models import OutboxEvent, Program
from fideliza.programs.service import settings_of
from tests.factories import make_member, make_program

Answer: TypeAlias = Redeemed | FidelizaError
EXPIRY_DAYS = 100


def _program(db: Session, now: datetime) -> Program:
    return make_program(db, now=now, settings={"expiry": {"mode": "days", "days": EXPIRY_DAYS}})


def _earn(db: Session, program: Program, member: Member, points: int, at: datetime) -> int:
    earned = ledger.earn(
        db,
        program_id=program.id,
        settings=settings_of(program),
        timezone_name=program.timezone,
        member_id=member.id,
        lines=[EarnLine(points=points, reason="test")],
        occurred_at=at,
        now=at,
        source_type="test",
        source_ref=f"t-{member.id}-{points}-{at.isoformat()}",
        reason="test earning",
    )
    assert earned is not None
    return earned.lot_id


def _ask(
    member: Member | int, points: int, reference: str, reason: str = "coffee"
) -> RedemptionRequest:
    member_id = member if isinstance(member, int) else member.id
    return RedemptionRequest(
        member_id=member_id, points=points, reference=f"redemption:{reference}", reason=reason
    )


def _batch(
    db: Session, program: Program, requests: Sequence[RedemptionRequest], now: datetime
) -> list[Answer]:
    return redeem_many(
        db, program_id=program.id, settings=settings_of(program), requests=requests, now=now
    )


def _one_by_one(
    db: Session, program: Program, requests: Sequence[RedemptionRequest], now: datetime
) -> list[Answer]:
    """What POST /v1/members/{id}/redemptions did for each request before batches."""
    answers: list[Answer] = []
    for request in requests:
        try:
            member = members.get(db, program_id=program.id, member_id=request.member_id)
            members.require_active(member)
            found, replayed = ledger.hold_and_capture(
                db,
                program_id=program.id,
                settings=settings_of(program),
                member_id=member.id,
                points=request.points,
                reference=request.reference,
                now=now,
                reason=request.reason,
            )
        except FidelizaError as error:
            answers.append(error)
            continue
        answers.append(
            Redeemed(
                hold_id=found.id,
                member_id=found.member_id,
                points=found.points,
                reason=found.reason,
                transaction_id=found.final_transaction_id,
                redeemed_at=found.created_at,
                available_after=ledger.balance(db, member_id=member.id).available,
                replayed=replayed,
            )
        )
    return answers


def _events(db: Session, program: Program) -> list[dict[str, Any]]:
    return list(
        db.scalars(
            select(OutboxEvent.payload)
            .where(
                OutboxEvent.program_id == program.id, OutboxEvent.event_type == "points.redeemed"
            )
            .order_by(OutboxEvent.id)
        )
    )


def _remaining(db: Session, *lot_ids: int) -> list[int]:
    return [db.get(Lot, lot_id).remaining for lot_id in lot_ids]  # type: ignore[union-attr]


# --- hand cases -----------------------------------------------------------------------------


def test_a_members_requests_share_lots_first_expiring_first(db: Session, now: datetime) -> None:
    program = _program(db, now)
    ana, bea = make_member(db, program=program, now=now), make_member(db, program=program, now=now)
    late = _earn(db, program, ana, 50, now - timedelta(days=10))
    early = _earn(db, program, ana, 30, now - timedelta(days=60))
    gone = _earn(db, program, ana, 40, now - timedelta(days=EXPIRY_DAYS + 1))  # past expiry
    bea_lot = _earn(db, program, bea, 20, now)
    db.commit()

    answers = _batch(
        db, program, [_ask(ana, 20, "a1"), _ask(bea, 5, "b1"), _ask(ana, 25, "a2")], now
    )
    db.commit()

    first, second, third = answers
    assert isinstance(first, Redeemed) and isinstance(second, Redeemed)
    assert isinstance(third, Redeemed)
    # The lot past its expiry is still in the balance (the job has not run) but never spent.
    assert [a.available_after for a in (first, second, third)] == [100, 15, 75]
    assert not any(a.replayed for a in (first, second, third))
    assert _remaining(db, early, late, gone, bea_lot) == [0, 35, 40, 15]
    third_hold = db.get(Hold, third.hold_id)
    assert third_hold is not None
    assert third_hold.status == "captured" and third_hold.reference == "redemption:a2"
    assert third_hold.detail == {"lots": [[early, 10], [late, 15]]}
    assert third_hold.final_transaction_id == third.transaction_id
    assert third_hold.expires_at == now + timedelta(minutes=settings_of(program).hold_ttl_minutes)
    kinds: dict[int, str] = dict(
        db.execute(
            select(LedgerTransaction.id, LedgerTransaction.kind).where(
                LedgerTransaction.id.in_(
                    [third_hold.hold_transaction_id, third_hold.final_transaction_id]
                )
            )
        ).all()
    )
    assert kinds == {third_hold.hold_transaction_id: "reserve", third.transaction_id: "capture"}
    assert third_hold.hold_transaction_id < third.transaction_id
    taken = db.execute(
        select(Allocation.lot_id, Allocation.amount, Allocation.kind)
        .where(Allocation.transaction_id == third_hold.hold_transaction_id)
        .order_by(Allocation.lot_id)
    ).all()
    assert sorted(taken) == sorted([(early, 10, "hold"), (late, 15, "hold")])
    balance = ledger.balance(db, member_id=ana.id)
    assert (balance.available, balance.held) == (75, 0)
    assert check_ledger(db, program_id=program.id) == []


def test_every_fresh_redemption_announces_itself_once(db: Session, now: datetime) -> None:
    program = _program(db, now)
    ana = make_member(db, program=program, now=now)
    _earn(db, program, ana, 100, now)
    db.commit()
    done = _batch(db, program, [_ask(ana, 10, "e1", "tea"), _ask(ana, 10, "e1", "tea")], now)
    db.commit()
    again = _batch(db, program, [_ask(ana, 10, "e1")], now)
    db.commit()

    first = done[0]
    assert isinstance(first, Redeemed)
    assert _events(db, program) == [
        {
            "member_id": ana.id,
            "points": 10,
            "reference": "e1",
            "transaction_id": first.transaction_id,
            "hold_id": first.hold_id,
            "reason": "tea",
        }
    ]
    assert [a.replayed for a in done + again] == [False, True, True]


def test_the_single_paths_announce_each_capture_once(db: Session, now: datetime) -> None:
    program = _program(db, now)
    ana = make_member(db, program=program, now=now)
    _earn(db, program, ana, 100, now)

    def hold(points: int, reference: str) -> Hold:
        return ledger.hold(
            db,
            program_id=program.id,
            settings=settings_of(program),
            member_id=ana.id,
            points=points,
            reference=reference,
            now=now,
            reason="gift",
        )

    def spend() -> tuple[Hold, bool]:
        return ledger.hold_and_capture(
            db,
            program_id=program.id,
            settings=settings_of(program),
            member_id=ana.id,
            points=7,
            reference="redemption:till-1",
            now=now,
            reason="coffee",
        )

    kept, dropped = hold(10, "mine-1"), hold(20, "mine-2")
    assert _events(db, program) == []  # held is not spent
    captured = ledger.capture(db, program_id=program.id, hold_id=kept.id, now=now)
    ledger.release(db, program_id=program.id, hold_id=dropped.id, now=now)
    spent, _ = spend()
    spend()  # a replay
    db.commit()

    assert _events(db, program) == [
        {
            "member_id": ana.id,
            "points": 10,
            "reference": "mine-1",
            "transaction_id": captured.final_transaction_id,
            "hold_id": kept.id,
            "reason": "gift",
        },
        {
            "member_id": ana.id,
            "points": 7,
            "reference": "till-1",
            "transaction_id": spent.final_transaction_id,
            "hold_id": spent.id,
            "reason": "coffee",
        },
    ]


def test_each_error_is_its_requests_own_and_the_others_go_on(db: Session, now: datetime) -> None:
    program = _program(db, now)
    elsewhere = _program(db, now)
    ana = make_member(db, program=program, now=now)
    closed = make_member(db, program=program, now=now)
    stranger = make_member(db, program=elsewhere, now=now)
    _earn(db, program, ana, 50, now)
    _earn(db, program, closed, 50, now)
    _earn(db, elsewhere, stranger, 50, now)
    members.change_status(
        db, program=program, member=closed, status="closed", reason="asked", now=now
    )
    db.commit()
    missing = stranger.id + 10_000

    answers = _batch(
        db,
        program,
        [
            _ask(stranger, 5, "x1"),
            _ask(missing, 5, "x2"),
            _ask(closed, 5, "x3"),
            _ask(ana, 0, "x4"),
            _ask(ana, 80, "x5"),  # more than there is
            _ask(ana, 30, "x6"),  # then what there is
            _ask(ana, 30, "x7"),
        ],
        now,
    )
    db.commit()

    errors = [(type(a), a.field, a.message) for a in answers if isinstance(a, FidelizaError)]
    assert errors == [
        (NotFound, "member_id", f"member {stranger.id} does not exist"),
        (NotFound, "member_id", f"member {missing} does not exist"),
        (InvalidState, "member_id", f"member {closed.external_id!r} is closed"),
        (ValidationError, "points", "must be positive, got 0"),
        (InsufficientPoints, "points", "needs 80 points but only 50 are available"),
        (InsufficientPoints, "points", "needs 30 points but only 20 are available"),
    ]
    assert isinstance(answers[5], Redeemed) and answers[5].available_after == 20
    assert ledger.balance(db, member_id=closed.id).available == 50
    assert ledger.balance(db, member_id=stranger.id).available == 50
    assert len(_events(db, program)) == 1 and _events(db, elsewhere) == []
    assert check_ledger(db, program_id=program.id) == []


def test_a_reference_replays_or_is_refused_within_and_across_batches(
    db: Session, now: datetime
) -> None:
    program = _program(db, now)
    ana, bea = make_member(db, program=program, now=now), make_member(db, program=program, now=now)
    _earn(db, program, ana, 100, now)
    _earn(db, program, bea, 100, now)
    db.commit()
    first = _batch(
        db,
        program,
        [
            _ask(ana, 500, "r1"),  # refused: its reference stays free
            _ask(ana, 10, "r1", "first"),
            _ask(ana, 20, "r2"),
            _ask(ana, 10, "r1", "other reason"),  # the same member and points: a replay
            _ask(ana, 11, "r1"),
            _ask(bea, 10, "r1"),
        ],
        now,
    )
    db.commit()
    later = now + timedelta(minutes=5)
    second = _batch(db, program, [_ask(ana, 10, "r1"), _ask(bea, 10, "r2")], later)
    db.commit()

    made, _, replay = first[1], first[2], first[3]
    assert isinstance(first[0], InsufficientPoints)
    assert isinstance(made, Redeemed) and isinstance(replay, Redeemed)
    assert (made.replayed, made.available_after) == (False, 90)
    # The first redemption's data, and the balance at that point of the batch.
    assert replay == Redeemed(
        hold_id=made.hold_id,
        member_id=ana.id,
        points=10,
        reason="first",
        transaction_id=made.transaction_id,
        redeemed_at=now,
        available_after=70,
        replayed=True,
    )
    for refused in (first[4], first[5], second[1]):
        assert isinstance(refused, IdempotencyError)
        assert (refused.field, refused.message) == (
            "reference",
            "was already used for another redemption",
        )
    across = second[0]
    assert isinstance(across, Redeemed)
    assert (across.hold_id, across.redeemed_at, across.available_after) == (made.hold_id, now, 70)
    assert across.replayed
    assert len(_events(db, program)) == 2
    assert check_ledger(db, program_id=program.id) == []


def test_a_batch_costs_the_same_statements_whatever_its_size(
    db: Session, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = _program(db, now)
    people = [make_member(db, program=program, now=now) for _ in range(12)]
    for person in people:
        _earn(db, program, person, 100, now)
    db.commit()
    seen: list[str] = []
    # Bulk inserts go to the driver directly (COPY, executemany): counted by call.
    real_bulk_insert = redemptions.bulk_insert

    def bulk_insert(session: Session, table: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(f"bulk insert into {table.name}")
        real_bulk_insert(session, table, *args, **kwargs)

    def note(*args: Any) -> None:
        seen.append(args[2])

    monkeypatch.setattr(redemptions, "bulk_insert", bulk_insert)

    def statements(requests: list[RedemptionRequest]) -> int:
        seen.clear()
        engine = db.get_bind()
        event.listen(engine, "before_cursor_execute", note)
        try:
            assert all(isinstance(a, Redeemed) for a in _batch(db, program, requests, now))
        finally:
            event.remove(engine, "before_cursor_execute", note)
        db.commit()
        return len(seen)

    # Two members (a batch of one takes simpler statements to change one row).
    few = statements([_ask(people[0], 5, "s0"), _ask(people[1], 5, "s1")])
    many = statements(
        [
            _ask(person, 5 + turn, f"s{turn}-{i}")
            for turn in range(3)
            for i, person in enumerate(people)
        ]
    )
    assert many == few
    assert few <= 14  # on SQLite the two UPDATEs go to the driver: not counted


def test_an_empty_batch_does_nothing(db: Session, now: datetime) -> None:
    program = _program(db, now)
    assert _batch(db, program, [], now) == []


# --- the property: a batch is the requests one after the other ------------------------------

# A few members: three active (index 0-2), one closed (3), one of another program (4) and an
# id nobody has (5). A few references, so that replays and refusals happen often.
WHO = st.integers(0, 5)
REQUESTS = st.lists(
    st.tuples(WHO, st.integers(-1, 60), st.sampled_from("abcdef"), st.sampled_from(["x", "y"])),
    min_size=1,
    max_size=12,
)
# (points, days ago): lots older than EXPIRY_DAYS are past expiry, still available.
LOTS = st.lists(
    st.lists(
        st.tuples(st.integers(1, 40), st.sampled_from([0, 5, 30, EXPIRY_DAYS + 2])), max_size=3
    ),
    min_size=4,
    max_size=4,
)


class World:
    """A program, its members and their lots, built alike for each side of a comparison."""

    def __init__(self, db: Session, now: datetime, lots: list[list[tuple[int, int]]]) -> None:
        self.program = _program(db, now)
        elsewhere = _program(db, now)
        self.people = [make_member(db, program=self.program, now=now) for _ in range(4)]
        self.people.append(make_member(db, program=elsewhere, now=now))
        for person, earnings in zip(self.people[:4], lots, strict=True):
            for points, days_ago in earnings:
                _earn(db, self.program, person, points, now - timedelta(days=days_ago))
        members.change_status(
            db, program=self.program, member=self.people[3], status="closed", reason="t", now=now
        )
        db.commit()
        self.member_ids = [p.id for p in self.people] + [self.people[-1].id + 100_000]

    def requests(self, drawn: list[tuple[int, int, str, str]]) -> list[RedemptionRequest]:
        return [_ask(self.member_ids[who], pts, ref, why) for who, pts, ref, why in drawn]

    def who(self, member_id: int) -> int:
        return self.member_ids.index(member_id)

    def anonymous(self, message: str) -> str:
        """A message naming a member (by id or external id) by its index instead."""
        names = {str(i): n for n, i in enumerate(self.member_ids)}
        names |= {repr(p.external_id): n for n, p in enumerate(self.people)}
        return re.sub(r"member (\S+)", lambda m: f"member #{names[m.group(1)]}", message)


def _ranks(db: Session, column: Any, program_id: int) -> dict[int, int]:
    """Ids of a program's rows by creation order: comparable between two programs."""
    ids = db.scalars(select(column.table.c.id).where(column == program_id).order_by("id"))
    return {row_id: rank for rank, row_id in enumerate(ids)}


def _outcome(db: Session, world: World, answers: list[Answer]) -> dict[str, Any]:
    """Everything the redemptions decided and wrote, with ids as ranks within the program."""
    program_id = world.program.id
    tx = _ranks(db, LedgerTransaction.program_id, program_id)
    holds = _ranks(db, Hold.program_id, program_id)
    lots = _ranks(db, Lot.program_id, program_id)

    def answer(a: Answer) -> tuple[Any, ...]:
        if isinstance(a, FidelizaError):
            return (type(a).__name__, a.code, a.field, world.anonymous(a.message))
        return (
            holds[a.hold_id],
            world.who(a.member_id),
            a.points,
            a.reason,
            tx[a.transaction_id] if a.transaction_id else None,
            a.redeemed_at,
            a.available_after,
            a.replayed,
        )

    hold_rows = db.execute(
        select(Hold).where(Hold.program_id == program_id).order_by(Hold.id)
    ).scalars()
    entries = db.execute(
        select(LedgerTransaction.id, LedgerTransaction.kind, Entry.amount, Entry.detail)
        .join(Entry, Entry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.program_id == program_id)
        .order_by(LedgerTransaction.id, Entry.amount)
    ).all()
    return {
        "answers": [answer(a) for a in answers],
        "balances": [ledger.balance(db, member_id=member_id) for member_id in world.member_ids[:5]],
        "lots": [
            (lots[lot.id], lot.remaining, lot.state)
            for lot in db.scalars(select(Lot).where(Lot.program_id == program_id).order_by(Lot.id))
        ],
        "holds": [
            (
                holds[h.id],
                world.who(h.member_id),
                h.points,
                h.status,
                h.reference,
                h.reason,
                tx[h.hold_transaction_id],
                tx[h.final_transaction_id] if h.final_transaction_id else None,
                h.created_at,
                h.expires_at,
                [[lots[lot_id], take] for lot_id, take in h.detail["lots"]],
            )
            for h in hold_rows
        ],
        "entries": [(tx[t], kind, amount, detail) for t, kind, amount, detail in entries],
        "events": [
            {
                **event,
                "member_id": world.who(event["member_id"]),
                "transaction_id": tx[event["transaction_id"]],
                "hold_id": holds[event["hold_id"]],
            }
            for event in _events(db, world.program)
        ],
        "check": check_ledger(db, program_id=program_id),
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lots=LOTS, batches=st.lists(REQUESTS, min_size=1, max_size=2))
def test_a_batch_gives_what_one_by_one_gives(
    session_factory: sessionmaker[Session],
    now: datetime,
    lots: list[list[tuple[int, int]]],
    batches: list[list[tuple[int, int, str, str]]],
) -> None:
    outcomes = []
    for redeem in (_batch, _one_by_one):
        with session_factory() as db:
            world = World(db, now, lots)
            answers: list[Answer] = []
            for turn, drawn in enumerate(batches):
                at = now + timedelta(minutes=turn)
                answers += redeem(db, world.program, world.requests(drawn), at)
                db.commit()
            outcomes.append(_outcome(db, world, answers))
    batched, single = outcomes
    assert batched == single
    assert batched["check"] == []
