"""Personal messages: templates and settings (admin), a member's send log (read), and the public
one-click unsubscribe link (RFC 8058) that every marketing e-mail carries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from fideliza.api.context import Call, Runtime, reader, runtime
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.validation import IdPath
from fideliza.apikeys.domain import Scope
from fideliza.core.validation import WholeNumber
from fideliza.messaging import service as messaging
from fideliza.messaging.channels import MessagingSettings
from fideliza.messaging.domain import LOCALES, TRIGGERED, Channel, Kind
from fideliza.messaging.models import Message, MessageTemplate

router = APIRouter(prefix="/v1", tags=["messaging"], responses=PROBLEM_RESPONSES)
# Public, and registered WITHOUT the JSON body check of the other routers: RFC 8058 one-click
# unsubscribe POSTs a form body (`List-Unsubscribe=One-Click`), which is not JSON.
public_router = APIRouter(prefix="/v1", tags=["messaging"], responses=PROBLEM_RESPONSES)
READ = reader()
ADMIN_READ = reader(Scope.ADMIN)
ADMIN = writer(Scope.ADMIN)


class TemplateIn(BaseModel):
    """A template's parts (Jinja2). Saved only if it renders with its kind's sample data."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=200, description="Required for e-mail.")
    body_text: str = Field(max_length=50_000)
    body_html: str | None = Field(default=None, max_length=50_000)


_CLOCK = r"^([01][0-9]|2[0-3]):([0-5][0-9])$"


