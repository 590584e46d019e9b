"""Pure ledger logic: kinds, first-expiring-first burn plans, expiry dates, proportional returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from fideliza.core.errors import InsufficientPoints, ValidationError
from fideliza.core.points import proportional_share


class AccountKind(StrEnum):
    """Member accounts hold a member's points; system accounts are the program's counterparts."""

    AVAILABLE = "available"  # member: points that can be spent
    PENDING = "pending"  # member: earned, locked until the return window closes
    HELD = "held"  # member: reserved for a redemption not yet captured
    ISSUANCE = "issuance"  # system: where earned points come from (goes negative)
    REDEEMED = "redeemed"  # system: where spent points go
    EXPIRED = "expired"  # system: where expired points go


MEMBER_ACCOUNT_KINDS = (AccountKind.AVAILABLE, AccountKind.PENDING, AccountKind.HELD)
SYSTEM_ACCOUNT_KINDS = (AccountKind.ISSUANCE, AccountKind.REDEEMED, AccountKind.EXPIRED)


class TxKind(StrEnum):
    """Why a ledger transaction happened."""

    EARN = "earn"
    UNLOCK = "unlock"
    REDEEM = "redeem"
    RESERVE = "reserve"
    CAPTURE = "capture"
    RELEASE = "release"
    EXPIRE = "expire"
    ADJUST = "adjust"
    REVERSE = "reverse"
    TRANSFER = "transfer"


class LotState(StrEnum):
    PENDING = "pending"
    AVAILABLE = "available"
    EXPIRED = "expired"


class AllocationKind(StrEnum):
    """What took points out of a lot (a negative allocation gives them back)."""

    REDEEM = "redeem"
    HOLD = "hold"
    RELEASE = "release"
    EXPIRE = "expire"
    REVERSE = "reverse"
    TRANSFER = "transfer"
    ADJUST = "adjust"
    DEBT = "debt"  # a new lot paying back points a return took after they were spent


class HoldStatus(StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


def member_account_code(member_id: int, kind: AccountKind) -> str:
    return f"member:{member_id}:{kind.value}"


@dataclass(frozen=True, slots=True)
class OpenLot:
    """A lot with points left, as the burn planner needs it."""

    id: int
    remaining: int
    expires_at: datetime | None
    earned_at: datetime


def burn_order_key(lot: OpenLot) -> tuple[int, datetime, datetime, int]:
    """Soonest expiry first; lots that never expire last; then oldest, then by id (stable)."""
    never = lot.expires_at is None
    return (1 if never else 0, lot.expires_at or lot.earned_at, lot.earned_at, lot.id)


def plan_burn(lots: Sequence[OpenLot], points: int) -> list[tuple[int, int]]:
    """Takes `points` from `lots` first-expiring-first; returns (lot id, points taken) pairs."""
    if points <= 0:
        raise ValidationError(f"must be positive, got {points}", field="points")
    plan: list[tuple[int, int]] = []
    still = points
    for lot in sorted(lots, key=burn_order_key):
        if still == 0:
            break
        take = min(lot.remaining, still)
        if take > 0:
            plan.append((lot.id, take))
            still -= take
    if still:
        raise InsufficientPoints(
            f"needs {points} points but only {points - still} are available", field="points"
        )
    return plan


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """When earned points expire: never, N days after earning, or at the end of a later month."""

    mode: str = "never"  # never | days | end_of_month
    days: int = 0  # for "days"
    months: int = 0  # for "end_of_month": the end of the month `months` after earning

    @classmethod
    def from_settings(cls, raw: dict[str, Any] | None) -> ExpiryPolicy:
        if not raw:
            return cls()
        policy = cls(
            mode=str(raw.get("mode", "never")),
            days=int(raw.get("days", 0)),
            months=int(raw.get("months", 0)),
        )
        if policy.mode not in {"never", "days", "end_of_month"}:
            raise ValidationError(
                f"unknown expiry mode {policy.mode!r} (never, days, end_of_month)",
                field="settings.expiry.mode",
            )
        if policy.mode == "days" and policy.days <= 0:
            raise ValidationError("must be positive", field="settings.expiry.days")
        if policy.mode == "end_of_month" and policy.months < 0:
            raise ValidationError("must not be negative", field="settings.expiry.months")
        return policy

    def expires_at(self, earned_at: datetime, timezone: ZoneInfo) -> datetime | None:
        """The instant points earned at `earned_at` expire (local midnight for month ends)."""
        if self.mode == "days":
            # N × 24 hours after the instant, whatever zone it was given in.
            return earned_at.astimezone(UTC) + timedelta(days=self.days)
        if self.mode == "end_of_month":
            local = earned_at.astimezone(timezone).date()
            month_index = local.year * 12 + local.month - 1 + self.months + 1
            first_after = date(month_index // 12, month_index % 12 + 1, 1)
            return datetime.combine(first_after, time(0), tzinfo=timezone)
        return None


def return_reversal(
    *,
    points_earned: int,
    points_reversed: int,
    purchase_amount: Decimal,
    returned_before: Decimal,
    returned_now: Decimal,
) -> int:
    """Points to reverse for a return, proportional to the value returned.

    Computed on the cumulative returned value, so several partial returns reverse exactly the
    points of a full return, never more (a floor of the cumulative share, minus what is done).
    """
    if returned_before + returned_now >= purchase_amount:
        target = points_earned
    else:
        target = proportional_share(points_earned, returned_before + returned_now, purchase_amount)
    return max(0, target - points_reversed)
