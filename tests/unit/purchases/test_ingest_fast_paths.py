"""The shortcuts of the batch loop decide exactly as the functions they stand in for."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from fideliza.purchases.ingest import _next_thresholds, _usage_of
from fideliza.rules import service as rules
from fideliza.rules.domain import RuleUsage
from fideliza.tiers.domain import TierLevel, TierPolicy, upgrade_on_activity
from fideliza.tiers.service import Ladder

LEVELS = (
    TierLevel(code="BRONZE", name="Bronze", rank=1, threshold=Decimal("0")),
    TierLevel(code="SILVER", name="Silver", rank=2, threshold=Decimal("500")),
    TierLevel(code="GOLD", name="Gold", rank=3, threshold=Decimal("1500")),
)
# A ladder whose lowest level needs points, so a member can have no tier at all.
STEEP = (
    TierLevel(code="GOLD", name="Gold", rank=3, threshold=Decimal("900.5")),
    TierLevel(code="SILVER", name="Silver", rank=2, threshold=Decimal("100")),
)
POLICY = TierPolicy(basis="points", period="calendar_year")


@given(
    levels=st.sampled_from([LEVELS, STEEP]),
    current=st.sampled_from([None, "BRONZE", "SILVER", "GOLD"]),
    metric=st.decimals(min_value=-10, max_value=3000, places=2, allow_nan=False),
)
def test_a_tier_changes_exactly_when_the_next_threshold_is_reached(
    levels: tuple[TierLevel, ...], current: str | None, metric: Decimal
) -> None:
    if current is not None and current not in {level.code for level in levels}:
        current = None
    threshold = _next_thresholds(Ladder(levels=levels, policy=POLICY))[current]
    changed = upgrade_on_activity(levels, current, metric) is not None
    assert changed == (metric >= threshold)


def test_the_top_tier_never_changes_and_no_ladder_has_no_thresholds() -> None:
    thresholds = _next_thresholds(Ladder(levels=LEVELS, policy=POLICY))
    assert thresholds[None] == Decimal(0)
    assert thresholds["BRONZE"] == Decimal(500)
    assert not Decimal("1e30") >= thresholds["GOLD"]
    assert _next_thresholds(None) == {}


counters_strategy = st.dictionaries(
    st.tuples(
        st.sampled_from([1, 2, 3]),
        st.sampled_from([rules.EVERYONE, 7, 8]),
        st.sampled_from(["2025-03-04", "2025-03", "2025-03-05", rules.TOTAL]),
    ),
    st.integers(min_value=0, max_value=50),
)


@given(
    counters=counters_strategy,
    budgets=st.dictionaries(st.sampled_from([1, 2, 3]), st.sampled_from(["day", "month", "total"])),
)
def test_usage_leaves_out_only_rules_that_gave_nothing(
    counters: dict[tuple[int, int, str], int], budgets: dict[int, str]
) -> None:
    keys = rules.UsageKeys(day="2025-03-04", month="2025-03")
    full = rules.usage_view(
        counters, rule_ids=[1, 2, 3], member_id=7, periods=keys, budgets=budgets
    )
    short = _usage_of(counters, [1, 2, 3], 7, keys, budgets)
    for rule_id in (1, 2, 3):
        assert short.get(rule_id, RuleUsage()) == full[rule_id]
    assert all(usage != RuleUsage() for usage in short.values())
