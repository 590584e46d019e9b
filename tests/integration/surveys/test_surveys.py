"""Surveys end to end on SQLite and PostgreSQL: define, invite, answer by link, score."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fideliza.core.errors import NotFound, ValidationError
from fideliza.ledger import service as ledger
from fideliza.members import service as members
from fideliza.programs.models import AuditLog, OutboxEvent, Program
from fideliza.rules import service as rules
from fideliza.surveys import service as surveys
from fideliza.surveys.domain import in_sample
from fideliza.surveys.errors import InvalidLink, LinkExpired, LinkUsed, MissingSecret
from fideliza.surveys.models import SurveyInvitation, SurveyResponse
from fideliza.surveys.scores import responses_for_analytics, scores
from fideliza.surveys.service import SurveySettings
from tests.factories import make_member, make_program
from tests.integration.surveys.builders import SETTINGS, buy, csat_survey, nps_survey

DAY = timedelta(days=1)


def _invitations(db: Session, program_id: int) -> list[SurveyInvitation]:
    return list(
        db.scalars(
            select(SurveyInvitation)
            .where(SurveyInvitation.program_id == program_id)
            .order_by(SurveyInvitation.id)
        )
    )


# --- definitions -------------------------------------------------------------------------------


def test_defining_a_code_again_adds_a_version_and_retires_the_last(
    db: Session, now: datetime
) -> None:
    program = make_program(db, now=now)
    first = surveys.define(db, program=program, definition=nps_survey(), now=now, actor="cli")
    second = surveys.define(db, program=program, definition=nps_survey(), now=now + DAY)
    db.commit()
    assert (first.version, second.version) == (1, 2)
    assert [s.id for s in surveys.list_surveys(db, program_id=program.id)] == [second.id]
    assert len(surveys.list_surveys(db, program_id=program.id, include_retired=True)) == 2
    assert surveys.get_active(db, program_id=program.id, code="nps").id == second.id
    actions = db.scalars(
        select(AuditLog.subject).where(
            AuditLog.program_id == program.id, AuditLog.action == "fideliza.survey.defined"
        )
    ).all()
    assert sorted(actions) == ["nps@1", "nps@2"]


def test_a_bad_definition_names_its_path_and_writes_nothing(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    bad = nps_survey()
    bad["questions"].append(
        {"id": "visit", "type": "choice", "text": {"es": "?"}, "choices": [{"value": "a"}]}
    )
    with pytest.raises(ValidationError) as error:
        surveys.define(db, program=program, definition=bad, now=now)
    assert error.value.field == "questions[2].choices[0].text"
    assert surveys.list_surveys(db, program_id=program.id, include_retired=True) == []


# --- invitations after purchases ---------------------------------------------------------------


def test_purchases_invite_once_per_purchase_and_respect_the_quiet_period(
    db: Session, now: datetime
) -> None:
    program = make_program(db, now=now)
    ana = make_member(db, program=program, now=now)
    bea = make_member(db, program=program, now=now, locale="en")
    old = buy(db, program=program, member=ana, at=now - DAY)  # before the survey existed
    surveys.define(db, program=program, definition=nps_survey(), now=now)
    first = buy(db, program=program, member=ana, at=now + timedelta(hours=1), store="BCN-2")
    buy(db, program=program, member=ana, at=now + timedelta(hours=2))  # same run: quiet
    bea_purchase = buy(db, program=program, member=bea, at=now + timedelta(hours=3), channel="web")
    db.commit()

    assert surveys.invite_due(db, program_id=program.id, now=now + 4 * timedelta(hours=1)) == 2
    assert surveys.invite_due(db, program_id=program.id, now=now + 5 * timedelta(hours=1)) == 0
    buy(db, program=program, member=ana, at=now + 2 * DAY)  # within the 30 quiet days
    assert surveys.invite_due(db, program_id=program.id, now=now + 2 * DAY) == 0
    db.commit()

    made = _invitations(db, program.id)
    assert [(i.member_id, i.source_ref) for i in made] == [(ana.id, first), (bea.id, bea_purchase)]
    assert old not in {i.source_ref for i in made}
    assert [(i.store, i.channel, i.locale) for i in made] == [
        ("BCN-2", "store", "es"),
        ("MAD-1", "web", "en"),
    ]
    assert made[0].expires_at == (now + 4 * timedelta(hours=1) + 14 * DAY)
    sent = db.scalars(
        select(OutboxEvent.event_type).where(OutboxEvent.program_id == program.id)
    ).all()
    assert sent.count("survey.invited") == 2


def test_the_purchase_sample_is_a_stable_hash(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    surveys.define(
        db,
        program=program,
        definition=nps_survey(trigger="purchase", sample_rate="0.3", quiet_days=0),
        now=now,
    )
    refs = []
    for number in range(30):
        member = make_member(db, program=program, now=now)
        refs.append(buy(db, program=program, member=member, at=now + timedelta(minutes=number)))
    db.commit()
    later = now + timedelta(hours=1)
    expected = {r for r in refs if in_sample(survey_code="nps", source_ref=r, rate=Decimal("0.3"))}
    assert 0 < len(expected) < 30
    assert surveys.invite_due(db, program_id=program.id, now=later) == len(expected)
    # A new version keeps the sample (the survey's code is hashed, not its version).
    surveys.define(
        db,
        program=program,
        definition=nps_survey(trigger="purchase", sample_rate="0.3", quiet_days=0),
        now=later,
    )
    assert surveys.invite_due(db, program_id=program.id, now=later) == 0
    db.commit()
    assert {i.source_ref for i in _invitations(db, program.id)} == expected


def test_purchases_older_than_max_age_are_not_surveyed(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    surveys.define(
        db,
        program=program,
        definition=nps_survey(trigger="purchase", sample_rate="1", max_age_days=2),
        now=now,
    )
    member = make_member(db, program=program, now=now)
    buy(db, program=program, member=member, at=now + DAY)
    db.commit()
    assert surveys.invite_due(db, program_id=program.id, now=now + 4 * DAY) == 0


def test_closed_members_are_not_invited(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    surveys.define(db, program=program, definition=nps_survey(), now=now)
    member = make_member(db, program=program, now=now)
    buy(db, program=program, member=member, at=now + DAY)
    members.change_status(
        db, program=program, member=member, status="closed", reason="left", now=now + DAY
    )
    db.commit()
    assert surveys.invite_due(db, program_id=program.id, now=now + 2 * DAY) == 0


# --- relationship and after-case invitations ---------------------------------------------------


def test_relationship_surveys_come_every_n_months(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    veteran = make_member(db, program=program, now=now - 200 * DAY)
    make_member(db, program=program, now=now - 10 * DAY)  # too new to ask
    surveys.define(
        db,
        program=program,
        definition=nps_survey(trigger="relationship", every_months=6, expires_days=30),
        now=now,
    )
    db.commit()
    assert surveys.invite_due(db, program_id=program.id, now=now) == 1
    assert surveys.invite_due(db, program_id=program.id, now=now + 40 * DAY) == 0
    assert surveys.invite_due(db, program_id=program.id, now=now + 190 * DAY) == 2
    db.commit()
    made = _invitations(db, program.id)
    assert [(i.member_id, i.trigger, i.source_ref) for i in made[:1]] == [
        (veteran.id, "relationship", "2025-03")
    ]


def test_a_resolved_case_invites_once_in_the_members_locale(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    member = make_member(db, program=program, now=now, locale="it")
    assert (
        surveys.invite_after_case(
            db, program_id=program.id, member_id=member.id, case_ref="C-1", now=now
        )
        == []
    )  # no after-case survey yet: a logged skip
    surveys.define(db, program=program, definition=csat_survey(), now=now)
    made = surveys.invite_after_case(
        db, program_id=program.id, member_id=member.id, case_ref="C-1", now=now
    )
    again = surveys.invite_after_case(
        db, program_id=program.id, member_id=member.id, case_ref="C-1", now=now + DAY
    )
    db.commit()
    assert [(i.trigger, i.source_ref, i.locale) for i in made] == [("case", "C-1", "it")]
    assert again == []
    assert made[0].expires_at == now + 7 * DAY
    with pytest.raises(NotFound):
        surveys.invite_after_case(db, program_id=program.id, member_id=10**9, case_ref="C", now=now)


# --- answering ---------------------------------------------------------------------------------


def _invited(db: Session, now: datetime, **member: str) -> tuple[int, SurveyInvitation, str]:
    program = make_program(db, now=now)
    rules.create(
        db,
        program=program,
        now=now,
        definition={
            "name": "thanks for answering",
            "activity": "survey_answered",
            "actions": [{"type": "fixed_bonus", "points": 25}],
        },
    )
    surveys.define(db, program=program, definition=csat_survey(), now=now)
    someone = make_member(db, program=program, now=now, **member)
    (invitation,) = surveys.invite_after_case(
        db, program_id=program.id, member_id=someone.id, case_ref="C-9", now=now
    )
    db.commit()
    return program.id, invitation, surveys.token_of(invitation, settings=SETTINGS)


def test_an_answer_is_stored_once_and_earns_through_the_rules(db: Session, now: datetime) -> None:
    program_id, invitation, token = _invited(db, now)
    shown = surveys.open_link(db, token=token, now=now, settings=SETTINGS)
    assert shown["title"] == "Satisfacción"
    assert shown["questions"][0] | {"min": 1, "max": 5} == shown["questions"][0]
    outcome = surveys.answer(
        db, token=token, answers={"satisfied": 4}, now=now + DAY, settings=SETTINGS
    )
    db.commit()
    assert outcome.points_earned == 25
    assert ledger.balance(db, member_id=invitation.member_id).available == 25
    response = db.scalars(
        select(SurveyResponse).where(SurveyResponse.program_id == program_id)
    ).one()
    assert (response.kind, response.score, response.answers) == ("csat", 4, {"satisfied": 4})
    assert response.trigger == "case" and response.event_id is not None
    with pytest.raises(LinkUsed):
        surveys.answer(db, token=token, answers={"satisfied": 5}, now=now + DAY, settings=SETTINGS)
    with pytest.raises(LinkUsed):
        surveys.open_link(db, token=token, now=now + DAY, settings=SETTINGS)
    db.rollback()
    assert ledger.balance(db, member_id=invitation.member_id).available == 25


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({"satisfied": 6}, "answers.satisfied"),
        ({"satisfied": 0}, "answers.satisfied"),
        ({"satisfied": "5"}, "answers.satisfied"),
        ({}, "answers.satisfied"),
        ({"satisfied": 3, "other": 1}, "answers.other"),
    ],
)
def test_a_bad_answer_is_refused_and_leaves_the_link_usable(
    db: Session, now: datetime, answers: dict[str, object], field: str
) -> None:
    _, invitation, token = _invited(db, now)
    with pytest.raises(ValidationError) as error:
        surveys.answer(db, token=token, answers=answers, now=now, settings=SETTINGS)
    assert error.value.field == field
    db.rollback()
    assert db.get_one(SurveyInvitation, invitation.id).answered_at is None
    surveys.answer(db, token=token, answers={"satisfied": 5}, now=now, settings=SETTINGS)
    db.commit()


def test_forged_expired_and_foreign_links_are_refused(db: Session, now: datetime) -> None:
    _, invitation, token = _invited(db, now)
    prefix, number, expiry, signature = token.split(".")
    forged = [
        "",
        "not-a-token",
        f"{prefix}.{int(number) + 1}.{expiry}.{signature}",  # another invitation
        f"{prefix}.{number}.{int(expiry) + 86400}.{signature}",  # a later expiry
        f"{prefix}.{number}.{expiry}.{'A' * 43}",
    ]
    for bad in forged:
        with pytest.raises(InvalidLink) as error:
            surveys.answer(db, token=bad, answers={"satisfied": 5}, now=now, settings=SETTINGS)
        assert error.value.code == "invalid_link"
    other_secret = SurveySettings(secret_key="another-secret-of-at-least-32-characters")  # type: ignore[arg-type]
    with pytest.raises(InvalidLink):
        surveys.open_link(db, token=token, now=now, settings=other_secret)
    with pytest.raises(LinkExpired) as expired:
        surveys.answer(
            db,
            token=token,
            answers={"satisfied": 5},
            now=invitation.expires_at,
            settings=SETTINGS,
        )
    assert expired.value.code == "link_expired"
    assert db.get_one(SurveyInvitation, invitation.id).answered_at is None


def test_links_need_a_long_enough_secret(
    db: Session, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, invitation, _ = _invited(db, now)
    monkeypatch.delenv("FIDELIZA_SECRET_KEY", raising=False)
    with pytest.raises(MissingSecret) as error:
        surveys.token_of(invitation, settings=SurveySettings(_env_file=None))  # type: ignore[call-arg]
    assert error.value.field == "FIDELIZA_SECRET_KEY"
    monkeypatch.setenv("FIDELIZA_SECRET_KEY", "s" * 40)
    from_env = SurveySettings(_env_file=None)  # type: ignore[call-arg]
    assert surveys.link_of(invitation, settings=from_env).startswith(from_env.survey_link_base)


def test_the_link_opens_in_the_members_locale_with_a_fallback(db: Session, now: datetime) -> None:
    _, _, english = _invited(db, now, locale="en")  # the survey has no English: Spanish
    _, _, italian = _invited(db, now, locale="it")
    assert surveys.open_link(db, token=english, now=now, settings=SETTINGS)["locale"] == "es"
    shown = surveys.open_link(db, token=italian, now=now, settings=SETTINGS)
    assert (shown["locale"], shown["questions"][0]["text"]) == ("it", "Soddisfatto?")
    asked = surveys.open_link(db, token=italian, now=now, settings=SETTINGS, locale="es")
    assert asked["title"] == "Satisfacción"


# --- scores ------------------------------------------------------------------------------------


def test_nps_per_month_and_store_with_trend(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    surveys.define(
        db,
        program=program,
        definition=nps_survey(trigger="purchase", sample_rate="1", quiet_days=0),
        now=now,
    )
    march = [(10, "MAD-1"), (9, "MAD-1"), (3, "BCN-2"), (8, "MAD-1")]
    april = [(10, "MAD-1"), (10, "MAD-1"), (6, "BCN-2")]
    for answered_at, batch in ((now + DAY, march), (now + 32 * DAY, april)):
        for _score, store in batch:
            member = make_member(db, program=program, now=now)
            buy(db, program=program, member=member, at=answered_at, store=store)
        surveys.invite_due(db, program_id=program.id, now=answered_at)
        open_ones = [i for i in _invitations(db, program.id) if i.answered_at is None]
        for invitation, (score, _) in zip(open_ones, batch, strict=True):
            surveys.answer(
                db,
                token=surveys.token_of(invitation, settings=SETTINGS),
                answers={"recommend": score},
                now=answered_at,
                settings=SETTINGS,
            )
    db.commit()

    overall = scores(db, program=program, kind="nps", period="month")
    assert [(r.period, r.group, r.score.responses, r.score.value) for r in overall] == [
        ("2025-03", "all", 4, Decimal("25.0")),
        ("2025-04", "all", 3, Decimal("33.3")),
    ]
    assert overall[0].change is None and overall[1].change == Decimal("8.3")
    assert overall[0].score.low < overall[0].score.value < overall[0].score.high
    by_store = scores(db, program=program, kind="nps", by="store")
    assert [(r.period, r.group, r.score.value) for r in by_store] == [
        ("2025-03", "BCN-2", Decimal("-100.0")),
        ("2025-04", "BCN-2", Decimal("-100.0")),
        ("2025-03", "MAD-1", Decimal("66.7")),
        ("2025-04", "MAD-1", Decimal("100.0")),
    ]
    quarter = scores(db, program=program, kind="nps", period="quarter")
    assert [(r.period, r.score.responses) for r in quarter] == [("2025-Q1", 4), ("2025-Q2", 3)]
    assert scores(db, program=program, kind="csat") == []
    rows = db.execute(responses_for_analytics(program.id)).all()
    assert len(rows) == 7 and {row.kind for row in rows} == {"nps"}
    with pytest.raises(ValidationError) as error:
        scores(db, program=program, kind="nps", by="weather")
    assert error.value.field == "by"


def test_a_manual_invitation_is_idempotent_by_its_ref(db: Session, now: datetime) -> None:
    program = make_program(db, now=now)
    elsewhere = make_program(db, now=now)
    surveys.define(db, program=program, definition=csat_survey(), now=now)
    member = make_member(db, program=program, now=now)
    stranger = make_member(db, program=elsewhere, now=now)
    first = surveys.invite(
        db, program_id=program.id, survey_code="csat", member=member, source_ref="call", now=now
    )
    again = surveys.invite(
        db, program_id=program.id, survey_code="csat", member=member, source_ref="call", now=now
    )
    assert (again.id, first.trigger) == (first.id, "manual")
    with pytest.raises(NotFound) as unknown:
        surveys.invite(
            db, program_id=program.id, survey_code="nope", member=member, source_ref="x", now=now
        )
    assert unknown.value.field == "survey"
    with pytest.raises(NotFound):
        surveys.invite(
            db, program_id=program.id, survey_code="csat", member=stranger, source_ref="x", now=now
        )
    with pytest.raises(ValidationError) as blank:
        surveys.invite(
            db, program_id=program.id, survey_code="csat", member=member, source_ref=" ", now=now
        )
    assert blank.value.field == "source_ref"


def test_a_closed_member_s_answer_is_kept_but_earns_nothing(db: Session, now: datetime) -> None:
    program_id, invitation, token = _invited(db, now)
    member = members.get(db, program_id=program_id, member_id=invitation.member_id)
    members.change_status(
        db,
        program=db.get_one(Program, program_id),
        member=member,
        status="closed",
        reason="left",
        now=now,
    )
    db.commit()
    outcome = surveys.answer(db, token=token, answers={"satisfied": 2}, now=now, settings=SETTINGS)
    db.commit()
    assert (outcome.points_earned, outcome.response.score, outcome.response.event_id) == (
        0,
        2,
        None,
    )
    assert ledger.balance(db, member_id=member.id).available == 0
