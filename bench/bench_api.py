"""HTTP API load benchmark: `fideliza serve` on PostgreSQL, a load generator in its own process.

(a) Throughput: C concurrent clients (closed loop) for S seconds of purchases, then S seconds
    of redemptions: requests/s and error rate.
(b) Latency: a constant arrival rate (open loop: each request leaves on schedule whether or not
    earlier ones have returned, and its latency counts from its scheduled time, so a stall is
    not hidden by requests that were never sent) of R purchases/s, then R' redemptions/s:
    p50, p95, p99.
The baseline, measured in the same run against the same server: `GET /healthz` (no database,
no auth) under the same load, which is what the server and the load generator cost alone.

    python -m bench.bench_api --seconds 60 --clients 64 --purchase-rate 500 --redeem-rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.bench_ingest import DEFAULT_POSTGRES, _drop_postgres, _fresh_postgres

ROOT = Path(__file__).parent.parent
MEMBERS = 2_000
START_POINTS = 1_000_000  # enough for every redemption of the run


@dataclass
class Tally:
    """Latencies (seconds) of successful requests, and the errors by status."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def failed(self, why: str) -> None:
        self.errors[why] = self.errors.get(why, 0) + 1

    def summary(self, seconds: float) -> dict[str, Any]:
        done = len(self.latencies)
        total = done + sum(self.errors.values())
        ordered = sorted(self.latencies)

        def pct(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return {
            "requests": total,
            "per_second": round(done / seconds, 1),
            "error_rate": round(1 - done / total, 4) if total else 0.0,
            "errors": self.errors,
            "p50_ms": pct(0.50) if ordered else None,
            "p95_ms": pct(0.95) if ordered else None,
            "p99_ms": pct(0.99) if ordered else None,
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2) if ordered else None,
        }


# --- the server side: a program, members with points, a pos key ----------------------------


def _prepare(url: str) -> dict[str, Any]:
    from fideliza.apikeys import service as apikeys
    from fideliza.db import make_engine, make_session_factory, unit_of_work
    from fideliza.ledger import service as ledger
    from fideliza.members import service as members
    from fideliza.migrations import upgrade
    from fideliza.programs import service as programs
    from fideliza.rules import service as rules

    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    with unit_of_work(factory) as db:
        program = programs.create(
            db,
            code="load",
            name="Load",
            currency="EUR",
            timezone="Europe/Madrid",
            now=now,
            settings={"return_window_days": 0},
        )
        rules.create(
            db,
            program=program,
            definition={
                "name": "1 point per euro",
                "actions": [{"type": "points_per_amount", "points": 1, "per": "1.00"}],
            },
            now=now,
        )
        key = apikeys.create(db, program=program, name="load", scopes=["pos"], now=now)[1]
        external_ids = [f"L{i:05d}" for i in range(MEMBERS)]
        members.enrol_many(
            db, program=program, now=now, rows=[{"external_id": e} for e in external_ids]
        )
        settings = programs.settings_of(program)
        found = members.ids_by_external_id(db, program_id=program.id, external_ids=external_ids)
        ids = [found[e] for e in external_ids]
        for member_id in ids:
            ledger.adjust(
                db,
                program_id=program.id,
                settings=settings,
                timezone_name=program.timezone,
                member_id=member_id,
                points=START_POINTS,
                reason="load test float",
                issuer="bench",
                now=now,
            )
    engine.dispose()
    return {"key": key, "member_ids": ids}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "FIDELIZA_DATABASE_URL": url,
        "FIDELIZA_LOG_LEVEL": "WARNING",
        "FIDELIZA_SENSITIVE_RATE_LIMIT": "0",
    }
    command = [str(Path(sys.executable).parent / "fideliza"), "serve", "--port", str(port)]
    command += ["--host", "127.0.0.1", "--workers", str(workers)]
    server = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.kill()
    raise SystemExit("fideliza serve did not become ready in 60 s")


# --- the load generator (its own process) ----------------------------------------------------


class Requests:
    """Builds each kind of request; every purchase and redemption is new (its own id)."""

    def __init__(self, key: str, member_ids: list[int]) -> None:
        self.headers = {"Authorization": f"Bearer {key}"}
        self.member_ids = member_ids
        self.run = secrets.token_hex(3)
        self.count = 0

    def next(self, kind: str) -> tuple[str, str, dict[str, Any] | None]:
        self.count += 1
        index = self.count % len(self.member_ids)
        if kind == "health":
            return "GET", "/healthz", None
        if kind == "purchase":
            return (
                "POST",
                "/v1/purchases",
                {
                    "external_id": f"T-{self.run}-{self.count}",
                    "member_id": f"L{index:05d}",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "amount": "12.50",
                    "currency": "EUR",
                    "items": [
                        {"sku": "COF", "category": "coffee", "quantity": 1, "unit_price": "12.50"}
                    ],
                },
            )
        return (
            "POST",
            f"/v1/members/{self.member_ids[index]}/redemptions",
            {"points": 10, "reason": "load test", "reference": f"R-{self.run}-{self.count}"},
        )


