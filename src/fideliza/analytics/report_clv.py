"""The customer-lifetime-value figures of the report (`fideliza report`), JSON-ready.

Built from `lifetime.estimate_lifetime_values`: the fitted BG/NBD and Gamma-Gamma parameters,
totals over the buyers, the distribution of P(alive) in ten bins, the customers with the
highest CLV and CLV per RFM segment. Sums are exact (rounded once, as `math.fsum` rounds
them: `exact_sums`) and ties are broken by member id, so the figures do not depend on the
order a backend returns rows in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow.compute as pc
from numpy.typing import ArrayLike, NDArray

from fideliza.analytics.lifetime import LifetimeValues
from fideliza.analytics.segments import DEFAULT_RFM_RULES, RfmSegment

TOP_CUSTOMERS = 10
ALIVE_BINS = 10
SEGMENTS = (*(str(rule.segment) for rule in DEFAULT_RFM_RULES), RfmSegment.OTHER.value)


def clv_figures(values: LifetimeValues, *, top: int = TOP_CUSTOMERS) -> dict[str, Any]:
    """The CLV section's figures (see the module docstring)."""
    n = int(values.clv.size)
    purchases, spend = values.purchases, values.spend
    total_clv, expected, alive = (
        exact_sum(v) for v in (values.clv, values.expected_purchases, values.probability_alive)
    )
    return {
        "horizon_months": values.months,
        "monthly_discount_rate": values.monthly_discount_rate,
        "time_unit": "weeks",
        "bgnbd": {
            "r": purchases.r,
            "alpha": purchases.alpha,
            "a": purchases.a,
            "b": purchases.b,
            "log_likelihood": purchases.log_likelihood,
            "customers": purchases.n_customers,
            "converged": purchases.converged,
        },
        "gamma_gamma": {
            "p": spend.p,
            "q": spend.q,
            "gamma": spend.gamma,
            "log_likelihood": spend.log_likelihood,
            "customers": spend.n_customers,
            "converged": spend.converged,
        },
        "customers": n,
        "total_clv": total_clv,
        "mean_clv": total_clv / n,
        "expected_purchases": expected,
        "expected_purchases_per_customer": expected / n,
        "mean_probability_alive": alive / n,
        "alive_distribution": _alive_distribution(values.probability_alive),
        "top_customers": _top_customers(values, top),
        "by_segment": _by_segment(values, total_clv),
    }


def _alive_distribution(alive: np.ndarray) -> list[dict[str, Any]]:
    counts, edges = np.histogram(alive, bins=ALIVE_BINS, range=(0.0, 1.0))
    total = int(counts.sum())
    return [
        {
            "from": round(float(edges[i]), 10),
            "to": round(float(edges[i + 1]), 10),
            "customers": int(count),
            "share": int(count) / total if total else None,
        }
        for i, count in enumerate(counts)
    ]


def _top_customers(values: LifetimeValues, top: int) -> list[dict[str, Any]]:
    """The `top` highest CLVs, ties by member id (candidates found without a full sort)."""
    clv = values.clv
    k = min(top, clv.size)
    if k == 0:
        return []
    threshold = np.partition(clv, clv.size - k)[clv.size - k]
    candidates = np.flatnonzero(clv >= threshold)
    ids = values.member_id.take(candidates).to_pylist()
    ranked = sorted(zip(candidates.tolist(), ids, strict=True), key=lambda c: (-clv[c[0]], c[1]))
    return [
        {
            "member_id": member,
            "segment": values.segment[i].as_py(),
            "frequency": int(values.frequency[i]),
            "recency_days": int(values.recency_days[i]),
            "age_days": int(values.age_days[i]),
            "probability_alive": float(values.probability_alive[i]),
            "expected_purchases": float(values.expected_purchases[i]),
            "expected_average_spend": float(values.expected_average_spend[i]),
            "clv": float(clv[i]),
        }
        for i, member in ranked[:k]
    ]


