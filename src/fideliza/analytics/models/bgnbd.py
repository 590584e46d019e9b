"""BG/NBD model of repeat buying (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy
Way", Marketing Science 24(2)).

While alive a customer buys at Poisson rate λ ~ Gamma(r, α); after each repeat purchase they
drop out with probability p ~ Beta(a, b). The data per customer are the repeat purchases
`frequency` (x), the time of the last one `recency` (t_x) and the time since the first
purchase `T`, all in one time unit (days or weeks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, expit, gammaln, hyp2f1

from fideliza.analytics.models._common import (
    CustomerTable,
    FloatArray,
    as_float_array,
    check_frequency,
    check_horizon,
    check_rfm,
    compress,
    dot,
    maximize_log_likelihood,
    mean_purchase_rate,
)
from fideliza.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class BgNbd:
    """BG/NBD parameters (r, α, a, b), with the log-likelihood of the data they were fit to.

    `log_likelihood`, `n_customers` and `converged` describe the fit; parameters written by
    hand (a published fit, say) leave them at NaN, 0 and True.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = math.nan
    n_customers: int = 0
    converged: bool = True

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValidationError(f"must be a positive number, got {value!r}", field=name)

    def probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(alive at T | x, t_x, T); exactly 1 for customers who never bought again."""
        x, t_x, age = check_rfm(frequency, recency, T)
        return _probability_alive(self, x, t_x, age)

    def expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[purchases in (T, T + t] | x, t_x, T]: the conditional expectation (FHL eq. 10)."""
        horizon = check_horizon(t)
        x, t_x, age = check_rfm(frequency, recency, T)
        horizon, x, t_x, age = np.broadcast_arrays(horizon, x, t_x, age)
        return _expected_purchases(self, horizon, x, t_x, age)

    def expected_purchases_if_alive(
        self, t: ArrayLike, frequency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[purchases in (T, T + t] | x, T, alive at T]: `expected_purchases` is this times
        `probability_alive`. It does not depend on recency: customers sharing (x, T) share it."""
        horizon = check_horizon(t)
        x = check_frequency(frequency)
        age = as_float_array(T, field="T")
        if np.any(age < 0):
            raise ValidationError("must be >= 0", field="T")
        horizon, x, age = np.broadcast_arrays(horizon, x, age)
        return _expected_if_alive(self, horizon, x, age)

    def expected_purchases_new_customer(self, t: ArrayLike) -> FloatArray:
        """E[X(t)]: purchases in (0, t] expected from a customer just acquired (FHL eq. 9)."""
        horizon = check_horizon(t)
        zeros = np.zeros_like(horizon)
        return _expected_purchases(self, horizon, zeros, zeros, zeros)


def fit_bgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> BgNbd:
    """Fits (r, α, a, b) by maximum likelihood (L-BFGS-B on log-parameters, analytic gradient)."""
    x, t_x, age = check_rfm(frequency, recency, T)
    table = compress(x, t_x, age)
    terms = _Terms.of(table)
    # r = a = b = 1 and α on the data's time scale (r/α ≈ the mean purchase rate).
    start = np.array([1.0, 1.0 / mean_purchase_rate(table), 1.0, 1.0])
    optimum = maximize_log_likelihood(
        lambda params: _log_likelihood(params, terms, gradient=True),
        start,
        n_customers=table.n_customers,
        with_gradient=True,
    )
    r, alpha, a, b = (float(v) for v in optimum.params)
    return BgNbd(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        log_likelihood=float(optimum.log_likelihood),
        n_customers=table.n_customers,
        converged=optimum.converged,
    )


def simulate_bgnbd(
    model: BgNbd, T: ArrayLike, *, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Draws (frequency, recency) for customers of ages `T` from the BG/NBD process."""
    age = as_float_array(T, field="T")
    if np.any(age < 0):
        raise ValidationError("must be >= 0", field="T")
    rate = rng.gamma(model.r, 1.0 / model.alpha, size=age.shape)
    dropout = rng.beta(model.a, model.b, size=age.shape)
    # Repeat purchases up to and including the one after which the customer drops out.
    lifetime_purchases = rng.geometric(dropout)
    arrivals = rng.poisson(rate * age)
    x = np.minimum(arrivals, lifetime_purchases)
    # Given n Poisson arrivals in (0, T], the x-th is T times the x-th of n uniform order
    # statistics, i.e. T · Beta(x, n − x + 1).
    repeat = x > 0
    t_x = np.zeros_like(age)
    t_x[repeat] = age[repeat] * rng.beta(x[repeat], arrivals[repeat] - x[repeat] + 1)
    return x.astype(np.float64), t_x


def bgnbd_log_likelihood(
    model: BgNbd, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> float:
    """Total log-likelihood of the customers under `model`'s parameters."""
    terms = _Terms.of(compress(*check_rfm(frequency, recency, T)))
    value, _ = _log_likelihood(_params(model), terms, gradient=False)
    return value


def bgnbd_log_likelihood_gradient(
    model: BgNbd, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Gradient of the total log-likelihood with respect to (r, α, a, b)."""
    terms = _Terms.of(compress(*check_rfm(frequency, recency, T)))
    _, gradient = _log_likelihood(_params(model), terms, gradient=True)
    return gradient


def _params(model: BgNbd) -> FloatArray:
    return np.array([model.r, model.alpha, model.a, model.b])


@dataclass(frozen=True, slots=True)
class _Terms:
    """The compressed data, split so terms that depend only on x are computed per distinct x."""

    n: float  # customers
    x_values: FloatArray  # distinct frequencies
    x_weight: FloatArray  # customers per distinct frequency
    # rows with x > 0 (the only ones whose likelihood mixes two terms)
    rep_x: FloatArray
    rep_x_index: NDArray[np.intp]  # position of each row's x in x_values
    rep_t_x: FloatArray
    rep_T: FloatArray
    rep_weight: FloatArray
    # rows with x == 0, which depend on T alone
    zero_T: FloatArray
    zero_weight: FloatArray

    @staticmethod
    def of(table: CustomerTable) -> _Terms:
        x_values, inverse = np.unique(table.x, return_inverse=True)
        x_weight = np.bincount(inverse, weights=table.weight).astype(np.float64)
        rep = table.x > 0
        return _Terms(
            n=float(table.n_customers),
            x_values=x_values,
            x_weight=x_weight,
            rep_x=table.x[rep],
            rep_x_index=inverse[rep],
            rep_t_x=table.t_x[rep],
            rep_T=table.T[rep],
            rep_weight=table.weight[rep],
            zero_T=table.T[~rep],
            zero_weight=table.weight[~rep],
        )


def _log_likelihood(
    params: FloatArray, terms: _Terms, *, gradient: bool
) -> tuple[float, FloatArray]:
    """Total log-likelihood and (optionally) its gradient with respect to (r, α, a, b).

    Per customer: log L = lnΓ(r+x) − lnΓ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
        + ln[ (α+T)^−(r+x) + δ(x>0) · a/(b+x−1) · (α+t_x)^−(r+x) ].
    """
    r, alpha, a, b = (float(v) for v in params)
    n, xs, wx = terms.n, terms.x_values, terms.x_weight

    # Terms that depend on x only, once per distinct x.
    per_x = gammaln(r + xs) + gammaln(b + xs) - gammaln(a + b + xs)
    value = dot(wx, per_x) + n * (-gammaln(r) + r * math.log(alpha) + gammaln(a + b) - gammaln(b))

    # Customers with x == 0: ln[(α+T)^−r].
    log_alpha_T0 = np.log(alpha + terms.zero_T)
    value -= r * dot(terms.zero_weight, log_alpha_T0)

    # Customers with x > 0: logaddexp of "still alive" and "dropped out after t_x".
    x, w = terms.rep_x, terms.rep_weight
    log_b_x1 = np.log(b + xs - 1.0, where=xs > 0, out=np.zeros_like(xs))[terms.rep_x_index]
    log_alpha_T = np.log(alpha + terms.rep_T)
    log_alpha_tx = np.log(alpha + terms.rep_t_x)
    alive = -(r + x) * log_alpha_T
    dropped = math.log(a) - log_b_x1 - (r + x) * log_alpha_tx
    mixed = np.logaddexp(alive, dropped)
    value += dot(w, mixed)

    if not gradient:
        return value, np.empty(0)

    share_dropped = np.exp(dropped - mixed)  # posterior weight of the "dropped out" branch
    share_alive = 1.0 - share_dropped
    psi_ab = digamma(a + b)
    psi_abx = digamma(a + b + xs)

    d_r = dot(wx, digamma(r + xs)) + n * (math.log(alpha) - digamma(r))
    d_r -= dot(terms.zero_weight, log_alpha_T0)
    d_r -= dot(w, share_alive * log_alpha_T + share_dropped * log_alpha_tx)

    d_alpha = n * r / alpha - r * dot(terms.zero_weight, 1.0 / (alpha + terms.zero_T))
    d_alpha -= dot(
        w,
        (r + x) * (share_alive / (alpha + terms.rep_T) + share_dropped / (alpha + terms.rep_t_x)),
    )

    w_dropped = w * share_dropped
    d_a = n * psi_ab - dot(wx, psi_abx) + float(np.sum(w_dropped)) / a

    inv_b_x1 = np.divide(1.0, b + xs - 1.0, where=xs > 0, out=np.zeros_like(xs))
    d_b = n * (psi_ab - digamma(b)) + dot(wx, digamma(b + xs) - psi_abx)
    d_b -= dot(w_dropped, inv_b_x1[terms.rep_x_index])

    return float(value), np.array([d_r, d_alpha, d_a, d_b])


def _log_odds_dropped(model: BgNbd, x: FloatArray, t_x: FloatArray, age: FloatArray) -> FloatArray:
    """ln[a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)] for x > 0, −∞ for x == 0."""
    repeat = x > 0
    log_ratio = np.log(model.alpha + age) - np.log(model.alpha + t_x)
    safe_b = np.where(repeat, model.b + x - 1.0, 1.0)
    log_odds = math.log(model.a) - np.log(safe_b) + (model.r + x) * log_ratio
    return np.where(repeat, log_odds, -np.inf)


def _probability_alive(model: BgNbd, x: FloatArray, t_x: FloatArray, age: FloatArray) -> FloatArray:
    return np.asarray(expit(-_log_odds_dropped(model, x, t_x, age)), dtype=np.float64)


def _expected_purchases(
    model: BgNbd, t: FloatArray, x: FloatArray, t_x: FloatArray, age: FloatArray
) -> FloatArray:
    expected = _expected_if_alive(model, t, x, age)
    return np.asarray(expected * _probability_alive(model, x, t_x, age), dtype=np.float64)


def _expected_if_alive(model: BgNbd, t: FloatArray, x: FloatArray, age: FloatArray) -> FloatArray:
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    # The closed form divides by a − 1; it is smooth in a, so step off the removable point.
    if abs(a - 1.0) < 1e-7:
        a = 1.0 + math.copysign(1e-7, a - 1.0)
    # 1 − ((α+T)/(α+T+t))^(r+x) 2F1(r+x, b+x; a+b+x−1; z) with z = t/(α+T+t), rewritten by
    # Euler's transformation as 1 − (1−z)^(a−1) 2F1(a+b−1−r, a−1; a+b+x−1; z): the original
    # 2F1 blows up like (1−z)^−(r+x) for large x, the transformed one stays near 1.
    z = t / (alpha + age + t)
    log_one_minus_z = np.log(alpha + age) - np.log(alpha + age + t)
    hyper = hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
    bracket = 1.0 - np.exp((a - 1.0) * log_one_minus_z) * hyper
    return np.asarray((a + b + x - 1.0) / (a - 1.0) * bracket, dtype=np.float64)
