"""Messaging without I/O: template kinds and their variables, sandboxed rendering, the program's
messaging configuration, quiet hours, the retry schedule and signed unsubscribe tokens.

Templates are Jinja2 in a sandbox with `StrictUndefined`: a template that names a variable its
kind does not provide is refused when it is *saved* (it is rendered once with a sample context),
so a send never meets an unknown variable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from fideliza.core.errors import ValidationError
from fideliza.messaging.errors import InvalidUnsubscribeLink

LOCALES = ("es", "en", "it")
MAX_SUBJECT_LENGTH = 200
MAX_BODY_LENGTH = 50_000


class Channel(StrEnum):
    """Where a message goes: e-mail over SMTP, or SMS / push through a provider's webhook."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class MessageStatus(StrEnum):
    """A message waits (`pending`), is being sent (`sending`, under a lease), then ends."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # gave up: the last attempt failed, or the failure can never succeed
    SKIPPED = "skipped"  # not sent on purpose, with the reason (consent, cap, no address …)


class SkipReason(StrEnum):
    NO_CONSENT = "no_consent"
    NO_ADDRESS = "no_address"
    NO_TEMPLATE = "no_template"
    FREQUENCY_CAP = "frequency_cap"
    MEMBER_INACTIVE = "member_inactive"
    NO_PROVIDER = "no_provider"


class Kind(StrEnum):
    """What a message is about; each kind is a template name with its own variables."""

    WELCOME = "welcome"
    BIRTHDAY = "birthday"
    TIER_UP = "tier_up"
    TIER_DOWN = "tier_down"
    POINTS_EXPIRING = "points_expiring"
    REWARD_WITHIN_REACH = "reward_within_reach"
    WIN_BACK = "win_back"
    SURVEY_INVITATION = "survey_invitation"
    COMPLAINT_UPDATE = "complaint_update"


# Transactional messages answer something the member started (a complaint): they need the
# channel's consent but not marketing consent, and they do not count against the frequency cap.
TRANSACTIONAL = frozenset({Kind.COMPLAINT_UPDATE})

# Variables every template gets, then the ones each kind adds (with sample values used to check
# a template when it is saved).
COMMON_SAMPLE: dict[str, Any] = {
    "member": {"first_name": "Ana", "last_name": "Muñoz", "external_id": "m-1", "tier": "gold"},
    "program": {"name": "Café Central", "points_name": "puntos"},
    "unsubscribe_url": "https://example.com/v1/unsubscribe/token",
}
KIND_SAMPLES: dict[Kind, dict[str, Any]] = {
    Kind.WELCOME: {},
    Kind.BIRTHDAY: {},
    Kind.TIER_UP: {"tier": {"from": "silver", "to": "gold"}},
    Kind.TIER_DOWN: {"tier": {"from": "gold", "to": "silver"}},
    Kind.POINTS_EXPIRING: {"points": 120, "expires_on": "2025-03-24"},
    Kind.REWARD_WITHIN_REACH: {
        "reward": {"code": "coffee", "name": "Café gratis", "points_cost": 500},
        "balance": 450,
        "points_missing": 50,
    },
    Kind.WIN_BACK: {"last_purchase_on": "2024-12-01", "days_since": 99},
    Kind.SURVEY_INVITATION: {"survey": {"name": "¿Qué tal?", "url": "https://example.com/s"}},
    Kind.COMPLAINT_UPDATE: {
        "case": {"reference": "C-1", "status": "resolved", "note": "Reembolsado"}
    },
}


def parse_kind(value: object) -> Kind:
    try:
        return Kind(str(value))
    except ValueError:
        names = ", ".join(k.value for k in Kind)
        raise ValidationError(
            f"unknown template {value!r} (one of {names})", field="template"
        ) from None


def parse_channel(value: object) -> Channel:
    try:
        return Channel(str(value))
    except ValueError:
        names = ", ".join(c.value for c in Channel)
        raise ValidationError(
            f"unknown channel {value!r} (one of {names})", field="channel"
        ) from None


def parse_locale(value: object, *, field: str = "locale") -> str:
    if value not in LOCALES:
        raise ValidationError(f"must be one of {', '.join(LOCALES)}, got {value!r}", field=field)
    return str(value)


# --- templates --------------------------------------------------------------------------------

_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_HTML_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


@dataclass(frozen=True, slots=True)
class TemplateText:
    """A template's parts: a subject (required for e-mail), a text body, an optional HTML body."""

    subject: str | None
    body_text: str
    body_html: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    body_text: str
    body_html: str | None


