"""Coupon campaigns (admin), codes, and validation / redemption at the till.

A till or an app gets one generic answer for an unknown, expired or used code
(`coupon_not_valid`): no oracle telling whether a code exists. The admin's lookup tells the
exact state. Validation is rate limited per API key, like every sensitive look-up.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy.orm import Session

from fideliza.api.context import Call, reader
from fideliza.api.errors import PROBLEM_RESPONSES
from fideliza.api.idempotency import Write, json_response, writer
from fideliza.api.ratelimit import sensitive
from fideliza.api.validation import IdPath
from fideliza.apikeys.domain import Scope
from fideliza.coupons import budget
from fideliza.coupons import service as coupons
from fideliza.coupons.domain import Basket, parse_basket
from fideliza.coupons.models import CouponCampaign
from fideliza.coupons.schemas import (
    BudgetRead,
    CampaignCreate,
    CampaignRead,
    CampaignUpdate,
    CodeIn,
    CodeStateRead,
    CouponCheckIn,
    CouponRedeemIn,
    GeneratedRead,
    GenerateIn,
    IssuedRead,
    IssueIn,
    QuoteRead,
    RedemptionRead,
)
from fideliza.programs.models import Program

router = APIRouter(prefix="/v1", tags=["coupons"], responses=PROBLEM_RESPONSES)
READ = reader()
ADMIN_READ = reader(Scope.ADMIN)
POS = writer()
ADMIN = writer(Scope.ADMIN)


def campaign_read(db: Session, campaign: CouponCampaign, *, call: Call) -> CampaignRead:
    found = None
    if campaign.budget_points is not None or campaign.budget_money is not None:
        state = budget.state(db, campaign=campaign, now=call.now)
        found = BudgetRead(
            period_start=state.period_start.isoformat(),
            points_spent=state.points_spent,
            money_spent=state.money_spent,
            points_budget=state.points_budget,
            money_budget=state.money_budget,
            exhausted=state.exhausted,
        )
    return CampaignRead(
        id=campaign.id,
        code=campaign.code,
        name=campaign.name,
        description=campaign.description,
        discount=campaign.discount,
        min_spend=campaign.min_spend,
        max_uses_per_code=campaign.max_uses_per_code,
        once_per_member=campaign.once_per_member,
        valid_from=campaign.valid_from,
        valid_until=campaign.valid_until,
        code_valid_days=campaign.code_valid_days,
        code_prefix=campaign.code_prefix,
        code_bits=campaign.code_bits,
        trigger=campaign.trigger,
        trigger_min_amount=campaign.trigger_min_amount,
        return_policy=campaign.return_policy,
        budget_period=campaign.budget_period,
        points_per_code=campaign.points_per_code,
        active=campaign.active,
        created_at=campaign.created_at,
        budget=found,
    )


@router.post("/coupon-campaigns", status_code=201, response_model=CampaignRead)
def create_campaign(body: CampaignCreate, call: Annotated[Write, Depends(ADMIN)]) -> Response:
    """Creates a coupon campaign: discount, limits, validity, budget, return policy."""

    def work(db: Session) -> Response:
        campaign = coupons.create_campaign(
            db, program_id=call.program_id, data=body, now=call.now, actor=call.caller.actor
        )
        return json_response(campaign_read(db, campaign, call=call), status=201)

    return call.run(work)


@router.get("/coupon-campaigns", response_model=list[CampaignRead])
def list_campaigns(call: Annotated[Call, Depends(READ)]) -> list[CampaignRead]:
    """The program's coupon campaigns, oldest first."""
    with call.session() as db:
        found = coupons.list_campaigns(db, program_id=call.program_id)
        return [campaign_read(db, campaign, call=call) for campaign in found]


@router.get("/coupon-campaigns/{campaign_id}", response_model=CampaignRead)
def get_campaign(campaign_id: IdPath, call: Annotated[Call, Depends(READ)]) -> CampaignRead:
    """A campaign, with what it spent of its budget this period."""
    with call.session() as db:
        campaign = coupons.get_campaign(db, program_id=call.program_id, campaign_id=campaign_id)
        return campaign_read(db, campaign, call=call)


@router.patch("/coupon-campaigns/{campaign_id}", response_model=CampaignRead)
def update_campaign(
    campaign_id: IdPath, body: CampaignUpdate, call: Annotated[Write, Depends(ADMIN)]
) -> Response:
    """Pauses (`active: false`) or resumes a campaign."""

    def work(db: Session) -> Response:
        campaign = coupons.set_campaign_active(
            db,
            program_id=call.program_id,
            campaign_id=campaign_id,
            active=body.active,
            now=call.now,
            actor=call.caller.actor,
        )
        return json_response(campaign_read(db, campaign, call=call))

    return call.run(work)


