"""Surveys and complaints reach the member through messaging, when the program sends messages."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.cases import service as cases
from fideliza.messaging.models import Message
from fideliza.surveys import service as surveys
from tests.integration.cases.builders import buy, complaint
from tests.integration.messaging.support import SECRET, Shop
from tests.integration.surveys.builders import nps_survey


def _queued(db: Session, program_id: int, kind: str) -> list[Message]:
    query = select(Message).where(Message.program_id == program_id, Message.kind == kind)
    return list(db.scalars(query.order_by(Message.id)))


def test_a_survey_invitation_is_queued_with_its_signed_link(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIDELIZA_SECRET_KEY", SECRET)
    member = shop.member()
    surveys.define(shop.db, program=shop.program, definition=nps_survey(), now=shop.now)
    buy(shop.db, shop.program, member, shop.now)
    assert surveys.invite_due(shop.db, program_id=shop.program.id, now=shop.now) == 1
    assert surveys.invite_due(shop.db, program_id=shop.program.id, now=shop.now) == 0
    shop.db.commit()
    [message] = _queued(shop.db, shop.program.id, "survey_invitation")
    [invitation] = surveys.invitations_of(shop.db, program_id=shop.program.id, member_id=member.id)
    assert message.member_id == member.id
    link = message.context["survey"]["url"]
    assert link.endswith(surveys.token_of(invitation, settings=surveys.SurveySettings()))
    assert message.context["survey"]["name"] == "Tu opinión"


def test_without_a_secret_invitations_wait_and_nothing_is_queued(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIDELIZA_SECRET_KEY", raising=False)
    member = shop.member()
    surveys.define(shop.db, program=shop.program, definition=nps_survey(), now=shop.now)
    buy(shop.db, shop.program, member, shop.now)
    assert surveys.invite_due(shop.db, program_id=shop.program.id, now=shop.now) == 1
    assert _queued(shop.db, shop.program.id, "survey_invitation") == []


def test_the_member_hears_when_their_complaint_is_opened_and_resolved(shop: Shop) -> None:
    member = shop.member()
    case = complaint(shop.db, shop.program, member, shop.now)
    cases.resolve(
        shop.db,
        program=shop.program,
        case_id=case.id,
        resolution=cases.parse_resolution(summary="Refunded, sorry", apologized=True, now=shop.now),
        now=shop.now,
    )
    shop.db.commit()
    updates = _queued(shop.db, shop.program.id, "complaint_update")
    assert [(m.member_id, m.context["case"]["status"]) for m in updates] == [
        (member.id, "open"),
        (member.id, "resolved"),
    ]
    assert updates[1].context["case"]["note"] == "Refunded, sorry"
    assert all(m.transactional for m in updates)
