"""Errors are RFC 9457 problem+json with a stable code and the field; bad input is never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from fideliza.api.app import create_app
from fideliza.api.settings import ApiSettings
from tests.api.conftest import START
from tests.api.world import World, assert_problem, basket, enrol


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["database"] in ("sqlite", "postgresql")


def test_openapi_documents_auth_idempotency_and_problems(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    purchase = spec["paths"]["/v1/purchases"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in purchase["parameters"]]
    assert "Problem" in spec["components"]["schemas"]
    assert "4XX" in purchase["responses"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Bearer fzk_aaaaaaaaaa_" + "A" * 43},  # well formed, unknown
    ],
)
def test_without_a_valid_key_the_same_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/v1/program", headers=headers)
    body = assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert body["detail"] == "send a valid API key as `Authorization: Bearer <key>`"


def test_a_known_prefix_with_a_wrong_secret_is_refused_alike(
    client: TestClient, world: World
) -> None:
    real = world.keys["read"]
    forged = real[:-4] + ("aaaa" if not real.endswith("aaaa") else "bbbb")
    body = assert_problem(
        client.get("/v1/program", headers=world.auth(key=forged)), 401, "unauthenticated"
    )
    assert body["detail"] == "send a valid API key as `Authorization: Bearer <key>`"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"external_id": None}, "external_id", "Input should be a valid string"),
        ({"amount": 12.5}, "amount", "decimal number written as a string"),
        ({"amount": "abc"}, "amount", "is not a decimal number"),
        ({"amount": "1e30"}, "amount", "is too large"),
        ({"amount": "NaN"}, "amount", "finite"),
        ({"occurred_at": "2025-03-10T12:00:00"}, "occurred_at", "timezone"),
        ({"occurred_at": "9999-01-01T00:00:00Z"}, "occurred_at", "between 1970 and 2200"),
        ({"points": 5}, "points", "is not a known field"),
        ({"items": [{"sku": "A", "quantity": 0, "unit_price": "1"}]}, "items[0].quantity", None),
        ({"items": [{"sku": "A", "quantity": True, "unit_price": "1"}]}, "items[0].quantity", None),
        ({"items": [{"sku": "A", "unit_price": "1", "x": 1}]}, "items[0].x", "not a known field"),
        ({"items": "COF"}, "items", None),
        ({"currency": "USD"}, "currency", "program's currency is EUR"),
        ({"amount": "1.001"}, "amount", "more decimals"),
        ({"external_id": "T\x00"}, "external_id", "NUL"),
        ({"attributes": {"note": "a\ud800b"}}, "attributes.note", "not valid Unicode"),
        ({"attributes": {"n": 2**70}}, "attributes.n", "out of range"),
    ],
)
def test_bad_purchases_name_the_field(
    client: TestClient,
    world: World,
    change: dict[str, object],
    field: str,
    message: str | None,
) -> None:
    member = enrol(client, world)
    body = {**basket(member, START), **change}
    content = json.dumps(body, ensure_ascii=True).encode()
    response = client.post(
        "/v1/purchases",
        content=content,
        headers={**world.auth("pos"), "Content-Type": "application/json"},
    )
    problem = assert_problem(response, 422, "validation_error", field)
    if message:
        assert message in problem["detail"], problem


def test_validation_problem_lists_every_error(client: TestClient, world: World) -> None:
    response = client.post("/v1/purchases", json={"amount": 1.5}, headers=world.auth("pos"))
    problem = assert_problem(response, 422, "validation_error")
    fields = {item["field"] for item in problem["errors"]}
    assert {"occurred_at", "amount", "external_id", "member_id"} <= fields
    assert problem["instance"] == "/v1/purchases"


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"external_id": ', "body"),
        (b"[" * 5000 + b"]" * 5000, "body"),
        (b'{"a": ' * 40 + b"1" + b"}" * 40, None),
        (b"\xff\xfe", "body"),
    ],
)
def test_malformed_bodies_are_4xx(
    client: TestClient, world: World, content: bytes, field: str | None
) -> None:
    response = client.post(
        "/v1/members",
        content=content,
        headers={**world.auth("pos"), "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if field:
        assert response.json()["field"] == field


def test_a_body_too_large_is_413(client: TestClient, world: World) -> None:
    response = client.post(
        "/v1/members",
        content=b'{"external_id": "' + b"x" * 2_000_000 + b'"}',
        headers={**world.auth("pos"), "Content-Type": "application/json"},
    )
    assert_problem(response, 413, "payload_too_large")


def test_a_chunked_body_too_large_is_413(client: TestClient, world: World) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"external_id": "'
        for _ in range(40):
            yield b"x" * 50_000
        yield b'"}'

    response = client.post(
        "/v1/members",
        content=chunks(),
        headers={**world.auth("pos"), "Content-Type": "application/json"},
    )
    assert_problem(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "field"),
    [
        ("GET", "/v1/nothing-here", 404, "not_found", None),
        ("PUT", "/v1/members", 405, "method_not_allowed", None),
        ("GET", "/v1/members/abc", 422, "validation_error", "member_id"),
        ("GET", "/v1/members/0", 422, "validation_error", "member_id"),
        ("GET", f"/v1/members/{2**64}", 422, "validation_error", "member_id"),
        ("GET", "/v1/members?limit=0", 422, "validation_error", "limit"),
        ("GET", "/v1/members?cursor=zzz", 422, "validation_error", "cursor"),
        ("GET", "/v1/members?status=gold", 422, "validation_error", "status"),
    ],
)
def test_routes_and_parameters_errors(
    client: TestClient,
    world: World,
    method: str,
    path: str,
    status: int,
    code: str,
    field: str | None,
) -> None:
    response = client.request(method, path, headers=world.auth("read"))
    assert_problem(response, status, code, field)


def test_idempotency_key_header_is_validated(client: TestClient, world: World) -> None:
    response = client.post(
        "/v1/members",
        json={"external_id": "x"},
        headers={**world.auth("pos"), "Idempotency-Key": "k" * 256},
    )
    assert_problem(response, 422, "validation_error", "Idempotency-Key")


def test_cors_is_closed_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/v1/program",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_cors_opens_only_to_the_configured_origins(database_url: str) -> None:
    app = create_app(database_url, settings=ApiSettings(cors_origins=["https://shop.example"]))
    with TestClient(app) as client:
        allowed = client.options(
            "/v1/program",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"},
        )
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        refused = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in refused.headers


def test_unexpected_errors_are_a_bare_500_problem(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fideliza.api.routes import members as routes

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(routes.members, "get", broken)
    with TestClient(client.app, raise_server_exceptions=False) as bare:
        response = bare.get("/v1/members/1", headers=world.auth("read"))
    body = assert_problem(response, 500, "internal_error")
    assert "secret" not in response.text and body["field"] is None


def test_time_is_the_clock_s(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    assert datetime.fromisoformat(member["enrolled_at"]) == START