def _render_part(source: str, context: dict[str, Any], *, html: bool, label: str) -> str:
    environment = _HTML_ENVIRONMENT if html else _ENVIRONMENT
    try:
        return environment.from_string(source).render(context)
    except TemplateSyntaxError as error:
        raise ValidationError(
            f"{label}: syntax error on line {error.lineno}: {error.message}", field=_field(label)
        ) from None
    except UndefinedError as error:
        raise ValidationError(
            f"{label}: unknown variable ({error.message})", field=_field(label)
        ) from None
    except SecurityError as error:
        raise ValidationError(f"{label}: not allowed ({error})", field=_field(label)) from None
    except Exception as error:  # a template error at render time (e.g. a bad filter argument)
        raise ValidationError(
            f"{label}: cannot be rendered ({type(error).__name__}: {error})", field=_field(label)
        ) from None


def _field(label: str) -> str:
    return label.rsplit(" ", 1)[-1]


def render(template: TemplateText, context: dict[str, Any], *, name: str = "template") -> Rendered:
    """Renders every part; an unknown variable or a syntax error is a ValidationError naming the
    template, the part and the variable."""
    subject = None
    if template.subject is not None:
        subject = _render_part(
            template.subject, context, html=False, label=f"template {name} subject"
        )
        subject = " ".join(subject.split())  # a header is one line
    body_text = _render_part(
        template.body_text, context, html=False, label=f"template {name} body_text"
    )
    body_html = None
    if template.body_html is not None:
        body_html = _render_part(
            template.body_html, context, html=True, label=f"template {name} body_html"
        )
    return Rendered(subject=subject, body_text=body_text, body_html=body_html)


def sample_context(kind: Kind) -> dict[str, Any]:
    return {**COMMON_SAMPLE, **KIND_SAMPLES[kind]}


def check_template(
    *, kind: Kind, channel: Channel, locale: str, template: TemplateText
) -> Rendered:
    """Validates a template before it is saved: sizes, the e-mail subject, and one render with
    the kind's sample context (so an unknown variable is found now, not at send time)."""
    if channel is Channel.EMAIL and not (template.subject or "").strip():
        raise ValidationError("is required for an e-mail template", field="subject")
    if channel is not Channel.EMAIL and template.body_html is not None:
        raise ValidationError("only e-mail templates have an HTML body", field="body_html")
    if template.subject is not None and len(template.subject) > MAX_SUBJECT_LENGTH:
        raise ValidationError(f"must not exceed {MAX_SUBJECT_LENGTH} characters", field="subject")
    if not template.body_text.strip():
        raise ValidationError("is required", field="body_text")
    for name in ("body_text", "body_html"):
        value = getattr(template, name)
        if value is not None and len(value) > MAX_BODY_LENGTH:
            raise ValidationError(f"must not exceed {MAX_BODY_LENGTH} characters", field=name)
    return render(template, sample_context(kind), name=f"{kind.value}/{channel.value}/{locale}")


def check_context(kind: Kind, context: dict[str, Any]) -> None:
    """An enqueued message's own variables: every one its kind's templates may use."""
    if not isinstance(context, dict):
        raise ValidationError("must be an object", field="context")
    for name in KIND_SAMPLES[kind]:
        if name not in context:
            raise ValidationError(f"is required by {kind.value} templates", field=f"context.{name}")


# --- configuration ----------------------------------------------------------------------------

