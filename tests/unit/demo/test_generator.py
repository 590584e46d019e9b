"""The demo generator: deterministic, realistic in shape, and readable by the purchase reader."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest

from fideliza.core.errors import ValidationError
from fideliza.demo import (
    CATALOG,
    PROGRAM_TIMEZONE,
    DemoMember,
    generate_members,
    generate_purchases,
    generate_returns,
    write_bench_csv,
    write_purchases_csv,
    write_purchases_parquet,
)
from fideliza.demo.generator import _unique_phone
from fideliza.purchases.domain import PurchaseInput
from fideliza.purchases.files import read_purchases

START = datetime(2024, 1, 1, tzinfo=PROGRAM_TIMEZONE)
END = datetime(2026, 1, 1, tzinfo=PROGRAM_TIMEZONE)
SEED = 20_250_301


@pytest.fixture(scope="module")
def members() -> list[DemoMember]:
    return generate_members(2_000, seed=SEED, start=START, end=END)


@pytest.fixture(scope="module")
def purchases(members: list[DemoMember]) -> list[PurchaseInput]:
    return list(generate_purchases(members, seed=SEED, start=START, end=END))


def read_back(path: Path) -> list[PurchaseInput]:
    batches = list(read_purchases(path, program_currency="EUR", batch_size=1_000))
    assert [e for b in batches for e in b.errors] == []
    return [p for b in batches for _, p in b.purchases]


# --- members ----------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_program_and_another_seed_another(
    members: list[DemoMember], purchases: list[PurchaseInput]
) -> None:
    again = generate_members(2_000, seed=SEED, start=START, end=END)
    assert again == members
    assert list(generate_purchases(again, seed=SEED, start=START, end=END)) == purchases

    other = generate_members(2_000, seed=SEED + 1, start=START, end=END)
    assert other != members
    assert list(generate_purchases(members, seed=SEED + 1, start=START, end=END)) != purchases


def test_usage_groups_have_their_shares(members: list[DemoMember]) -> None:
    assert Counter(m.usage for m in members) == {"heavy": 200, "medium": 600, "low": 1200}


def test_members_look_like_people_of_this_program(members: list[DemoMember]) -> None:
    assert len({m.external_id for m in members}) == len(members)
    assert len({m.email for m in members}) == len(members)
    # A phone identifies a member (referral checks): every one has its own.
    assert all(m.phone is not None for m in members)
    assert len({m.phone for m in members}) == len(members)
    assert all(m.email.split("@")[1].startswith("example.") for m in members)
    assert all(m.email.isascii() for m in members)
    locales = Counter(m.locale for m in members)
    assert set(locales) == {"es", "en", "it"}
    assert locales["es"] > locales["en"] + locales["it"]
    segments = Counter(m.attributes["segment"] for m in members)
    assert set(segments) == {"student", "family", "professional", "senior"}
    assert all(1 <= len(m.attributes["interests"]) <= 3 for m in members)
    assert all(isinstance(m.attributes["city"], str) for m in members)
    assert 0.05 < sum(m.birthday is None for m in members) / len(members) < 0.2
    for m in members:
        assert START <= m.enrolled_at < END
        assert m.enrolled_at.tzinfo == PROGRAM_TIMEZONE
        if m.birthday is not None:
            age = END.year - m.birthday.year
            assert 16 <= age <= 90
            if m.attributes["segment"] == "senior":
                assert age >= 64
    enrolled = [m.enrolled_at for m in members]
    assert enrolled == sorted(enrolled)


def test_a_window_without_a_timezone_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        generate_members(1, seed=1, start=datetime(2024, 1, 1), end=END)
    assert raised.value.field == "start"
    with pytest.raises(ValidationError) as raised:
        generate_members(1, seed=1, start=END, end=START)
    assert raised.value.field == "end"


# --- purchases --------------------------------------------------------------------------------


def test_purchases_are_chronological_aware_and_within_each_members_life(
    members: list[DemoMember], purchases: list[PurchaseInput]
) -> None:
    enrolled_at = {m.external_id: m.enrolled_at for m in members}
    moments = [p.occurred_at for p in purchases]
    assert moments == sorted(moments)
    assert len({p.external_id for p in purchases}) == len(purchases)
    for p in purchases:
        assert p.occurred_at.tzinfo == PROGRAM_TIMEZONE
        assert p.occurred_at.utcoffset() is not None
        assert START <= p.occurred_at < END
        assert p.occurred_at > enrolled_at[p.member_ref]
        assert 7 <= p.occurred_at.hour < 23


def test_amounts_are_the_sum_of_the_items_with_two_decimals(
    purchases: list[PurchaseInput],
) -> None:
    skus = {product.sku: product.category for product in CATALOG}
    for p in purchases:
        assert 1 <= len(p.items) <= 4
        assert len({i.sku for i in p.items}) == len(p.items)
        assert p.amount == sum((i.total for i in p.items), Decimal(0))
        assert p.amount.as_tuple().exponent == -2
        assert p.currency == "EUR"
        for item in p.items:
            assert item.unit_price.as_tuple().exponent == -2
            assert item.unit_price > 0
            assert skus[item.sku] == item.category
        assert (p.channel == "store") == (p.store is not None)


def test_heavy_members_buy_far_more_often_than_low_ones(
    members: list[DemoMember], purchases: list[PurchaseInput]
) -> None:
    usage = {m.external_id: m.usage for m in members}
    counts = Counter(usage[p.member_ref] for p in purchases)
    group_sizes = Counter(m.usage for m in members)
    per_member = {group: counts[group] / group_sizes[group] for group in group_sizes}
    assert per_member["heavy"] > 2.5 * per_member["medium"] > 2.5 * per_member["low"] > 0


def test_volume_has_seasons(purchases: list[PurchaseInput]) -> None:
    by_month = Counter(p.occurred_at.month for p in purchases if p.occurred_at.year == 2025)
    assert by_month[12] > 1.3 * by_month[7]
    assert by_month[8] < by_month[9]
    weekdays = Counter(p.occurred_at.weekday() for p in purchases)
    assert weekdays[5] > weekdays[0]  # Saturday beats Monday
    hours = Counter(p.occurred_at.hour for p in purchases)
    assert hours[8] > hours[16]


def test_some_members_stop_buying(
    members: list[DemoMember], purchases: list[PurchaseInput]
) -> None:
    last_purchase: dict[str, datetime] = {}
    for p in purchases:
        last_purchase[p.member_ref] = p.occurred_at
    early_heavy = [
        m.external_id
        for m in members
        if m.usage == "heavy" and m.enrolled_at < START + timedelta(days=90)
    ]
    gone = [m for m in early_heavy if last_purchase.get(m, START) < END - timedelta(days=120)]
    assert 0 < len(gone) < len(early_heavy) / 2


def test_an_exact_number_of_purchases_can_be_asked_for(members: list[DemoMember]) -> None:
    made = list(generate_purchases(members, seed=1, start=START, end=END, n_purchases=1234))
    assert len(made) == 1234


# --- returns ----------------------------------------------------------------------------------


def test_a_few_percent_are_returned_partly_or_fully_within_thirty_days(
    purchases: list[PurchaseInput],
) -> None:
    returns = generate_returns(purchases, seed=SEED)

    assert returns == generate_returns(purchases, seed=SEED)
    assert 0.02 < len(returns) / len(purchases) < 0.04
    by_id = {p.external_id: p for p in purchases}
    full = 0
    for r in returns:
        purchase = by_id[r.purchase_external_id]
        assert r.return_external_id != r.purchase_external_id
        assert r.returned_at.tzinfo is not None
        assert timedelta(0) < r.returned_at - purchase.occurred_at <= timedelta(days=30)
        bought = {i.sku: i.quantity for i in purchase.items}
        assert r.lines
        assert all(0 < quantity <= bought[sku] for sku, quantity in r.lines)
        full += sorted(r.lines) == sorted(bought.items())
    assert 0 < full < len(returns)
    assert [r.returned_at for r in returns] == sorted(r.returned_at for r in returns)


# --- files ------------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path, purchases: list[PurchaseInput]) -> None:
    sample = purchases[:3_000]
    path = tmp_path / "purchases.csv"

    assert write_purchases_csv(path, sample) == len(sample)

    assert read_back(path) == sample


@pytest.mark.parametrize("items_as", ["list", "json"])
def test_parquet_round_trip(
    tmp_path: Path, purchases: list[PurchaseInput], items_as: Literal["list", "json"]
) -> None:
    sample = purchases[:3_000]
    path = tmp_path / "purchases.parquet"

    written = write_purchases_parquet(path, sample, items_as=items_as, chunk_size=1_000)

    assert written == len(sample)

    assert read_back(path) == sample


def test_an_empty_parquet_file_still_has_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "none.parquet"
    assert write_purchases_parquet(path, []) == 0
    assert read_back(path) == []


def test_the_bench_writer_writes_what_the_object_path_writes(tmp_path: Path) -> None:
    fast, slow = tmp_path / "fast.csv", tmp_path / "slow.csv"

    assert write_bench_csv(fast, 300, 2_000, 7, start=START, end=END) == 2_000

    members = generate_members(300, seed=7, start=START, end=END)
    write_purchases_csv(
        slow, generate_purchases(members, seed=7, start=START, end=END, n_purchases=2_000)
    )
    assert fast.read_bytes() == slow.read_bytes()
    assert len(read_back(fast)) == 2_000


def test_a_locale_range_used_up_leaves_the_rest_without_a_phone() -> None:
    taken: set[str] = set()
    phones = [_unique_phone("en", 123, taken) for _ in range(1001)]
    assert len(set(phones[:1000])) == 1000 and phones[1000] is None
