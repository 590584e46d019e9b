"""The demo's engagement layer: catalog redemptions, coupons, referrals, surveys, cases, gift cards.

Everything goes through the same services as real traffic, seeded, with times in the past.
Survey links are signed with `DEMO_SURVEY_SECRET`, a fixed key for the demo only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fideliza.cases import service as cases
from fideliza.cases.domain import Gesture
from fideliza.core.errors import FidelizaError
from fideliza.coupons import service as coupons
from fideliza.coupons.domain import parse_basket
from fideliza.giftcards import service as giftcards
from fideliza.ledger.models import Account
from fideliza.lifecycle import service as lifecycle
from fideliza.members.models import Member
from fideliza.messaging import service as messaging
from fideliza.programs.models import Program
from fideliza.referrals import service as referrals
from fideliza.rewards import service as rewards
from fideliza.surveys import service as surveys
from fideliza.surveys.service import SurveySettings

# A fixed key so the demo's answer links are reproducible; never use it for a real program.
DEMO_SURVEY_SECRET = "fideliza-demo-survey-secret-not-for-production"
SURVEY_SETTINGS = SurveySettings(secret_key=DEMO_SURVEY_SECRET)

REFERRAL_CONFIG = {"trigger": "first_purchase", "referrer_points": 200, "referred_points": 100}

# The earning rules already give 50 on the first purchase and 100 in the birthday month; the
# lifecycle engine adds a birthday-day treat. A lifecycle welcome bonus stays off: it would pay
# every demo member at once in the final job run (double welcome, and slow).
LIFECYCLE_CONFIG = {"welcome_points": 0, "birthday": {"points": 50, "mode": "day"}}

# Welcome and birthday e-mails in the program's three languages.
TEMPLATES = {
    ("welcome", "es"): (
        "Bienvenido a {{ program.name }}",
        "Hola {{ member.first_name }}, ya sumas {{ program.points_name }} con cada café.",
    ),
    ("welcome", "en"): (
        "Welcome to {{ program.name }}",
        "Hi {{ member.first_name }}, every coffee now earns {{ program.points_name }}.",
    ),
    ("welcome", "it"): (
        "Benvenuto in {{ program.name }}",
        "Ciao {{ member.first_name }}, ogni caffè ora ti fa guadagnare {{ program.points_name }}.",
    ),
    ("birthday", "es"): (
        "¡Feliz cumpleaños, {{ member.first_name }}!",
        "Este mes tienes {{ program.points_name }} extra en {{ program.name }}.",
    ),
    ("birthday", "en"): (
        "Happy birthday, {{ member.first_name }}!",
        "This month you get extra {{ program.points_name }} at {{ program.name }}.",
    ),
    ("birthday", "it"): (
        "Buon compleanno, {{ member.first_name }}!",
        "Questo mese hai {{ program.points_name }} extra da {{ program.name }}.",
    ),
}

NPS_SURVEY: dict[str, Any] = {
    "code": "nps",
    "kind": "nps",
    "default_locale": "es",
    "title": {"es": "Tu opinión", "en": "Your opinion", "it": "La tua opinione"},
    "questions": [
        {
            "id": "recommend",
            "type": "nps",
            "text": {
                "es": "¿Recomendarías Café Fideliza?",
                "en": "Would you recommend Café Fideliza?",
                "it": "Consiglieresti Café Fideliza?",
            },
        }
    ],
    "sending": {"trigger": "manual", "expires_days": 14},
}
CSAT_SURVEY: dict[str, Any] = {
    "code": "csat",
    "kind": "csat",
    "default_locale": "es",
    "title": {"es": "Tu caso", "en": "Your case", "it": "Il tuo caso"},
    "questions": [
        {
            "id": "satisfied",
            "type": "csat",
            "text": {
                "es": "¿Quedaste satisfecho?",
                "en": "Were you satisfied?",
                "it": "Sei rimasto soddisfatto?",
            },
        }
    ],
    "sending": {"trigger": "case", "expires_days": 7},
}

# Mean NPS score by usage group; the spread makes hostages (unhappy heavy users) and
# mercenaries (happy low users) appear, as in real programs.
_NPS_MEAN = {"heavy": 8.6, "medium": 7.4, "low": 6.2}
_NPS_SPREAD = 2.0
# Survey answers per member by usage group (heavy users are asked, and answer, more often).
_NPS_RATE = {"heavy": 0.45, "medium": 0.12, "low": 0.04}


def configure(db: Session, *, program: Program, now: datetime) -> dict[str, int]:
    """The catalog, coupon campaigns, the referral scheme and the surveys; returns reward ids."""
    next_order = coupons.create_campaign(
        db,
        program_id=program.id,
        data={
            "code": "next-order",
            "name": "2 € off your next order",
            "discount": {"type": "fixed", "amount": "2.00"},
        },
        now=now,
    )
    coupons.create_campaign(
        db,
        program_id=program.id,
        data={
            "code": "spring",
            "name": "Spring: 10% off",
            "discount": {"type": "percent", "percent": "10"},
        },
        now=now,
    )
    catalog: list[dict[str, Any]] = [
        {"code": "cafe", "name": "Café gratis", "kind": "gift", "points_cost": 150},
        {"code": "tarta", "name": "Tarta", "kind": "gift", "points_cost": 300},
        {"code": "desayuno", "name": "Desayuno", "kind": "gift", "points_cost": 500},
        {
            "code": "dos-euros",
            "name": "2 € en tu próximo pedido",
            "kind": "discount",
            "points_cost": 200,
            "campaign_id": next_order.id,
        },
        {
            "code": "donacion",
            "name": "Donación: un café para quien lo necesita",
            "kind": "charity",
            "points_cost": 100,
            "value": "1.00",
        },
        {
            "code": "cata",
            "name": "Cata de café",
            "kind": "experience",
            "points_cost": 600,
            "eligible_tiers": ["GOLD"],
            "stock": 40,
        },
    ]
    ids = {}
    for data in catalog:
        ids[data["code"]] = rewards.create_reward(db, program=program, data=data, now=now).id
    referrals.configure(db, program=program, config=REFERRAL_CONFIG, now=now)
    surveys.define(db, program=program, definition=NPS_SURVEY, now=now)
    surveys.define(db, program=program, definition=CSAT_SURVEY, now=now)
    lifecycle.configure(db, program=program, config=LIFECYCLE_CONFIG, now=now)
    for (kind, locale), (subject, body) in TEMPLATES.items():
        messaging.set_template(
            db,
            program_id=program.id,
            kind=kind,
            channel="email",
            locale=locale,
            subject=subject,
            body_text=body + "\n{{ unsubscribe_url }}",
            now=now,
        )
    return ids


def redeem_catalog(db: Session, *, program: Program, seed: int, now: datetime) -> dict[str, int]:
    """Members with points redeem catalog rewards: most captured, a few held or released."""
    rng = np.random.default_rng([seed, 99])
    catalog = {r.code: r for r in rewards.list_rewards(db, program_id=program.id)}
    rich = db.execute(
        select(Account.member_id, Account.balance)
        .where(
            Account.program_id == program.id,
            Account.kind == "available",
            Account.balance >= 150,
        )
        .order_by(Account.member_id)
    ).all()
    counts = {"captured": 0, "held": 0, "released": 0}
    for member_id, available in rich:
        if member_id is None or rng.random() >= 0.25:
            continue
        wanted = [r for r in catalog.values() if r.points_cost <= int(available or 0)]
        reward = wanted[int(rng.integers(len(wanted)))]
        fate = rng.random()
        try:
            with db.begin_nested():  # a refusal (not eligible, out of stock) leaves nothing
                redemption, _ = rewards.redeem(
                    db,
                    program=program,
                    member_id=member_id,
                    reward_id=reward.id,
                    reference=f"demo-{member_id}",
                    now=now,
                )
                if fate < 0.03:
                    counts["held"] += 1
                elif fate < 0.06:
                    rewards.release(db, program=program, redemption_id=redemption.id, now=now)
                    counts["released"] += 1
                else:
                    rewards.capture(db, program=program, redemption_id=redemption.id, now=now)
                    counts["captured"] += 1
        except FidelizaError:
            continue
    return counts


def spring_coupons(db: Session, *, program: Program, seed: int, now: datetime) -> int:
    """Prints 300 spring codes and redeems some at the till; returns how many were redeemed."""
    rng = np.random.default_rng([seed, 17])
    campaign = coupons.get_campaign_by_code(db, program_id=program.id, code="spring")
    codes = coupons.generate_codes(
        db, program_id=program.id, campaign_id=campaign.id, count=300, now=now
    )
    redeemed = 0
    for code in list(codes)[: int(rng.integers(60, 90))]:
        amount = Decimal(int(rng.integers(400, 2500))) / 100
        coupons.redeem(
            db,
            program_id=program.id,
            code=str(code),
            basket=parse_basket(amount, program.currency),
            now=now,
        )
        redeemed += 1
    return redeemed


def referral_code(db: Session, *, program: Program, member: Member, now: datetime) -> str:
    return referrals.code_for(db, program=program, member=member, now=now)


def answer_surveys(
    db: Session, *, program: Program, seed: int, start: datetime, end: datetime
) -> int:
    """NPS answers over the whole window, scores following each member's usage group."""
    rng = np.random.default_rng([seed, 23])
    answered = 0
    people = db.scalars(
        select(Member).where(Member.program_id == program.id).order_by(Member.id)
    ).all()
    span = (end - start).total_seconds()
    for member in people:
        usage = str((member.attributes or {}).get("usage", "low"))
        for k in range(int(rng.poisson(_NPS_RATE.get(usage, 0.04)))):
            asked = start + timedelta(seconds=float(rng.uniform(0, span - 3 * 86_400)))
            score = int(np.clip(round(rng.normal(_NPS_MEAN.get(usage, 6.0), _NPS_SPREAD)), 0, 10))
            invitation = surveys.invite(
                db,
                program_id=program.id,
                survey_code="nps",
                member=member,
                source_ref=f"demo-nps-{k}",
                now=asked,
            )
            token = surveys.token_of(invitation, settings=SURVEY_SETTINGS)
            surveys.answer(
                db,
                token=token,
                answers={"recommend": score},
                now=asked + timedelta(hours=float(rng.uniform(1, 48))),
                settings=SURVEY_SETTINGS,
            )
            answered += 1
    return answered


