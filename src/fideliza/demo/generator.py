"""Seeded, realistic demo data: members, their purchases over time, and some returns.

Everything is a pure function of the seed and the arguments (numpy Generators, no clock), so
the same seed always gives the same program. The purchase schedule is drawn with numpy for the
whole population at once; only the final objects or CSV lines are built one by one.
"""

from __future__ import annotations

import csv
import gzip
import json
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from fideliza.core.errors import ValidationError
from fideliza.core.money import minor_units
from fideliza.purchases.domain import Item, PurchaseInput
from fideliza.purchases.files import COLUMNS

PROGRAM_TIMEZONE = ZoneInfo("Europe/Madrid")

Usage = Literal["heavy", "medium", "low"]
USAGES: tuple[Usage, ...] = ("heavy", "medium", "low")
USAGE_SHARES = (0.10, 0.30, 0.60)
# Purchases per day of a typical member of each usage group, before seasonality:
# heavy about weekly, medium about monthly, low a few times a year.
_DAILY_RATE = np.array([1 / 7, 1 / 30, 3 / 365])
# Mean days until a member stops buying for good (exponential), per usage group.
_CHURN_MEAN_DAYS = np.array([1800.0, 900.0, 600.0])

SEGMENTS = ("student", "family", "professional", "senior")
_SEGMENT_SHARES = (0.20, 0.30, 0.35, 0.15)
_SEGMENT_AGES = ((18, 26), (30, 51), (24, 63), (65, 89))  # [low, high) years

LOCALES = ("es", "en", "it")
_LOCALE_SHARES = (0.70, 0.15, 0.15)
_FIRST_NAMES = {
    "es": ("Lucía", "María", "Paula", "Carmen", "Sofía", "Laura", "Marta", "Ana", "Elena",
           "Julia", "Hugo", "Martín", "Pablo", "Alejandro", "Daniel", "Javier", "Sergio",
           "José", "Álvaro", "Adrián"),
    "en": ("Olivia", "Emily", "Amelia", "Isla", "Ava", "Grace", "Chloe", "Lily", "Jack",
           "Oliver", "Harry", "George", "Noah", "Charlie", "Thomas", "James", "William"),
    "it": ("Giulia", "Chiara", "Francesca", "Sara", "Martina", "Alessia", "Giorgia",
           "Alessandro", "Lorenzo", "Matteo", "Leonardo", "Francesco", "Andrea", "Marco",
           "Luca", "Giuseppe"),
}  # fmt: skip
_LAST_NAMES = {
    "es": ("García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez",
           "Pérez", "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno",
           "Muñoz", "Álvarez", "Romero", "Navarro", "Torres"),
    "en": ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
           "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts"),
    "it": ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
           "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Costa"),
}  # fmt: skip
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")  # reserved (RFC 2606)

# (city, share of members, the code its stores start with)
_CITIES = (
    ("Madrid", 0.34, "MAD"),
    ("Barcelona", 0.24, "BCN"),
    ("Valencia", 0.12, "VLC"),
    ("Sevilla", 0.10, "SVQ"),
    ("Bilbao", 0.07, "BIO"),
    ("Málaga", 0.07, "AGP"),
    ("Zaragoza", 0.06, "ZAZ"),
)
DEFAULT_STORES = (
    "MAD-01", "MAD-02", "MAD-03", "BCN-01", "BCN-02", "VLC-01", "SVQ-01", "BIO-01", "AGP-01",
    "ZAZ-01",
)  # fmt: skip
# The first channel is the in-store one (the only one with a store); it takes most purchases.
DEFAULT_CHANNELS = ("store", "online", "app")
_FIRST_CHANNEL_SHARE = 0.72
_HOME_STORE_SHARE = 0.85

INTERESTS = ("coffee", "bakery", "wine", "cooking", "organic", "sports", "travel", "music",
             "books", "kids", "pets", "gardening", "technology", "fashion")  # fmt: skip
_SEGMENT_INTERESTS = {  # interests a segment leans to (weight ×3)
    "student": ("coffee", "music", "sports", "technology", "travel", "fashion"),
    "family": ("kids", "cooking", "pets", "organic", "sports"),
    "professional": ("coffee", "wine", "travel", "technology", "books"),
    "senior": ("gardening", "cooking", "books", "bakery", "travel"),
}


class CatalogProduct(NamedTuple):
    """A product of the demo catalog; `popularity` is its relative weight in baskets."""

    sku: str
    name: str
    category: str
    price_cents: int
    popularity: float


