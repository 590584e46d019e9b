"""Pareto/NBD model of repeat buying (Schmittlein, Morrison & Colombo 1987), with the
likelihood and related expressions of Fader & Hardie (2005), "A Note on Deriving the Pareto/NBD
Model and Related Expressions".

While alive a customer buys at Poisson rate λ ~ Gamma(r, α) and dies at exponential rate
μ ~ Gamma(s, β), at any time (not only after a purchase, as in BG/NBD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, gammaln, hyp2f1

from fideliza.analytics.models._common import (
    FloatArray,
    as_float_array,
    check_horizon,
    check_rfm,
    compress,
    dot,
    maximize_log_likelihood,
    mean_purchase_rate,
)
from fideliza.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class ParetoNbd:
    """Pareto/NBD parameters (r, α, s, β), with the log-likelihood of the data they were fit to.

    `log_likelihood`, `n_customers` and `converged` describe the fit; parameters written by
    hand leave them at NaN, 0 and True.
    """

    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float = math.nan
    n_customers: int = 0
    converged: bool = True

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "s", "beta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValidationError(f"must be a positive number, got {value!r}", field=name)

    def probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(alive at T | x, t_x, T) (Fader & Hardie 2005 note, eq. 18)."""
        x, t_x, age = check_rfm(frequency, recency, T)
        return _probability_alive(self, x, t_x, age)

    def expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[purchases in (T, T + t] | x, t_x, T] (Fader & Hardie 2005 note, eq. 20)."""
        horizon = check_horizon(t)
        x, t_x, age = check_rfm(frequency, recency, T)
        horizon, x, t_x, age = np.broadcast_arrays(horizon, x, t_x, age)
        alive = _probability_alive(self, x, t_x, age)
        per_unit = (self.r + x) / (self.alpha + age)
        lifetime = _expected_lifetime(self.s, self.beta + age, horizon)
        return np.asarray(per_unit * lifetime * alive, dtype=np.float64)

    def expected_purchases_new_customer(self, t: ArrayLike) -> FloatArray:
        """E[X(t)]: purchases in (0, t] expected from a customer just acquired (eq. 17)."""
        horizon = check_horizon(t)
        lifetime = _expected_lifetime(self.s, np.full_like(horizon, self.beta), horizon)
        return np.asarray(self.r / self.alpha * lifetime, dtype=np.float64)


def fit_paretonbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> ParetoNbd:
    """Fits (r, α, s, β) by maximum likelihood (L-BFGS-B on log-parameters)."""
    x, t_x, age = check_rfm(frequency, recency, T)
    table = compress(x, t_x, age)
    # r = s = 1, α on the scale of the purchase rate and β on the scale of customer ages.
    mean_age = dot(table.weight, table.T) / table.n_customers
    start = np.array([1.0, 1.0 / mean_purchase_rate(table), 1.0, mean_age if mean_age > 0 else 1.0])

    def objective(params: FloatArray) -> float:
        r, alpha, s, beta = (float(v) for v in params)
        rows = _row_log_likelihood(r, alpha, s, beta, table.x, table.t_x, table.T)
        return dot(table.weight, rows)

    optimum = maximize_log_likelihood(
        objective, start, n_customers=table.n_customers, with_gradient=False
    )
    r, alpha, s, beta = (float(v) for v in optimum.params)
    return ParetoNbd(
        r=r,
        alpha=alpha,
        s=s,
        beta=beta,
        log_likelihood=float(optimum.log_likelihood),
        n_customers=table.n_customers,
        converged=optimum.converged,
    )


def paretonbd_log_likelihood(
    model: ParetoNbd, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> float:
    """Total log-likelihood of the customers under `model`'s parameters."""
    table = compress(*check_rfm(frequency, recency, T))
    rows = _row_log_likelihood(
        model.r, model.alpha, model.s, model.beta, table.x, table.t_x, table.T
    )
    return dot(table.weight, rows)


