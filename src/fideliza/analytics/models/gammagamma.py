"""Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV: Using
Iso-Value Curves for Customer Base Analysis", JMR 42(4); Fader & Hardie, "The Gamma-Gamma
Model of Monetary Value", 2013).

A customer's transaction values are Gamma(p, ν) with mean p/ν, and ν ~ Gamma(q, γ) across
customers. The data per customer are the number of repeat transactions x and their mean value
m_x; the model assumes spend is independent of the purchase process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import digamma, gammaln

from fideliza.analytics.models._common import (
    FloatArray,
    as_float_array,
    check_frequency,
    dot,
    maximize_log_likelihood,
)
from fideliza.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class GammaGamma:
    """Gamma-Gamma parameters (p, q, γ), with the log-likelihood of the data they were fit to.

    `log_likelihood`, `n_customers` (repeat customers) and `converged` describe the fit;
    parameters written by hand leave them at NaN, 0 and True.
    """

    p: float
    q: float
    gamma: float
    log_likelihood: float = math.nan
    n_customers: int = 0
    converged: bool = True

    def __post_init__(self) -> None:
        for name in ("p", "q", "gamma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValidationError(f"must be a positive number, got {value!r}", field=name)

    @property
    def population_mean_spend(self) -> float:
        """E[Z] = pγ/(q−1): the mean spend of a customer about whom nothing is known (q > 1)."""
        if self.q <= 1:
            raise ValidationError("must be > 1 for the mean spend to exist", field="q")
        return self.p * self.gamma / (self.q - 1.0)

    def expected_average_spend(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        """E[Z | x, m_x]: a weighted mean of the population mean and the customer's own mean.

        Customers with frequency 0 get the population mean; their monetary value is ignored.
        """
        x, m_x = _check_spend(frequency, monetary_value)
        population = self.population_mean_spend
        weight_own = self.p * x / (self.p * x + self.q - 1.0)
        own = np.where(x > 0, m_x, 0.0)
        return np.asarray((1.0 - weight_own) * population + weight_own * own, dtype=np.float64)


def fit_gamma_gamma(frequency: ArrayLike, monetary_value: ArrayLike) -> GammaGamma:
    """Fits (p, q, γ) by maximum likelihood on the customers with frequency > 0.

    `monetary_value` is each customer's mean value of their repeat transactions; customers
    with no repeat transaction carry no information here and are left out.
    """
    x, m_x = _check_spend(frequency, monetary_value)
    repeat = x > 0
    x, m_x = x[repeat].ravel(), m_x[repeat].ravel()
    if x.size == 0:
        raise ValidationError("needs at least one customer with frequency > 0", field="frequency")
    # Moments of the customers' means give a start on the right scale: E[m] ≈ pγ/(q−1).
    start = np.array([1.0, 2.0, float(np.mean(m_x))])
    terms = _SpendTerms.of(x, m_x)
    optimum = maximize_log_likelihood(
        terms.log_likelihood,
        start,
        n_customers=int(x.size),
        with_gradient=True,
    )
    p, q, gamma = (float(v) for v in optimum.params)
    return GammaGamma(
        p=p,
        q=q,
        gamma=gamma,
        log_likelihood=float(optimum.log_likelihood),
        n_customers=int(x.size),
        converged=optimum.converged,
    )


def gamma_gamma_log_likelihood(
    model: GammaGamma, frequency: ArrayLike, monetary_value: ArrayLike
) -> float:
    """Total log-likelihood of the repeat customers' mean spend under `model`'s parameters."""
    x, m_x = _check_spend(frequency, monetary_value)
    repeat = x > 0
    value, _ = _log_likelihood(
        np.array([model.p, model.q, model.gamma]), x[repeat].ravel(), m_x[repeat].ravel()
    )
    return value


def simulate_gamma_gamma(
    model: GammaGamma, frequency: ArrayLike, *, rng: np.random.Generator
) -> FloatArray:
    """Draws each customer's mean spend over `frequency` transactions (0 where frequency is 0)."""
    x = check_frequency(frequency)
    scale = 1.0 / rng.gamma(model.q, 1.0 / model.gamma, size=x.shape)  # 1/ν
    # The sum of x Gamma(p, ν) values is Gamma(px, ν).
    repeat = x > 0
    mean = np.zeros_like(x)
    mean[repeat] = rng.gamma(model.p * x[repeat], scale[repeat]) / x[repeat]
    return mean


def _check_spend(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = check_frequency(frequency)
    m_x = as_float_array(monetary_value, field="monetary_value")
    try:
        x, m_x = np.broadcast_arrays(x, m_x)
    except ValueError:
        raise ValidationError(
            f"shape {m_x.shape} does not match frequency's {x.shape}", field="monetary_value"
        ) from None
    if np.any((x > 0) & (m_x <= 0)):
        raise ValidationError(
            "must be > 0 for customers with frequency > 0 (mean spend per repeat transaction)",
            field="monetary_value",
        )
    return x, m_x


def _log_likelihood(params: FloatArray, x: FloatArray, m_x: FloatArray) -> tuple[float, FloatArray]:
    """Total log-likelihood of the mean spends and its gradient with respect to (p, q, γ)."""
    return _SpendTerms.of(x, m_x).log_likelihood(params)


@dataclass(frozen=True, slots=True)
class _SpendTerms:
    """The data split so that each likelihood evaluation does one log per customer.

    Per customer: lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln γ + (px−1) ln m_x + px ln x
        − (px+q) ln(γ + x m_x).
    The Γ terms depend on x alone (a few distinct values), and the ln m_x, ln x terms are sums
    fixed by the data; only ln(γ + x m_x) changes per customer with the parameters.
    """

    x: FloatArray
    total: FloatArray  # x · m_x: what the customer spent on repeat transactions
    x_values: FloatArray
    x_weight: FloatArray  # customers per distinct x
    sum_log_m: float
    sum_x_log_m: float
    sum_x_log_x: float

    @staticmethod
    def of(x: FloatArray, m_x: FloatArray) -> _SpendTerms:
        x_values, counts = np.unique(x, return_counts=True)
        log_m = np.log(m_x)
        return _SpendTerms(
            x=x,
            total=x * m_x,
            x_values=x_values,
            x_weight=counts.astype(np.float64),
            sum_log_m=float(np.sum(log_m)),
            sum_x_log_m=dot(x, log_m),
            sum_x_log_x=dot(x, np.log(x)),
        )

    def log_likelihood(self, params: FloatArray) -> tuple[float, FloatArray]:
        p, q, gamma = (float(v) for v in params)
        n, xs, wx = float(self.x.size), self.x_values, self.x_weight
        log_total = np.log(gamma + self.total)
        sum_log_total = float(np.sum(log_total))
        sum_x_log_total = dot(self.x, log_total)
        pxs = p * xs
        value = (
            dot(wx, gammaln(pxs + q) - gammaln(pxs))
            + n * (q * math.log(gamma) - gammaln(q))
            + p * (self.sum_x_log_m + self.sum_x_log_x - sum_x_log_total)
            - self.sum_log_m
            - q * sum_log_total
        )
        psi_pxq = digamma(pxs + q)
        d_p = dot(wx, xs * (psi_pxq - digamma(pxs)))
        d_p += self.sum_x_log_m + self.sum_x_log_x - sum_x_log_total
        d_q = dot(wx, psi_pxq) - sum_log_total + n * (math.log(gamma) - digamma(q))
        inverse = 1.0 / (gamma + self.total)
        d_gamma = n * q / gamma - p * dot(self.x, inverse) - q * float(np.sum(inverse))
        return value, np.array([d_p, d_q, d_gamma])
