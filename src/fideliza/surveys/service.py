"""Survey use cases: define, invite (after purchases, cases, periodically), answer by link."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fideliza.core.errors import Conflict, NotFound, ValidationError
from fideliza.events import service as events
from fideliza.members.domain import MemberStatus
from fideliza.members.models import Member
from fideliza.programs import service as programs
from fideliza.programs.models import Program
from fideliza.purchases.models import Purchase
from fideliza.surveys import links
from fideliza.surveys.domain import (
    CheckedAnswers,
    add_months,
    check_answers,
    in_sample,
    localized,
    pick_locale,
    render,
)
from fideliza.surveys.errors import InvalidLink, LinkExpired, LinkUsed, MissingSecret
from fideliza.surveys.models import Survey, SurveyInvitation, SurveyResponse
from fideliza.surveys.schemas import SurveyDefinition, Trigger, parse_definition

log = logging.getLogger(__name__)

ANSWERED_EVENT = "survey_answered"  # the activity earning rules name to reward answers
DEFAULT_MAX_AGE_DAYS = 7
DEFAULT_QUIET_DAYS = 90
MIN_SECRET_LENGTH = 32
_INSERT_CHUNK = 500


class SurveySettings(BaseSettings):
    """FIDELIZA_SECRET_KEY signs answer links; FIDELIZA_SURVEY_LINK_BASE is where they point."""

    model_config = SettingsConfigDict(env_prefix="FIDELIZA_", env_file=".env", extra="ignore")

    secret_key: SecretStr | None = None
    survey_link_base: str = "http://127.0.0.1:8000/v1/survey-answers/"

    def secret(self) -> bytes:
        """The signing key; a clear configuration error when it is missing or too short."""
        value = self.secret_key.get_secret_value() if self.secret_key else ""
        if len(value) < MIN_SECRET_LENGTH:
            raise MissingSecret(
                f"set FIDELIZA_SECRET_KEY to a random text of at least {MIN_SECRET_LENGTH} "
                "characters to sign survey links",
                field="FIDELIZA_SECRET_KEY",
            )
        return value.encode()


# --- definitions -------------------------------------------------------------------------------


def define(
    db: Session,
    *,
    program: Program,
    definition: Mapping[str, Any],
    now: datetime,
    actor: str | None = None,
) -> Survey:
    """Adds a survey, or a new version of it (the previous version stops sending)."""
    parsed = parse_definition(dict(definition))
    # Lock the current versions, so two managers saving at once get versions n+1 and n+2.
    previous = db.scalars(
        select(Survey)
        .where(Survey.program_id == program.id, Survey.code == parsed.code)
        .order_by(Survey.version)
        .with_for_update()
    ).all()
    for old in previous:
        old.active = False
    survey = Survey(
        program_id=program.id,
        code=parsed.code,
        version=previous[-1].version + 1 if previous else 1,
        kind=parsed.kind.value,
        trigger=parsed.sending.trigger.value,
        definition=parsed.model_dump(mode="json", exclude_none=True),
        active=True,
        created_at=now,
        created_by=actor,
    )
    try:
        with db.begin_nested():
            db.add(survey)
            db.flush()
    except IntegrityError:
        # Two first versions saved at once (nothing to lock yet): the unique key decides.
        raise Conflict(
            f"survey {parsed.code!r} was saved by someone else at the same time; retry",
            field="code",
        ) from None
    programs.audit(
        db,
        program_id=program.id,
        action="fideliza.survey.defined",
        subject=f"{survey.code}@{survey.version}",
        now=now,
        actor=actor,
        data={"kind": survey.kind, "trigger": survey.trigger},
    )
    return survey


def definition_of(survey: Survey) -> SurveyDefinition:
    """The stored definition, as a validated value."""
    return SurveyDefinition.model_validate(survey.definition)


def list_surveys(db: Session, *, program_id: int, include_retired: bool = False) -> list[Survey]:
    """The program's surveys (current versions unless `include_retired`), by code."""
    statement = select(Survey).where(Survey.program_id == program_id)
    if not include_retired:
        statement = statement.where(Survey.active.is_(True))
    return list(db.scalars(statement.order_by(Survey.code, Survey.version)))