_CASE_SUBJECTS = [
    ("points", "Faltan granos de una compra"),
    ("product", "El café llegó frío"),
    ("service", "Esperé demasiado en caja"),
    ("reward", "No pude canjear mi tarta"),
    ("billing", "Me cobraron dos veces"),
]


def open_cases(db: Session, *, program: Program, seed: int, end: datetime) -> int:
    """A few dozen cases: most resolved (some with goodwill points), some left to breach SLA."""
    rng = np.random.default_rng([seed, 31])
    ids = db.scalars(
        select(Member.id).where(Member.program_id == program.id).order_by(Member.id)
    ).all()
    chosen = rng.choice(len(ids), size=min(36, len(ids)), replace=False)
    made = 0
    for n, index in enumerate(sorted(int(i) for i in chosen)):
        category, subject = _CASE_SUBJECTS[n % len(_CASE_SUBJECTS)]
        opened = end - timedelta(days=float(rng.uniform(0.5, 120)))
        case = cases.open_case(
            db,
            program_id=program.id,
            member_id=ids[index],
            category=category,
            channel=["store", "phone", "email", "web", "app"][n % 5],
            severity=["low", "medium", "high", "critical"][n % 4],
            subject=subject,
            now=opened,
        )
        made += 1
        fate = n % 6
        if fate == 0:  # left open, untouched: the overdue ones breach their SLA
            continue
        cases.assign(db, program_id=program.id, case_id=case.id, assignee="lucia", now=opened)
        if fate == 1:
            continue
        resolved = opened + timedelta(hours=float(rng.uniform(2, 60)))
        gesture = Gesture(goodwill_points=100) if fate in (2, 3) else None
        resolution = cases.parse_resolution(
            summary="Resuelto con el cliente", apologized=True, gesture=gesture, now=resolved
        )
        cases.resolve(db, program=program, case_id=case.id, resolution=resolution, now=resolved)
    return made


