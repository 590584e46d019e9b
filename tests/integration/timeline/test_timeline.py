"""The member timeline on SQLite and PostgreSQL: every source, newest first, stable pages."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from fideliza.cases import service as cases
from fideliza.core.errors import NotFound, ValidationError
from fideliza.messaging import service as messaging
from fideliza.purchases import service as purchases
from fideliza.purchases.models import Purchase
from fideliza.rewards import service as rewards
from fideliza.surveys import service as surveys
from fideliza.timeline import service as timeline
from fideliza.timeline.domain import TimelineItem
from tests.factories import make_member, make_program
from tests.integration.cases.builders import buy, complaint, shop
from tests.integration.rewards.builders import make_reward
from tests.integration.surveys.builders import SETTINGS, csat_survey

HOUR = timedelta(hours=1)


def _all_pages(db: Session, program_id: int, member_id: int, limit: int) -> list[TimelineItem]:
    items: list[TimelineItem] = []
    cursor = None
    for _ in range(100):
        page = timeline.member_timeline(
            db, program_id=program_id, member_id=member_id, before=cursor, limit=limit
        )
        items += page.items
        assert len(page.items) <= limit
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("the pages never ended")


def test_every_source_appears_newest_first_and_pages_are_stable(db: Session, now: datetime) -> None:
    program, member = shop(db, now - 10 * HOUR)
    surveys.define(db, program=program, definition=csat_survey(), now=now - 10 * HOUR)
    purchase_id = buy(db, program, member, now - 9 * HOUR, amount="150.00")
    bought = db.get(Purchase, purchase_id)
    assert bought is not None
    purchases.record_return(
        db,
        program=program,
        purchase_external_id=bought.external_id,
        external_id="R-1",
        occurred_at=now - 8 * HOUR,
        now=now - 8 * HOUR,
        amount="50.00",
    )
    reward = make_reward(db, program=program, now=now - 8 * HOUR, points_cost=40)
    rewards.redeem(
        db,
        program=program,
        member_id=member.id,
        reward_id=reward.id,
        reference="RD-1",
        now=now - 7 * HOUR,
    )
    case = complaint(db, program, member, now - 6 * HOUR, purchase_id=purchase_id)
    cases.resolve(
        db,
        program=program,
        case_id=case.id,
        resolution=cases.parse_resolution(summary="Sorry", apologized=True, now=now - 5 * HOUR),
        now=now - 5 * HOUR,
    )
    (invitation,) = surveys.invitations_of(db, program_id=program.id, member_id=member.id)
    surveys.answer(
        db,
        token=surveys.token_of(invitation, settings=SETTINGS),
        answers={"satisfied": 5},
        now=now - 4 * HOUR,
        settings=SETTINGS,
    )
    messaging.enqueue(
        db,
        program_id=program.id,
        member_id=member.id,
        template="welcome",
        context={},
        key="timeline-welcome",
        now=now - 3 * HOUR,
    )
    other = make_member(db, program=program, now=now)
    buy(db, program, other, now - HOUR)  # someone else's purchase never shows
    db.commit()

    page = timeline.member_timeline(db, program_id=program.id, member_id=member.id)
    assert page.next_cursor is None
    kinds = [item.kind for item in page.items]
    assert set(kinds) == {"purchase", "return", "points", "redemption", "case", "survey", "message"}
    assert page.items[0].kind == "message" and page.items[0].detail["status"] == "pending"
    positions = [item.position for item in page.items]
    assert positions == sorted(positions, reverse=True)
    assert page.items[1].kind == "survey" and page.items[1].detail["score"] == 5
    assert [i.at for i in page.items if i.kind == "case"] == [now - 6 * HOUR]
    assert [i.points for i in page.items if i.kind == "purchase"] == [150]
    assert [i.points for i in page.items if i.kind == "return"] == [-50]
    assert [i.points for i in page.items if i.kind == "redemption"] == [-40]
    # The ledger: earned, then taken back by the return. The redemption is still a hold, which
    # only moved points between the member's own accounts: no ledger line of its own.
    ledger_lines = [(i.detail["kind"], i.points) for i in page.items if i.kind == "points"]
    assert ledger_lines == [("reverse", -50), ("earn", 150)]

    for limit in (1, 2, 3, 7):
        assert _all_pages(db, program.id, member.id, limit) == page.items

    only = timeline.member_timeline(
        db, program_id=program.id, member_id=member.id, kinds=["case", "purchase"]
    )
    assert [i.kind for i in only.items] == ["case", "purchase"]


def test_a_cursor_survives_new_items_and_ties_in_time(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    for _ in range(3):  # three purchases and three cases at the very same instant
        buy(db, program, member, now)
        complaint(db, program, member, now)
    db.commit()
    first = timeline.member_timeline(
        db, program_id=program.id, member_id=member.id, limit=4, kinds=["purchase", "case"]
    )
    buy(db, program, member, now + HOUR)  # newer than the cursor: not on later pages
    db.commit()
    rest = timeline.member_timeline(
        db,
        program_id=program.id,
        member_id=member.id,
        limit=4,
        before=first.next_cursor,
        kinds=["purchase", "case"],
    )
    seen = [(i.kind, i.id) for i in first.items + rest.items]
    assert len(seen) == len(set(seen)) == 6 and rest.next_cursor is None
    assert [i.kind for i in first.items + rest.items] == ["purchase"] * 3 + ["case"] * 3


def test_bad_requests_name_the_field(db: Session, now: datetime) -> None:
    program, member = shop(db, now)
    stranger = make_member(db, program=make_program(db, now=now), now=now)
    db.commit()
    for arguments, field in [
        ({"kinds": ["purchase", "tweets"]}, "kinds[1]"),
        ({"kinds": []}, "kinds"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"before": "not-a-cursor"}, "before"),
    ]:
        with pytest.raises(ValidationError) as refused:
            timeline.member_timeline(
                db,
                program_id=program.id,
                member_id=member.id,
                **arguments,  # type: ignore[arg-type]
            )
        assert refused.value.field == field, arguments
    with pytest.raises(NotFound) as elsewhere:
        timeline.member_timeline(db, program_id=program.id, member_id=stranger.id)
    assert elsewhere.value.field == "member_id"
