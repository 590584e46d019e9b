"""Input checks, the compressed customer table and the optimizer shared by the models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize

from fideliza.core.errors import ValidationError

FloatArray = NDArray[np.float64]

# Log-parameters are kept in a box so that exp() never overflows and a degenerate data set
# (nobody ever drops out, say) ends on the boundary instead of running off to infinity.
_LOG_PARAM_BOUND = 20.0


def as_float_array(values: ArrayLike, *, field: str) -> FloatArray:
    """Returns `values` as a float64 array, refusing anything that is not a finite number."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError("must be numbers", field=field) from None
    if not np.all(np.isfinite(array)):
        raise ValidationError("must be finite numbers (no NaN or infinity)", field=field)
    return array


def check_frequency(values: ArrayLike) -> FloatArray:
    """Returns the repeat-purchase counts, refusing negative or fractional ones."""
    frequency = as_float_array(values, field="frequency")
    if np.any(frequency < 0):
        raise ValidationError("must be >= 0 (repeat purchases)", field="frequency")
    if np.any(frequency != np.floor(frequency)):
        raise ValidationError("must be whole numbers (repeat purchases)", field="frequency")
    return frequency


def check_rfm(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Returns (frequency, recency, T) broadcast together, checking 0 <= recency <= T."""
    x = check_frequency(frequency)
    t_x = as_float_array(recency, field="recency")
    age = as_float_array(T, field="T")
    try:
        x, t_x, age = np.broadcast_arrays(x, t_x, age)
    except ValueError:
        raise ValidationError(
            f"frequency, recency and T have incompatible shapes {x.shape}, {t_x.shape}, "
            f"{age.shape}",
            field="T",
        ) from None
    if np.any(t_x < 0):
        raise ValidationError("must be >= 0", field="recency")
    if np.any(t_x > age):
        raise ValidationError("must not exceed T (the customer's age)", field="recency")
    if np.any((x == 0) & (t_x != 0)):
        raise ValidationError("must be 0 for customers with frequency 0", field="recency")
    return x, t_x, age


def check_horizon(t: ArrayLike) -> FloatArray:
    """Returns the prediction horizon `t`, refusing negative values."""
    horizon = as_float_array(t, field="t")
    if np.any(horizon < 0):
        raise ValidationError("must be >= 0 (length of the prediction period)", field="t")
    return horizon


@dataclass(frozen=True, slots=True)
class CustomerTable:
    """Distinct (frequency, recency, T) rows with how many customers share each."""

    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    weight: FloatArray
    n_customers: int


def compress(x: FloatArray, t_x: FloatArray, T: FloatArray) -> CustomerTable:
    """Groups identical customers so the likelihood is evaluated once per distinct row."""
    if x.size == 0:
        raise ValidationError("needs at least one customer", field="frequency")
    # Hash grouping (pandas) is ~15x faster than np.unique(axis=0) on a million rows.
    counts = (
        pd.DataFrame({"x": x.ravel(), "t_x": t_x.ravel(), "T": T.ravel()})
        .value_counts(sort=False)
        .sort_index()
    )
    index = counts.index
    return CustomerTable(
        x=index.get_level_values(0).to_numpy(dtype=np.float64),
        t_x=index.get_level_values(1).to_numpy(dtype=np.float64),
        T=index.get_level_values(2).to_numpy(dtype=np.float64),
        weight=np.asarray(counts.to_numpy(), dtype=np.float64),
        n_customers=int(x.size),
    )


def dot(left: FloatArray, right: FloatArray) -> float:
    """Σ left·right without BLAS: a threaded BLAS dot product on a busy machine spins its
    threads and made each likelihood evaluation up to a thousand times slower."""
    return float(np.sum(left * right))


def mean_purchase_rate(table: CustomerTable) -> float:
    """Repeat purchases per unit of customer age over all customers: a scale for α to start at."""
    purchases = dot(table.weight, table.x)
    exposure = dot(table.weight, table.T)
    if purchases <= 0 or exposure <= 0:
        return 1.0
    return purchases / exposure


@dataclass(frozen=True, slots=True)
class Optimum:
    """Where the optimizer stopped: parameters, log-likelihood and whether it converged."""

    params: FloatArray
    log_likelihood: float
    converged: bool


def maximize_log_likelihood(
    objective: Callable[[FloatArray], tuple[float, FloatArray]] | Callable[[FloatArray], float],
    start: FloatArray,
    *,
    n_customers: int,
    with_gradient: bool,
) -> Optimum:
    """Maximizes a total log-likelihood over positive parameters with L-BFGS-B on their logs.

    `objective(params)` returns the total log-likelihood (and its gradient with respect to the
    parameters when `with_gradient`).
    """
    scale = 1.0 / n_customers  # the mean log-likelihood keeps the optimizer's tolerances sane

    def negative_mean(log_params: FloatArray) -> tuple[float, FloatArray] | float:
        params = np.exp(log_params)
        if with_gradient:
            value, gradient = objective(params)  # type: ignore[misc]
            # d/d(log θ) = θ · d/dθ
            return -value * scale, -(gradient * params) * scale
        return -float(objective(params)) * scale  # type: ignore[arg-type]

    bounds = [(-_LOG_PARAM_BOUND, _LOG_PARAM_BOUND)] * len(start)
    result = minimize(
        negative_mean,
        np.log(start),
        jac=with_gradient,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
    )
    if not np.isfinite(result.fun):
        raise ValidationError("the log-likelihood is not finite for these data", field="frequency")
    params = np.exp(result.x)
    # L-BFGS-B often stops with a line-search warning once it sits on the optimum to machine
    # precision; a small projected gradient is what convergence means here.
    gradient = np.atleast_1d(result.jac) if result.jac is not None else np.zeros(len(start))
    on_bound = np.abs(result.x) >= _LOG_PARAM_BOUND - 1e-9
    converged = bool(result.success or np.max(np.abs(gradient[~on_bound]), initial=0.0) < 1e-5)
    return Optimum(params=params, log_likelihood=-result.fun / scale, converged=converged)
