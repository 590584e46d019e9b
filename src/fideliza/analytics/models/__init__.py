"""Customer-base models: BG/NBD and Pareto/NBD for purchases, Gamma-Gamma for spend."""

from fideliza.analytics.models.bgnbd import (
    BgNbd,
    bgnbd_log_likelihood,
    bgnbd_log_likelihood_gradient,
    fit_bgnbd,
    simulate_bgnbd,
)
from fideliza.analytics.models.gammagamma import (
    GammaGamma,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    simulate_gamma_gamma,
)
from fideliza.analytics.models.paretonbd import (
    ParetoNbd,
    fit_paretonbd,
    paretonbd_log_likelihood,
    simulate_paretonbd,
)

__all__ = [
    "BgNbd",
    "GammaGamma",
    "ParetoNbd",
    "bgnbd_log_likelihood",
    "bgnbd_log_likelihood_gradient",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "fit_paretonbd",
    "gamma_gamma_log_likelihood",
    "paretonbd_log_likelihood",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "simulate_paretonbd",
]
