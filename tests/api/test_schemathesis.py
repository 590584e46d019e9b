"""Schemathesis over the whole OpenAPI, with every check: no 5xx, nothing the schema does not say.

Each operation gets a bounded number of generated requests (valid and invalid ones), sent with
an admin key (or, under `/v1/me`, a member token) to an app on SQLite (or on each backend, see
FUZZ_BACKENDS). Every response must be a documented status with a documented content type and a
body matching its schema; invalid input must be refused with a 4xx, valid input not refused,
`Allow` must list the methods, and a request without credentials must get a 401."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckFunction
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import positive_data_acceptance

from fideliza.api.app import create_app
from fideliza.api.settings import ApiSettings
from fideliza.core.clock import FixedClock
from tests.api.conftest import SECRET_KEY, START
from tests.api.world import World, enrol, make_world

# Another engineer is still writing the messaging routes: they join the run once they land.
MESSAGING_PATHS = r"^/v1/(messaging|unsubscribe|members/\{member_id\}/messages)"
# Enough to reach each operation's valid and invalid shapes in the few minutes CI can spare.
EXAMPLES_PER_OPERATION = 20
# SQLite by default, to stay within ~2 minutes; `FIDELIZA_FUZZ_BACKENDS=sqlite,postgres` for both.
FUZZ_BACKENDS = os.environ.get("FIDELIZA_FUZZ_BACKENDS", "sqlite").split(",")


@pytest.fixture(scope="module", params=FUZZ_BACKENDS)
def fuzzed_app(request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    url = str(request.getfixturevalue(f"{request.param}_url"))
    app = create_app(
        url,
        clock=FixedClock(START),
        settings=ApiSettings(auth_failure_limit=0, secret_key=SECRET_KEY),
    )
    yield app
    app.state.runtime.engine.dispose()


@pytest.fixture(scope="module")
def credentials(fuzzed_app: FastAPI) -> dict[str, str]:
    """An admin key, and a member token for `/v1/me`."""
    world = make_world(fuzzed_app.state.runtime.factory, now=START)
    with TestClient(fuzzed_app) as client:
        member = enrol(client, world, email="ana@example.com")
        url = f"/v1/members/{member['id']}/tokens"
        response = client.post(url, json={"ttl_minutes": 1440}, headers=world.auth("admin"))
        assert response.status_code == 201, response.text
    return {"admin": world.keys["admin"], "member": response.json()["token"]}


# The schema is read at import time from an app that never touches its (in-memory) database;
# the requests go to `fuzzed_app`, on the test run's migrated database.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app("sqlite://")).exclude(
    path_regex=MESSAGING_PATHS
)


# `positive_data_acceptance` expects every schema-valid request to be accepted. These operations
# also refuse, with a 422 naming the field, values whose validity no schema can state:
SEMANTIC_422 = {
    "POST /v1/api-keys": "expires_at must be in the future (of the server's clock)",
    # A profile's e-mail, phone and locale are checked by the members schema's validators.
    "PATCH /v1/me": "email must look like an e-mail address (members.schemas._EMAIL)",
    "POST /v1/members": "email, phone and locale formats (members.schemas)",
    "PATCH /v1/members/{member_id}": "email, phone and locale formats (members.schemas)",
    "POST /v1/referrals/enrolments": "email, phone and locale formats (members.schemas)",
    "POST /v1/rewards": "available_until must be after available_from",
}


def excluded_checks(case: Case) -> list[CheckFunction]:
    # A cursor is opaque: only one this API gave is valid, a generated one is refused (422).
    if case.operation.label in SEMANTIC_422 or "cursor" in (case.query or {}):
        return [positive_data_acceptance]
    return []


def fresh_idempotency_key(case: Case) -> None:
    # Generated keys repeat ("0", "00"…) across requests with other bodies, and a reused key is
    # rightly refused (422 idempotency_error): a well-formed key becomes a unique one, as a
    # client's would be. Malformed keys stay, to be refused.
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and re.fullmatch(r"[\x21-\x7e]{1,255}", key):
        case.headers["Idempotency-Key"] = uuid.uuid4().hex


def bearer(case: Case, credentials: dict[str, str]) -> dict[str, str]:
    is_member_route = case.path == "/v1/me" or case.path.startswith("/v1/me/")
    return {"Authorization": f"Bearer {credentials['member' if is_member_route else 'admin']}"}


# Not in `make test` yet: alone (`pytest -m contract tests/api/test_schemathesis.py`) every
# operation passes, but after the other API tests some operations fail (schema-valid requests
# refused: currency '000', timestamps outside 1970-2200, …); see the issue 3 note.
@pytest.mark.contract  # 80-120 s per backend on a loaded 2-core machine (93 operations)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_its_contract(
    case: Case, fuzzed_app: FastAPI, credentials: dict[str, str]
) -> None:
    fresh_idempotency_key(case)
    case.call_and_validate(
        app=fuzzed_app, headers=bearer(case, credentials), excluded_checks=excluded_checks(case)
    )


def test_a_wrong_method_gets_every_method_of_its_path_in_allow(client: TestClient) -> None:
    response = client.put("/v1/members")  # GET lists, POST enrols: two routes, one path

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.headers["content-type"].startswith("application/problem+json")


def test_the_schema_states_what_every_body_must_be_storable_as(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    member = schemas["MemberCreate"]["properties"]
    purchase_id = schemas["CaseCreate"]["properties"]["purchase_id"]["anyOf"][0]

    # Exactly the 64-bit bounds, as integers (Pydantic's float would admit 2**63).
    assert (purchase_id["minimum"], purchase_id["maximum"]) == (1, 2**63 - 1)
    assert isinstance(purchase_id["maximum"], int)
    assert member["external_id"]["pattern"] == r"^[^\x00]*$"
    attributes = member["attributes"]["anyOf"][0]
    assert attributes["additionalProperties"] == {"$ref": "#/components/schemas/JsonValue"}
    assert attributes["propertyNames"] == {"pattern": r"^[^\x00]*$"}
    assert "JsonValue" in schemas


def test_the_largest_documented_page_of_cases_is_served(client: TestClient, world: World) -> None:
    # Found by schemathesis: asking the service for `limit + 1` rows refused `limit=200`.
    member = enrol(client, world)
    for url in ("/v1/cases?limit=200", f"/v1/members/{member['id']}/cases?limit=200"):
        response = client.get(url, headers=world.auth("read"))
        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "next_cursor": None}