def answer_case_surveys(db: Session, *, program: Program, seed: int) -> int:
    """Some members answer the CSAT survey their resolved case sent them."""
    from fideliza.surveys.models import SurveyInvitation

    rng = np.random.default_rng([seed, 37])
    invitations = db.scalars(
        select(SurveyInvitation)
        .where(
            SurveyInvitation.program_id == program.id,
            SurveyInvitation.survey_code == "csat",
            SurveyInvitation.answered_at.is_(None),
        )
        .order_by(SurveyInvitation.id)
    ).all()
    answered = 0
    for invitation in invitations:
        if rng.random() < 0.3:
            continue
        token = surveys.token_of(invitation, settings=SURVEY_SETTINGS)
        surveys.answer(
            db,
            token=token,
            answers={"satisfied": int(rng.integers(2, 6))},
            now=invitation.created_at + timedelta(hours=3),
            settings=SURVEY_SETTINGS,
        )
        answered += 1
    return answered


def gift_cards(db: Session, *, program: Program, now: datetime) -> int:
    """Two gift cards sold at a store, one partly spent."""
    first = giftcards.issue_card(db, program_id=program.id, amount="25.00", now=now)
    giftcards.issue_card(db, program_id=program.id, amount="50.00", now=now)
    giftcards.spend_card(
        db,
        program_id=program.id,
        code=first.code,
        pin=None,
        amount="7.50",
        idempotency_key="demo-gift-1",
        now=now,
    )
    return 2