class _Forbid(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Checked by the service, which names the setting in its error; the OpenAPI lists the values.
Locale = Annotated[str, Field(json_schema_extra={"enum": list(LOCALES)})]
Trigger = Annotated[str, Field(json_schema_extra={"enum": [kind.value for kind in TRIGGERED]})]


class QuietHoursIn(_Forbid):
    """Local times (HH:MM) between which nothing is sent; `end` before `start` spans midnight."""

    start: str = Field(pattern=_CLOCK, examples=["21:00"])
    end: str = Field(pattern=_CLOCK, examples=["09:00"])


class FrequencyCapIn(_Forbid):
    """At most `messages` marketing messages per member in any `days`."""

    messages: WholeNumber = Field(ge=1, le=1000)
    days: WholeNumber = Field(ge=1, le=365)


def _not_nullable(*names: str) -> Callable[[dict[str, Any]], None]:
    """States that these settings, when given, are not null (the service refuses it)."""

    def amend(schema: dict[str, Any]) -> None:
        for name in names:
            field = schema["properties"][name]
            branches = [branch for branch in field.pop("anyOf") if branch != {"type": "null"}]
            field.update(branches[0])

    return amend


class ConfigPatch(BaseModel):
    """The settings to change (the others keep their values); `null` clears quiet hours, the
    frequency cap or the provider. The service validates the result as a whole."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_not_nullable(
            "default_locale",
            "welcome_days",
            "expiring_days",
            "win_back_days",
            "win_back_window_days",
            "reward_gap_points",
            "win_back_p_alive_percent",
            "triggers",
            "channel",
        ),
    )

    default_locale: Locale | None = None
    quiet_hours: QuietHoursIn | None = None
    frequency_cap: FrequencyCapIn | None = None
    welcome_days: Annotated[WholeNumber, Field(ge=0, le=365)] | None = None
    expiring_days: Annotated[WholeNumber, Field(ge=1, le=365)] | None = None
    win_back_days: Annotated[WholeNumber, Field(ge=1, le=3650)] | None = None
    win_back_window_days: Annotated[WholeNumber, Field(ge=1, le=3650)] | None = None
    reward_gap_points: Annotated[WholeNumber, Field(ge=1, le=10_000_000)] | None = None
    win_back_p_alive_percent: Annotated[WholeNumber, Field(ge=0, le=99)] | None = None
    triggers: list[Trigger] | None = None
    channel: Channel | None = None
    provider_url: str | None = Field(default=None, max_length=2000)


class TemplateRead(BaseModel):
    id: int
    kind: str
    channel: str
    locale: str
    subject: str | None
    body_text: str
    body_html: str | None
    updated_at: datetime


class TemplateList(BaseModel):
    items: list[TemplateRead]


class ConfigRead(BaseModel):
    """The program's messaging settings (quiet hours, frequency cap, triggers …)."""

    config: dict[str, Any]


class MessageRead(BaseModel):
    """One message of a member's send log: sent, skipped (and why), failed, or still pending."""

    id: int
    kind: str
    channel: str
    status: str
    reason: str | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    locale: str | None
    subject: str | None


class MessageList(BaseModel):
    items: list[MessageRead]


def _template_read(row: MessageTemplate) -> TemplateRead:
    return TemplateRead(
        id=row.id,
        kind=row.kind,
        channel=row.channel,
        locale=row.locale,
        subject=row.subject,
        body_text=row.body_text,
        body_html=row.body_html,
        updated_at=row.updated_at,
    )


def _message_read(row: Message) -> MessageRead:
    return MessageRead(
        id=row.id,
        kind=row.kind,
        channel=row.channel,
        status=row.status,
        reason=row.reason,
        attempts=row.attempts,
        created_at=row.created_at,
        sent_at=row.sent_at,
        next_attempt_at=row.next_attempt_at,
        locale=row.locale,
        subject=row.subject,
    )


# Checked by the service (an unknown one is a 422 naming `template`); the OpenAPI lists them.
KindSegment = Annotated[str, Path(json_schema_extra={"enum": [kind.value for kind in Kind]})]
ChannelSegment = Annotated[
    str, Path(json_schema_extra={"enum": [channel.value for channel in Channel]})
]
LocaleSegment = Annotated[str, Path(json_schema_extra={"enum": list(LOCALES)})]


@router.put("/messaging/templates/{kind}/{channel}/{locale}", response_model=TemplateRead)
def put_template(
    kind: KindSegment,
    channel: ChannelSegment,
    locale: LocaleSegment,
    body: TemplateIn,
    call: Annotated[Write, Depends(ADMIN)],
) -> Response:
    """Creates or replaces a template; an unknown variable or a syntax error is a 422 naming
    the part (`subject`, `body_text`, `body_html`) and the variable."""

    def work(db: Session) -> Response:
        row = messaging.set_template(
            db,
            program_id=call.program_id,
            kind=kind,
            channel=channel,
            locale=locale,
            subject=body.subject,
            body_text=body.body_text,
            body_html=body.body_html,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(_template_read(row))

    return call.run(work)


@router.get("/messaging/templates", response_model=TemplateList)
def list_templates(call: Annotated[Call, Depends(ADMIN_READ)]) -> TemplateList:
    """The program's templates by kind, channel and language."""
    with call.session() as db:
        rows = messaging.list_templates(db, program_id=call.program_id)
        return TemplateList(items=[_template_read(row) for row in rows])


@router.get("/messaging/config", response_model=ConfigRead)
def get_config(call: Annotated[Call, Depends(ADMIN_READ)]) -> ConfigRead:
    """The program's messaging settings (defaults until changed)."""
    with call.session() as db:
        return ConfigRead(config=messaging.get_config(db, program_id=call.program_id).as_dict())


@router.patch("/messaging/config", response_model=ConfigRead)
def patch_config(body: ConfigPatch, call: Annotated[Write, Depends(ADMIN)]) -> Response:
    """Changes some settings, validated as a whole (errors name the setting)."""

    def work(db: Session) -> Response:
        config = messaging.set_config(
            db,
            program_id=call.program_id,
            changes=body.model_dump(mode="json", exclude_unset=True),
            now=call.now,
            actor=call.caller.actor,
            allow_private=MessagingSettings().provider_allow_private_addresses,
        )
        return json_response(ConfigRead(config=config.as_dict()))

    return call.run(work)


@router.get("/members/{member_id}/messages", response_model=MessageList)
def member_messages(
    member_id: IdPath,
    call: Annotated[Call, Depends(READ)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> MessageList:
    """A member's send log, newest first."""
    with call.session() as db:
        rows = messaging.send_log(db, program_id=call.program_id, member_id=member_id, limit=limit)
        return MessageList(items=[_message_read(row) for row in rows])


# --- unsubscribe (public: the signed token is the credential) --------------------------------

Token = Annotated[str, Path(min_length=1, max_length=200)]

_PAGE = """<!doctype html>
<html lang="es"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>{title}</h1>{content}</main></body></html>"""


def _secret(rt: Runtime) -> bytes:
    key = rt.settings.secret_key
    if key is not None:
        return MessagingSettings(secret_key=key).secret()
    return MessagingSettings().secret()


@public_router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: Token, rt: Annotated[Runtime, Depends(runtime)]) -> HTMLResponse:
    """Shows a one-button confirmation. A GET changes nothing: mail scanners fetch links."""
    from fideliza.messaging.domain import read_unsubscribe_token

    read_unsubscribe_token(secret=_secret(rt), token=token)  # a forged link is a 404 here
    form = (
        f'<form method="post" action="/v1/unsubscribe/{escape(token)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Darme de baja / Unsubscribe / Annulla iscrizione</button></form>'
    )
    return HTMLResponse(_PAGE.format(title="¿Darte de baja?", content=form))


@public_router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(token: Token, rt: Annotated[Runtime, Depends(runtime)]) -> HTMLResponse:
    """Records the opt-out from marketing messages (RFC 8058 one-click; twice is fine)."""
    from fideliza.db import unit_of_work

    with unit_of_work(rt.factory) as db:
        messaging.unsubscribe(db, token=token, now=rt.clock.now(), secret=_secret(rt))
    done = "<p>No recibirás más mensajes promocionales. / You will get no more promotions.</p>"
    return HTMLResponse(_PAGE.format(title="Baja registrada", content=done))
