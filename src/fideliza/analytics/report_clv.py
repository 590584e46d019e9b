"""The customer-lifetime-value figures of the report (`fideliza report`), JSON-ready.

Built from `lifetime.estimate_lifetime_values`: the fitted BG/NBD and Gamma-Gamma parameters,
totals over the buyers, the distribution of P(alive) in ten bins, the customers with the
highest CLV and CLV per RFM segment. Sums are exact (`math.fsum`) and ties are broken by
member id, so the figures do not depend on the order a backend returns rows in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow.compute as pc

from fideliza.analytics.lifetime import LifetimeValues
from fideliza.analytics.segments import DEFAULT_RFM_RULES, RfmSegment

TOP_CUSTOMERS = 10
ALIVE_BINS = 10
SEGMENTS = (*(str(rule.segment) for rule in DEFAULT_RFM_RULES), RfmSegment.OTHER.value)


def clv_figures(values: LifetimeValues, *, top: int = TOP_CUSTOMERS) -> dict[str, Any]:
    """The CLV section's figures (see the module docstring)."""
    n = int(values.clv.size)
    purchases, spend = values.purchases, values.spend
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
        "total_clv": math.fsum(values.clv),
        "mean_clv": math.fsum(values.clv) / n,
        "expected_purchases": math.fsum(values.expected_purchases),
        "expected_purchases_per_customer": math.fsum(values.expected_purchases) / n,
        "mean_probability_alive": math.fsum(values.probability_alive) / n,
        "alive_distribution": _alive_distribution(values.probability_alive),
        "top_customers": _top_customers(values, top),
        "by_segment": _by_segment(values),
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


def _by_segment(values: LifetimeValues) -> list[dict[str, Any]]:
    """Every RFM segment in the rules' order ("other" only when it has customers)."""
    encoded = pc.dictionary_encode(values.segment)
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
    position = {name: i for i, name in enumerate(encoded.dictionary.to_pylist())}
    total = math.fsum(values.clv)
    rows = []
    for name in SEGMENTS:
        members = codes == position.get(name, -1)
        customers = int(members.sum())
        if name == RfmSegment.OTHER.value and customers == 0:
            continue
        clv = math.fsum(values.clv[members])
        rows.append(
            {
                "segment": name,
                "customers": customers,
                "clv": clv,
                "clv_share": clv / total if total else None,
                "mean_clv": clv / customers if customers else None,
                "mean_probability_alive": (
                    math.fsum(values.probability_alive[members]) / customers if customers else None
                ),
                "expected_purchases": math.fsum(values.expected_purchases[members]),
            }
        )
    return rows
