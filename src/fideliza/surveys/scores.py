"""NPS and CSAT per period and per channel, store, tier or segment, with their trend.

Reads `survey_responses` (one row per answer, with the headline score and what the member and
the purchase were when asked). `responses_for_analytics` is the same table in the shape the
analytics sources read (member_id, answered_at, kind, score).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from fideliza.core.clock import require_aware
from fideliza.core.errors import ValidationError
from fideliza.members.models import Member
from fideliza.programs.models import Program
from fideliza.surveys.models import SurveyResponse
from fideliza.surveys.schemas import SurveyKind
from fideliza.surveys.stats import Period, Score, csat, nps, period_of

ALL = "all"


class GroupBy(StrEnum):
    CHANNEL = "channel"  # of the purchase that triggered the survey
    STORE = "store"  # of the purchase that triggered the survey
    TIER = "tier"  # the member's tier when answering
    SEGMENT = "segment"  # the member's `segment` attribute when answering


_COLUMNS = {
    GroupBy.CHANNEL: SurveyResponse.channel,
    GroupBy.STORE: SurveyResponse.store,
    GroupBy.TIER: SurveyResponse.tier_code,
    GroupBy.SEGMENT: SurveyResponse.segment,
}


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One period of one group: the score, its 95 % interval, and the change since the last."""

    period: str
    group: str
    score: Score
    change: Decimal | None  # vs the previous calendar period of the same group (None: no data)


def _previous(label: str, period: Period) -> str:
    year, rest = label.split("-")
    if period is Period.QUARTER:
        quarter = int(rest[1:])
        return f"{int(year) - 1}-Q4" if quarter == 1 else f"{year}-Q{quarter - 1}"
    month = int(rest)
    return f"{int(year) - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def scores(
    db: Session,
    *,
    program: Program,
    kind: SurveyKind | str,
    period: Period | str = Period.MONTH,
    by: GroupBy | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[ScoreRow]:
    """NPS or CSAT per local calendar period (and group), oldest first within each group."""
    survey_kind: SurveyKind = _choice(SurveyKind, kind, "kind")
    if survey_kind is SurveyKind.CUSTOM:
        raise ValidationError("must be nps or csat (custom surveys have no score)", field="kind")
    calendar: Period = _choice(Period, period, "period")
    group_by = _choice(GroupBy, by, "by") if by is not None else None
    zone = ZoneInfo(program.timezone)
    group_column: Any = _COLUMNS[group_by] if group_by is not None else None
    statement = select(
        SurveyResponse.answered_at,
        SurveyResponse.score,
        *([group_column] if group_column is not None else []),
    ).where(
        SurveyResponse.program_id == program.id,
        SurveyResponse.kind == survey_kind.value,
        SurveyResponse.score.is_not(None),
    )
    if since is not None:
        statement = statement.where(
            SurveyResponse.answered_at >= require_aware(since, field="since")
        )
    if until is not None:
        statement = statement.where(
            SurveyResponse.answered_at < require_aware(until, field="until")
        )
    buckets: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in db.execute(statement):
        group = (row[2] if group_column is not None else ALL) or "(none)"
        buckets[(str(group), period_of(row.answered_at, calendar, zone))].append(row.score)
    compute = nps if survey_kind is SurveyKind.NPS else csat
    computed = {key: compute(values) for key, values in buckets.items()}
    rows: list[ScoreRow] = []
    for (group, label), score in sorted(computed.items()):
        assert score is not None
        before = computed.get((group, _previous(label, calendar)))
        change = score.value - before.value if before is not None else None
        rows.append(ScoreRow(label, group, score, change))
    return rows


def _choice(enum: Any, value: Any, field: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise ValidationError(f"must be one of {allowed}, got {value!r}", field=field) from None


def responses_for_analytics(program_id: int) -> Select[str, datetime, str, int | None]:
    """Scored responses as the analytics read them: member_id, answered_at, kind, score.

    `answered_at` is UTC here; the analytics sources convert it to the program's local time as
    they do for purchases.
    """
    return (
        select(
            Member.external_id.label("member_id"),
            SurveyResponse.answered_at,
            SurveyResponse.kind,
            SurveyResponse.score,
        )
        .join(Member, Member.id == SurveyResponse.member_id)
        .where(SurveyResponse.program_id == program_id, SurveyResponse.score.is_not(None))
        .order_by(SurveyResponse.answered_at, SurveyResponse.id)
    )