def get_active(db: Session, *, program_id: int, code: str) -> Survey:
    """The current version of a survey, by code."""
    survey = db.scalar(
        select(Survey).where(
            Survey.program_id == program_id, Survey.code == code, Survey.active.is_(True)
        )
    )
    if survey is None:
        raise NotFound(f"no survey {code!r}", field="survey")
    return survey


def _active_with_trigger(
    db: Session, *, program_id: int, trigger: Trigger, lock: bool = False
) -> list[Survey]:
    statement = (
        select(Survey)
        .where(
            Survey.program_id == program_id,
            Survey.active.is_(True),
            Survey.trigger == trigger.value,
        )
        .order_by(Survey.id)
    )
    if lock:
        # One sender per survey at a time: the quiet period is checked, then written.
        statement = statement.with_for_update()
    return list(db.scalars(statement))


# --- invitations -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Invite:
    member_id: int
    member_locale: str | None
    source_ref: str
    channel: str | None = None
    store: str | None = None


def _insert_invitations(
    db: Session,
    *,
    survey: Survey,
    definition: SurveyDefinition,
    trigger: Trigger,
    invites: list[_Invite],
    now: datetime,
) -> list[SurveyInvitation]:
    """Inserts invitations, skipping those that exist (same survey, member, trigger, source)."""
    if not invites:
        return []
    expires_at = (now + timedelta(days=definition.sending.expires_days)).replace(microsecond=0)
    rows = [
        {
            "program_id": survey.program_id,
            "survey_id": survey.id,
            "survey_code": survey.code,
            "member_id": invite.member_id,
            "trigger": trigger.value,
            "source_ref": invite.source_ref,
            "locale": pick_locale(definition, invite.member_locale),
            "channel": invite.channel,
            "store": invite.store,
            "created_at": now,
            "expires_at": expires_at,
            "answered_at": None,
        }
        for invite in invites
    ]
    table = SurveyInvitation.__table__
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .on_conflict_do_nothing(
            index_elements=["program_id", "survey_code", "member_id", "trigger", "source_ref"]
        )
        .returning(table.c.id)
    )
    created: list[int] = []
    for start in range(0, len(rows), _INSERT_CHUNK):
        # One multi-row INSERT … ON CONFLICT DO NOTHING RETURNING id per chunk.
        chunk = statement.values(rows[start : start + _INSERT_CHUNK])
        created.extend(db.scalars(chunk))
    invitations = list(
        db.scalars(
            select(SurveyInvitation)
            .where(SurveyInvitation.id.in_(created))
            .order_by(SurveyInvitation.id)
        )
    )
    _send_links(db, survey=survey, invitations=invitations, now=now)
    for invitation in invitations:
        programs.publish(
            db,
            program_id=survey.program_id,
            event_type="survey.invited",
            payload={
                "invitation_id": invitation.id,
                "survey": survey.code,
                "member_id": invitation.member_id,
                "trigger": invitation.trigger,
                "locale": invitation.locale,
                "expires_at": invitation.expires_at.isoformat(),
            },
            now=now,
        )
    return invitations


def _send_links(
    db: Session, *, survey: Survey, invitations: list[SurveyInvitation], now: datetime
) -> None:
    """Queues each invitation's message with its answer link, when the program sends messages
    and links can be signed (FIDELIZA_SECRET_KEY); otherwise the invitations wait to be sent
    by other means (the `survey.invited` webhook, `fideliza surveys link`)."""
    from fideliza.messaging import service as messaging

    if not invitations or not messaging.is_set_up(db, program_id=survey.program_id):
        return
    settings = SurveySettings()
    if settings.secret_key is None:
        log.warning("survey invitations not sent: FIDELIZA_SECRET_KEY is not set")
        return
    definition = definition_of(survey)
    for invitation in invitations:
        messaging.enqueue(
            db,
            program_id=survey.program_id,
            member_id=invitation.member_id,
            template="survey_invitation",
            context={
                "survey": {
                    "name": localized(
                        definition.title, invitation.locale, definition.default_locale
                    ),
                    "url": link_of(invitation, settings=settings),
                }
            },
            key=f"survey:{invitation.id}",
            now=now,
        )


