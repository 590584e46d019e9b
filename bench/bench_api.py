"""HTTP API load benchmark: `fideliza serve` on PostgreSQL, the load generator in its own process.

(a) Throughput: C concurrent clients (closed loop) for D seconds of purchases, then D seconds
    of redemptions: requests/s and error rate.
(b) Latency: a constant arrival rate, open loop, of R purchases/s for D seconds, then R'
    redemptions/s: p50, p95, p99. Each request leaves on schedule whether or not earlier ones
    have returned, and its latency counts from its scheduled time, so a stall shows instead of
    hiding behind requests that were never sent.

Baselines, measured in the same run on the same machine, so that figures read as ratios:
- `hello`: a bare ASGI app that answers `{"status":"ok"}` under uvicorn with the same number of
  workers: what the HTTP server and the load generator cost alone;
- `GET /healthz` of the fideliza app (no database, no auth): what the app's middleware adds.

Each phase also prints the CPU time the server processes (and the PostgreSQL backends serving
the bench database) spent per request, read from /proc: on a shared machine it moves much less
than requests/s or latency do.

The run always ends: every request has a timeout (counted as an error), the open loop caps
the requests outstanding (a request that would exceed the cap is counted as an `overload`
error, not sent), the load process has a deadline, and the servers it starts are stopped
(their whole process group) whatever happens.

    python -m bench.bench_api                                  # the issue's parameters
    python -m bench.bench_api --duration 10 --clients 32 --rate 200 --redeem-rate 100
    python -m bench.bench_api --app some.module:create_app   # a variant of the app, same load
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
OUT = ROOT / "bench" / "out"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MEMBERS = 2_000
START_POINTS = 1_000_000  # enough for every redemption of the run
HOST = "127.0.0.1"


# --- the baseline app: a bare ASGI hello (uvicorn imports it by name) ------------------------

_HELLO = b'{"status":"ok"}'


async def hello(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    """`{"status":"ok"}` for every HTTP request (reads the body, as a real app would)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"15")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _HELLO})


# --- tallies ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """Latencies (seconds) of successful requests, and the failures by cause."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def failed(self, why: str) -> None:
        self.errors[why] = self.errors.get(why, 0) + 1

    def summary(self, seconds: float) -> dict[str, Any]:
        done = len(self.latencies)
        total = done + sum(self.errors.values())
        ordered = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return {
            "requests": total,
            "per_second": round(done / seconds, 1) if seconds > 0 else 0.0,
            "error_rate": round(1 - done / total, 4) if total else 0.0,
            "errors": dict(self.errors),
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
        }