def simulate_paretonbd(
    model: ParetoNbd, T: ArrayLike, *, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Draws (frequency, recency) for customers of ages `T` from the Pareto/NBD process."""
    age = as_float_array(T, field="T")
    if np.any(age < 0):
        raise ValidationError("must be >= 0", field="T")
    rate = rng.gamma(model.r, 1.0 / model.alpha, size=age.shape)
    death_rate = rng.gamma(model.s, 1.0 / model.beta, size=age.shape)
    active = np.minimum(rng.exponential(1.0 / death_rate), age)
    x = rng.poisson(rate * active)
    # The last of x uniform arrivals in (0, active] is active · U^(1/x).
    repeat = x > 0
    t_x = np.zeros_like(age)
    t_x[repeat] = active[repeat] * rng.random(int(repeat.sum())) ** (1.0 / x[repeat])
    return x.astype(np.float64), t_x


def _row_log_likelihood(
    r: float, alpha: float, s: float, beta: float, x: FloatArray, t_x: FloatArray, age: FloatArray
) -> FloatArray:
    """log L per customer: lnΓ(r+x) − lnΓ(r) + r ln α + s ln β + ln[alive + dropped].

    alive = (α+T)^−(r+x) (β+T)^−s is "still alive at T"; dropped = s ∫ (α+τ)^−(r+x)
    (β+τ)^−(s+1) dτ over (t_x, T] is "died after the last purchase, before T".
    """
    alive = -(r + x) * np.log(alpha + age) - s * np.log(beta + age)
    dropped = math.log(s) + _log_dropout_integral(r, alpha, s, beta, x, t_x, age)
    head = gammaln(r + x) - gammaln(r) + r * math.log(alpha) + s * math.log(beta)
    return np.asarray(head + np.logaddexp(alive, dropped), dtype=np.float64)


def _log_dropout_integral(
    r: float, alpha: float, s: float, beta: float, x: FloatArray, t_x: FloatArray, age: FloatArray
) -> FloatArray:
    """ln ∫_{t_x}^{T} (α+τ)^−(r+x) (β+τ)^−(s+1) dτ, −∞ where t_x == T.

    The integral is A₀/(r+s+x) of the Fader-Hardie note, whose antiderivative is a Gaussian
    hypergeometric 2F1(r+s+x, ·; r+s+x+1; z). That 2F1 grows like (1−z)^−(r+x) for large x
    (α < β) and is evaluated here after Euler's transformation as 2F1(1, ·; r+s+x+1; z), which
    stays small, with the powers kept in log space.
    """
    return _log_difference(
        _log_antiderivative(r, alpha, s, beta, x, t_x),
        _log_antiderivative(r, alpha, s, beta, x, age),
    )


def _log_antiderivative(
    r: float, alpha: float, s: float, beta: float, x: FloatArray, tau: FloatArray
) -> FloatArray:
    """ln of F(τ) with ∫_{t}^{T} … dτ = (F(t) − F(T)); F(∞) = 0, F decreasing."""
    c = r + s + x + 1.0
    if alpha >= beta:
        # 2F1(r+s+x, s+1; c; z) = (1−z)^−s 2F1(1, r+x; c; z), z = (α−β)/(α+τ)
        z = (alpha - beta) / (alpha + tau)
        hyper = hyp2f1(1.0, r + x, c, z)
        log_power = -s * np.log(beta + tau) - (r + x) * np.log(alpha + tau)
    else:
        # 2F1(r+s+x, r+x; c; z) = (1−z)^(1−r−x) 2F1(1, s+1; c; z), z = (β−α)/(β+τ)
        z = (beta - alpha) / (beta + tau)
        hyper = hyp2f1(1.0, s + 1.0, c, z)
        log_power = (1.0 - r - x) * np.log(alpha + tau) - (s + 1.0) * np.log(beta + tau)
    return np.asarray(log_power + np.log(hyper) - np.log(r + s + x), dtype=np.float64)


def _log_difference(log_upper: FloatArray, log_lower: FloatArray) -> FloatArray:
    """ln(e^u − e^l) for u >= l, −∞ where they are equal (recency == T)."""
    gap = np.minimum(log_lower - log_upper, 0.0)
    with np.errstate(divide="ignore"):
        return np.asarray(log_upper + np.log(-np.expm1(gap)), dtype=np.float64)


def _probability_alive(
    model: ParetoNbd, x: FloatArray, t_x: FloatArray, age: FloatArray
) -> FloatArray:
    r, alpha, s, beta = model.r, model.alpha, model.s, model.beta
    log_odds = (
        math.log(s)
        + _log_dropout_integral(r, alpha, s, beta, x, t_x, age)
        + (r + x) * np.log(alpha + age)
        + s * np.log(beta + age)
    )
    return np.asarray(expit(-log_odds), dtype=np.float64)


def _expected_lifetime(s: float, beta_age: FloatArray, t: FloatArray) -> FloatArray:
    """β'/(s−1) · [1 − (β'/(β'+t))^(s−1)] with β' = β+T: the expected time alive in (T, T+t].

    Written as β' · (1 − e^(−(s−1)u))/(s−1), u = ln((β'+t)/β'), which tends to β' · u as
    s → 1 instead of dividing zero by zero.
    """
    u = np.log1p(t / beta_age)
    k = s - 1.0
    factor = u if k == 0.0 else -np.expm1(-k * u) / k
    return np.asarray(beta_age * factor, dtype=np.float64)
