"""Customer-base models: published CDNOW fits, recovery from simulated data, numerics, CLV."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from scipy.special import betaln

from fideliza.analytics.clv import customer_lifetime_value, summarize_transactions
from fideliza.analytics.models import (
    BgNbd,
    GammaGamma,
    ParetoNbd,
    bgnbd_log_likelihood,
    bgnbd_log_likelihood_gradient,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_paretonbd,
    gamma_gamma_log_likelihood,
    paretonbd_log_likelihood,
    simulate_bgnbd,
    simulate_gamma_gamma,
    simulate_paretonbd,
)
from fideliza.analytics.models import gammagamma as gammagamma_module
from fideliza.core.errors import ValidationError

CDNOW = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cdnow"
if not CDNOW.is_dir():  # the shared folder sits beside the work tree; CI lays it out the same
    CDNOW = Path("/work/shared/data/cdnow")

# Published fits (README of the data set; Fader, Hardie & Lee 2005 MKSC and JMR).
PUBLISHED_BGNBD = BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426)
PUBLISHED_PARETONBD = ParetoNbd(r=0.553, alpha=10.578, s=0.606, beta=11.669)
PUBLISHED_GAMMA_GAMMA = GammaGamma(p=6.25, q=3.74, gamma=15.44)


def sig3(value: float) -> float:
    """`value` rounded to 3 significant digits."""
    return float(f"{value:.3g}")


@pytest.fixture(scope="module")
def cdnow_summary() -> pd.DataFrame:
    return pd.read_csv(CDNOW / "cdnow_customers_summary.csv", index_col="ID")


@pytest.fixture(scope="module")
def cdnow_transactions() -> pd.DataFrame:
    raw = pd.read_csv(
        CDNOW / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "cds", "amount"],
        dtype={"date": str},
    )
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    return raw


@pytest.fixture(scope="module")
def cdnow_calibration(cdnow_transactions: pd.DataFrame) -> pd.DataFrame:
    return summarize_transactions(
        cdnow_transactions, calibration_end="1997-09-30", time_unit="weeks"
    )


# ---------------------------------------------------------------- summary from transactions


def test_summary_reproduces_the_published_cdnow_summary(
    cdnow_calibration: pd.DataFrame, cdnow_summary: pd.DataFrame
) -> None:
    assert list(cdnow_calibration.index) == list(cdnow_summary.index)
    assert (cdnow_calibration["frequency"] == cdnow_summary["frequency"]).all()
    # The published file carries two decimals; T runs to the start of 1997-09-30 (272 days
    # = 38.86 weeks for a customer who first bought on 1997-01-01).
    assert (cdnow_calibration["recency"].round(2) == cdnow_summary["recency"]).all()
    assert (cdnow_calibration["T"].round(2) == cdnow_summary["T"]).all()
    assert cdnow_calibration.loc[1, "T"] == pytest.approx(272 / 7)


def test_summary_merges_same_day_purchases_and_cuts_at_the_calibration_end() -> None:
    transactions = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "a", "b", "c"],
            "date": pd.to_datetime(
                [
                    "2025-01-01 09:00",
                    "2025-01-01 18:00",  # same day: one purchase of 15
                    "2025-01-08 10:00",
                    "2025-01-08 11:00",  # same day: one purchase of 30
                    "2025-02-01 10:00",  # after the calibration end: ignored
                    "2025-01-15 23:59",  # on the end day: counted, T = 0
                    "2025-01-20 10:00",  # first purchase after the end: no row
                ]
            ),
            "amount": [10.0, 5.0, 20.0, 10.0, 99.0, 7.0, 3.0],
        }
    )
    summary = summarize_transactions(transactions, calibration_end="2025-01-15", time_unit="days")
    assert list(summary.index) == ["a", "b"]
    assert summary.loc["a"].to_dict() == {
        "frequency": 1,
        "recency": 7.0,
        "T": 14.0,
        "monetary_value": 30.0,
    }
    assert summary.loc["b"].to_dict() == {
        "frequency": 0,
        "recency": 0.0,
        "T": 0.0,
        "monetary_value": 0.0,
    }
    weekly = summarize_transactions(transactions, calibration_end="2025-01-15", time_unit="weeks")
    assert weekly.loc["a", "recency"] == 1.0
    assert weekly.loc["a", "T"] == 2.0


def test_summary_counts_days_in_the_timezone_the_dates_carry() -> None:
    transactions = pd.DataFrame(
        {
            "customer_id": [1, 1],
            # 23:30 and 00:30 UTC are the same day (2025-03-02) in Madrid (UTC+1).
            "date": pd.to_datetime(["2025-03-01 23:30", "2025-03-02 00:30"], utc=True).tz_convert(
                "Europe/Madrid"
            ),
            "amount": [1.0, 2.0],
        }
    )
    summary = summarize_transactions(transactions, calibration_end="2025-03-10", time_unit="days")
    assert summary.loc[1, "frequency"] == 0
    assert summary.loc[1, "T"] == 8.0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda df: df.drop(columns="amount"), "amount"),
        (lambda df: df.assign(date=["2025-01-01", "not a date"]), "date"),
        (lambda df: df.assign(amount=[1.0, math.nan]), "amount"),
        (lambda df: df.assign(customer_id=[1, None]), "customer_id"),
    ],
)
def test_summary_names_the_bad_field(
    change: Callable[[pd.DataFrame], pd.DataFrame], field: str
) -> None:
    transactions = pd.DataFrame(
        {"customer_id": [1, 2], "date": ["2025-01-01", "2025-01-02"], "amount": [1.0, 2.0]}
    )
    with pytest.raises(ValidationError) as caught:
        summarize_transactions(change(transactions), calibration_end="2025-02-01")
    assert caught.value.field == field


# ---------------------------------------------------------------- published CDNOW fits


def test_bgnbd_reproduces_the_published_cdnow_fit(cdnow_summary: pd.DataFrame) -> None:
    data = (cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    model = fit_bgnbd(*data)
    assert model.converged
    assert model.n_customers == 2357
    for name in ("r", "alpha", "a", "b"):
        assert sig3(getattr(model, name)) == sig3(getattr(PUBLISHED_BGNBD, name)), name
    assert round(model.log_likelihood, 1) == -9582.4
    # The published parameters themselves give the published log-likelihood.
    assert round(bgnbd_log_likelihood(PUBLISHED_BGNBD, *data), 1) == -9582.4
    assert bgnbd_log_likelihood(model, *data) == pytest.approx(model.log_likelihood, abs=1e-8)


def test_bgnbd_on_the_summary_built_from_transactions(cdnow_calibration: pd.DataFrame) -> None:
    model = fit_bgnbd(
        cdnow_calibration["frequency"], cdnow_calibration["recency"], cdnow_calibration["T"]
    )
    for name in ("r", "alpha", "a", "b"):
        assert sig3(getattr(model, name)) == sig3(getattr(PUBLISHED_BGNBD, name)), name
    assert round(model.log_likelihood, 1) == -9582.4


def test_paretonbd_reproduces_the_published_cdnow_fit(cdnow_summary: pd.DataFrame) -> None:
    data = (cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    model = fit_paretonbd(*data)
    assert model.converged
    for name in ("r", "alpha", "s", "beta"):
        assert sig3(getattr(model, name)) == sig3(getattr(PUBLISHED_PARETONBD, name)), name
    assert round(model.log_likelihood, 1) == -9595.0
    assert round(paretonbd_log_likelihood(PUBLISHED_PARETONBD, *data), 1) == -9595.0


def test_gamma_gamma_reproduces_the_published_cdnow_fit(cdnow_calibration: pd.DataFrame) -> None:
    repeat = cdnow_calibration[cdnow_calibration["frequency"] > 0]
    assert len(repeat) == 946
    model = fit_gamma_gamma(repeat["frequency"], repeat["monetary_value"])
    assert model.converged
    assert model.n_customers == 946
    for name in ("p", "q", "gamma"):
        assert sig3(getattr(model, name)) == sig3(getattr(PUBLISHED_GAMMA_GAMMA, name)), name
    # Customers without repeat purchases are left out of the fit, not refused.
    everyone = fit_gamma_gamma(cdnow_calibration["frequency"], cdnow_calibration["monetary_value"])
    assert everyone.log_likelihood == pytest.approx(model.log_likelihood)
    assert gamma_gamma_log_likelihood(
        model, repeat["frequency"], repeat["monetary_value"]
    ) == pytest.approx(model.log_likelihood)


def test_bgnbd_published_conditional_expectation() -> None:
    # FHL (2005): E[Y(39) | x = 2, t_x = 30.43, T = 38.86] = 1.226 for the CDNOW fit.
    assert PUBLISHED_BGNBD.expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)


# ---------------------------------------------------------------- recovery from simulations
# 20,000 simulated customers of ages in [26, 78] weeks. Tolerances are about four
# standard deviations of each estimate's sampling spread, measured over 30 seeds.


def test_bgnbd_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(7)
    age = rng.uniform(26, 78, 20_000)
    frequency, recency = simulate_bgnbd(PUBLISHED_BGNBD, age, rng=rng)
    model = fit_bgnbd(frequency, recency, age)
    assert model.converged
    tolerance = {"r": 0.08, "alpha": 0.12, "a": 0.20, "b": 0.30}
    for name, rtol in tolerance.items():
        assert getattr(model, name) == pytest.approx(getattr(PUBLISHED_BGNBD, name), rel=rtol)


def test_paretonbd_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(7)
    # Whole-week ages (weekly cohorts), so the many customers without repeat purchases share
    # rows and the hypergeometric terms are evaluated fewer times.
    age = rng.integers(26, 79, 20_000).astype(float)
    frequency, recency = simulate_paretonbd(PUBLISHED_PARETONBD, age, rng=rng)
    model = fit_paretonbd(frequency, recency, age)
    assert model.converged
    tolerance = {"r": 0.14, "alpha": 0.12, "s": 0.26, "beta": 0.50}
    for name, rtol in tolerance.items():
        assert getattr(model, name) == pytest.approx(getattr(PUBLISHED_PARETONBD, name), rel=rtol)


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(7)
    frequency = 1 + rng.poisson(2.0, 20_000)
    spend = simulate_gamma_gamma(PUBLISHED_GAMMA_GAMMA, frequency, rng=rng)
    model = fit_gamma_gamma(frequency, spend)
    tolerance = {"p": 0.20, "q": 0.06, "gamma": 0.26}
    for name, rtol in tolerance.items():
        assert getattr(model, name) == pytest.approx(getattr(PUBLISHED_GAMMA_GAMMA, name), rel=rtol)


def test_fit_handles_many_customers_at_day_resolution() -> None:
    rng = np.random.default_rng(3)
    age = rng.integers(1, 366, 100_000).astype(float)
    frequency, recency = simulate_bgnbd(BgNbd(r=0.25, alpha=30.0, a=0.8, b=2.5), age, rng=rng)
    model = fit_bgnbd(frequency, np.floor(recency), age)
    assert model.converged
    assert model.n_customers == 100_000


# ---------------------------------------------------------------- gradients


def _central_difference(function: Callable[[np.ndarray], float], at: np.ndarray) -> np.ndarray:
    gradient = np.empty_like(at)
    for i in range(at.size):
        step = 1e-6 * at[i]
        up, down = at.copy(), at.copy()
        up[i] += step
        down[i] -= step
        gradient[i] = (function(up) - function(down)) / (2 * step)
    return gradient


@pytest.mark.parametrize(
    "params",
    [
        (0.243, 4.414, 0.793, 2.426),
        (1.0, 1.0, 1.0, 1.0),
        (0.5, 20.0, 2.0, 0.5),
        (3.0, 2.0, 0.2, 9.0),
    ],
)
def test_bgnbd_gradient_matches_finite_differences(
    params: tuple[float, float, float, float], cdnow_summary: pd.DataFrame
) -> None:
    # CDNOW plus a few heavy buyers, so large-frequency terms are exercised too.
    frequency = np.concatenate([cdnow_summary["frequency"], [150, 400, 80]])
    recency = np.concatenate([cdnow_summary["recency"], [38.0, 10.0, 20.0]])
    age = np.concatenate([cdnow_summary["T"], [38.86, 38.86, 20.0]])

    def log_likelihood(theta: np.ndarray) -> float:
        model = BgNbd(r=theta[0], alpha=theta[1], a=theta[2], b=theta[3])
        return bgnbd_log_likelihood(model, frequency, recency, age)

    at = np.array(params)
    analytic = bgnbd_log_likelihood_gradient(BgNbd(*params), frequency, recency, age)
    numeric = _central_difference(log_likelihood, at)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-4)


def test_gamma_gamma_gradient_matches_finite_differences(cdnow_calibration: pd.DataFrame) -> None:
    repeat = cdnow_calibration[cdnow_calibration["frequency"] > 0]
    x = repeat["frequency"].to_numpy(dtype=float)
    m_x = repeat["monetary_value"].to_numpy()
    for params in ([6.25, 3.74, 15.44], [1.0, 2.0, 30.0], [20.0, 1.5, 3.0]):
        at = np.array(params)
        _, analytic = gammagamma_module._log_likelihood(at, x, m_x)
        numeric = _central_difference(
            lambda theta: gammagamma_module._log_likelihood(theta, x, m_x)[0], at
        )
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------- closed forms vs integrals


def _bgnbd_expectation_by_integration(
    model: BgNbd, t: float, x: int, t_x: float, age: float
) -> float:
    """E[Y(t) | x, t_x, T] by integrating over the dropout probability p numerically.

    Given λ and p a customer alive at T buys (1 − e^(−λpt))/p times in (T, T+t]; integrating
    λ out in closed form leaves one integral over p with the Beta(a, b) weight.
    """
    r, alpha, a, b = model.r, model.alpha, model.a, model.b

    def alive_then_buys(p: float) -> float:
        if p == 0.0:  # the limit as p → 0: λ t on average, integrated over λ
            return (r + x) * t / (alpha + age)
        ratio = (alpha + age) / (alpha + age + p * t)
        return float((1 - p) ** x / p * -math.expm1((r + x) * math.log(ratio)))

    numerator, _ = quad(alive_then_buys, 0, 1, weight="alg", wvar=(a - 1, b - 1), epsrel=1e-12)
    evidence = math.exp(betaln(a, b + x))
    if x > 0:
        odds = ((alpha + age) / (alpha + t_x)) ** (r + x)
        evidence += math.exp(betaln(a + 1, b + x - 1)) * odds
    return numerator / evidence


@pytest.mark.parametrize(
    "model",
    [
        PUBLISHED_BGNBD,
        BgNbd(r=2.0, alpha=10.0, a=1.5, b=3.0),
        BgNbd(r=0.5, alpha=5.0, a=1.0, b=2.0),
    ],
)
@pytest.mark.parametrize(
    ("x", "t_x", "age"), [(0, 0.0, 39.0), (2, 30.43, 38.86), (10, 38.0, 39.0), (60, 39.0, 39.0)]
)
@pytest.mark.parametrize("t", [1.0, 39.0, 400.0])
def test_bgnbd_conditional_expectation_matches_integration(
    model: BgNbd, x: int, t_x: float, age: float, t: float
) -> None:
    expected = _bgnbd_expectation_by_integration(model, t, x, t_x, age)
    assert model.expected_purchases(t, x, t_x, age) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "model",
    [PUBLISHED_PARETONBD, ParetoNbd(r=0.553, alpha=11.669, s=0.606, beta=10.578)],  # α ≥ β, α < β
)
@pytest.mark.parametrize(
    ("x", "t_x", "age"),
    [(0, 0.0, 39.0), (2, 30.43, 38.86), (50, 10.0, 39.0), (500, 38.0, 39.0), (3, 39.0, 39.0)],
)
def test_paretonbd_likelihood_matches_integration(
    model: ParetoNbd, x: int, t_x: float, age: float
) -> None:
    """log L against s ∫ (α+τ)^−(r+x) (β+τ)^−(s+1) dτ done by quadrature (Fader-Hardie note)."""
    r, alpha, s, beta = model.r, model.alpha, model.s, model.beta
    scale = -(r + x) * math.log(alpha + age) - s * math.log(beta + age)  # log of the alive term

    def integrand(tau: float) -> float:
        return math.exp(-(r + x) * math.log(alpha + tau) - (s + 1) * math.log(beta + tau) - scale)

    dropped, _ = quad(integrand, t_x, age, epsabs=0, epsrel=1e-12) if t_x < age else (0.0, 0.0)
    head = math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha) + s * math.log(beta)
    expected = head + scale + math.log1p(s * dropped)
    assert paretonbd_log_likelihood(model, x, t_x, age) == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------- sanity


def test_bgnbd_probability_alive_is_one_without_repeat_purchases() -> None:
    alive = PUBLISHED_BGNBD.probability_alive([0, 0, 0], [0, 0, 0], [0.0, 10.0, 1000.0])
    np.testing.assert_array_equal(alive, [1.0, 1.0, 1.0])


def test_expectations_grow_with_frequency_at_recency_equal_to_age() -> None:
    frequency = np.arange(0, 200)
    age = np.full(frequency.shape, 39.0)
    recency = np.where(frequency > 0, age, 0.0)
    for model in (PUBLISHED_BGNBD, PUBLISHED_PARETONBD):
        expected = model.expected_purchases(39.0, frequency, recency, age)
        assert np.all(np.isfinite(expected))
        assert np.all(np.diff(expected) > 0), type(model).__name__
    # With the last purchase just made, BG/NBD's P(alive) rises with frequency (x >= 1) and
    # Pareto/NBD's is exactly 1.
    alive = PUBLISHED_BGNBD.probability_alive(frequency[1:], recency[1:], age[1:])
    assert np.all(np.diff(alive) > 0)
    np.testing.assert_allclose(
        PUBLISHED_PARETONBD.probability_alive(frequency[1:], recency[1:], age[1:]), 1.0
    )


def test_probabilities_fall_as_the_customer_stays_silent() -> None:
    recency = np.linspace(0.5, 39.0, 50)
    for model in (PUBLISHED_BGNBD, PUBLISHED_PARETONBD):
        alive = model.probability_alive(5, recency, 39.0)
        assert np.all((alive > 0) & (alive <= 1))
        assert np.all(np.diff(alive) > 0), type(model).__name__


def test_paretonbd_stays_finite_for_heavy_buyers_seen_at_the_end() -> None:
    # lifetimes returns NaN here (recency == T with a large frequency).
    frequency = np.array([1_000.0, 10_000.0, 10_000.0, 5_000.0])
    recency = np.array([39.0, 39.0, 39.0 - 1e-9, 1.0])
    age = np.full(4, 39.0)
    for values in (
        [
            paretonbd_log_likelihood(PUBLISHED_PARETONBD, f, t, T)
            for f, t, T in zip(frequency, recency, age, strict=True)
        ],
        PUBLISHED_PARETONBD.probability_alive(frequency, recency, age),
        PUBLISHED_PARETONBD.expected_purchases(39.0, frequency, recency, age),
    ):
        assert np.all(np.isfinite(values))
    alive = PUBLISHED_PARETONBD.probability_alive(frequency, recency, age)
    assert alive[0] == alive[1] == 1.0
    assert alive[2] == pytest.approx(1.0, abs=1e-4)
    assert alive[3] == 0.0


def test_new_customer_expectation_matches_the_simulated_mean() -> None:
    rng = np.random.default_rng(11)
    age = np.full(400_000, 52.0)
    for model, simulate in (
        (PUBLISHED_BGNBD, simulate_bgnbd),
        (PUBLISHED_PARETONBD, simulate_paretonbd),
    ):
        frequency, _ = simulate(model, age, rng=rng)
        standard_error = frequency.std() / math.sqrt(frequency.size)
        expected = float(model.expected_purchases_new_customer(52.0))
        assert abs(frequency.mean() - expected) < 4 * standard_error


def test_gamma_gamma_expected_spend_shrinks_towards_the_population_mean() -> None:
    model = PUBLISHED_GAMMA_GAMMA
    population = model.p * model.gamma / (model.q - 1)
    spend = model.expected_average_spend([0, 1, 10, 1000], [0.0, 100.0, 100.0, 100.0])
    assert spend[0] == pytest.approx(population)
    assert population < spend[1] < spend[2] < spend[3] < 100.0
    assert spend[3] == pytest.approx(100.0, rel=1e-3)


@pytest.mark.parametrize(
    ("frequency", "recency", "age", "field"),
    [
        (-1, 0.0, 10.0, "frequency"),
        (1.5, 1.0, 10.0, "frequency"),
        (2, 11.0, 10.0, "recency"),
        (0, 1.0, 10.0, "recency"),
        (2, 1.0, math.nan, "T"),
    ],
)
def test_models_name_the_bad_input(
    frequency: float, recency: float, age: float, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        PUBLISHED_BGNBD.probability_alive(frequency, recency, age)
    assert caught.value.field == field


def test_bad_parameters_and_spend_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        BgNbd(r=0.2, alpha=-1.0, a=1.0, b=1.0)
    assert caught.value.field == "alpha"
    with pytest.raises(ValidationError) as caught:
        fit_gamma_gamma([1, 2], [10.0, 0.0])
    assert caught.value.field == "monetary_value"


# ---------------------------------------------------------------- CLV


def test_clv_without_discount_is_spend_times_expected_purchases(
    cdnow_calibration: pd.DataFrame,
) -> None:
    data = cdnow_calibration
    rfm = (data["frequency"], data["recency"], data["T"])
    for purchases in (PUBLISHED_BGNBD, PUBLISHED_PARETONBD):
        value = customer_lifetime_value(
            purchases,
            PUBLISHED_GAMMA_GAMMA,
            *rfm,
            data["monetary_value"],
            months=6,
            monthly_discount_rate=0.0,
        )
        spend = PUBLISHED_GAMMA_GAMMA.expected_average_spend(
            data["frequency"], data["monetary_value"]
        )
        np.testing.assert_allclose(
            value, spend * purchases.expected_purchases(6 * 4.345, *rfm), rtol=1e-10
        )


def test_clv_discounts_each_month(cdnow_calibration: pd.DataFrame) -> None:
    row = cdnow_calibration.loc[1]
    rfm = (row["frequency"], row["recency"], row["T"])
    value = customer_lifetime_value(
        PUBLISHED_BGNBD,
        PUBLISHED_GAMMA_GAMMA,
        *rfm,
        row["monetary_value"],
        months=3,
        monthly_discount_rate=0.05,
    )
    spend = PUBLISHED_GAMMA_GAMMA.expected_average_spend(row["frequency"], row["monetary_value"])
    cumulative = [float(PUBLISHED_BGNBD.expected_purchases(k * 4.345, *rfm)) for k in range(4)]
    by_hand = sum(spend * (cumulative[k] - cumulative[k - 1]) / 1.05**k for k in range(1, 4))
    assert float(value) == pytest.approx(float(by_hand), rel=1e-12)


def test_clv_agrees_with_lifetimes_documented_output(
    cdnow_summary: pd.DataFrame, cdnow_calibration: pd.DataFrame
) -> None:
    # lifetimes' documented example fits BG/NBD in weeks and calls customer_lifetime_value
    # with its default freq="D" (30 units a month) and discount_rate=0.01 over 12 months,
    # printing 140.096218, 18.943466, 38.180575, 38.180575, 38.180575 for customers 1-5.
    purchases = fit_bgnbd(cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    repeat = cdnow_calibration[cdnow_calibration["frequency"] > 0]
    spend = fit_gamma_gamma(repeat["frequency"], repeat["monetary_value"])
    first = cdnow_calibration.loc[1:5]
    value = customer_lifetime_value(
        purchases,
        spend,
        first["frequency"],
        first["recency"],
        first["T"],
        first["monetary_value"],
        months=12,
        monthly_discount_rate=0.01,
        time_unit="days",
    )
    np.testing.assert_allclose(
        value, [140.096218, 18.943466, 38.180575, 38.180575, 38.180575], rtol=2e-3
    )


def test_clv_refuses_bad_horizons() -> None:
    with pytest.raises(ValidationError) as caught:
        customer_lifetime_value(PUBLISHED_BGNBD, PUBLISHED_GAMMA_GAMMA, 1, 1.0, 2.0, 10.0, months=0)
    assert caught.value.field == "months"


def test_expected_purchases_are_those_if_alive_times_p_alive() -> None:
    """To the last bit: the CLV section computes the first factor once per (x, T)."""
    frequency = np.array([0.0, 1.0, 2.0, 2.0, 7.0, 30.0])
    recency = np.array([0.0, 5.5, 10.0, 30.0, 31.0, 38.0])
    age = np.array([20.0, 30.0, 38.86, 38.86, 38.86, 38.86])
    for t in (4.345, 52.14):
        if_alive = PUBLISHED_BGNBD.expected_purchases_if_alive(t, frequency, age)
        alive = PUBLISHED_BGNBD.probability_alive(frequency, recency, age)
        expected = PUBLISHED_BGNBD.expected_purchases(t, frequency, recency, age)
        assert np.array_equal(if_alive * alive, expected)
        assert if_alive[2] == if_alive[3] and expected[2] != expected[3]
    with pytest.raises(ValidationError) as error:
        PUBLISHED_BGNBD.expected_purchases_if_alive(1.0, 1.0, -1.0)
    assert error.value.field == "T"