async def _one(client: httpx.AsyncClient, requests: Requests, kind: str, tally: Tally, t0: float):
    method, path, body = requests.next(kind)
    try:
        response = await client.request(method, path, json=body, headers=requests.headers)
    except httpx.HTTPError as error:
        tally.failed(error.__class__.__name__)
        return
    if response.status_code >= 300:
        tally.failed(str(response.status_code))
    else:
        tally.latencies.append(time.perf_counter() - t0)


async def closed_loop(base: str, requests: Requests, kind: str, clients: int, seconds: float):
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                await _one(client, requests, kind, tally, time.perf_counter())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return tally.summary(time.perf_counter() - started)


async def open_loop(base: str, requests: Requests, kind: str, rate: float, seconds: float):
    tally = Tally()
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        tasks = []
        started = time.perf_counter()
        for index in range(int(rate * seconds)):
            scheduled = started + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(client, requests, kind, tally, scheduled)))
        await asyncio.gather(*tasks)
        summary = tally.summary(time.perf_counter() - started)
        summary["offered_per_second"] = rate
        return summary


def _load(arguments: argparse.Namespace) -> None:
    setup = json.loads(Path(arguments.setup).read_text())
    requests = Requests(setup["key"], setup["member_ids"])
    base = f"http://127.0.0.1:{arguments.port}"
    seconds, clients = arguments.seconds, arguments.clients
    results: dict[str, Any] = {}
    for kind in ("health", "purchase", "redemption"):
        results[f"throughput_{kind}"] = asyncio.run(
            closed_loop(base, requests, kind, clients, seconds)
        )
    rates = {"health": arguments.purchase_rate, "purchase": arguments.purchase_rate}
    rates["redemption"] = arguments.redeem_rate
    for kind, rate in rates.items():
        results[f"latency_{kind}"] = asyncio.run(open_loop(base, requests, kind, rate, seconds))
    print(json.dumps(results))


def _report(results: dict[str, Any], arguments: argparse.Namespace) -> None:
    base = results["throughput_health"]["per_second"]
    print(f"  baseline GET /healthz, {arguments.clients} clients: {base:,.0f} req/s")
    for kind in ("purchase", "redemption"):
        found = results[f"throughput_{kind}"]
        print(
            f"  (a) {kind}s, {arguments.clients} clients, {arguments.seconds:.0f} s: "
            f"{found['per_second']:,.0f} req/s (baseline ÷ {base / found['per_second']:.1f}), "
            f"error rate {found['error_rate']:.2%} {found['errors'] or ''}"
        )
    for kind in ("health", "purchase", "redemption"):
        found = results[f"latency_{kind}"]
        print(
            f"  (b) {kind} at {found['offered_per_second']:.0f}/s open loop: "
            f"p50 {found['p50_ms']} ms, p95 {found['p95_ms']} ms, p99 {found['p99_ms']} ms, "
            f"achieved {found['per_second']:,.0f}/s, error rate {found['error_rate']:.2%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--purchase-rate", type=float, default=500)
    parser.add_argument("--redeem-rate", type=float, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--postgres", default=os.environ.get("FIDELIZA_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--phase", choices=["load"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--setup")
    arguments = parser.parse_args()
    if arguments.phase == "load":
        _load(arguments)
        return
    print(
        f"HTTP API load: fideliza serve ({arguments.workers} workers) on PostgreSQL, "
        f"{MEMBERS:,} members"
    )
    url = _fresh_postgres(arguments.postgres)
    if url is None:
        return
    server = None
    try:
        setup = _prepare(url)
        setup_file = ROOT / "bench" / "out" / "api-setup.json"
        setup_file.parent.mkdir(exist_ok=True)
        setup_file.write_text(json.dumps(setup))
        port = _free_port()
        server = _serve(url, port, arguments.workers)
        command = [sys.executable, "-m", "bench.bench_api", "--phase", "load"]
        command += ["--port", str(port), "--setup", str(setup_file)]
        for option in ("seconds", "clients", "purchase_rate", "redeem_rate"):
            command += [f"--{option.replace('_', '-')}", str(getattr(arguments, option))]
        done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
        _report(json.loads(done.stdout.strip().splitlines()[-1]), arguments)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        _drop_postgres(arguments.postgres, url)


if __name__ == "__main__":
    main()
