"""The HTTP API's own settings (FIDELIZA_*), apart from the process-wide ones."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Every field can be set with FIDELIZA_<NAME>, e.g. FIDELIZA_CORS_ORIGINS."""

    model_config = SettingsConfigDict(env_prefix="FIDELIZA_", env_file=".env", extra="ignore")

    # Signs member tokens (32+ characters; the same on every worker). Unset, member tokens
    # are off: the routes that issue or accept them answer 503 `not_configured`.
    secret_key: SecretStr | None = None
    # Browser origins allowed to call the API. Empty (the default) sends no CORS header at
    # all, so browsers refuse cross-origin calls: tills and servers do not need CORS.
    cors_origins: list[str] = Field(default_factory=list)
    # How long an Idempotency-Key is remembered (the API promises at least 24 hours).
    idempotency_retention_hours: int = Field(default=24, ge=24)
    # How long a request may hold its key before another worker may take it over.
    idempotency_lease_seconds: int = Field(default=60, ge=1)
    # Larger request bodies are refused with 413 before they are read.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # Prometheus metrics at /metrics (not behind API keys: restrict it at the network level).
    metrics_enabled: bool = True
    # Logs as JSON lines on stderr (one access-log line per request), at this level.
    log_json: bool = True
    log_level: str = Field(default="INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")
    # Sensitive look-ups (members by card, e-mail or phone; coupon validation): this many per
    # API key and flow per window (a token bucket, refilled continuously); 0 turns it off.
    sensitive_rate_limit: int = Field(default=60, ge=0)
    sensitive_rate_window_seconds: float = Field(default=60.0, gt=0)
    # Where those look-ups are counted: "memory" (each worker on its own: with N workers a
    # client gets up to N times the limit) or "database" (one fixed-window counter per key
    # shared by every worker and host on the database; one statement per look-up).
    rate_limit_store: Literal["memory", "database"] = "memory"
    # Failed authentications (401) allowed per client IP per window; when used up, every /v1
    # request from that IP gets 429 until the bucket refills. 0 turns it off.
    auth_failure_limit: int = Field(default=30, ge=0)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
