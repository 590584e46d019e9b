"""NPS and CSAT with 95 % confidence intervals, per period, and their trend.

- **NPS** = % promoters (9–10) − % detractors (0–6), from −100 to 100. Interval: the normal
  approximation with the standard variance of a difference of two shares of one multinomial,
  ``var = (p_P + p_D − (p_P − p_D)²) / n``; NPS ± 1.96·√var, clipped to [−100, 100].
- **CSAT** = % of answers 4 or 5 (of 1–5). Interval: Wilson's score interval, which stays
  inside [0, 100] and behaves with few answers or shares near 0 or 1.

Figures are Decimals rounded to 0.1 (what a dashboard shows); the arithmetic in between is
floating point, which is fine for statistics (they are not money or points).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

Z_95 = 1.959963984540054
_TENTH = Decimal("0.1")


class Period(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"


def period_of(moment: datetime, period: Period, zone: ZoneInfo) -> str:
    """The local calendar period of a moment: ``2025-03`` or ``2025-Q1``."""
    local = moment.astimezone(zone)
    if period is Period.QUARTER:
        return f"{local.year}-Q{(local.month - 1) // 3 + 1}"
    return f"{local.year}-{local.month:02d}"


@dataclass(frozen=True, slots=True)
class Score:
    """A score with its 95 % interval, over `responses` answers."""

    value: Decimal
    low: Decimal
    high: Decimal
    responses: int


def _tenth(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_TENTH, rounding=ROUND_HALF_EVEN) + 0


def nps(scores: Iterable[int]) -> Score | None:
    """NPS of 0–10 answers (None when there are none)."""
    values = list(scores)
    n = len(values)
    if n == 0:
        return None
    promoters = sum(1 for s in values if s >= 9) / n
    detractors = sum(1 for s in values if s <= 6) / n
    point = promoters - detractors
    half = Z_95 * math.sqrt(max(0.0, promoters + detractors - point**2) / n)
    return Score(
        _tenth(100 * point),
        _tenth(100 * max(-1.0, point - half)),
        _tenth(100 * min(1.0, point + half)),
        n,
    )


def csat(scores: Iterable[int]) -> Score | None:
    """CSAT of 1–5 answers: the share of 4s and 5s, with Wilson's interval."""
    values = list(scores)
    n = len(values)
    if n == 0:
        return None
    share = sum(1 for s in values if s >= 4) / n
    z2 = Z_95**2
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Score(
        _tenth(100 * share),
        _tenth(100 * max(0.0, centre - half)),
        _tenth(100 * min(1.0, centre + half)),
        n,
    )
