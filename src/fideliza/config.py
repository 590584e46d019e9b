"""Settings read from the environment (FIDELIZA_*)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; every field can be set with FIDELIZA_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FIDELIZA_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./fideliza.db"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    forwarded_allow_ips: str = ""  # e.g. "10.0.0.5": the load balancer whose headers to trust
    sql_echo: bool = False


@lru_cache
def get_settings() -> Settings:
    """Returns the settings, read once per process."""
    return Settings()
