"""Coupon codes benchmark: generate and store N unique codes, then validate codes one by one.

For each backend (SQLite; PostgreSQL with --postgres) it measures, in the same run:
- the baseline: a bare INSERT of N pre-generated random strings into a table with only a
  unique index on the code (executemany on SQLite, COPY on PostgreSQL) — no generation, no
  check characters, no other column or index;
- the engine: `coupons.service.generate_codes` (CSPRNG draw, check characters, distinctness,
  the real `coupon_codes` table with its four indexes and constraints), committed;
- validation: `coupons.service.validate` of random stored codes, each in its own session (as a
  request would), p50/p99 in process; and the rejection of a typo (no database).

    python -m bench.bench_coupons --count 1000000
    python -m bench.bench_coupons --count 20000 --validations 200   (smoke test)

Target (issue 5): 1,000,000 codes stored in <= 5 s on SQLite (Voucherify quotes ~60 s for
100,000). Absolute figures depend on the machine's load; the ratio to the baseline does not.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

from bench.databases import create_postgres, drop_postgres

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _baseline(url: str, count: int) -> float:
    """Seconds to insert `count` pre-generated random strings with a unique index, committed."""
    from fideliza.db import make_engine

    strings = [secrets.token_hex(8) for _ in range(count)]  # 64 random bits, like the codes
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS bench_baseline_codes"))
            connection.execute(
                text("CREATE TABLE bench_baseline_codes (id BIGINT, code VARCHAR(64) UNIQUE)")
            )
        started = time.perf_counter()
        with engine.begin() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            if engine.dialect.name == "sqlite":
                cursor = raw.cursor()
                cursor.executemany(
                    "INSERT INTO bench_baseline_codes (id, code) VALUES (?, ?)",
                    list(enumerate(strings)),
                )
                cursor.close()
            else:
                with (
                    raw.cursor() as cursor,
                    cursor.copy("COPY bench_baseline_codes (id, code) FROM STDIN") as copy,
                ):
                    for row in enumerate(strings):
                        copy.write_row(row)
        elapsed = time.perf_counter() - started
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE bench_baseline_codes"))
        return elapsed
    finally:
        engine.dispose()


def _engine_run(url: str, count: int, validations: int) -> dict[str, float]:
    import fideliza.schema  # noqa: F401 - every table mapped
    from fideliza.core import codes
    from fideliza.core.errors import ValidationError
    from fideliza.coupons import service as coupons
    from fideliza.coupons.domain import parse_basket
    from fideliza.db import make_engine, make_session_factory, unit_of_work
    from fideliza.programs import service as programs

    engine = make_engine(url)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    try:
        with unit_of_work(factory) as db:
            program = programs.create(
                db,
                code=f"bench-{secrets.token_hex(4)}",
                name="Bench",
                currency="EUR",
                timezone="UTC",
                now=now,
            )
            campaign = coupons.create_campaign(
                db,
                program_id=program.id,
                data={
                    "code": "bench",
                    "name": "Bench",
                    "discount": {"type": "percent", "percent": "10"},
                    "max_uses_per_code": 1,
                },
                now=now,
            )
        started = time.perf_counter()
        with unit_of_work(factory) as db:
            stored = coupons.generate_codes(
                db, program_id=program.id, campaign_id=campaign.id, count=count, now=now
            )
        generate_s = time.perf_counter() - started

        basket = parse_basket(Decimal("42.00"), "EUR")
        picks = [secrets.choice(stored) for _ in range(validations)]
        latencies_ms: list[float] = []
        for code in picks:
            shown = coupons.display(code, campaign)
            started = time.perf_counter()
            with factory() as db:
                coupons.validate(db, program_id=program.id, code=shown, basket=basket, now=now)
            latencies_ms.append((time.perf_counter() - started) * 1000)

        typo_ms: list[float] = []
        for code in picks:
            typo = code[:-1] + ("2" if code[-1] != "2" else "3")
            started = time.perf_counter()
            try:
                codes.check(typo)
            except ValidationError:
                typo_ms.append((time.perf_counter() - started) * 1000)
            else:
                raise AssertionError(f"a typo got through its check character: {typo}")
        return {
            "generate_s": generate_s,
            "validate_p50_ms": _percentile(latencies_ms, 50),
            "validate_p99_ms": _percentile(latencies_ms, 99),
            "typo_p50_ms": _percentile(typo_ms, 50),
        }
    finally:
        engine.dispose()


def _percentile(values: list[float], percent: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def _sqlite_url(folder: Path) -> str:
    from fideliza.migrations import upgrade

    url = f"sqlite:///{folder / 'bench-coupons.db'}"
    upgrade(url)
    return url


def _report(backend: str, count: int, baseline_s: float, figures: dict[str, float]) -> None:
    generate_s = figures["generate_s"]
    print(f"{backend}: {count:,} codes")
    print(f"  baseline (insert pre-generated strings): {baseline_s:6.2f} s")
    print(
        f"  generate + store (coupons):              {generate_s:6.2f} s  "
        f"({count / generate_s:,.0f} codes/s, {generate_s / baseline_s:.2f}x the baseline)"
    )
    if backend == "sqlite" and count >= 1_000_000:
        verdict = "met" if generate_s <= 5 else "NOT met on this run"
        print(f"  target <= 5 s for 1,000,000 on SQLite:   {verdict}")
    print(
        f"  validate a code: p50 {figures['validate_p50_ms']:.3f} ms, "
        f"p99 {figures['validate_p99_ms']:.3f} ms (own session each, in process)"
    )
    print(f"  typo rejected by its check character: p50 {figures['typo_p50_ms']:.4f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="codes to generate")
    parser.add_argument("--validations", type=int, default=2000, help="codes to validate")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_POSTGRES,
        default=None,
        help=f"also run on this PostgreSQL server (default {DEFAULT_POSTGRES})",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = _sqlite_url(Path(folder))
        baseline_s = _baseline(url, args.count)
        _report("sqlite", args.count, baseline_s, _engine_run(url, args.count, args.validations))
    if args.postgres:
        url = create_postgres(args.postgres, migrate=True)
        try:
            baseline_s = _baseline(url, args.count)
            figures = _engine_run(url, args.count, args.validations)
            _report("postgresql", args.count, baseline_s, figures)
        finally:
            drop_postgres(args.postgres, url)


if __name__ == "__main__":
    main()