def invite_due(db: Session, *, program_id: int, now: datetime) -> int:
    """Invites the members due for a purchase or relationship survey; returns how many.

    Idempotent: reruns find the invitations they made (unique per survey, member, trigger and
    source) and the purchase sample is a hash, so it never changes.
    """
    invited = 0
    for survey in _active_with_trigger(
        db, program_id=program_id, trigger=Trigger.PURCHASE, lock=True
    ):
        invited += _invite_after_purchases(db, survey=survey, now=now)
    for survey in _active_with_trigger(
        db, program_id=program_id, trigger=Trigger.RELATIONSHIP, lock=True
    ):
        invited += _invite_relationship(db, survey=survey, now=now)
    return invited


def _first_defined_at(db: Session, survey: Survey) -> datetime:
    found = db.scalar(
        select(func.min(Survey.created_at)).where(
            Survey.program_id == survey.program_id, Survey.code == survey.code
        )
    )
    return found or survey.created_at


def _invite_after_purchases(db: Session, *, survey: Survey, now: datetime) -> int:
    """Purchases of the last `max_age_days` (not before the survey existed), sampled, quiet.

    Purchases are looked at by their time, not by an id cursor: a till that sends late, or a
    transaction that commits after a later id, is still seen; the unique key makes it cheap.
    """
    definition = definition_of(survey)
    sending = definition.sending
    assert sending.sample_rate is not None
    max_age = timedelta(days=sending.max_age_days or DEFAULT_MAX_AGE_DAYS)
    quiet = timedelta(
        days=sending.quiet_days if sending.quiet_days is not None else DEFAULT_QUIET_DAYS
    )
    since = max(now - max_age, _first_defined_at(db, survey))
    already = exists().where(
        SurveyInvitation.program_id == survey.program_id,
        SurveyInvitation.survey_code == survey.code,
        SurveyInvitation.member_id == Purchase.member_id,
        SurveyInvitation.trigger == Trigger.PURCHASE.value,
        SurveyInvitation.source_ref == Purchase.external_id,
    )
    candidates = db.execute(
        select(
            Purchase.member_id,
            Purchase.external_id,
            Purchase.channel,
            Purchase.store,
            Member.locale,
        )
        .join(Member, Member.id == Purchase.member_id)
        .where(
            Purchase.program_id == survey.program_id,
            Purchase.occurred_at >= since,
            Purchase.occurred_at <= now,
            Member.status == MemberStatus.ACTIVE,
            ~already,
        )
        .order_by(Purchase.occurred_at, Purchase.id)
    ).all()
    sampled = [
        row
        for row in candidates
        if in_sample(survey_code=survey.code, source_ref=row.external_id, rate=sending.sample_rate)
    ]
    quiet_members = _recently_invited(
        db,
        program_id=survey.program_id,
        member_ids={row.member_id for row in sampled},
        since=now - quiet,
    )
    invites: list[_Invite] = []
    for row in sampled:
        if row.member_id in quiet_members:
            continue
        quiet_members.add(row.member_id)  # one invitation per member per run
        invites.append(_Invite(row.member_id, row.locale, row.external_id, row.channel, row.store))
    made = _insert_invitations(
        db, survey=survey, definition=definition, trigger=Trigger.PURCHASE, invites=invites, now=now
    )
    return len(made)


def _recently_invited(
    db: Session, *, program_id: int, member_ids: set[int], since: datetime
) -> set[int]:
    """Members invited to any survey at or after `since` (survey fatigue is per member)."""
    if not member_ids:
        return set()
    found: set[int] = set()
    ordered = sorted(member_ids)
    for start in range(0, len(ordered), 1000):
        found.update(
            db.scalars(
                select(SurveyInvitation.member_id)
                .where(
                    SurveyInvitation.program_id == program_id,
                    SurveyInvitation.member_id.in_(ordered[start : start + 1000]),
                    SurveyInvitation.created_at >= since,
                )
                .distinct()
            )
        )
    return found


