"""A real HTTP receiver on 127.0.0.1 (http.server in a thread), and an independent check of
Standard Webhooks signatures, written from the specification and not from fideliza's code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers with the next status of `statuses` (then `default`), recording each request."""

    url: str
    statuses: list[int] = field(default_factory=list)
    default: int = 200
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.default


@contextmanager
def receiver(**options: Any) -> Iterator[Receiver]:
    state: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if state.delay:
                time.sleep(state.delay)
            with state.lock:
                state.requests.append(
                    Received(
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                    )
                )
            status = state.next_status()
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks", **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def verify(secret: str, request: Received, *, now: int, tolerance: int = 300) -> bool:
    """Standard Webhooks verification: HMAC-SHA256 over "{id}.{timestamp}.{body}" with the
    base64-decoded secret, compared in constant time to any `v1,` signature in the header."""
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_") :])
    msg_id = request.headers["webhook-id"]
    timestamp = request.headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > tolerance:
        return False
    content = msg_id.encode() + b"." + timestamp.encode() + b"." + request.body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for candidate in request.headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return True
    return False