CATALOG: tuple[CatalogProduct, ...] = tuple(
    CatalogProduct(*row)
    for row in (
        ("COF-ESP", "Espresso", "coffee", 130, 10.0),
        ("COF-CAP", "Cappuccino", "coffee", 220, 9.0),
        ("COF-LAT", "Café latte", "coffee", 240, 8.0),
        ("COF-BEAN-250", "Coffee beans 250 g", "coffee", 790, 3.0),
        ("COF-BEAN-1K", "Coffee beans 1 kg", "coffee", 2490, 1.0),
        ("TEA-GRN", "Green tea", "tea", 190, 3.0),
        ("TEA-CHAI", "Chai latte", "tea", 280, 2.0),
        ("BAK-CRO", "Croissant", "bakery", 150, 9.0),
        ("BAK-NAP", "Napolitana de chocolate", "bakery", 180, 6.0),
        ("BAK-BAG", "Baguette", "bakery", 120, 7.0),
        ("BAK-CEN", "Pan de centeno", "bakery", 310, 3.0),
        ("BAK-ROS", "Roscón de Reyes", "bakery", 1890, 2.0),
        ("BRK-TOS", "Tostada con tomate", "breakfast", 250, 6.0),
        ("BRK-ZUM", "Zumo de naranja natural", "breakfast", 290, 5.0),
        ("DEL-BOC", "Bocadillo de jamón", "deli", 450, 5.0),
        ("DEL-ENS", "Ensalada", "deli", 690, 3.0),
        ("DEL-TOR", "Tortilla de patatas", "deli", 390, 4.0),
        ("DEL-QUE", "Queso manchego 250 g", "deli", 650, 2.0),
        ("GRO-ACE", "Aceite de oliva 1 l", "grocery", 899, 2.0),
        ("GRO-LEC", "Leche 1 l", "grocery", 115, 4.0),
        ("GRO-HUE", "Huevos (12)", "grocery", 329, 3.0),
        ("GRO-ARR", "Arroz 1 kg", "grocery", 189, 2.0),
        ("GRO-FRU", "Fruta de temporada 1 kg", "grocery", 299, 4.0),
        ("BEV-AGU", "Agua 1,5 l", "beverages", 80, 5.0),
        ("BEV-REF", "Refresco", "beverages", 160, 4.0),
        ("BEV-VIN", "Vino tinto", "beverages", 1150, 1.5),
        ("BEV-CAV", "Cava", "beverages", 1290, 0.5),
        ("HOM-DET", "Detergente", "household", 749, 1.0),
        ("HOM-PAP", "Papel de cocina", "household", 349, 1.5),
        ("PER-GEL", "Gel de ducha", "personal_care", 399, 1.0),
        ("KID-ZUM", "Zumo infantil", "kids", 95, 2.0),
        ("KID-GAL", "Galletas", "kids", 199, 2.0),
        ("GFT-TAZ", "Taza de regalo", "gifts", 1200, 0.4),
        ("GFT-CES", "Cesta gourmet", "gifts", 4500, 0.2),
        ("GFT-BOM", "Bombones", "gifts", 990, 0.6),
    )
)
_BULK_CATEGORIES = frozenset({"grocery", "beverages", "household", "kids", "personal_care"})
_SEGMENT_CATEGORY_WEIGHT = {
    "student": {"coffee": 1.5, "tea": 1.5, "bakery": 1.3, "deli": 1.3, "grocery": 0.4,
                "household": 0.3, "kids": 0.1, "gifts": 0.5},
    "family": {"grocery": 1.8, "household": 1.8, "kids": 3.0, "personal_care": 1.5,
               "coffee": 0.7},
    "professional": {"coffee": 1.6, "deli": 1.5, "breakfast": 1.3, "grocery": 0.7},
    "senior": {"bakery": 1.4, "grocery": 1.5, "tea": 1.3, "coffee": 0.9, "kids": 0.3},
}  # fmt: skip
_ANNUAL_PRICE_RISE = 0.03

# Seasonality: relative volume by month (Jan..Dec) and weekday (Mon..Sun).
_MONTH_WEIGHT = np.array([0.92, 0.90, 0.98, 1.0, 1.0, 0.92, 0.78, 0.62, 0.96, 1.0, 1.08, 1.45])
_WEEKDAY_WEIGHT = np.array([0.86, 0.90, 0.95, 1.0, 1.15, 1.30, 0.78])
# Hour-of-day profiles (0..23); stores open 7:00-23:00, so nothing falls in a DST gap at 2-3 h.
_WEEKDAY_HOURS = np.array(
    [0, 0, 0, 0, 0, 0, 0, .6, 1.4, 1.1, .8, .8, .9, 1.3, 1.1, .6, .6, .9, 1.3, 1.4, 1.1, .5, .2, 0]
)  # fmt: skip
_WEEKEND_HOURS = np.array(
    [0, 0, 0, 0, 0, 0, 0, 0, 0, .5, .9, 1.3, 1.4, 1.3, .9, .6, .7, 1.0, 1.2, 1.2, .9, .5, .2, 0]
)  # fmt: skip
# Items per basket (1..4) in store and elsewhere (online baskets are bigger).
_BASKET_SIZES_STORE = np.array([0.45, 0.32, 0.15, 0.08])
_BASKET_SIZES_REMOTE = np.array([0.20, 0.30, 0.30, 0.20])
_QUANTITIES_SINGLE = np.array([0.88, 0.10, 0.02])
_QUANTITIES_BULK = np.array([0.60, 0.25, 0.15])