def summary(db: Session, *, program_id: int, now: datetime) -> dict[str, Any]:
    """What the engagement layer made: redemptions, coupons, referrals, surveys, cases."""
    from fideliza.cases.models import Case
    from fideliza.coupons.models import CouponCode, CouponRedemption
    from fideliza.giftcards.models import GiftCard
    from fideliza.referrals.models import Referral
    from fideliza.rewards.models import Redemption
    from fideliza.surveys.models import SurveyResponse

    def grouped(column: Any, model: Any) -> dict[str, int]:
        rows = db.execute(
            select(column, func.count())
            .select_from(model)
            .where(model.program_id == program_id)
            .group_by(column)
        ).all()
        return {str(key): int(count) for key, count in sorted(rows, key=lambda r: str(r[0]))}

    def count(model: Any, *where: Any) -> int:
        return int(
            db.scalar(
                select(func.count())
                .select_from(model)
                .where(model.program_id == program_id, *where)
            )
            or 0
        )

    scores = list(
        db.scalars(
            select(SurveyResponse.score).where(
                SurveyResponse.program_id == program_id, SurveyResponse.kind == "nps"
            )
        )
    )
    return {
        "rewards_redeemed": grouped(Redemption.status, Redemption),
        "coupon_codes": count(CouponCode),
        "coupons_redeemed": count(CouponRedemption),
        "referrals": grouped(Referral.state, Referral),
        "survey_answers": grouped(SurveyResponse.kind, SurveyResponse),
        "nps": nps_of([s for s in scores if s is not None]),
        "cases": grouped(Case.state, Case),
        "cases_breaching_sla": count(Case, cases.breached_clause(now)),
        "gift_cards": count(GiftCard),
    }


def nps_of(scores: list[int]) -> int | None:
    """Net Promoter Score: % promoters (9-10) minus % detractors (0-6), rounded."""
    if not scores:
        return None
    promoters = sum(s >= 9 for s in scores)
    detractors = sum(s <= 6 for s in scores)
    return round(100 * (promoters - detractors) / len(scores))
