"""Messaging use cases: configuration, templates, queueing (triggers and other domains), the
dispatcher, unsubscribe and the send log.

Everything but `dispatch_due` takes the caller's session and never commits. `dispatch_due` runs
its own short transactions (like the webhook dispatcher): a message is claimed — consent, quiet
hours and the frequency cap checked, content rendered, attempt counted, a lease taken — and
committed before it is sent, so several dispatchers can run at once (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, members locked in id order so the cap holds across dispatchers). Sending is at
least once: a dispatcher that dies mid-send leaves the message due again when its lease ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from fideliza.core.errors import NotFound, ValidationError
from fideliza.db import unit_of_work
from fideliza.members.models import Member
from fideliza.messaging import triggers
from fideliza.messaging.channels import MessagingSettings, Outgoing, Sender, SendFailed
from fideliza.messaging.domain import (
    TRANSACTIONAL,
    Channel,
    Kind,
    MessageStatus,
    MessagingConfig,
    Rendered,
    SkipReason,
    TemplateText,
    check_context,
    check_template,
    next_retry,
    parse_channel,
    parse_config,
    parse_kind,
    parse_locale,
    quiet_until,
    read_unsubscribe_token,
    render,
    sample_context,
    unsubscribe_token,
)
from fideliza.messaging.errors import InvalidUnsubscribeLink
from fideliza.messaging.models import Message, MessageTemplate, MessagingConfigRow
from fideliza.programs import service as programs
from fideliza.programs.domain import require_timezone
from fideliza.programs.models import Program
from fideliza.webhooks.service import check_destination

log = logging.getLogger("fideliza.messaging")

MAX_REASON_LENGTH = 500
MAX_KEY_LENGTH = 200
LEASE = timedelta(minutes=5)

# --- configuration ----------------------------------------------------------------------------


def get_config(db: Session, *, program_id: int) -> MessagingConfig:
    """The program's messaging configuration (defaults until one is saved)."""
    row = db.get(MessagingConfigRow, program_id)
    return parse_config(row.config if row else None)


def set_config(
    db: Session,
    *,
    program_id: int,
    changes: dict[str, Any],
    now: datetime,
    actor: str | None = None,
    allow_private: bool = False,
) -> MessagingConfig:
    """Changes some settings (validated as a whole before anything is written)."""
    if not isinstance(changes, dict):
        raise ValidationError("must be an object", field="config")
    row = db.get(MessagingConfigRow, program_id)
    merged = {**(row.config if row else {}), **changes}
    config = parse_config(merged)
    if config.provider_url is not None and "provider_url" in changes:
        destination = check_destination(config.provider_url, allow_private=allow_private)
        merged["provider_url"] = destination.url
    if row is None:
        db.add(MessagingConfigRow(program_id=program_id, config=merged, updated_at=now))
    else:
        row.config = merged
        row.updated_at = now
    programs.audit(
        db,
        program_id=program_id,
        action="fideliza.messaging.config_changed",
        subject=str(program_id),
        now=now,
        actor=actor,
        data={"changes": changes},
    )
    db.flush()
    return parse_config(merged)


# --- templates --------------------------------------------------------------------------------


def set_template(
    db: Session,
    *,
    program_id: int,
    kind: object,
    channel: object,
    locale: object,
    subject: str | None,
    body_text: str,
    body_html: str | None = None,
    now: datetime,
    actor: str | None = None,
) -> MessageTemplate:
    """Saves (creates or replaces) a template after rendering it once with its kind's sample
    context: an unknown variable or a syntax error is refused now, naming the part."""
    kind_, channel_, locale_ = parse_kind(kind), parse_channel(channel), parse_locale(locale)
    text = TemplateText(subject=subject, body_text=body_text or "", body_html=body_html)
    check_template(kind=kind_, channel=channel_, locale=locale_, template=text)
    row = _template(db, program_id=program_id, kind=kind_, channel=channel_, locale=locale_)
    if row is None:
        row = MessageTemplate(
            program_id=program_id, kind=kind_.value, channel=channel_.value, locale=locale_
        )
        db.add(row)
    row.subject = subject
    row.body_text = body_text
    row.body_html = body_html
    row.updated_at = now
    row.updated_by = actor
    programs.audit(
        db,
        program_id=program_id,
        action="fideliza.messaging.template_saved",
        subject=f"{kind_.value}/{channel_.value}/{locale_}",
        now=now,
        actor=actor,
    )
    db.flush()
    return row


