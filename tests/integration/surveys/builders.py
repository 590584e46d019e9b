"""Survey test data: definitions, settings and purchases, saying only what a test needs."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fideliza.members.models import Member
from fideliza.programs.models import Program
from fideliza.purchases import service as purchases
from fideliza.surveys.service import SurveySettings

SETTINGS = SurveySettings(secret_key="a-test-secret-of-at-least-32-characters!")  # type: ignore[arg-type]


def nps_survey(code: str = "nps", **sending: Any) -> dict[str, Any]:
    """An NPS survey with a free-text follow-up, in Spanish and English."""
    return {
        "code": code,
        "kind": "nps",
        "default_locale": "es",
        "title": {"es": "Tu opinión", "en": "Your opinion"},
        "questions": [
            {
                "id": "recommend",
                "type": "nps",
                "text": {"es": "¿Nos recomendarías?", "en": "Would you recommend us?"},
            },
            {
                "id": "why",
                "type": "text",
                "required": False,
                "text": {"es": "¿Por qué?", "en": "Why?"},
            },
        ],
        "sending": sending or {"trigger": "purchase", "sample_rate": "1", "quiet_days": 30},
    }


def csat_survey(code: str = "csat", **sending: Any) -> dict[str, Any]:
    return {
        "code": code,
        "kind": "csat",
        "title": {"es": "Satisfacción", "it": "Soddisfazione"},
        "questions": [
            {
                "id": "satisfied",
                "type": "csat",
                "text": {"es": "¿Satisfecho?", "it": "Soddisfatto?"},
            }
        ],
        "sending": sending or {"trigger": "case", "expires_days": 7},
    }


def buy(
    db: Session,
    *,
    program: Program,
    member: Member,
    at: datetime,
    store: str = "MAD-1",
    channel: str = "store",
    external_id: str | None = None,
) -> str:
    """Records a purchase; returns its external id."""
    external_id = external_id or f"T-{secrets.token_hex(6)}"
    purchases.record_purchase(
        db,
        program=program,
        data={
            "external_id": external_id,
            "member_id": member.external_id,
            "occurred_at": at.isoformat(),
            "amount": "10.00",
            "currency": "EUR",
            "channel": channel,
            "store": store,
        },
        now=at,
    )
    return external_id