def _invite_relationship(db: Session, *, survey: Survey, now: datetime) -> int:
    """Members enrolled at least N months ago and not asked this survey in the last N months."""
    definition = definition_of(survey)
    assert definition.sending.every_months is not None
    cutoff = add_months(now, -definition.sending.every_months)
    asked = exists().where(
        SurveyInvitation.program_id == survey.program_id,
        SurveyInvitation.survey_code == survey.code,
        SurveyInvitation.member_id == Member.id,
        SurveyInvitation.trigger == Trigger.RELATIONSHIP.value,
        SurveyInvitation.created_at > cutoff,
    )
    due = db.execute(
        select(Member.id, Member.locale)
        .where(
            Member.program_id == survey.program_id,
            Member.status == MemberStatus.ACTIVE,
            Member.enrolled_at <= cutoff,
            ~asked,
        )
        .order_by(Member.id)
    ).all()
    period = f"{now:%Y-%m}"
    invites = [_Invite(row.id, row.locale, period) for row in due]
    made = _insert_invitations(
        db,
        survey=survey,
        definition=definition,
        trigger=Trigger.RELATIONSHIP,
        invites=invites,
        now=now,
    )
    return len(made)


def invite_after_case(
    db: Session, *, program_id: int, member_id: int, case_ref: str, now: datetime
) -> list[SurveyInvitation]:
    """Invites a member to the program's after-case surveys once a complaint is resolved.

    Returns the invitations made: none when the program has no such survey, the member is not
    active, or this case was surveyed already (each logged, never an error).
    """
    if not (case_ref or "").strip() or len(case_ref) > 100:
        raise ValidationError("is required (at most 100 characters)", field="case_ref")
    member = db.get(Member, member_id)
    if member is None or member.program_id != program_id:
        raise NotFound(f"member {member_id} does not exist", field="member_id")
    if member.status != MemberStatus.ACTIVE:
        log.info("no survey after case %s: member %s is %s", case_ref, member_id, member.status)
        return []
    made: list[SurveyInvitation] = []
    for survey in _active_with_trigger(db, program_id=program_id, trigger=Trigger.CASE):
        made += _insert_invitations(
            db,
            survey=survey,
            definition=definition_of(survey),
            trigger=Trigger.CASE,
            invites=[_Invite(member.id, member.locale, case_ref)],
            now=now,
        )
    if not made:
        log.info("survey after case %s: no survey to send (none defined or sent already)", case_ref)
    return made


def invite(
    db: Session,
    *,
    program_id: int,
    survey_code: str,
    member: Member,
    source_ref: str,
    now: datetime,
) -> SurveyInvitation:
    """Invites one member by hand (an operator's choice); the same source ref gives it back."""
    if not (source_ref or "").strip() or len(source_ref) > 100:
        raise ValidationError("is required (at most 100 characters)", field="source_ref")
    if member.program_id != program_id:
        raise NotFound(f"member {member.id} does not exist", field="member_id")
    survey = get_active(db, program_id=program_id, code=survey_code)
    _insert_invitations(
        db,
        survey=survey,
        definition=definition_of(survey),
        trigger=Trigger.MANUAL,
        invites=[_Invite(member.id, member.locale, source_ref)],
        now=now,
    )
    found = db.scalar(
        select(SurveyInvitation).where(
            SurveyInvitation.program_id == program_id,
            SurveyInvitation.survey_code == survey_code,
            SurveyInvitation.member_id == member.id,
            SurveyInvitation.trigger == Trigger.MANUAL.value,
            SurveyInvitation.source_ref == source_ref,
        )
    )
    assert found is not None
    return found


def invitations_of(db: Session, *, program_id: int, member_id: int) -> list[SurveyInvitation]:
    """A member's invitations, newest first."""
    return list(
        db.scalars(
            select(SurveyInvitation)
            .where(
                SurveyInvitation.program_id == program_id, SurveyInvitation.member_id == member_id
            )
            .order_by(SurveyInvitation.created_at.desc(), SurveyInvitation.id.desc())
        )
    )


def token_of(invitation: SurveyInvitation, *, settings: SurveySettings) -> str:
    """The signed token of an invitation's answer link."""
    return links.sign(
        secret=settings.secret(), invitation_id=invitation.id, expires_at=invitation.expires_at
    )


def link_of(invitation: SurveyInvitation, *, settings: SurveySettings) -> str:
    """The answer link to send the member (the messaging domain delivers it)."""
    return settings.survey_link_base + token_of(invitation, settings=settings)


# --- answering ---------------------------------------------------------------------------------


