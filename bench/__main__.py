"""`make bench`: runs every benchmark in turn; each prints its own figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = [
    ["-m", "bench.bench_ingest"],
    ["-m", "bench.bench_redemptions"],
    [str(Path(__file__).parent / "bench_clv.py")],
    [str(Path(__file__).parent / "bench_analytics.py")],
    ["-m", "bench.bench_coupons"],
    ["-m", "bench.bench_messaging"],
    ["-m", "bench.bench_api"],
]


def main() -> None:
    for command in BENCHMARKS:
        print(f"\n=== {' '.join(command)} ===", flush=True)
        subprocess.run([sys.executable, *command], check=True)


if __name__ == "__main__":
    main()
