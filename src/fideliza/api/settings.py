"""The HTTP API's own settings (FIDELIZA_*), apart from the process-wide ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Every field can be set with FIDELIZA_<NAME>, e.g. FIDELIZA_CORS_ORIGINS."""

    model_config = SettingsConfigDict(env_prefix="FIDELIZA_", env_file=".env", extra="ignore")

    # Browser origins allowed to call the API. Empty (the default) sends no CORS header at
    # all, so browsers refuse cross-origin calls: tills and servers do not need CORS.
    cors_origins: list[str] = Field(default_factory=list)
    # How long an Idempotency-Key is remembered (the API promises at least 24 hours).
    idempotency_retention_hours: int = Field(default=24, ge=24)
    # How long a request may hold its key before another worker may take it over.
    idempotency_lease_seconds: int = Field(default=60, ge=1)
    # Larger request bodies are refused with 413 before they are read.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
