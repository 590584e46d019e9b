"""Webhooks' pure parts: signatures, event matching, backoff, URL and address checks."""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from fideliza.core.errors import ValidationError
from fideliza.webhooks import domain

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def test_the_standard_webhooks_test_vector() -> None:
    # From the Standard Webhooks reference libraries' tests.
    signature = domain.sign(
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_secrets_are_whsec_and_32_random_bytes() -> None:
    one, two = domain.new_secret(), domain.new_secret()
    assert one != two
    assert one.startswith("whsec_")
    assert len(base64.b64decode(one.removeprefix("whsec_"))) == 32


def test_headers_sign_the_exact_body() -> None:
    body = domain.body_of(outbox_id=7, event_type="points.earned", occurred_at=NOW, data={"a": 1})
    headers = domain.headers_for(secret="whsec_" + "A" * 44, message_id="msg_7", now=NOW, body=body)
    assert headers["webhook-id"] == "msg_7"
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert headers["webhook-signature"] == domain.sign(
        secret="whsec_" + "A" * 44, message_id="msg_7", timestamp=int(NOW.timestamp()), body=body
    )


@pytest.mark.parametrize(
    ("subscribed", "event", "expected"),
    [
        (["*"], "points.earned", True),
        (["points.*"], "points.earned", True),
        (["points.*"], "pointsx.earned", False),
        (["points.earned"], "points.earned", True),
        (["points.earned"], "points.redeemed", False),
        (["member.enrolled", "tier.changed"], "tier.changed", True),
    ],
)
def test_matching(subscribed: list[str], event: str, expected: bool) -> None:
    assert domain.matches(subscribed, event) is expected


def test_event_types_are_validated() -> None:
    assert domain.parse_event_types(["b.x", "a.*", "b.x"]) == ["a.*", "b.x"]
    for bad in ([], "points.earned", ["Points"], ["a..b"], [3], ["x" * 101]):
        with pytest.raises(ValidationError) as error:
            domain.parse_event_types(bad)
        assert error.value.field is not None and error.value.field.startswith("event_types")


def test_backoff_doubles_up_to_the_cap_then_gives_up() -> None:
    policy = domain.RetryPolicy(
        max_attempts=5, base=timedelta(seconds=30), cap=timedelta(minutes=3)
    )
    waits = [policy.next_attempt(attempts=n, now=NOW) for n in range(1, 6)]
    assert [w - NOW if w else None for w in waits] == [
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=120),
        timedelta(seconds=180),
        None,
    ]
    with pytest.raises(ValidationError):
        domain.RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://x.com/",
        "https:///nohost",
        "https://u:p@x.com/",
        "https://x.com/#f",
        "x" * 2001,
        "https://x.com:99999/",
        "https://x.com/a b",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError) as error:
        domain.parse_url(url)
    assert error.value.field == "url"


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("10.0.0.1", True),
        ("192.168.0.1", True),
        ("127.0.0.1", True),
        ("169.254.169.254", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:10.0.0.1", True),
        ("239.1.1.1", True),
        ("93.184.216.34", False),
        ("2606:2800:220:1:248:1893:25c8:1946", False),
    ],
)
def test_address_policy(address: str, forbidden: bool) -> None:
    assert domain.is_forbidden(ipaddress.ip_address(address)) is forbidden
