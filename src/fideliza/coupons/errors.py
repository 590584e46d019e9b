"""Coupon errors: one generic refusal for tills and members, exact reasons for the admin."""

from __future__ import annotations

from fideliza.core.errors import FidelizaError, InvalidState
from fideliza.coupons.domain import Reason

GENERIC_MESSAGE = "this coupon code cannot be used"


class CouponRejected(FidelizaError):
    """Unknown, expired, used, voided … all look alike from outside (no oracle on existence).

    `reason` keeps the exact cause for logs and the admin; it is not part of `as_dict()`.
    """

    code = "coupon_not_valid"
    status = 422

    def __init__(self, reason: Reason) -> None:
        super().__init__(GENERIC_MESSAGE, field="code")
        self.reason = reason


class CouponNotApplicable(FidelizaError):
    """A valid code that does not apply to this basket (minimum spend, missing item …)."""

    code = "coupon_not_applicable"
    status = 422


class BudgetExhausted(InvalidState):
    """The campaign spent its budget for the period: it issues no more codes."""

    code = "budget_exhausted"
