"""Fixtures for messaging tests (helpers in support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session

from fideliza.messaging.channels import MessagingSettings
from tests.integration.messaging.support import (
    SECRET,
    Mailbox,
    MemorySender,
    Shop,
    make_shop,
    smtp_server,
)


@pytest.fixture
def settings() -> MessagingSettings:
    return MessagingSettings(
        secret_key=SecretStr(SECRET),
        public_url="https://loyalty.example.com",
        provider_allow_private_addresses=True,
    )


@pytest.fixture
def sender() -> MemorySender:
    return MemorySender()


@pytest.fixture
def shop(db: Session, now: datetime) -> Shop:
    return make_shop(db, now)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box