def _template(
    db: Session, *, program_id: int, kind: Kind, channel: Channel, locale: str
) -> MessageTemplate | None:
    return db.scalars(
        select(MessageTemplate).where(
            MessageTemplate.program_id == program_id,
            MessageTemplate.kind == kind.value,
            MessageTemplate.channel == channel.value,
            MessageTemplate.locale == locale,
        )
    ).first()


def list_templates(db: Session, *, program_id: int) -> list[MessageTemplate]:
    """A program's templates by kind, channel and language."""
    query = select(MessageTemplate).where(MessageTemplate.program_id == program_id)
    order = (MessageTemplate.kind, MessageTemplate.channel, MessageTemplate.locale)
    return list(db.scalars(query.order_by(*order)))


def find_template(
    db: Session, *, program_id: int, kind: Kind, channel: Channel, locale: str, default: str
) -> MessageTemplate | None:
    """The template in the member's language, else in the program's default language."""
    found = _template(db, program_id=program_id, kind=kind, channel=channel, locale=locale)
    if found is None and locale != default:
        found = _template(db, program_id=program_id, kind=kind, channel=channel, locale=default)
    return found


def preview(
    db: Session,
    *,
    program_id: int,
    kind: object,
    channel: object,
    locale: object,
    member_id: int | None = None,
) -> Rendered:
    """A saved template rendered with the sample context, or with a member's own details."""
    kind_, channel_, locale_ = parse_kind(kind), parse_channel(channel), parse_locale(locale)
    row = _template(db, program_id=program_id, kind=kind_, channel=channel_, locale=locale_)
    if row is None:
        raise NotFound(
            f"no {kind_.value} template for {channel_.value} in {locale_}", field="template"
        )
    context = sample_context(kind_)
    if member_id is not None:
        member = _member(db, program_id=program_id, member_id=member_id)
        program = programs.get(db, program_id=program_id)
        context = {**context, **_common_context(program, member, unsubscribe_url="#")}
    return render(_text(row), context, name=f"{kind_.value}/{channel_.value}/{locale_}")


def _text(row: MessageTemplate) -> TemplateText:
    return TemplateText(subject=row.subject, body_text=row.body_text, body_html=row.body_html)


# --- queueing ---------------------------------------------------------------------------------


def _member(db: Session, *, program_id: int, member_id: int) -> Member:
    member = db.get(Member, member_id)
    if member is None or member.program_id != program_id:
        raise NotFound(f"member {member_id} does not exist", field="member_id")
    return member


def enqueue(
    db: Session,
    *,
    program_id: int,
    member_id: int,
    template: object,
    context: dict[str, Any],
    key: str,
    now: datetime,
    channel: object = None,
) -> Message:
    """Queues one message for a member (surveys, cases …); `key` makes it idempotent: the same
    key returns the message already queued. Consent is checked when it is sent."""
    kind = parse_kind(template)
    check_context(kind, context)
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise ValidationError(f"is required (at most {MAX_KEY_LENGTH} characters)", field="key")
    _member(db, program_id=program_id, member_id=member_id)
    config = get_config(db, program_id=program_id)
    channel_ = config.channel if channel is None else parse_channel(channel)
    triggers.queue(
        db,
        program_id=program_id,
        kind=kind,
        due=[(member_id, key, context)],
        now=now,
        channel=channel_.value,
        transactional=kind in TRANSACTIONAL,
    )
    found = db.scalars(
        select(Message).where(Message.program_id == program_id, Message.idempotency_key == key)
    ).one()
    if found.member_id != member_id or found.kind != kind.value:
        raise ValidationError(
            "was already used for another member or template", field="key", code="key_reused"
        )
    return found


def is_set_up(db: Session, *, program_id: int) -> bool:
    """Whether the program writes to its members at all (it has saved a template)."""
    found = db.scalar(
        select(MessageTemplate.id).where(MessageTemplate.program_id == program_id).limit(1)
    )
    return found is not None


