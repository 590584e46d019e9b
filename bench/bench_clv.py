"""Times the BG/NBD fit on simulated customers; prints figures, asserts nothing.

    python bench/bench_clv.py [--customers 1000000] [--repeat 3] [--seed 1]

Customers are simulated from the BG/NBD process with CDNOW-like parameters in days, acquired
uniformly over a year (T = 1..365 whole days). Two data sets are fit: recency rounded to whole
days, as `summarize_transactions` produces from real transactions, and recency in continuous
time (no two customers alike: the worst case for grouping identical customers). Then
`lifetimes`' BetaGeoFitter is timed on the same day-resolution data and the ratio printed. It
is never a dependency of the project: it runs in the benchmark's own venv (bench/out/
venv-lifetimes, created with `pip install lifetimes` on first use; `--no-lifetimes` skips it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fideliza.analytics.models import (
    BgNbd,
    bgnbd_log_likelihood,
    fit_bgnbd,
    simulate_bgnbd,
)

OUT = Path(__file__).resolve().parent / "out"
TRUE = BgNbd(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)  # the CDNOW fit, α in days


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """Returns the fastest of `repeat` runs in seconds and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        result = run()
        best = min(best, time.perf_counter() - started)
        CPU_SECONDS.append(time.process_time() - cpu)
    return best, result


# CPU seconds of each run (the fair figure on a shared machine, where wall time mostly
# measures the other processes).
CPU_SECONDS: list[float] = []


def peak_mib(run: Callable[[], Any]) -> float:
    """Peak memory traced by tracemalloc while `run` runs (numpy buffers included), in MiB."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def describe(r: float, alpha: float, a: float, b: float) -> str:
    return f"r={r:.4f} alpha={alpha:.3f} a={a:.4f} b={b:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--lifetimes-venv",
        default=str(OUT / "venv-lifetimes"),
        help="venv for lifetimes (created with `pip install lifetimes` when missing)",
    )
    parser.add_argument("--no-lifetimes", action="store_true", help="skip the comparison")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    age = rng.integers(1, 366, args.customers).astype(np.float64)
    frequency, recency = simulate_bgnbd(TRUE, age, rng=rng)
    recency_days = np.floor(recency)
    print(f"simulated {args.customers:,} customers in {time.perf_counter() - started:.2f} s")
    print(f"  true:        {describe(TRUE.r, TRUE.alpha, TRUE.a, TRUE.b)}")
    print(
        f"  repeat buyers {np.mean(frequency > 0):.1%}, mean frequency {frequency.mean():.3f}, "
        f"max {int(frequency.max())}"
    )

    ours: dict[str, float] = {}
    for label, rec in (("days", recency_days), ("continuous", recency)):
        CPU_SECONDS.clear()
        seconds, model = best_of(args.repeat, partial(fit_bgnbd, frequency, rec, age))
        ours[label] = seconds
        ours[f"{label} cpu"] = min(CPU_SECONDS)
        print(
            f"fideliza fit_bgnbd, recency in {label:<10}: {seconds:6.2f} s (best of "
            f"{args.repeat})  {describe(model.r, model.alpha, model.a, model.b)}  "
            f"LL={model.log_likelihood:.1f} converged={model.converged} "
            f"(CPU {ours[f'{label} cpu']:.2f} s)"
        )
    memory = peak_mib(lambda: fit_bgnbd(frequency, recency_days, age))
    print(f"fideliza fit_bgnbd peak traced memory (days): {memory:.0f} MiB")

    compare_lifetimes(args, frequency, recency_days, age, ours["days"], ours["days cpu"])


# Runs in the benchmark's own environment (never the project's): times BetaGeoFitter on the
# saved arrays and prints one JSON line.
_LIFETIMES_FIT = """
import json, sys, time, tracemalloc
import numpy as np
from lifetimes import BetaGeoFitter
data = np.load(sys.argv[1])
f, r, t = data["frequency"], data["recency"], data["T"]
started, cpu = time.perf_counter(), time.process_time()
fitter = BetaGeoFitter().fit(f, r, t)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
tracemalloc.start()
BetaGeoFitter().fit(f, r, t)
peak = tracemalloc.get_traced_memory()[1] / 2**20
p = fitter.params_
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": peak, "r": float(p["r"]),
                  "alpha": float(p["alpha"]), "a": float(p["a"]), "b": float(p["b"])}))
"""


def lifetimes_python(venv: Path) -> Path | None:
    """The interpreter of a venv holding `lifetimes`, created under bench/out on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with lifetimes (the benchmark's own environment)", flush=True)
        made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=False)
        installed = made.returncode == 0 and (
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "lifetimes"], check=False
            ).returncode
            == 0
        )
        if not installed:
            print("lifetimes did not install: no comparison (see pip's message above)")
            return None
    check = subprocess.run(
        [str(python), "-c", "import lifetimes"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        print(f"lifetimes is not importable in {venv}: {check.stderr.strip().splitlines()[-1]}")
        return None
    return python


def compare_lifetimes(
    args: argparse.Namespace,
    frequency: np.ndarray,
    recency_days: np.ndarray,
    age: np.ndarray,
    ours_seconds: float,
    ours_cpu: float,
) -> None:
    """Fits lifetimes' BetaGeoFitter on the same day-resolution data in its own venv."""
    if args.no_lifetimes:
        return
    python = lifetimes_python(Path(args.lifetimes_venv))
    if python is None:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    arrays = OUT / f"clv-{args.customers}-{args.seed}.npz"
    np.savez(arrays, frequency=frequency, recency=recency_days, T=age)
    run = subprocess.run(
        [str(python), "-c", _LIFETIMES_FIT, str(arrays)],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        print(f"lifetimes failed: {run.stderr.strip().splitlines()[-1]}")
        return
    result = json.loads(run.stdout.strip().splitlines()[-1])
    theirs = BgNbd(r=result["r"], alpha=result["alpha"], a=result["a"], b=result["b"])
    print(
        f"lifetimes BetaGeoFitter, recency in days      : {result['seconds']:6.2f} s "
        "(one run)        "
        f"{describe(theirs.r, theirs.alpha, theirs.a, theirs.b)}  "
        # lifetimes' own figure is on its internally rescaled times: recompute it here
        f"LL={bgnbd_log_likelihood(theirs, frequency, recency_days, age):.1f}"
    )
    print(f"lifetimes peak traced memory: {result['peak_mib']:.0f} MiB")
    print(
        f"ratio lifetimes / fideliza (days): {result['seconds'] / ours_seconds:.1f}x wall, "
        f"{result['cpu'] / ours_cpu:.1f}x CPU ({result['cpu']:.2f} s vs {ours_cpu:.2f} s)"
    )


if __name__ == "__main__":
    main()