# --- CPU spent by the server and the database per request (robust to a shared machine) -------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_ticks(pgid: int | None, database: str | None) -> dict[int, int]:
    """CPU ticks (user + system) of each process in group `pgid` (a server and its workers)
    or, with `database`, of each PostgreSQL backend serving it (matched by its process title)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if database is not None:
                title = (entry / "cmdline").read_bytes()
                if not title.startswith(b"postgres:") or f" {database} ".encode() not in title:
                    continue
            elif int(fields[2]) != pgid:
                continue
        except (OSError, IndexError, ValueError):
            continue
        found[int(entry.name)] = int(fields[11]) + int(fields[12])
    return found


class CpuMeter:
    """CPU milliseconds per request of the app server and of its database backends."""

    def __init__(self, pgid: int | None, database: str | None) -> None:
        self.pgid, self.database = pgid, database

    def snapshot(self) -> tuple[dict[int, int], dict[int, int]]:
        server = _cpu_ticks(self.pgid, None) if self.pgid else {}
        backends = _cpu_ticks(None, self.database) if self.database else {}
        return server, backends

    @staticmethod
    def _spent(before: dict[int, int], after: dict[int, int]) -> float:
        return sum(t - before.get(pid, 0) for pid, t in after.items()) * 1000 / _TICK

    def add(
        self,
        summary: dict[str, Any],
        before: tuple[dict[int, int], dict[int, int]],
    ) -> dict[str, Any]:
        after = self.snapshot()
        requests = max(1, summary["requests"])
        summary["server_cpu_ms"] = round(self._spent(before[0], after[0]) / requests, 3)
        if self.database:
            summary["database_cpu_ms"] = round(self._spent(before[1], after[1]) / requests, 3)
        return summary


# --- a minimal HTTP/1.1 keep-alive client ----------------------------------------------------
# httpx costs the load generator several hundred microseconds of CPU per request, on the same
# two cores as the server; this costs a few tens, so the figures are the server's.


class Broken(Exception):
    """The connection cannot be reused (closed by the server, or a malformed answer)."""


# uvicorn closes a keep-alive connection idle for 5 s: an older one is not reused (a request
# sent as the server closes it would fail through no fault of the server).
IDLE_REUSE_SECONDS = 4.0


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = asyncio.get_running_loop().time()

    def reusable(self, now: float) -> bool:
        return not self.reader.at_eof() and now - self.idle_since < IDLE_REUSE_SECONDS

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, request: bytes) -> int:
        """Sends one request, reads the whole answer; returns its status."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise Broken("malformed status line")
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        if close:
            raise Broken("server closed the connection")
        return int(parts[1])

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Up to `size` keep-alive connections; a request waits for a free one."""

    def __init__(self, port: int, size: int) -> None:
        self.port, self.size, self.opened = port, size, 0
        self.idle: list[Connection] = []
        self.freed = asyncio.Condition()

    async def take(self) -> Connection:
        now = asyncio.get_running_loop().time()
        async with self.freed:
            while True:
                while not self.idle and self.opened >= self.size:
                    await self.freed.wait()
                if not self.idle:
                    break
                connection = self.idle.pop()
                if connection.reusable(now):
                    return connection
                connection.close()
                self.opened -= 1
            self.opened += 1
        try:
            return await Connection.open(self.port)
        except BaseException:
            await self.lost()
            raise

    async def give_back(self, connection: Connection) -> None:
        connection.idle_since = asyncio.get_running_loop().time()
        async with self.freed:
            self.idle.append(connection)
            self.freed.notify()

    async def lost(self, connection: Connection | None = None) -> None:
        if connection is not None:
            connection.close()
        async with self.freed:
            self.opened -= 1
            self.freed.notify()

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


async def _request(pool: Pool, raw: bytes, tally: Tally, started: float, deadline: float) -> None:
    """One request with an absolute deadline (loop time); latency counts from `started`."""
    loop = asyncio.get_running_loop()
    connection = None
    try:
        async with asyncio.timeout_at(deadline):
            connection = await pool.take()
            status = await connection.send(raw)
    except TimeoutError:
        tally.failed("timeout")
        if connection is not None:
            await pool.lost(connection)
        return
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, Broken) as error:
        tally.failed(error.__class__.__name__)
        if connection is not None:
            await pool.lost(connection)
        return
    await pool.give_back(connection)
    if 200 <= status < 300:
        tally.latencies.append(loop.time() - started)
    else:
        tally.failed(str(status))


# --- what is sent ----------------------------------------------------------------------------


class Requests:
    """Builds each kind of request as raw bytes; every purchase and redemption is new."""

    def __init__(self, port: int, key: str, member_ids: list[int]) -> None:
        self.host = f"Host: {HOST}:{port}\r\n"
        self.auth = f"Authorization: Bearer {key}\r\n"
        self.member_ids = member_ids
        self.run = secrets.token_hex(4)
        self.count = 0

    def next(self, kind: str) -> bytes:
        self.count += 1
        index = self.count % len(self.member_ids)
        if kind in ("hello", "health"):
            return f"GET /healthz HTTP/1.1\r\n{self.host}\r\n".encode()
        if kind == "purchase":
            path = "/v1/purchases"
            body: dict[str, Any] = {
                "external_id": f"T-{self.run}-{self.count}",
                "member_id": f"L{index:05d}",
                "occurred_at": datetime.now(UTC).isoformat(),
                "amount": "12.50",
                "currency": "EUR",
                "items": [
                    {"sku": "COF", "category": "coffee", "quantity": 1, "unit_price": "12.50"}
                ],
            }
        else:
            path = f"/v1/members/{self.member_ids[index]}/redemptions"
            body = {"points": 10, "reason": "load test", "reference": f"R-{self.run}-{self.count}"}
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\n{self.host}{self.auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload


# --- the two loads ---------------------------------------------------------------------------


async def closed_loop(
    port: int, requests: Requests, kind: str, clients: int, seconds: float, timeout: float
) -> dict[str, Any]:
    """`clients` connections, each sending its next request as soon as the last returned."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    pool = Pool(port, clients)
    started = loop.time()
    stop = started + seconds

    async def client() -> None:
        while loop.time() < stop:
            now = loop.time()
            await _request(pool, requests.next(kind), tally, now, now + timeout)

    try:
        await asyncio.wait_for(
            asyncio.gather(*(client() for _ in range(clients))), seconds + timeout + 5
        )
    finally:
        pool.close()
    return tally.summary(loop.time() - started)


