"""The dispatcher on SQLite and PostgreSQL: consent, quiet hours, the frequency cap, templates
by language, retries, and the send log; e-mail to a real SMTP server, SMS to a real receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from fideliza.core.errors import ValidationError
from fideliza.members.models import Member
from fideliza.messaging import service as messaging
from fideliza.messaging.channels import ChannelSender, MessagingSettings, SendFailed
from fideliza.messaging.domain import MAX_ATTEMPTS
from fideliza.messaging.errors import InvalidUnsubscribeLink
from fideliza.messaging.models import Message
from tests.integration.messaging.support import Mailbox, MemorySender, Shop
from tests.webhooks.receiver import receiver


def _queue(shop: Shop, member: Member, key: str, template: str = "welcome", **extra: Any) -> int:
    context: dict[str, Any] = {}
    if template == "complaint_update":
        context = {"case": {"reference": "C-7", "status": "resuelto", "note": ""}}
    row = messaging.enqueue(
        shop.db,
        program_id=shop.program.id,
        member_id=member.id,
        template=template,
        context=context,
        key=f"{key}:{member.id}",
        now=shop.now,
        **extra,
    )
    shop.db.commit()
    return row.id


def _dispatch(
    factory: sessionmaker[Session],
    shop: Shop,
    sender: Any,
    settings: MessagingSettings,
    at: datetime | None = None,
) -> messaging.DispatchReport:
    return messaging.dispatch_due(
        factory,
        now=at or shop.now,
        sender=sender,
        settings=settings,
        program_id=shop.program.id,
    )


def _row(factory: sessionmaker[Session], message_id: int) -> Message:
    with factory() as db:
        found = db.get(Message, message_id)
        assert found is not None
        return found


def test_sends_with_consent_and_skips_without(
    shop: Shop,
    session_factory: sessionmaker[Session],
    sender: MemorySender,
    settings: MessagingSettings,
) -> None:
    willing = shop.member(first_name="Lucía")
    no_marketing = shop.member(consent={"email": True})
    no_email_consent = shop.member(consent={"marketing": True, "sms": True})
    no_address = shop.member(email=None)
    ids = [_queue(shop, m, "w") for m in (willing, no_marketing, no_email_consent, no_address)]
    report = _dispatch(session_factory, shop, sender, settings)
    assert (report.sent, report.skipped, report.failed) == (1, 3, 0)
    [sent] = sender.sent
    assert sent.recipient == "ana@example.com" and sent.subject == "Bienvenida, Lucía"
    assert sent.unsubscribe_url and sent.unsubscribe_url in sent.body_text
    rows = [_row(session_factory, i) for i in ids]
    assert [r.status for r in rows] == ["sent", "skipped", "skipped", "skipped"]
    assert rows[1].reason == "no_consent: no marketing consent"
    assert rows[2].reason == "no_consent: no email consent"
    assert rows[3].reason == "no_address: no email"
    assert rows[0].body_text == sent.body_text and rows[0].sent_at == shop.now
    # A transactional message needs the channel's consent only.
    case = _queue(shop, no_marketing, "case", template="complaint_update")
    assert _dispatch(session_factory, shop, sender, settings).sent == 1
    assert _row(session_factory, case).status == "sent"
    assert sender.sent[-1].unsubscribe_url is None  # not a list to leave
    # Nothing left: a second run sends nothing again.
    again = _dispatch(session_factory, shop, sender, settings)
    assert (again.sent, again.skipped) == (0, 0) and len(sender.sent) == 2


def test_quiet_hours_defer_until_they_end(
    shop: Shop,
    session_factory: sessionmaker[Session],
    sender: MemorySender,
    settings: MessagingSettings,
) -> None:
    shop.configure(quiet_hours={"start": "21:00", "end": "09:00"})
    member = shop.member()
    message_id = _queue(shop, member, "w")
    night = datetime(2025, 3, 10, 22, 30, tzinfo=UTC)  # 23:30 in Madrid
    report = _dispatch(session_factory, shop, sender, settings, at=night)
    assert (report.deferred, report.sent) == (1, 0) and sender.sent == []
    row = _row(session_factory, message_id)
    morning = datetime(2025, 3, 11, 8, 0, tzinfo=UTC)  # 09:00 in Madrid
    assert row.status == "pending" and row.next_attempt_at == morning and row.attempts == 0
    assert _dispatch(session_factory, shop, sender, settings, at=morning - timedelta(minutes=1))
    assert sender.sent == []
    assert _dispatch(session_factory, shop, sender, settings, at=morning).sent == 1


def test_frequency_cap_per_member_over_a_rolling_window(
    shop: Shop,
    session_factory: sessionmaker[Session],
    sender: MemorySender,
    settings: MessagingSettings,
) -> None:
    shop.configure(frequency_cap={"messages": 2, "days": 7})
    member, other = shop.member(), shop.member()
    first = [_queue(shop, member, f"k{i}") for i in range(3)]
    _queue(shop, other, "k0")
    report = _dispatch(session_factory, shop, sender, settings)
    assert (report.sent, report.skipped) == (3, 1)
    statuses = [_row(session_factory, i).status for i in first]
    assert statuses == ["sent", "sent", "skipped"]
    assert _row(session_factory, first[2]).reason == "frequency_cap: 2 messages in 7 days"
    # Transactional messages are exempt; and eight days later the window has room again.
    _queue(shop, member, "case", template="complaint_update")
    assert _dispatch(session_factory, shop, sender, settings).sent == 1
    later = shop.now + timedelta(days=8)
    late = messaging.enqueue(
        shop.db,
        program_id=shop.program.id,
        member_id=member.id,
        template="welcome",
        context={},
        key="late",
        now=later,
    )
    shop.db.commit()
    assert _dispatch(session_factory, shop, sender, settings, at=later).sent == 1
    assert _row(session_factory, late.id).status == "sent"


def test_template_in_the_member_language_or_the_default(
    shop: Shop,
    session_factory: sessionmaker[Session],
    sender: MemorySender,
    settings: MessagingSettings,
) -> None:
    messaging.set_template(
        shop.db,
        program_id=shop.program.id,
        kind="welcome",
        channel="email",
        locale="en",
        subject="Welcome, {{ member.first_name }}",
        body_text="Hello. Unsubscribe: {{ unsubscribe_url }}",
        now=shop.now,
    )
    shop.db.commit()
    english = shop.member(locale="en", phone="+34600000001")
    italian = shop.member(locale="it")
    en_id, it_id = _queue(shop, english, "w"), _queue(shop, italian, "w")
    _dispatch(session_factory, shop, sender, settings)
    assert _row(session_factory, en_id).subject == "Welcome, Ana"
    fallback = _row(session_factory, it_id)
    assert fallback.locale == "es" and fallback.subject == "Bienvenida, Ana"
    # A kind with no template at all is a logged skip, never a send.
    sms_id = _queue(shop, english, "sms", channel="sms")
    _dispatch(session_factory, shop, sender, settings)
    skipped = _row(session_factory, sms_id)
    assert (
        skipped.status == "skipped" and skipped.reason == "no_template: no welcome template for sms"
    )


def test_retries_with_backoff_then_gives_up(
    shop: Shop,
    session_factory: sessionmaker[Session],
    sender: MemorySender,
    settings: MessagingSettings,
) -> None:
    member = shop.member()
    message_id = _queue(shop, member, "w")
    sender.failures.append(SendFailed("SMTP 451: try later"))
    report = _dispatch(session_factory, shop, sender, settings)
    assert (report.retrying, report.sent) == (1, 0)
    row = _row(session_factory, message_id)
    assert row.status == "pending" and row.attempts == 1
    assert row.next_attempt_at == shop.now + timedelta(minutes=1)
    assert row.reason == "SMTP 451: try later"
    # Not due before the backoff ends.
    assert _dispatch(session_factory, shop, sender, settings).claimed == 0
    at = shop.now + timedelta(minutes=1)
    sender.failures.extend(RuntimeError("connection reset") for _ in range(MAX_ATTEMPTS))
    for _ in range(MAX_ATTEMPTS - 1):
        _dispatch(session_factory, shop, sender, settings, at=at)
        row = _row(session_factory, message_id)
        at = row.next_attempt_at or at
    assert row.status == "failed" and row.attempts == MAX_ATTEMPTS
    assert row.reason == "RuntimeError: connection reset" and sender.sent == []


def test_a_permanent_failure_is_not_retried(
    shop: Shop,
    session_factory: sessionmaker[Session],
    sender: MemorySender,
    settings: MessagingSettings,
) -> None:
    message_id = _queue(shop, shop.member(), "w")
    sender.failures.append(SendFailed("SMTP 550: no such user", permanent=True))
    assert _dispatch(session_factory, shop, sender, settings).failed == 1
    row = _row(session_factory, message_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    # The operator fixed the address: the message goes back in the queue, and out.
    messaging.retry_message(
        shop.db, program_id=shop.program.id, message_id=message_id, now=shop.now
    )
    shop.db.commit()
    assert _dispatch(session_factory, shop, sender, settings).sent == 1
    with pytest.raises(ValidationError) as sent:
        messaging.retry_message(
            shop.db, program_id=shop.program.id, message_id=message_id, now=shop.now
        )
    assert sent.value.field == "message_id"


def test_email_over_a_real_smtp_server(
    shop: Shop,
    session_factory: sessionmaker[Session],
    settings: MessagingSettings,
    mailbox: Mailbox,
) -> None:
    messaging.set_template(
        shop.db,
        program_id=shop.program.id,
        kind="welcome",
        channel="email",
        locale="es",
        subject="Bienvenida, Señora {{ member.last_name }}",
        body_text="Hola, Señora {{ member.last_name }}. Baja: {{ unsubscribe_url }}",
        body_html="<p>Hola, Señora {{ member.last_name }}</p><a href='{{ unsubscribe_url }}'>x</a>",
        now=shop.now,
    )
    shop.db.commit()
    member = shop.member(last_name="Muñoz <&>", email="munoz@example.com")
    message_id = _queue(shop, member, "w")
    smtp = settings.model_copy(
        update={"smtp_host": mailbox.host, "smtp_port": mailbox.port, "smtp_from": "Café <c@x.es>"}
    )
    report = _dispatch(session_factory, shop, ChannelSender(smtp), smtp)
    assert report.sent == 1
    [email] = mailbox.messages
    assert mailbox.envelopes == [("c@x.es", ["munoz@example.com"])]
    assert email["Subject"] == "Bienvenida, Señora Muñoz <&>"
    assert email["To"] == "munoz@example.com"
    link = email["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://loyalty.example.com/v1/unsubscribe/fzu1.")
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = email.get_body(preferencelist=("plain",))
    html = email.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "Hola, Señora Muñoz <&>." in text.get_content() and link in text.get_content()
    assert "Señora Muñoz &lt;&amp;&gt;" in html.get_content()  # escaped in HTML only
    assert _row(session_factory, message_id).status == "sent"


def test_smtp_server_down_is_a_retry_not_a_crash(
    shop: Shop, session_factory: sessionmaker[Session], settings: MessagingSettings
) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = settings.model_copy(update={"smtp_port": port, "smtp_timeout_seconds": 2.0})
    message_id = _queue(shop, shop.member(), "w")
    assert _dispatch(session_factory, shop, ChannelSender(smtp), smtp).retrying == 1
    row = _row(session_factory, message_id)
    assert row.status == "pending" and row.reason and "ConnectionRefusedError" in row.reason


def test_sms_through_the_provider_webhook(
    shop: Shop, session_factory: sessionmaker[Session], settings: MessagingSettings
) -> None:
    messaging.set_template(
        shop.db,
        program_id=shop.program.id,
        kind="welcome",
        channel="sms",
        locale="es",
        subject=None,
        body_text="Hola {{ member.first_name }}, bienvenida a {{ program.name }}",
        now=shop.now,
    )
    shop.db.commit()
    member = shop.member(phone="+34600111222", first_name="Begoña")
    with receiver(statuses=[503]) as provider:
        shop.configure(provider_url=provider.url)
        message_id = _queue(shop, member, "sms", channel="sms")
        channel_sender = ChannelSender(settings)
        first = _dispatch(session_factory, shop, channel_sender, settings)
        assert first.retrying == 1 and _row(session_factory, message_id).reason == (
            "provider answered HTTP 503"
        )
        retry_at = shop.now + timedelta(minutes=1)
        assert _dispatch(session_factory, shop, channel_sender, settings, at=retry_at).sent == 1
    assert len(provider.requests) == 2
    body = provider.requests[-1].json()
    assert body == {
        "id": f"msg_{message_id}",
        "channel": "sms",
        "to": "+34600111222",
        "member": member.external_id,
        "kind": "welcome",
        "subject": None,
        "text": "Hola Begoña, bienvenida a Café Central",
    }
    assert provider.requests[-1].headers["idempotency-key"] == f"msg_{message_id}"


def test_unsubscribe_link_records_the_opt_out(
    shop: Shop,
    session_factory: sessionmaker[Session],
    sender: MemorySender,
    settings: MessagingSettings,
) -> None:
    member = shop.member()
    _queue(shop, member, "w")
    _dispatch(session_factory, shop, sender, settings)
    token = (sender.sent[0].unsubscribe_url or "").rsplit("/", 1)[-1]
    messaging.unsubscribe(shop.db, token=token, now=shop.now, secret=settings.secret())
    messaging.unsubscribe(shop.db, token=token, now=shop.now, secret=settings.secret())
    shop.db.commit()
    shop.db.refresh(member)
    assert member.consent["marketing"] is False and member.consent["email"] is True
    later = _queue(shop, member, "again")
    _dispatch(session_factory, shop, sender, settings)
    assert _row(session_factory, later).reason == "no_consent: no marketing consent"
    with pytest.raises(InvalidUnsubscribeLink) as tampered:
        messaging.unsubscribe(shop.db, token=token[:-2] + "xx", now=shop.now, secret=b"s" * 40)
    assert tampered.value.field == "token"
    log = messaging.send_log(shop.db, program_id=shop.program.id, member_id=member.id)
    assert [row.status for row in log] == ["skipped", "sent"]


def test_dispatch_refuses_to_run_without_a_signing_secret(
    shop: Shop, session_factory: sessionmaker[Session], sender: MemorySender
) -> None:
    with pytest.raises(ValidationError) as missing:
        messaging.dispatch_due(
            session_factory, now=shop.now, sender=sender, settings=MessagingSettings()
        )
    assert missing.value.field == "FIDELIZA_SECRET_KEY"


def test_templates_are_checked_when_saved(shop: Shop) -> None:
    def save(**fields: Any) -> None:
        data: dict[str, Any] = {
            "kind": "birthday",
            "channel": "email",
            "locale": "es",
            "subject": "Hola",
            "body_text": "Hola",
        }
        data.update(fields)
        messaging.set_template(shop.db, program_id=shop.program.id, now=shop.now, **data)

    with pytest.raises(ValidationError) as unknown:
        save(body_text="Hola {{ member.nickname }}")
    assert unknown.value.field == "body_text"
    assert "birthday/email/es" in unknown.value.message and "nickname" in unknown.value.message
    with pytest.raises(ValidationError) as undefined:
        save(subject="{{ points }} puntos")  # points are not a birthday variable
    assert undefined.value.field == "subject" and "'points' is undefined" in undefined.value.message
    with pytest.raises(ValidationError) as syntax:
        save(body_text="Hola {{ member.first_name ")
    assert syntax.value.field == "body_text" and "syntax error on line 1" in syntax.value.message
    with pytest.raises(ValidationError) as no_subject:
        save(subject=None)
    assert no_subject.value.field == "subject"
    with pytest.raises(ValidationError) as sandboxed:
        save(body_text="{{ member.__class__.__mro__ }}")
    assert sandboxed.value.field == "body_text"
    with pytest.raises(ValidationError) as locale:
        save(locale="fr")
    assert locale.value.field == "locale"
    shop.db.rollback()
    names = {
        (t.kind, t.locale) for t in messaging.list_templates(shop.db, program_id=shop.program.id)
    }
    assert ("birthday", "es") in names and ("birthday", "fr") not in names
    preview = messaging.preview(
        shop.db, program_id=shop.program.id, kind="birthday", channel="email", locale="es"
    )
    assert preview.body_text.startswith("Feliz cumpleaños, Ana.")
