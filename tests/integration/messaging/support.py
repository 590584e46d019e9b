"""Messaging test helpers: a program with templates of every kind, members with consent, an
in-memory sender and a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session

from fideliza.members.models import Member
from fideliza.messaging import service as messaging
from fideliza.messaging.channels import Outgoing, SendFailed
from fideliza.programs.models import Program
from tests.factories import make_member, make_program

SECRET = "s" * 40
CONSENTING = {"email": True, "sms": True, "push": True, "marketing": True}

TEMPLATES: dict[str, tuple[str, str]] = {
    "welcome": ("Bienvenida, {{ member.first_name }}", "Hola {{ member.first_name }}."),
    "birthday": ("¡Feliz cumpleaños!", "Feliz cumpleaños, {{ member.first_name }}."),
    "tier_up": ("Subes a {{ tier.to }}", "De {{ tier.from }} a {{ tier.to }}."),
    "tier_down": ("Bajas a {{ tier.to }}", "De {{ tier.from }} a {{ tier.to }}."),
    "points_expiring": ("Caducan {{ points }}", "{{ points }} caducan el {{ expires_on }}."),
    "win_back": ("Te echamos de menos", "Hace {{ days_since }} días."),
    "reward_within_reach": ("Casi", "Te faltan {{ points_missing }}."),
    "survey_invitation": ("Encuesta", "{{ survey.url }}"),
    "complaint_update": ("Caso {{ case.reference }}", "Estado: {{ case.status }}"),
}


@dataclass
class MemorySender:
    """Records what it is asked to send; fails with the queued errors first."""

    sent: list[Outgoing] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, message: Outgoing) -> None:
        with self.lock:
            if self.failures:
                raise self.failures.pop(0)
            self.sent.append(message)


@dataclass
class Shop:
    """A program with Spanish e-mail templates of every kind."""

    db: Session
    program: Program
    now: datetime

    def member(self, **profile: Any) -> Member:
        data: dict[str, Any] = {"email": "ana@example.com", "consent": dict(CONSENTING)}
        data.update(profile)
        member = make_member(self.db, program=self.program, now=self.now, **data)
        self.db.commit()
        return member

    def configure(self, **changes: Any) -> None:
        messaging.set_config(
            self.db, program_id=self.program.id, changes=changes, now=self.now, allow_private=True
        )
        self.db.commit()


def make_shop(db: Session, now: datetime, **program: Any) -> Shop:
    created = make_program(db, now=now, **program)
    for kind, (subject, body) in TEMPLATES.items():
        messaging.set_template(
            db,
            program_id=created.id,
            kind=kind,
            channel="email",
            locale="es",
            subject=subject,
            body_text=body + "\nBaja: {{ unsubscribe_url }}",
            now=now,
        )
    db.commit()
    return Shop(db=db, program=created, now=now)


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.box.messages.append(parsed)
        self.box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server on 127.0.0.1 (a free port) that keeps what it receives."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Mailbox(host="127.0.0.1", port=port)
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


__all__ = ["SendFailed"]