# Independent random streams, so members do not change when purchase logic does.
_MEMBERS_STREAM, _PURCHASES_STREAM, _RETURNS_STREAM = 1, 2, 3
_CHUNK = 50_000
_SECONDS_PER_DAY = 86_400

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class DemoMember:
    """A generated member: identity, contact, preferences and how much they buy."""

    external_id: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    birthday: date | None
    locale: str
    attributes: dict[str, Any]
    enrolled_at: datetime
    usage: Usage


class DemoReturn(NamedTuple):
    """A return of some or all units of some lines of a purchase."""

    purchase_external_id: str
    return_external_id: str
    returned_at: datetime
    lines: list[tuple[str, int]]  # (sku, quantity returned)


# --- members ----------------------------------------------------------------------------------


def generate_members(n: int, *, seed: int, start: datetime, end: datetime) -> list[DemoMember]:
    """Returns `n` members enrolled between `start` and `end`, in enrolment order."""
    _check_window(start, end)
    if n < 0:
        raise ValidationError(f"must not be negative, got {n}", field="n")
    rng = np.random.default_rng([seed, _MEMBERS_STREAM])
    counts = _exact_counts(n, USAGE_SHARES)
    usage = rng.permutation(np.repeat(np.arange(len(USAGES)), counts))
    locale = rng.choice(len(LOCALES), size=n, p=_LOCALE_SHARES)
    segment = rng.choice(len(SEGMENTS), size=n, p=_SEGMENT_SHARES)
    city_shares = np.array([share for _, share, _ in _CITIES])
    city = rng.choice(len(_CITIES), size=n, p=city_shares / city_shares.sum())
    first_pick = rng.random(n)
    last_pick = rng.random(n)
    domain = rng.integers(0, len(_EMAIL_DOMAINS), size=n)
    phone_digits = rng.integers(0, 10**8, size=n)
    # A quarter join in the launch month, the rest steadily over the period.
    window_seconds = int((end - start).total_seconds())
    founding = rng.random(n) < 0.25
    offsets = np.where(
        founding,
        rng.integers(0, min(window_seconds, 30 * _SECONDS_PER_DAY), size=n),
        rng.integers(0, window_seconds, size=n),
    )
    offsets.sort()
    ages_low = np.array([low for low, _ in _SEGMENT_AGES])[segment]
    ages_high = np.array([high for _, high in _SEGMENT_AGES])[segment]
    age = (ages_low + rng.random(n) * (ages_high - ages_low)).astype(np.int64)
    birth_day_of_year = rng.integers(0, 365, size=n)
    no_birthday = rng.random(n) < 0.12
    interest_count = rng.integers(1, 4, size=n)
    bias = np.ones((len(SEGMENTS), len(INTERESTS)))
    for index, name in enumerate(SEGMENTS):
        for interest in _SEGMENT_INTERESTS[name]:
            bias[index, INTERESTS.index(interest)] = 3.0
    interest_order = np.argsort(-rng.random((n, len(INTERESTS))) * bias[segment], axis=1)

    reference_year = end.astimezone(PROGRAM_TIMEZONE).year
    slugs: dict[str, str] = {}
    phones: set[str] = set()
    members: list[DemoMember] = []
    for i, (loc_i, seg_i, city_i, use_i, first_u, last_u, dom_i, digits, years, doy, none,
            k, order, offset) in enumerate(zip(
        locale.tolist(), segment.tolist(), city.tolist(), usage.tolist(), first_pick.tolist(),
        last_pick.tolist(), domain.tolist(), phone_digits.tolist(), age.tolist(),
        birth_day_of_year.tolist(), no_birthday.tolist(), interest_count.tolist(),
        interest_order.tolist(), offsets.tolist(), strict=True,
    )):  # fmt: skip
        loc = LOCALES[loc_i]
        firsts, lasts = _FIRST_NAMES[loc], _LAST_NAMES[loc]
        first_name = firsts[int(first_u * len(firsts))]
        last_name = lasts[int(last_u * len(lasts))]
        for name in (first_name, last_name):
            if name not in slugs:
                slugs[name] = _slug(name)
        birthday = None
        if not none:
            birthday = date(reference_year - years, 1, 1) + timedelta(days=doy)
        members.append(
            DemoMember(
                external_id=f"M{i + 1:07d}",
                first_name=first_name,
                last_name=last_name,
                email=f"{slugs[first_name]}.{slugs[last_name]}.{i + 1}@{_EMAIL_DOMAINS[dom_i]}",
                phone=_unique_phone(loc, digits, phones),
                birthday=birthday,
                locale=loc,
                attributes={
                    "segment": SEGMENTS[seg_i],
                    "interests": [INTERESTS[j] for j in order[:k]],
                    "city": _CITIES[city_i][0],
                },
                enrolled_at=(start + timedelta(seconds=offset)).astimezone(PROGRAM_TIMEZONE),
                usage=USAGES[use_i],
            )
        )
    return members


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return ascii_name.lower().replace(" ", "")