def _claimed(
    db: Session, *, token: str, now: datetime, settings: SurveySettings
) -> SurveyInvitation:
    """The invitation a token names, refusing forged, expired and used links."""
    claim = links.verify(secret=settings.secret(), token=token, now=now)
    invitation = db.get(SurveyInvitation, claim.invitation_id)
    if invitation is None or int(invitation.expires_at.timestamp()) != int(
        claim.expires_at.timestamp()
    ):
        raise InvalidLink("this survey link is not valid", field="token")
    if invitation.answered_at is not None:
        raise LinkUsed("this survey was answered already", field="token")
    return invitation


def open_link(
    db: Session, *, token: str, now: datetime, settings: SurveySettings, locale: str | None = None
) -> dict[str, Any]:
    """The survey behind a link, in the invitation's locale (or `locale` when it has it)."""
    invitation = _claimed(db, token=token, now=now, settings=settings)
    definition = definition_of(db.get_one(Survey, invitation.survey_id))
    chosen = pick_locale(definition, locale) if locale else invitation.locale
    shown = render(definition, chosen)
    shown["expires_at"] = invitation.expires_at.isoformat()
    return shown


@dataclass(frozen=True, slots=True)
class AnswerOutcome:
    response: SurveyResponse
    points_earned: int


def answer(
    db: Session,
    *,
    token: str,
    answers: Mapping[str, Any],
    now: datetime,
    settings: SurveySettings,
) -> AnswerOutcome:
    """Stores a member's answers once per link and earns `survey_answered` points by the rules.

    Checked before claimed: bad answers leave the link usable. The claim is one conditional
    UPDATE, so of two answers sent at once exactly one wins (the other gets `link_used`).
    """
    invitation = _claimed(db, token=token, now=now, settings=settings)
    survey = db.get_one(Survey, invitation.survey_id)
    checked = check_answers(definition_of(survey), answers)
    won = db.execute(
        update(SurveyInvitation)
        .where(
            and_(
                SurveyInvitation.id == invitation.id,
                SurveyInvitation.answered_at.is_(None),
                SurveyInvitation.expires_at > now,
            )
        )
        .values(answered_at=now)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        db.refresh(invitation)
        if invitation.answered_at is not None:
            raise LinkUsed("this survey was answered already", field="token")
        raise LinkExpired("this survey link has expired", field="token")
    db.refresh(invitation)
    member = db.get_one(Member, invitation.member_id)
    program = programs.get(db, program_id=invitation.program_id)
    response = _store_response(db, survey, invitation, member, checked, now)
    if member.status == MemberStatus.ACTIVE:
        earned = events.record_event(
            db,
            program=program,
            external_id=f"survey-invitation:{invitation.id}",
            member_ref=member.external_id,
            event_type=ANSWERED_EVENT,
            occurred_at=now,
            now=now,
            attributes={
                "survey": survey.code,
                "kind": survey.kind,
                "score": checked.score,
                "trigger": invitation.trigger,
            },
        )
        response.points_earned = earned.points
        response.event_id = earned.event_id
    else:
        log.info("survey answer %s earns nothing: member is %s", response.id, member.status)
    programs.publish(
        db,
        program_id=program.id,
        event_type="survey.answered",
        payload={
            "response_id": response.id,
            "invitation_id": invitation.id,
            "survey": survey.code,
            "member_id": member.id,
            "kind": survey.kind,
            "score": checked.score,
            "points_earned": response.points_earned,
        },
        now=now,
    )
    db.flush()
    return AnswerOutcome(response, response.points_earned)


def _store_response(
    db: Session,
    survey: Survey,
    invitation: SurveyInvitation,
    member: Member,
    checked: CheckedAnswers,
    now: datetime,
) -> SurveyResponse:
    segment = (member.attributes or {}).get("segment")
    response = SurveyResponse(
        program_id=invitation.program_id,
        survey_id=survey.id,
        invitation_id=invitation.id,
        member_id=member.id,
        answered_at=now,
        kind=survey.kind,
        score=checked.score,
        answers=checked.answers,
        locale=invitation.locale,
        trigger=invitation.trigger,
        channel=invitation.channel,
        store=invitation.store,
        tier_code=member.tier_code,
        segment=str(segment)[:64] if segment is not None else None,
        points_earned=0,
        event_id=None,
    )
    db.add(response)
    db.flush()
    return response