_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours when nothing is sent (e.g. 21:00–09:00, across midnight)."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True, slots=True)
class MessagingConfig:
    """How a program messages its members (stored per program, validated here)."""

    default_locale: str = "es"
    quiet_hours: QuietHours | None = None
    cap_messages: int = 3  # marketing messages per member …
    cap_days: int = 7  # … in this rolling window
    welcome_days: int = 7  # welcome members enrolled this recently
    expiring_days: int = 14  # points expiring within this many days
    win_back_days: int = 90  # no purchase for this long
    win_back_window_days: int = 30  # … but bought within this much longer (once per lapse)
    reward_gap_points: int = 100  # within this many points of a reward
    # Also win back repeat buyers whose BG/NBD P(alive) fell below this percentage (0: off).
    win_back_p_alive_percent: int = 0
    triggers: frozenset[Kind] = field(
        default_factory=lambda: frozenset(
            {
                Kind.WELCOME,
                Kind.BIRTHDAY,
                Kind.TIER_UP,
                Kind.TIER_DOWN,
                Kind.POINTS_EXPIRING,
                Kind.WIN_BACK,
                Kind.REWARD_WITHIN_REACH,
            }
        )
    )
    channel: Channel = Channel.EMAIL  # the channel triggered messages go by
    provider_url: str | None = None  # SMS / push provider's webhook

    def as_dict(self) -> dict[str, Any]:
        quiet = None
        if self.quiet_hours is not None:
            quiet = {
                "start": self.quiet_hours.start.strftime("%H:%M"),
                "end": self.quiet_hours.end.strftime("%H:%M"),
            }
        return {
            "default_locale": self.default_locale,
            "quiet_hours": quiet,
            "frequency_cap": {"messages": self.cap_messages, "days": self.cap_days},
            "welcome_days": self.welcome_days,
            "expiring_days": self.expiring_days,
            "win_back_days": self.win_back_days,
            "win_back_window_days": self.win_back_window_days,
            "reward_gap_points": self.reward_gap_points,
            "win_back_p_alive_percent": self.win_back_p_alive_percent,
            "triggers": sorted(k.value for k in self.triggers),
            "channel": self.channel.value,
            "provider_url": self.provider_url,
        }


TRIGGERED = (
    Kind.WELCOME,
    Kind.BIRTHDAY,
    Kind.TIER_UP,
    Kind.TIER_DOWN,
    Kind.POINTS_EXPIRING,
    Kind.WIN_BACK,
    Kind.REWARD_WITHIN_REACH,
)
_DAY_FIELDS = {
    "welcome_days": (0, 365),
    "expiring_days": (1, 365),
    "win_back_days": (1, 3650),
    "win_back_window_days": (1, 3650),
    "reward_gap_points": (1, 10_000_000),
    "win_back_p_alive_percent": (0, 99),
}
_KNOWN = {"default_locale", "quiet_hours", "frequency_cap", "triggers", "channel", "provider_url"}


def _whole(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"must be a whole number from {low} to {high}", field=name)
    return value


def _clock(value: object, name: str) -> time:
    found = _CLOCK.match(value) if isinstance(value, str) else None
    if found is None:
        raise ValidationError("must be a local time HH:MM, e.g. 21:00", field=name)
    return time(int(found.group(1)), int(found.group(2)))