def evaluate_triggers(db: Session, *, program_id: int, now: datetime) -> dict[str, int]:
    """Queues the messages every enabled trigger finds due; returns how many are new, per
    trigger (a second evaluation in the same period queues nothing)."""
    program = programs.get(db, program_id=program_id)
    zone = require_timezone(program.timezone)
    config = get_config(db, program_id=program_id)
    found: dict[Kind, list[triggers.Due]] = {}
    enabled = config.triggers
    if Kind.WELCOME in enabled:
        found[Kind.WELCOME] = triggers.welcome(db, program_id=program_id, now=now, config=config)
    if Kind.BIRTHDAY in enabled:
        found[Kind.BIRTHDAY] = triggers.birthday(
            db, program_id=program_id, now=now, zone=zone, config=config
        )
    if Kind.TIER_UP in enabled or Kind.TIER_DOWN in enabled:
        changes = triggers.tier_changes(db, program_id=program_id, now=now, config=config)
        found.update({kind: due for kind, due in changes.items() if kind in enabled})
    if Kind.POINTS_EXPIRING in enabled:
        found[Kind.POINTS_EXPIRING] = triggers.points_expiring(
            db, program_id=program_id, now=now, zone=zone, config=config
        )
    if Kind.WIN_BACK in enabled:
        found[Kind.WIN_BACK] = triggers.win_back(
            db, program_id=program_id, now=now, zone=zone, config=config
        )
    if Kind.REWARD_WITHIN_REACH in enabled:
        found[Kind.REWARD_WITHIN_REACH] = triggers.reward_within_reach(
            db, program_id=program_id, now=now, zone=zone, config=config
        )
    return {
        kind.value: triggers.queue(
            db, program_id=program_id, kind=kind, due=due, now=now, channel=config.channel.value
        )
        for kind, due in found.items()
    }


# --- dispatch ---------------------------------------------------------------------------------


@dataclass(slots=True)
class DispatchReport:
    """What one `dispatch_due` run did."""

    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0  # in quiet hours: due again when they end
    sent_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _ProgramView:
    program: Program
    zone: ZoneInfo
    config: MessagingConfig
    # Templates found in this claim, by (kind, channel, member locale).
    templates: dict[tuple[str, str, str], MessageTemplate | None] = field(default_factory=dict)


def _locking(db: Session, query: Select[Any], *of: Any) -> Select[Any]:
    if db.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, of=list(of) or None)
    return query  # SQLite: BEGIN IMMEDIATE already serialises writers


def _common_context(program: Program, member: Member, *, unsubscribe_url: str) -> dict[str, Any]:
    return {
        "member": {
            "first_name": member.first_name or "",
            "last_name": member.last_name or "",
            "external_id": member.external_id,
            "tier": member.tier_code or "",
        },
        "program": {"name": program.name, "points_name": program.points_name},
        "unsubscribe_url": unsubscribe_url,
    }


def _consents(member: Member, *, channel: Channel, transactional: bool) -> str | None:
    """Why the member may not get this message (None: they may)."""
    consent = member.consent or {}
    if consent.get(channel.value) is not True:
        return f"{SkipReason.NO_CONSENT}: no {channel.value} consent"
    if not transactional and consent.get("marketing") is not True:
        return f"{SkipReason.NO_CONSENT}: no marketing consent"
    return None


def _recipient(member: Member, channel: Channel) -> str | None:
    if channel is Channel.EMAIL:
        return member.email
    if channel is Channel.SMS:
        return member.phone
    return member.external_id  # push: the provider knows the member's devices


def _sent_recently(
    db: Session, *, member_id: int, now: datetime, days: int, other_than: int
) -> int:
    """Marketing messages sent (or being sent) to the member in the rolling window."""
    return int(
        db.scalar(
            select(func.count()).where(
                Message.member_id == member_id,
                Message.id != other_than,
                Message.transactional.is_(False),
                or_(
                    and_(
                        Message.status == MessageStatus.SENT,
                        Message.sent_at > now - timedelta(days=days),
                    ),
                    Message.status == MessageStatus.SENDING,
                ),
            )
        )
        or 0
    )


