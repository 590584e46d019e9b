"""How messages leave: e-mail over SMTP (stdlib `smtplib`) and SMS / push through a provider's
webhook (httpx, behind the same SSRF guard as the webhooks). Both are ports: the dispatcher takes
any `Sender`, and tests use a real SMTP server and a real HTTP receiver.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Literal, Protocol

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fideliza import __version__
from fideliza.core.errors import FidelizaError, ValidationError
from fideliza.messaging.domain import Channel
from fideliza.webhooks.service import check_destination

MIN_SECRET_LENGTH = 32


class MessagingSettings(BaseSettings):
    """FIDELIZA_SECRET_KEY, FIDELIZA_PUBLIC_URL and FIDELIZA_SMTP_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FIDELIZA_", env_file=".env", extra="ignore")

    secret_key: SecretStr | None = None  # signs unsubscribe links
    public_url: str = "http://127.0.0.1:8000"  # where the API answers unsubscribe links
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "Fideliza <no-reply@localhost>"
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # SMS / push providers on a private network must be allowed explicitly (SSRF).
    provider_allow_private_addresses: bool = False
    provider_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    def secret(self) -> bytes:
        """The signing secret; a clear error when the operator has not set one."""
        value = self.secret_key.get_secret_value() if self.secret_key else ""
        if len(value) < MIN_SECRET_LENGTH:
            raise ValidationError(
                f"unsubscribe links need a signing secret of {MIN_SECRET_LENGTH}+ characters",
                field="FIDELIZA_SECRET_KEY",
            )
        return value.encode()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One rendered message, ready for its channel."""

    message_id: int
    channel: Channel
    recipient: str  # an e-mail address or a phone number / member reference
    subject: str | None
    body_text: str
    body_html: str | None
    unsubscribe_url: str | None
    member_external_id: str
    kind: str
    provider_url: str | None = None


class SendFailed(Exception):
    """A send that did not happen; `permanent` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sender(Protocol):
    """Sends one message or raises SendFailed (any other exception counts as temporary)."""

    def __call__(self, message: Outgoing) -> None: ...


def email_of(message: Outgoing, *, sender: str) -> EmailMessage:
    """The MIME message: UTF-8 text (+ HTML alternative), RFC 8058 one-click unsubscribe."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = formataddr(("", message.recipient))
    email["Subject"] = message.subject or ""
    email["Message-ID"] = make_msgid(idstring=f"fideliza-{message.message_id}")
    if message.unsubscribe_url:
        email["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email.set_content(message.body_text, charset="utf-8")
    if message.body_html is not None:
        email.add_alternative(message.body_html, subtype="html", charset="utf-8")
    return email


class SmtpSender:
    """Sends e-mail through the configured SMTP server, one connection per message."""

    def __init__(self, settings: MessagingSettings) -> None:
        self.settings = settings

    def __call__(self, message: Outgoing) -> None:
        s = self.settings
        email = email_of(message, sender=s.smtp_from)
        try:
            client: smtplib.SMTP
            if s.smtp_security == "ssl":
                client = smtplib.SMTP_SSL(
                    s.smtp_host,
                    s.smtp_port,
                    timeout=s.smtp_timeout_seconds,
                    context=ssl.create_default_context(),
                )
            else:
                client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
            with client:
                if s.smtp_security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if s.smtp_username:
                    password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                    client.login(s.smtp_username, password)
                client.send_message(email)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            raise SendFailed(
                f"recipient refused: {error.recipients}", permanent=all(c >= 500 for c in codes)
            ) from None
        except smtplib.SMTPResponseException as error:
            raise SendFailed(
                f"SMTP {error.smtp_code}: {error.smtp_error!r}", permanent=error.smtp_code >= 500
            ) from None
        except (OSError, smtplib.SMTPException) as error:
            raise SendFailed(f"{type(error).__name__}: {error}") from None


class ProviderSender:
    """Posts SMS and push messages as JSON to the program's provider URL."""

    def __init__(self, settings: MessagingSettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.Client(
            follow_redirects=False, headers={"user-agent": f"Fideliza-Messages/{__version__}"}
        )

    def __call__(self, message: Outgoing) -> None:
        if not message.provider_url:
            raise SendFailed("no provider URL configured for sms/push", permanent=True)
        try:
            check_destination(
                message.provider_url,
                allow_private=self.settings.provider_allow_private_addresses,
            )
        except FidelizaError as error:
            permanent = error.code == "forbidden_destination"
            raise SendFailed(
                f"provider URL refused: {error.message}", permanent=permanent
            ) from None
        request_id = f"msg_{message.message_id}"
        body = {
            "id": request_id,
            "channel": message.channel.value,
            "to": message.recipient,
            "member": message.member_external_id,
            "kind": message.kind,
            "subject": message.subject,
            "text": message.body_text,
        }
        try:
            response = self.client.post(
                message.provider_url,
                content=json.dumps(body, ensure_ascii=False).encode(),
                headers={"content-type": "application/json", "idempotency-key": request_id},
                timeout=self.settings.provider_timeout_seconds,
            )
        except httpx.HTTPError as error:
            raise SendFailed(f"{type(error).__name__}: {error}") from None
        if not 200 <= response.status_code < 300:
            # 4xx other than 408/429 means the provider will refuse it again.
            retry = response.status_code >= 500 or response.status_code in (408, 429)
            raise SendFailed(f"provider answered HTTP {response.status_code}", permanent=not retry)

    def close(self) -> None:
        self.client.close()


class ChannelSender:
    """The default sender: e-mail over SMTP, SMS and push through the provider."""

    def __init__(self, settings: MessagingSettings) -> None:
        self.email = SmtpSender(settings)
        self.provider = ProviderSender(settings)

    def __call__(self, message: Outgoing) -> None:
        if message.channel is Channel.EMAIL:
            self.email(message)
        else:
            self.provider(message)

    def close(self) -> None:
        self.provider.close()
