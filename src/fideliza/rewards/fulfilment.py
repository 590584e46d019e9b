"""What a captured redemption gives the member, by the reward's kind.

Discounts and cashback are fulfilled by other domains (coupons, the e-wallet), looked up when
needed, so the catalog works (and says clearly what is missing) before those are installed.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fideliza.core.errors import InvalidState
from fideliza.rewards.domain import RewardKind
from fideliza.rewards.models import Redemption, Reward


def fulfil(db: Session, *, reward: Reward, redemption: Redemption, now: datetime) -> dict[str, Any]:
    """Delivers the reward in the caller's transaction; returns what was given, to record."""
    kind = RewardKind(reward.kind)
    given: dict[str, Any] = {"kind": kind.value, "reward": reward.name}
    if kind is RewardKind.DISCOUNT:
        issue_code = _use("fideliza.coupons.service", "issue_code", what="the coupons service")
        issued = issue_code(
            db,
            program_id=reward.program_id,
            campaign_id=reward.campaign_id,
            member_id=redemption.member_id,
            now=now,
            source=f"reward:{redemption.id}",
        )
        given["coupon_code"] = issued.code
    elif kind is RewardKind.CASHBACK:
        credit_wallet = _use("fideliza.giftcards.service", "credit_wallet", what="the e-wallet")
        assert redemption.value is not None  # a cashback reward always has a value
        wallet_reference = f"reward:{redemption.id}"
        credit_wallet(
            db,
            program_id=reward.program_id,
            member_id=redemption.member_id,
            amount=redemption.value,
            reference=wallet_reference,
            reason=f"cashback reward {reward.code}",
            now=now,
        )
        given["wallet_credit"] = str(redemption.value)
        given["wallet_reference"] = wallet_reference
    elif kind is RewardKind.CHARITY:
        given["donation"] = str(redemption.value)
        given["cause"] = reward.attributes.get("cause", reward.name)
    # Gifts and experiences: the record is the fulfilment (what to hand over, which event,
    # date or seat); the reward's attributes, then the redemption's own, say which.
    details = {**reward.attributes, **redemption.attributes}
    if details:
        given["details"] = details
    return given


def _use(module_name: str, function: str, *, what: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        module = None
    found = getattr(module, function, None)
    if found is None:
        raise InvalidState(
            f"this reward cannot be fulfilled yet: {what} is not available", field="reward_id"
        )
    return found