def _claim(
    factory: sessionmaker[Session],
    *,
    now: datetime,
    settings: MessagingSettings,
    secret: bytes,
    program_id: int | None,
    batch: int,
    report: DispatchReport,
) -> tuple[list[Outgoing], bool]:
    """Takes up to `batch` due messages and decides each: skip, defer, or claim to send.
    Returns the messages to send and whether any message was due at all."""
    with unit_of_work(factory) as db:
        query = select(Message).where(
            Message.status.in_([MessageStatus.PENDING, MessageStatus.SENDING]),
            Message.next_attempt_at <= now,
        )
        if program_id is not None:
            query = query.where(Message.program_id == program_id)
        query = query.order_by(Message.next_attempt_at, Message.id).limit(batch)
        rows = list(db.scalars(_locking(db, query, Message)))
        if not rows:
            return [], False
        # Lock the members in id order: two dispatchers then count a member's recent messages
        # one after the other, and the frequency cap holds.
        member_ids = sorted({row.member_id for row in rows})
        member_query = select(Member).where(Member.id.in_(member_ids)).order_by(Member.id)
        if db.get_bind().dialect.name == "postgresql":
            member_query = member_query.with_for_update()
        members = {member.id: member for member in db.scalars(member_query)}
        views: dict[int, _ProgramView] = {}
        outgoing: list[Outgoing] = []
        for row in rows:
            view = views.get(row.program_id)
            if view is None:
                program = programs.get(db, program_id=row.program_id)
                view = _ProgramView(
                    program=program,
                    zone=require_timezone(program.timezone),
                    config=get_config(db, program_id=program.id),
                )
                views[row.program_id] = view
            ready = _decide(
                db,
                row,
                member=members[row.member_id],
                view=view,
                now=now,
                settings=settings,
                secret=secret,
                report=report,
            )
            if ready is not None:
                outgoing.append(ready)
        db.flush()
        return outgoing, True


def _finish(row: Message, status: MessageStatus, reason: str, report: DispatchReport) -> None:
    row.status = status.value
    row.reason = reason[:MAX_REASON_LENGTH]
    row.next_attempt_at = None
    if status is MessageStatus.SKIPPED:
        report.skipped += 1
        log.info("message %s skipped: %s", row.id, reason)
    else:
        report.failed += 1
        log.warning("message %s failed: %s", row.id, reason)


def _decide(
    db: Session,
    row: Message,
    *,
    member: Member,
    view: _ProgramView,
    now: datetime,
    settings: MessagingSettings,
    secret: bytes,
    report: DispatchReport,
) -> Outgoing | None:
    """Skips, defers or claims one message (in the claim transaction)."""
    channel = Channel(row.channel)
    kind = Kind(row.kind)
    if member.status != "active":
        _finish(row, MessageStatus.SKIPPED, f"{SkipReason.MEMBER_INACTIVE}", report)
        return None
    refused = _consents(member, channel=channel, transactional=row.transactional)
    if refused is not None:
        _finish(row, MessageStatus.SKIPPED, refused, report)
        return None
    recipient = _recipient(member, channel)
    if not recipient:
        _finish(row, MessageStatus.SKIPPED, f"{SkipReason.NO_ADDRESS}: no {channel.value}", report)
        return None
    # Quiet hours hold every message, transactional ones too: an update can wait till morning.
    until = quiet_until(view.config.quiet_hours, now=now, zone=view.zone)
    if until is not None:
        row.status = MessageStatus.PENDING.value
        row.next_attempt_at = until
        report.deferred += 1
        return None
    if not row.transactional:
        db.flush()  # the messages claimed earlier in this batch count too
        recent = _sent_recently(
            db, member_id=member.id, now=now, days=view.config.cap_days, other_than=row.id
        )
        if recent >= view.config.cap_messages:
            reason = f"{SkipReason.FREQUENCY_CAP}: {recent} messages in {view.config.cap_days} days"
            _finish(row, MessageStatus.SKIPPED, reason, report)
            return None
    wanted = (kind.value, channel.value, member.locale)
    if wanted not in view.templates:
        view.templates[wanted] = find_template(
            db,
            program_id=row.program_id,
            kind=kind,
            channel=channel,
            locale=member.locale,
            default=view.config.default_locale,
        )
    template = view.templates[wanted]
    if template is None:
        reason = f"{SkipReason.NO_TEMPLATE}: no {kind.value} template for {channel.value}"
        _finish(row, MessageStatus.SKIPPED, reason, report)
        return None
    token = unsubscribe_token(secret=secret, program_id=row.program_id, member_id=member.id)
    unsubscribe_url = f"{settings.public_url.rstrip('/')}/v1/unsubscribe/{token}"
    context = {
        **row.context,
        **_common_context(view.program, member, unsubscribe_url=unsubscribe_url),
    }
    try:
        rendered = render(_text(template), context, name=f"{kind.value}/{template.locale}")
    except ValidationError as error:  # e.g. an enqueued context missing a variable
        _finish(row, MessageStatus.FAILED, error.message, report)
        return None
    row.status = MessageStatus.SENDING.value
    row.attempts += 1
    row.next_attempt_at = now + LEASE
    row.locale = template.locale
    row.recipient = recipient
    row.subject = rendered.subject
    row.body_text = rendered.body_text
    row.body_html = rendered.body_html
    report.claimed += 1
    return Outgoing(
        message_id=row.id,
        channel=channel,
        recipient=recipient,
        subject=rendered.subject,
        body_text=rendered.body_text,
        body_html=rendered.body_html,
        unsubscribe_url=unsubscribe_url if not row.transactional else None,
        member_external_id=member.external_id,
        kind=kind.value,
        provider_url=view.config.provider_url,
    )