async def open_loop(
    port: int,
    requests: Requests,
    kind: str,
    rate: float,
    seconds: float,
    *,
    timeout: float,
    connections: int,
    outstanding_cap: int,
) -> dict[str, Any]:
    """`rate` requests/s on schedule, whatever the server does; at most `outstanding_cap` in
    the air (more are counted as `overload` errors and not sent)."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    pool = Pool(port, connections)
    running: set[asyncio.Task[None]] = set()
    started = loop.time()
    for index in range(int(rate * seconds)):
        scheduled = started + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(running) >= outstanding_cap:
            tally.failed("overload")
            continue
        raw = requests.next(kind)
        task = asyncio.create_task(_request(pool, raw, tally, scheduled, scheduled + timeout))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:  # each has its own deadline; this one only guards against a bug
        _, late = await asyncio.wait(running, timeout=timeout + 5)
        for task in late:
            task.cancel()
            tally.failed("timeout")
    pool.close()
    summary = tally.summary(loop.time() - started)
    summary["offered_per_second"] = rate
    return summary


def _load(arguments: argparse.Namespace) -> None:
    """The load generator process: runs the phases, prints their results as one JSON line."""
    setup = json.loads(Path(arguments.setup).read_text())
    duration, timeout, clients = arguments.duration, arguments.timeout, arguments.clients
    warm_up = min(3.0, duration / 5)
    app = CpuMeter(arguments.server_pgid, arguments.database)
    bare = CpuMeter(arguments.hello_pgid, None)
    results: dict[str, Any] = {}

    async def settle() -> None:
        """Waits (60 s at most) until the app server is idle: an overloaded phase leaves work
        queued in the server (requests whose clients gave up), which must not be billed to
        the next phase."""
        for _ in range(60):
            before = app.snapshot()[0]
            await asyncio.sleep(1)
            if CpuMeter._spent(before, app.snapshot()[0]) < 100:  # under 10% of one core
                return

    async def phases() -> None:
        for name, port, meter in (
            ("hello", arguments.hello_port, bare),
            ("health", arguments.port, app),
        ):
            requests = Requests(port, setup["key"], setup["member_ids"])
            await closed_loop(port, requests, name, clients, warm_up, timeout)
            before = meter.snapshot()
            found = await closed_loop(port, requests, name, clients, min(duration, 10), timeout)
            results[f"throughput_{name}"] = meter.add(found, before)
        port = arguments.port
        requests = Requests(port, setup["key"], setup["member_ids"])
        for kind in ("purchase", "redemption"):
            await settle()
            await closed_loop(port, requests, kind, clients, warm_up, timeout)
            before = app.snapshot()
            found = await closed_loop(port, requests, kind, clients, duration, timeout)
            results[f"throughput_{kind}"] = app.add(found, before)
        rates = {"health": arguments.rate, "purchase": arguments.rate}
        rates["redemption"] = arguments.redeem_rate
        for kind, rate in rates.items():
            await settle()
            before = app.snapshot()
            found = await open_loop(
                port,
                requests,
                kind,
                rate,
                min(duration, 10) if kind == "health" else duration,
                timeout=timeout,
                connections=arguments.connections,
                outstanding_cap=arguments.outstanding_cap,
            )
            results[f"latency_{kind}"] = app.add(found, before)

    asyncio.run(phases())
    print(json.dumps(results))


# --- the server side: a database, a program, members with points, a pos key -------------------


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
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _start(
    command: list[str], environment: dict[str, str], port: int, log: Path
) -> subprocess.Popen[bytes]:
    """Starts a server in its own process group; waits until it answers /healthz."""
    with log.open("wb") as sink:
        server = subprocess.Popen(
            command, env=environment, cwd=ROOT, stdout=sink, stderr=sink, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}; see {log}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as probe:
                probe.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    return server
        except OSError:
            pass
        time.sleep(0.3)
    _stop(server)
    raise SystemExit(f"the server did not answer in 60 s; see {log}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Stops a server and every process it started (uvicorn's workers)."""
    if server.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _report(results: dict[str, Any], arguments: argparse.Namespace) -> None:
    hello = results["throughput_hello"]
    clients = arguments.clients

    def ratio(found: dict[str, Any]) -> str:
        value = found["per_second"]
        return f"hello ÷ {hello['per_second'] / value:.1f}" if value else "none succeeded"

    def errors(found: dict[str, Any]) -> str:
        text = f"error rate {found['error_rate']:.2%}"
        return f"{text} {found['errors']}" if found["errors"] else text

    def cpu(found: dict[str, Any]) -> str:
        text = f"CPU/request: server {found['server_cpu_ms']:.2f} ms"
        if "database_cpu_ms" in found:
            text += f", PostgreSQL {found['database_cpu_ms']:.2f} ms"
        return text

    print(
        f"  baseline: bare ASGI hello, {clients} clients: {hello['per_second']:,.0f} req/s, "
        f"{cpu(hello)}"
    )
    health = results["throughput_health"]
    print(
        f"  baseline: GET /healthz, {clients} clients: {health['per_second']:,.0f} req/s "
        f"({ratio(health)}), {cpu(health)}"
    )
    for kind, target in (("purchase", "≥ 1,000/s, 0 errors"), ("redemption", "")):
        found = results[f"throughput_{kind}"]
        print(
            f"  (a) {kind}s, {clients} clients, {arguments.duration:.0f} s: "
            f"{found['per_second']:,.0f} req/s ({ratio(found)}), {errors(found)}; {cpu(found)}"
            + (f"  [target {target}]" if target else "")
        )
    targets = {"health": "", "purchase": "p99 ≤ 25 ms", "redemption": "p99 ≤ 30 ms"}
    for kind, target in targets.items():
        found = results[f"latency_{kind}"]
        print(
            f"  (b) {kind} at {found['offered_per_second']:.0f}/s open loop: "
            f"p50 {found['p50_ms']} ms, p95 {found['p95_ms']} ms, p99 {found['p99_ms']} ms, "
            f"max {found['max_ms']} ms, achieved {found['per_second']:,.0f}/s, {errors(found)}; "
            f"{cpu(found)}" + (f"  [target {target}]" if target else "")
        )