def _unique_phone(locale: str, digits: int, taken: set[str]) -> str | None:
    """A phone number no other member has (a phone identifies a member: the referral checks
    refuse a second one); the next free number after the drawn one, or none when the
    locale's range is used up."""
    for step in range(1000):
        phone = _phone(locale, (digits + step) % 10**8)
        if phone not in taken:
            taken.add(phone)
            return phone
    return None


def _phone(locale: str, digits: int) -> str:
    text = f"{digits:08d}"
    if locale == "it":
        return f"+39 3{text[:2]} {text[2:5]} {text[5:]}"
    if locale == "en":
        # Ofcom keeps 07700 900000-900999 for drama: numbers that reach nobody.
        return f"+44 7700 900{text[-3:]}"
    return f"+34 6{text[:2]} {text[2:5]} {text[5:]}"


def _exact_counts(n: int, shares: Sequence[float]) -> list[int]:
    """Splits `n` by `shares` into integers that sum to `n` (largest remainders)."""
    raw = [n * share for share in shares]
    counts = [int(value) for value in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _check_window(start: datetime, end: datetime) -> None:
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError("must carry a timezone", field=name)
    if end <= start:
        raise ValidationError("must be after start", field="end")


# --- the purchase plan ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    """All purchases as columns, in chronological order; items flattened with offsets."""

    member: IntArray  # index into the members list
    day: IntArray  # index into `days`
    second: IntArray  # local second of the day
    channel: IntArray
    store: IntArray  # -1: none
    amount_cents: IntArray
    item_start: IntArray  # purchase p has items item_start[p]:item_start[p + 1]
    item_sku: IntArray
    item_quantity: IntArray
    item_price_cents: IntArray
    days: list[date]


def _plan(
    members: Sequence[DemoMember],
    *,
    seed: int,
    start: datetime,
    end: datetime,
    stores: Sequence[str],
    channels: Sequence[str],
    n_purchases: int | None,
) -> _Plan:
    _check_window(start, end)
    if not stores:
        raise ValidationError("must name at least one store", field="stores")
    if not channels:
        raise ValidationError("must name at least one channel", field="channels")
    rng = np.random.default_rng([seed, _PURCHASES_STREAM])
    first_day = start.astimezone(PROGRAM_TIMEZONE).date()
    last_day = end.astimezone(PROGRAM_TIMEZONE).date()  # exclusive: every purchase is < end
    days64 = np.arange(np.datetime64(first_day), np.datetime64(last_day), dtype="datetime64[D]")
    n_days = len(days64)
    day_weight = _day_weights(days64)
    cumulative = np.concatenate([[0.0], np.cumsum(day_weight)])

    # Each member buys from the day after enrolment until the end, or until they churn.
    n = len(members)
    usage = np.array([USAGES.index(m.usage) for m in members], dtype=np.int64)
    segment = np.array(
        [_index_or(SEGMENTS, m.attributes.get("segment"), 2) for m in members], dtype=np.int64
    )
    enrolled_day = np.array(
        [(m.enrolled_at.astimezone(PROGRAM_TIMEZONE).date() - first_day).days for m in members],
        dtype=np.int64,
    )
    city_code = [_city_code(m.attributes.get("city")) for m in members]
    home_store = _home_stores(city_code, stores, rng)
    window_start = np.clip(enrolled_day + 1, 0, n_days)
    churn_day = window_start + rng.exponential(_CHURN_MEAN_DAYS[usage]).astype(np.int64)
    window_end = np.minimum(churn_day, n_days)
    window_end = np.maximum(window_end, window_start)
    rate = _DAILY_RATE[usage] * rng.lognormal(0.0, 0.4, size=n)
    expected = rate * (cumulative[window_end] - cumulative[window_start])
    if n_purchases is None:
        counts = rng.poisson(expected)
    elif expected.sum() > 0:
        counts = rng.multinomial(n_purchases, expected / expected.sum())
    elif n_purchases:
        raise ValidationError("no member can buy in this period", field="n_purchases")
    else:
        counts = np.zeros(n, dtype=np.int64)
    counts = counts.astype(np.int64)
    total = int(counts.sum())

    # Days by inverse transform sampling of the seasonal weights within each member's window.
    member = np.repeat(np.arange(n, dtype=np.int64), counts)
    low = cumulative[window_start[member]]
    high = cumulative[window_end[member]]
    target = low + rng.random(total) * (high - low)
    day = np.searchsorted(cumulative, target, side="right") - 1
    day = np.clip(day, window_start[member], window_end[member] - 1).astype(np.int64)
    weekend = ((days64.astype(np.int64) + 3) % 7 >= 5)[day]
    hour = np.where(
        weekend,
        _sample(_WEEKEND_HOURS, rng.random(total)),
        _sample(_WEEKDAY_HOURS, rng.random(total)),
    )
    second = hour * 3600 + rng.integers(0, 3600, size=total)
    order = np.lexsort((member, day * _SECONDS_PER_DAY + second))
    member, day, second = member[order], day[order], second[order]

    channel_weights = np.full(len(channels), (1 - _FIRST_CHANNEL_SHARE) / max(len(channels) - 1, 1))
    channel_weights[0] = _FIRST_CHANNEL_SHARE if len(channels) > 1 else 1.0
    channel = _sample(channel_weights, rng.random(total))
    in_store = channel == 0
    at_home = rng.random(total) < _HOME_STORE_SHARE
    store = np.where(
        at_home, home_store[member], rng.integers(0, len(stores), size=total, dtype=np.int64)
    )
    store = np.where(in_store, store, -1)

    # Baskets: 1-4 distinct products, drawn by popularity for the member's segment and month.
    size = np.where(
        in_store,
        _sample(_BASKET_SIZES_STORE, rng.random(total)) + 1,
        _sample(_BASKET_SIZES_REMOTE, rng.random(total)) + 1,
    )
    owner = np.repeat(np.arange(total, dtype=np.int64), size)
    month = (days64.astype("datetime64[M]").astype(np.int64) % 12)[day]
    group = segment[member] * 12 + month
    sku = _sample_catalog(group[owner], rng.random(len(owner)))
    keep = _first_occurrences(owner, sku)
    owner, sku = owner[keep], sku[keep]
    bulk = np.array([p.category in _BULK_CATEGORIES for p in CATALOG])[sku]
    quantity = np.where(
        bulk,
        _sample(_QUANTITIES_BULK, rng.random(len(sku))) + 1,
        _sample(_QUANTITIES_SINGLE, rng.random(len(sku))) + 1,
    )
    year = days64.astype("datetime64[Y]").astype(np.int64) + 1970 - first_day.year
    price = _price_table(last_day.year - first_day.year + 1)[year[day][owner], sku]
    item_start = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=total))])
    amount = (
        np.add.reduceat(price * quantity, item_start[:-1]) if total else np.zeros(0, dtype=np.int64)
    )
    return _Plan(
        member=member,
        day=day,
        second=second.astype(np.int64),
        channel=channel,
        store=store.astype(np.int64),
        amount_cents=amount.astype(np.int64),
        item_start=item_start.astype(np.int64),
        item_sku=sku.astype(np.int64),
        item_quantity=quantity.astype(np.int64),
        item_price_cents=price.astype(np.int64),
        days=days64.astype(object).tolist(),
    )