def _record(
    factory: sessionmaker[Session],
    message: Outgoing,
    *,
    now: datetime,
    error: SendFailed | None,
    report: DispatchReport,
) -> None:
    """Writes the outcome of one send (unless another dispatcher took the message over)."""
    with unit_of_work(factory) as db:
        row = db.get(Message, message.message_id)
        if row is None or row.status != MessageStatus.SENDING:
            return
        if error is None:
            row.status = MessageStatus.SENT.value
            row.sent_at = now
            row.next_attempt_at = None
            row.reason = None
            report.sent += 1
            report.sent_ids.append(row.id)
            return
        retry_at = None if error.permanent else next_retry(row.attempts, now=now)
        if retry_at is None:
            _finish(row, MessageStatus.FAILED, str(error), report)
        else:
            row.status = MessageStatus.PENDING.value
            row.next_attempt_at = retry_at
            row.reason = str(error)[:MAX_REASON_LENGTH]
            report.retrying += 1


def dispatch_due(
    factory: sessionmaker[Session],
    *,
    now: datetime,
    sender: Sender,
    settings: MessagingSettings | None = None,
    program_id: int | None = None,
    batch: int = 100,
) -> DispatchReport:
    """Sends every message due at `now` (skips and deferrals logged on the message), with
    retries and backoff; safe to run in several processes at once."""
    settings = settings or MessagingSettings()
    secret = settings.secret()
    report = DispatchReport()
    while True:
        outgoing, any_due = _claim(
            factory,
            now=now,
            settings=settings,
            secret=secret,
            program_id=program_id,
            batch=batch,
            report=report,
        )
        if not any_due:
            return report
        for message in outgoing:
            failure: SendFailed | None = None
            try:
                sender(message)
            except SendFailed as error:
                failure = error
            except Exception as error:  # any other sender failure is one failed attempt
                failure = SendFailed(f"{type(error).__name__}: {error}")
            _record(factory, message, now=now, error=failure, report=report)


# --- unsubscribe and the send log -------------------------------------------------------------


def unsubscribe(db: Session, *, token: str, now: datetime, secret: bytes) -> Member:
    """Records a one-click opt-out from marketing messages (twice changes nothing)."""
    program_id, member_id = read_unsubscribe_token(secret=secret, token=token)
    member = db.get(Member, member_id)
    if member is None or member.program_id != program_id:
        raise InvalidUnsubscribeLink("this unsubscribe link is not valid", field="token")
    consent = dict(member.consent or {})
    if consent.get("marketing") is not False:
        consent["marketing"] = False
        member.consent = consent
        programs.audit(
            db,
            program_id=program_id,
            action="fideliza.messaging.unsubscribed",
            subject=str(member_id),
            now=now,
            actor=f"member:{member_id}",
            data={"consent": {"marketing": False}, "via": "unsubscribe_link"},
        )
        db.flush()
    return member


def send_log(db: Session, *, program_id: int, member_id: int, limit: int = 100) -> list[Message]:
    """A member's messages, newest first: what was sent, skipped (and why) or failed."""
    _member(db, program_id=program_id, member_id=member_id)
    query = (
        select(Message)
        .where(Message.program_id == program_id, Message.member_id == member_id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    )
    return list(db.scalars(query))


def retry_message(db: Session, *, program_id: int, message_id: int, now: datetime) -> Message:
    """Puts a failed message back in the queue (an operator fixed the cause)."""
    row = db.get(Message, message_id)
    if row is None or row.program_id != program_id:
        raise NotFound(f"message {message_id} does not exist", field="message_id")
    if row.status != MessageStatus.FAILED:
        raise ValidationError(
            f"only a failed message can be retried, not {row.status}", field="message_id"
        )
    db.execute(
        update(Message)
        .where(Message.id == row.id)
        .values(status=MessageStatus.PENDING.value, attempts=0, next_attempt_at=now)
    )
    db.refresh(row)
    return row