def _by_segment(values: LifetimeValues, total: float) -> list[dict[str, Any]]:
    """Every RFM segment in the rules' order ("other" only when it has customers)."""
    encoded = pc.dictionary_encode(values.segment)
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
    position = {name: i for i, name in enumerate(encoded.dictionary.to_pylist())}
    groups = len(position)
    counts = np.bincount(codes, minlength=groups)
    clv, alive, expected = (
        exact_sums(v, codes, groups)
        for v in (values.clv, values.probability_alive, values.expected_purchases)
    )
    rows = []
    for name in SEGMENTS:
        code = position.get(name)
        customers = 0 if code is None else int(counts[code])
        if name == RfmSegment.OTHER.value and customers == 0:
            continue
        value, alive_sum, purchases = (
            (0.0, 0.0, 0.0) if code is None else (clv[code], alive[code], expected[code])
        )
        rows.append(
            {
                "segment": name,
                "customers": customers,
                "clv": value,
                "clv_share": value / total if total else None,
                "mean_clv": value / customers if customers else None,
                "mean_probability_alive": alive_sum / customers if customers else None,
                "expected_purchases": purchases,
            }
        )
    return rows


# --- exact sums ---------------------------------------------------------------------------------

_MANTISSA_BITS = 52
_EXPONENT_BIAS = 1075  # a float64 is ±m·2^(e−1075), m an integer below 2^53, e its 11-bit field
_HALF_BITS = 26
# Below this many values, no partial sum of 26-bit halves reaches 2^53 (float64 adds it exactly).
_EXACT_LIMIT = 1 << 25


def exact_sum(values: ArrayLike) -> float:
    """Σ values rounded once: the same float as `math.fsum(values)`, a few times faster."""
    array = np.asarray(values, dtype=np.float64).ravel()
    return exact_sums(array, np.zeros(array.size, dtype=np.intp), 1)[0]


def exact_sums(values: ArrayLike, groups: NDArray[np.integer], count: int) -> list[float]:
    """Σ values per group (`groups` in 0..count−1), each rounded once as `math.fsum` does.

    Each value is an integer m (|m| < 2^53) times a power of two: the m's, split into 26-bit
    halves, are added per group and exponent by `np.bincount` in float64, exactly (every
    partial sum is an integer below 2^53), then the few totals in Python integers, divided
    by the power of two once (a correctly rounded division).
    """
    array = np.ascontiguousarray(values, dtype=np.float64).ravel()
    if array.size > _EXACT_LIMIT or not np.all(np.isfinite(array)):
        return [math.fsum(array[groups == g]) for g in range(count)]
    bits = array.view(np.int64)
    exponent = (bits >> _MANTISSA_BITS) & 0x7FF
    mantissa = (bits & ((1 << _MANTISSA_BITS) - 1)) | (
        (exponent > 0).astype(np.int64) << _MANTISSA_BITS
    )
    np.maximum(exponent, 1, out=exponent)  # subnormals: no implicit bit, exponent field 1
    np.negative(mantissa, out=mantissa, where=bits < 0)
    high = mantissa >> _HALF_BITS
    low = mantissa - (high << _HALF_BITS)
    lowest = int(exponent.min(initial=1))
    width = int(exponent.max(initial=1)) - lowest + 1
    slots = np.asarray(groups, dtype=np.int64) * width + (exponent - lowest)
    highs = np.bincount(slots, weights=high, minlength=count * width).reshape(count, width)
    lows = np.bincount(slots, weights=low, minlength=count * width).reshape(count, width)
    sums = []
    for g in range(count):
        total = 0
        for shift in np.flatnonzero((highs[g] != 0) | (lows[g] != 0)).tolist():
            total += ((int(highs[g, shift]) << _HALF_BITS) + int(lows[g, shift])) << shift
        scale = lowest - _EXPONENT_BIAS
        if total == 0:  # keeps fsum's sign of zero (−0.0 for only negative zeros)
            sums.append(math.fsum(array[groups == g]))
        elif scale >= 0:
            sums.append(float(total << scale))
        else:
            sums.append(total / (1 << -scale))
    return sums