def _day_weights(days64: npt.NDArray[np.datetime64]) -> npt.NDArray[np.float64]:
    months = days64.astype("datetime64[M]")
    month = months.astype(np.int64) % 12
    day_of_month = (days64 - months).astype(np.int64) + 1
    weekday = (days64.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    weight = _MONTH_WEIGHT[month] * _WEEKDAY_WEIGHT[weekday]
    december = month == 11
    weight[december & (day_of_month >= 18) & (day_of_month <= 24)] *= 1.35  # Christmas shopping
    weight[(month == 0) & (day_of_month >= 2) & (day_of_month <= 5)] *= 1.2  # Reyes
    weight[(december & (day_of_month == 25)) | ((month == 0) & (day_of_month == 1))] *= 0.1
    return weight.astype(np.float64)


def _sample(weights: npt.NDArray[np.float64], uniform: npt.NDArray[np.float64]) -> IntArray:
    """Indices drawn with probability proportional to `weights`, one per uniform number."""
    cumulative = np.cumsum(weights) / np.sum(weights)
    return np.minimum(np.searchsorted(cumulative, uniform, side="right"), len(weights) - 1)


def _catalog_table() -> npt.NDArray[np.float64]:
    """Cumulative product weights per (segment, month), one row per segment * 12 + month."""
    base = np.array([p.popularity for p in CATALOG])
    table = np.empty((len(SEGMENTS) * 12, len(CATALOG)))
    for s, name in enumerate(SEGMENTS):
        leaning = np.array([_SEGMENT_CATEGORY_WEIGHT[name].get(p.category, 1.0) for p in CATALOG])
        for month in range(12):
            weight = base * leaning * np.array([_seasonal(p, month) for p in CATALOG])
            table[s * 12 + month] = np.cumsum(weight) / weight.sum()
    return table


def _seasonal(product: CatalogProduct, month: int) -> float:
    if product.sku == "BAK-ROS":
        return 1.0 if month in (0, 11) else 0.0  # roscón only around Epiphany
    if product.category == "gifts" or product.sku == "BEV-CAV":
        return 6.0 if month == 11 else 1.0
    if product.category == "beverages" and month in (5, 6, 7):
        return 1.6
    return 1.0


_CATALOG_TABLE = _catalog_table()


def _sample_catalog(group: IntArray, uniform: npt.NDArray[np.float64]) -> IntArray:
    # Shift each group's cumulative weights into [g, g + 1] so one searchsorted serves them all.
    shifted = (_CATALOG_TABLE + np.arange(len(_CATALOG_TABLE))[:, None]).ravel()
    found = np.searchsorted(shifted, group + uniform, side="right") - group * len(CATALOG)
    return np.clip(found, 0, len(CATALOG) - 1).astype(np.int64)


def _first_occurrences(owner: IntArray, sku: IntArray) -> npt.NDArray[np.bool_]:
    """Marks the first line of each product in each basket (a basket lists a product once)."""
    order = np.lexsort((np.arange(len(owner)), sku, owner))
    same = np.zeros(len(owner), dtype=bool)
    same[1:] = (owner[order][1:] == owner[order][:-1]) & (sku[order][1:] == sku[order][:-1])
    keep = np.empty(len(owner), dtype=bool)
    keep[order] = ~same
    return keep


def _price_table(years: int) -> IntArray:
    """Prices in cents per (year since the start, product), rising a little every January."""
    base = np.array([p.price_cents for p in CATALOG], dtype=np.float64)
    factors = (1 + _ANNUAL_PRICE_RISE) ** np.arange(years)
    return (np.round(base[None, :] * factors[:, None] / 5) * 5).astype(np.int64)


def _index_or(options: Sequence[str], value: object, default: int) -> int:
    return options.index(value) if isinstance(value, str) and value in options else default


def _city_code(city: object) -> str | None:
    return next((code for name, _, code in _CITIES if name == city), None)


def _home_stores(
    city_code: list[str | None], stores: Sequence[str], rng: np.random.Generator
) -> IntArray:
    """A home store per member: one in the member's city when there is one, else any."""
    pick = rng.random(len(city_code))
    by_code: dict[str | None, list[int]] = {}
    for index, store in enumerate(stores):
        by_code.setdefault(store.split("-")[0], []).append(index)
    every = list(range(len(stores)))
    home: list[int] = []
    for code, u in zip(city_code, pick.tolist(), strict=True):
        options = by_code.get(code, every)
        home.append(options[int(u * len(options))])
    return np.array(home, dtype=np.int64)


# --- purchases --------------------------------------------------------------------------------


def generate_purchases(
    members: Sequence[DemoMember],
    *,
    seed: int,
    start: datetime,
    end: datetime,
    currency: str = "EUR",
    stores: Sequence[str] = DEFAULT_STORES,
    channels: Sequence[str] = DEFAULT_CHANNELS,
    n_purchases: int | None = None,
) -> Iterator[PurchaseInput]:
    """Yields the members' purchases between `start` and `end` in chronological order.

    With `n_purchases` the total is exactly that many (for benchmarks); otherwise it follows
    from each member's usage group, enrolment and churn.
    """
    _require_cents(currency)
    plan = _plan(
        members,
        seed=seed,
        start=start,
        end=end,
        stores=stores,
        channels=channels,
        n_purchases=n_purchases,
    )
    return _purchases(plan, members, currency, stores, channels)


class _Chunk(NamedTuple):
    """Up to _CHUNK consecutive purchases of a plan, as Python values."""

    first_number: int  # the 1-based number of the chunk's first purchase
    lines: list[tuple[int, int, int]]  # (product, quantity, price in cents) of every item
    starts: list[int]  # purchase k has lines[starts[k]:starts[k + 1]]
    # (member, day, second, channel, store, amount in cents) of every purchase
    rows: list[tuple[int, int, int, int, int, int]]


def _chunks(plan: _Plan) -> Iterator[_Chunk]:
    total = len(plan.member)
    for low in range(0, total, _CHUNK):
        high = min(low + _CHUNK, total)
        starts = plan.item_start[low : high + 1]
        first, last = int(starts[0]), int(starts[-1])
        item_columns = (plan.item_sku, plan.item_quantity, plan.item_price_cents)
        lines = list(zip(*(c[first:last].tolist() for c in item_columns), strict=True))
        columns = (plan.member, plan.day, plan.second, plan.channel, plan.store, plan.amount_cents)
        rows = list(zip(*(c[low:high].tolist() for c in columns), strict=True))
        yield _Chunk(low + 1, lines, (starts - first).tolist(), rows)


def _purchases(
    plan: _Plan,
    members: Sequence[DemoMember],
    currency: str,
    stores: Sequence[str],
    channels: Sequence[str],
) -> Iterator[PurchaseInput]:
    member_refs = [m.external_id for m in members]
    ymd = [(d.year, d.month, d.day) for d in plan.days]
    items: dict[tuple[int, int, int], Item] = {}
    money: dict[int, Decimal] = {}
    store_names: list[str | None] = [*stores, None]  # index -1 is "no store"
    for chunk in _chunks(plan):
        lines: list[Item] = []
        for key in chunk.lines:
            item = items.get(key)
            if item is None:
                product = CATALOG[key[0]]
                item = Item(product.sku, key[1], _cents(key[2], money), product.category)
                items[key] = item
            lines.append(item)
        starts = chunk.starts
        for k, (m, d, s, c, st, amount) in enumerate(chunk.rows):
            y, mo, dd = ymd[d]
            yield PurchaseInput(
                external_id=f"P{chunk.first_number + k:09d}",
                member_ref=member_refs[m],
                occurred_at=datetime(
                    y, mo, dd, s // 3600, s // 60 % 60, s % 60, tzinfo=PROGRAM_TIMEZONE
                ),
                amount=_cents(amount, money),
                currency=currency,
                channel=channels[c],
                store=store_names[st],
                items=tuple(lines[starts[k] : starts[k + 1]]),
                attributes={},
            )


def _require_cents(currency: str) -> None:
    if minor_units(currency) != 2:
        raise ValidationError("demo prices have 2 decimals; pick such a currency", field="currency")


def _cents(cents: int, cache: dict[int, Decimal]) -> Decimal:
    value = cache.get(cents)
    if value is None:
        value = cache[cents] = Decimal(cents).scaleb(-2)
    return value


def _cents_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# --- returns ----------------------------------------------------------------------------------


def generate_returns(
    purchases_sample: Iterable[PurchaseInput], *, seed: int, rate: float = 0.03
) -> list[DemoReturn]:
    """Returns about `rate` of the purchases with items, partly or fully, within 30 days."""
    if not 0 <= rate <= 1:
        raise ValidationError(f"must be between 0 and 1, got {rate}", field="rate")
    rng = np.random.default_rng([seed, _RETURNS_STREAM])
    purchases = [p for p in purchases_sample if p.items]
    chosen = np.flatnonzero(rng.random(len(purchases)) < rate)
    full = rng.random(len(chosen)) < 0.4
    # Most returns come back within days, none after 30 (the usual return window).
    delay = np.minimum(
        rng.exponential(5 * _SECONDS_PER_DAY, len(chosen)) + 3600, 30 * _SECONDS_PER_DAY - 1
    )
    returns: list[DemoReturn] = []
    for index, is_full, seconds in zip(chosen.tolist(), full.tolist(), delay.tolist(), strict=True):
        purchase = purchases[index]
        lines = [(item.sku, item.quantity) for item in purchase.items]
        if not is_full:
            picked = rng.random(len(lines)) < 0.5
            if not picked.any():
                picked[rng.integers(len(lines))] = True
            lines = [
                (sku, int(rng.integers(1, quantity + 1)))
                for (sku, quantity), take in zip(lines, picked.tolist(), strict=True)
                if take
            ]
        returned_at = (
            purchase.occurred_at.astimezone(UTC) + timedelta(seconds=int(seconds))
        ).astimezone(PROGRAM_TIMEZONE)
        returns.append(
            DemoReturn(purchase.external_id, f"R-{purchase.external_id}", returned_at, lines)
        )
    returns.sort(key=lambda r: (r.returned_at, r.return_external_id))
    return returns


# --- files ------------------------------------------------------------------------------------


def _open_text_for_writing(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "wt", encoding="utf-8", newline="")
    return path.open("w", encoding="utf-8", newline="")


def _items_json(items: Sequence[Item]) -> str:
    return json.dumps(
        [
            {"sku": i.sku, "category": i.category, "quantity": i.quantity,
             "unit_price": str(i.unit_price)}
            if i.category is not None
            else {"sku": i.sku, "quantity": i.quantity, "unit_price": str(i.unit_price)}
            for i in items
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )  # fmt: skip


def write_purchases_csv(path: Path, purchases: Iterable[PurchaseInput]) -> int:
    """Writes purchases as the CSV read_purchases reads (items as JSON); returns the row count."""
    count = 0
    with _open_text_for_writing(Path(path)) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(COLUMNS)
        for p in purchases:
            writer.writerow(
                (
                    p.external_id,
                    p.member_ref,
                    p.occurred_at.isoformat(),
                    str(p.amount),
                    p.currency,
                    p.channel or "",
                    p.store or "",
                    _items_json(p.items),
                )
            )
            count += 1
    return count


def write_purchases_parquet(
    path: Path,
    purchases: Iterable[PurchaseInput],
    *,
    items_as: Literal["list", "json"] = "list",
    chunk_size: int = 100_000,
) -> int:
    """Writes purchases as Parquet (one currency per file), a row group per chunk.

    `items` is a list<struct> column, or with `items_as="json"` a JSON text column; returns the
    row count.
    """
    import pyarrow.parquet as pq

    iterator = iter(purchases)
    chunk = list(islice(iterator, chunk_size))
    schema = _parquet_schema(chunk[0].currency if chunk else "EUR", items_as)
    count = 0
    with pq.ParquetWriter(Path(path), schema) as writer:
        while chunk:
            writer.write_table(_parquet_table(chunk, schema, items_as))
            count += len(chunk)
            chunk = list(islice(iterator, chunk_size))
    return count


def _parquet_schema(currency: str, items_as: str) -> Any:
    import pyarrow as pa

    money = pa.decimal128(18, minor_units(currency))
    item = pa.struct(
        [
            ("sku", pa.string()),
            ("category", pa.string()),
            ("quantity", pa.int32()),
            ("unit_price", money),
        ]
    )
    return pa.schema(
        [
            ("external_id", pa.string()),
            ("member_id", pa.string()),
            ("occurred_at", pa.timestamp("us", tz="UTC")),
            ("amount", money),
            ("currency", pa.string()),
            ("channel", pa.string()),
            ("store", pa.string()),
            ("items", pa.list_(item) if items_as == "list" else pa.string()),
        ]
    )


def _parquet_table(chunk: list[PurchaseInput], schema: Any, items_as: str) -> Any:
    import pyarrow as pa

    items: list[Any]
    if items_as == "list":
        items = [
            [
                {"sku": i.sku, "category": i.category, "quantity": i.quantity,
                 "unit_price": i.unit_price}
                for i in p.items
            ]
            for p in chunk
        ]  # fmt: skip
    else:
        items = [_items_json(p.items) for p in chunk]
    columns = (
        [p.external_id for p in chunk],
        [p.member_ref for p in chunk],
        [p.occurred_at for p in chunk],
        [p.amount for p in chunk],
        [p.currency for p in chunk],
        [p.channel for p in chunk],
        [p.store for p in chunk],
        items,
    )
    arrays = [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_bench_csv(
    path: Path,
    n_members: int,
    n_purchases: int,
    seed: int,
    *,
    start: datetime = datetime(2024, 1, 1, tzinfo=PROGRAM_TIMEZONE),
    end: datetime = datetime(2026, 1, 1, tzinfo=PROGRAM_TIMEZONE),
    currency: str = "EUR",
) -> int:
    """Writes exactly `n_purchases` purchases of `n_members` members straight from the plan.

    The file is byte for byte what write_purchases_csv writes for
    generate_purchases(generate_members(...), n_purchases=...) with the same seed, only faster.
    """
    _require_cents(currency)
    members = generate_members(n_members, seed=seed, start=start, end=end)
    plan = _plan(
        members,
        seed=seed,
        start=start,
        end=end,
        stores=DEFAULT_STORES,
        channels=DEFAULT_CHANNELS,
        n_purchases=n_purchases,
    )
    member_refs = [m.external_id for m in members]
    day_text = [d.isoformat() + "T" for d in plan.days]
    # Shops open 7:00-23:00, after the 2-3 h daylight-saving switch: one offset per day.
    offset_text = [
        datetime(d.year, d.month, d.day, 12, tzinfo=PROGRAM_TIMEZONE).isoformat()[-6:]
        for d in plan.days
    ]
    clock_text = [
        f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(_SECONDS_PER_DAY)
    ]
    fragments: dict[tuple[int, int, int], str] = {}
    store_names = [*DEFAULT_STORES, ""]
    with _open_text_for_writing(Path(path)) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(COLUMNS)
        for chunk in _chunks(plan):
            lines: list[str] = []
            for key in chunk.lines:
                fragment = fragments.get(key)
                if fragment is None:
                    product = CATALOG[key[0]]
                    item = Item(product.sku, key[1], Decimal(key[2]).scaleb(-2), product.category)
                    fragment = fragments[key] = _items_json([item])[1:-1]
                lines.append(fragment)
            starts = chunk.starts
            writer.writerows(
                (
                    f"P{chunk.first_number + k:09d}",
                    member_refs[m],
                    day_text[d] + clock_text[s] + offset_text[d],
                    _cents_text(amount),
                    currency,
                    DEFAULT_CHANNELS[c],
                    store_names[st],
                    "[" + ",".join(lines[starts[k] : starts[k + 1]]) + "]",
                )
                for k, (m, d, s, c, st, amount) in enumerate(chunk.rows)
            )
    return len(plan.member)