@router.post("/coupon-campaigns/{campaign_id}/codes", status_code=201, response_model=GeneratedRead)
def generate_codes(
    campaign_id: IdPath, body: GenerateIn, call: Annotated[Write, Depends(ADMIN)]
) -> Response:
    """Generates unassigned codes (up to 10,000 a call; the CLI does millions)."""

    def work(db: Session) -> Response:
        campaign = coupons.get_campaign(db, program_id=call.program_id, campaign_id=campaign_id)
        found = coupons.generate_codes(
            db,
            program_id=call.program_id,
            campaign_id=campaign_id,
            count=body.count,
            now=call.now,
            actor=call.caller.actor,
        )
        shown = [coupons.display(code, campaign) for code in found]
        read = GeneratedRead(campaign_id=campaign_id, count=len(shown), codes=shown)
        return json_response(read, status=201)

    return call.run(work)


@router.post("/coupon-campaigns/{campaign_id}/issue", status_code=201, response_model=IssuedRead)
def issue_code(
    campaign_id: IdPath, body: IssueIn, call: Annotated[Write, Depends(ADMIN)]
) -> Response:
    """Issues one code of the campaign to a member (within its validity and budget)."""

    def work(db: Session) -> Response:
        issued = coupons.issue_code(
            db,
            program_id=call.program_id,
            campaign_id=campaign_id,
            member_id=body.member_id,
            now=call.now,
            source=body.source,
        )
        read = IssuedRead(
            id=issued.id,
            code=issued.code,
            campaign_id=issued.campaign_id,
            member_id=issued.member_id,
            valid_until=issued.valid_until,
        )
        return json_response(read, status=201)

    return call.run(work)


def _basket(program: Program, body: CouponCheckIn) -> Basket:
    items = [line.model_dump() for line in body.items]
    return parse_basket(body.amount, program.currency, items)


@router.post(
    "/coupons/validate",
    response_model=QuoteRead,
    dependencies=[Depends(sensitive("coupon_validation"))],
)
def validate(body: CouponCheckIn, call: Annotated[Call, Depends(READ)]) -> QuoteRead:
    """What a code would take off a basket, without using it.

    An unknown, expired or used code: 422 `coupon_not_valid`, the same for all. A typo: 422
    `malformed_code`, told by its check character before any look-up. Rate limited per key."""
    with call.session() as db:
        program = call.program(db)
        quote = coupons.validate(
            db,
            program_id=program.id,
            code=body.code,
            basket=_basket(program, body),
            now=call.now,
            member_id=body.member_id,
        )
        return QuoteRead(
            code=quote.code,
            campaign=quote.campaign_code,
            discount=quote.discount,
            currency=quote.currency,
        )


@router.post(
    "/coupons/redeem",
    status_code=201,
    response_model=RedemptionRead,
    responses={200: {"model": RedemptionRead, "description": "Redeemed before: replayed"}},
)
def redeem(body: CouponRedeemIn, call: Annotated[Write, Depends(POS)]) -> Response:
    """Uses a code on a purchase. Without a `purchase_id`, the Idempotency-Key is required."""

    def work(db: Session) -> Response:
        program = call.program(db)
        done = coupons.redeem(
            db,
            program_id=program.id,
            code=body.code,
            basket=_basket(program, body),
            now=call.now,
            member_id=body.member_id,
            purchase_external_id=body.purchase_id,
        )
        read = RedemptionRead(
            id=done.redemption_id,
            code=done.code,
            campaign=done.campaign_code,
            discount=done.discount,
            currency=done.currency,
            purchase_id=done.purchase_external_id,
            replayed=done.replayed,
        )
        return json_response(read, status=200 if done.replayed else 201)

    return call.run(work, key_required=body.purchase_id is None)


def _state_read(state: coupons.CodeState) -> CodeStateRead:
    return CodeStateRead(
        code=state.code,
        found=state.found,
        state=state.state,
        campaign=state.campaign_code,
        member_id=state.member_id,
        uses=state.uses,
        max_uses=state.max_uses,
        valid_from=state.valid_from,
        valid_until=state.valid_until,
        source=state.source,
        redemptions=list(state.redemptions),
    )


@router.post("/coupons/lookup", response_model=CodeStateRead)
def lookup(body: CodeIn, call: Annotated[Call, Depends(ADMIN_READ)]) -> CodeStateRead:
    """The exact state of a code, for the program's admin (`unknown`, `expired`, `used_up` …)."""
    with call.session() as db:
        state = coupons.inspect(db, program_id=call.program_id, code=body.code, now=call.now)
        return _state_read(state)


@router.post("/coupons/void", response_model=CodeStateRead)
def void(body: CodeIn, call: Annotated[Write, Depends(ADMIN)]) -> Response:
    """Voids a code (leaked, issued by mistake): refused from now on."""

    def work(db: Session) -> Response:
        state = coupons.void_code(
            db, program_id=call.program_id, code=body.code, now=call.now, actor=call.caller.actor
        )
        return json_response(_state_read(state))

    return call.run(work)