def _run(arguments: argparse.Namespace) -> None:
    from importlib.util import find_spec

    from sqlalchemy.engine import make_url

    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    parser = "httptools" if find_spec("httptools") else "h11"
    print(
        f"HTTP API load: fideliza serve ({arguments.workers} workers, {loop} + {parser}) on "
        f"PostgreSQL, {MEMBERS:,} members; load generator in its own process"
    )
    # Stopped from outside (a timeout): still stop the servers and drop the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from bench.databases import create_postgres, drop_postgres

    url = create_postgres(arguments.postgres, prefix="fideliza_bench_api")
    servers: list[subprocess.Popen[bytes]] = []
    try:
        setup = _prepare(url)
        OUT.mkdir(exist_ok=True)
        setup_file = OUT / "api-setup.json"
        setup_file.write_text(json.dumps(setup))
        environment = {
            **os.environ,
            "FIDELIZA_DATABASE_URL": url,
            "FIDELIZA_LOG_LEVEL": "WARNING",
            "FIDELIZA_SENSITIVE_RATE_LIMIT": "0",
        }
        bin_dir = Path(sys.executable).parent
        port, hello_port = _free_port(), _free_port()
        serve = [str(bin_dir / "fideliza"), "serve", "--host", HOST, "--port", str(port)]
        serve += ["--workers", str(arguments.workers)]
        if arguments.app:  # a variant of the app, served as `fideliza serve` serves it
            serve = [sys.executable, "-m", "uvicorn", arguments.app, "--factory", "--host", HOST]
            serve += ["--port", str(port), "--workers", str(arguments.workers)]
            serve += ["--no-access-log", "--log-level", "warning"]
        servers.append(_start(serve, environment, port, OUT / "api-server.log"))
        bare = [sys.executable, "-m", "uvicorn", "bench.bench_api:hello", "--host", HOST]
        bare += ["--port", str(hello_port), "--workers", str(arguments.workers)]
        bare += ["--no-access-log", "--log-level", "warning"]
        servers.append(_start(bare, environment, hello_port, OUT / "api-hello.log"))
        command = [sys.executable, "-m", "bench.bench_api", "--phase", "load"]
        command += [
            "--port",
            str(port),
            "--hello-port",
            str(hello_port),
            "--setup",
            str(setup_file),
        ]
        for option in ("duration", "clients", "rate", "redeem_rate", "timeout", "connections"):
            command += [f"--{option.replace('_', '-')}", str(getattr(arguments, option))]
        command += ["--outstanding-cap", str(arguments.outstanding_cap)]
        command += ["--server-pgid", str(servers[0].pid), "--hello-pgid", str(servers[1].pid)]
        command += ["--database", str(make_url(url).database)]
        # Every phase is bounded; this bounds the whole, whatever goes wrong in between.
        budget = 5 * arguments.duration + 50 + 8 * (arguments.timeout + 5) + 5 * 60
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, cwd=ROOT, timeout=budget, check=False
            )
        except subprocess.TimeoutExpired:
            raise SystemExit(f"the load generator overran its {budget:.0f} s budget") from None
        if done.returncode != 0:
            raise SystemExit(f"the load generator failed:\n{done.stderr[-3000:]}")
        results = json.loads(done.stdout.strip().splitlines()[-1])
        (OUT / "api-results.json").write_text(json.dumps(results, indent=2))
        _report(results, arguments)
    finally:
        for server in servers:
            _stop(server)
        drop_postgres(arguments.postgres, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="Seconds per phase.")
    parser.add_argument("--clients", type=int, default=64, help="Closed-loop clients.")
    parser.add_argument("--rate", type=float, default=500, help="Open-loop purchases/s.")
    parser.add_argument("--redeem-rate", type=float, default=200, help="Open-loop redemptions/s.")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes.")
    parser.add_argument("--timeout", type=float, default=5, help="Seconds before a request fails.")
    parser.add_argument("--connections", type=int, default=256, help="Open-loop connection cap.")
    parser.add_argument(
        "--outstanding-cap", type=int, default=2048, help="Open-loop requests in the air, at most."
    )
    parser.add_argument(
        "--postgres", default=os.environ.get("FIDELIZA_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument(
        "--app", help="Serve this app factory (module:function) instead of `fideliza serve`."
    )
    parser.add_argument("--phase", choices=["load"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hello-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--server-pgid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hello-pgid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.phase == "load":
        _load(arguments)
    else:
        _run(arguments)


if __name__ == "__main__":
    main()