def parse_config(raw: dict[str, Any] | None) -> MessagingConfig:
    """Validates a program's messaging configuration; errors name the field."""
    if raw is not None and not isinstance(raw, dict):
        raise ValidationError("must be an object", field="config")
    raw = dict(raw or {})
    unknown = set(raw) - _KNOWN - set(_DAY_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationError(f"unknown setting {name!r}", field=name)
    values: dict[str, Any] = {}
    if "default_locale" in raw:
        values["default_locale"] = parse_locale(raw["default_locale"], field="default_locale")
    quiet = raw.get("quiet_hours")
    if quiet is not None:
        if not isinstance(quiet, dict) or set(quiet) != {"start", "end"}:
            raise ValidationError("must be an object with start and end", field="quiet_hours")
        start = _clock(quiet["start"], "quiet_hours.start")
        end = _clock(quiet["end"], "quiet_hours.end")
        if start == end:
            raise ValidationError("must differ from start", field="quiet_hours.end")
        values["quiet_hours"] = QuietHours(start, end)
    cap = raw.get("frequency_cap")
    if cap is not None:
        if not isinstance(cap, dict) or set(cap) != {"messages", "days"}:
            raise ValidationError("must be an object with messages and days", field="frequency_cap")
        values["cap_messages"] = _whole(cap["messages"], "frequency_cap.messages", 1, 1000)
        values["cap_days"] = _whole(cap["days"], "frequency_cap.days", 1, 365)
    for name, (low, high) in _DAY_FIELDS.items():
        if name in raw:
            values[name] = _whole(raw[name], name, low, high)
    if "triggers" in raw:
        triggers = raw["triggers"]
        if not isinstance(triggers, list):
            raise ValidationError("must be a list of trigger names", field="triggers")
        kinds = set()
        for index, name in enumerate(triggers):
            if name not in {k.value for k in TRIGGERED}:
                allowed = ", ".join(k.value for k in TRIGGERED)
                raise ValidationError(
                    f"unknown trigger {name!r} (one of {allowed})", field=f"triggers[{index}]"
                )
            kinds.add(Kind(name))
        values["triggers"] = frozenset(kinds)
    if "channel" in raw:
        values["channel"] = parse_channel(raw["channel"])
    if raw.get("provider_url") is not None:
        if not isinstance(raw["provider_url"], str):
            raise ValidationError("must be a URL", field="provider_url")
        values["provider_url"] = raw["provider_url"]
    return MessagingConfig(**values)


# --- quiet hours, frequency cap, retries ------------------------------------------------------


def quiet_until(quiet: QuietHours | None, *, now: datetime, zone: ZoneInfo) -> datetime | None:
    """When the quiet hours around `now` end (UTC), or None if `now` is not in them."""
    if quiet is None:
        return None
    local = now.astimezone(zone)
    if not quiet.contains(local.time()):
        return None
    end_day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        end_day += timedelta(days=1)  # quiet from the evening until tomorrow morning
    end = datetime.combine(end_day, quiet.end, tzinfo=zone).astimezone(UTC)
    if quiet.contains(end.astimezone(zone).time()):
        # The end fell in a daylight-saving gap and the clock jumped back into quiet hours:
        # wait for the next end instead.
        return quiet_until(quiet, now=end, zone=zone)
    return end


RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=12),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1


def next_retry(attempts: int, *, now: datetime) -> datetime | None:
    """When to try again after `attempts` failed attempts; None once they are used up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return now + RETRY_DELAYS[attempts - 1]


# --- unsubscribe tokens -----------------------------------------------------------------------

_TOKEN_VERSION = "fzu1"
_TOKEN = re.compile(r"^fzu1\.([1-9][0-9]{0,18})\.([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{43})$")


def _token_signature(secret: bytes, program_id: int, member_id: int) -> str:
    content = f"{_TOKEN_VERSION}.{program_id}.{member_id}".encode()
    mac = hmac.new(secret, content, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def unsubscribe_token(*, secret: bytes, program_id: int, member_id: int) -> str:
    """A token naming a member, signed by the server: `fzu1.<program>.<member>.<signature>`.

    It does not expire: an unsubscribe link must keep working in an old e-mail.
    """
    signature = _token_signature(secret, program_id, member_id)
    return f"{_TOKEN_VERSION}.{program_id}.{member_id}.{signature}"


def read_unsubscribe_token(*, secret: bytes, token: str) -> tuple[int, int]:
    """(program id, member id) of a valid token; `invalid_link` (404) otherwise."""
    found = _TOKEN.match(token or "")
    if found is None:
        raise InvalidUnsubscribeLink("this unsubscribe link is not valid", field="token")
    program_id, member_id = int(found.group(1)), int(found.group(2))
    expected = _token_signature(secret, program_id, member_id)
    if not hmac.compare_digest(expected, found.group(3)):
        raise InvalidUnsubscribeLink("this unsubscribe link is not valid", field="token")
    return program_id, member_id
