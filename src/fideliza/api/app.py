"""The HTTP API's app factory (the REST resources grow in the API issue; here: health)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from fideliza import __version__
from fideliza.config import get_settings
from fideliza.db import make_engine, make_session_factory
from fideliza.programs import service as programs


def create_app(database_url: str | None = None) -> FastAPI:
    """Builds the app on one engine (each uvicorn worker calls this once)."""
    engine = make_engine(database_url or get_settings().database_url)
    factory = make_session_factory(engine)
    app = FastAPI(
        title="Fideliza", version=__version__, openapi_url="/openapi.json", docs_url="/docs"
    )

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> dict[str, Any]:
        """The database answers."""
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ready", "database": engine.dialect.name}

    @app.get("/v1/programs", tags=["programs"])
    def list_programs() -> list[dict[str, str]]:
        """The programs this server runs (codes and names only)."""
        with factory() as db:
            return [
                {"code": p.code, "name": p.name, "currency": p.currency}
                for p in programs.list_all(db)
            ]

    return app
