"""Schemathesis over the whole OpenAPI, with every check: no 5xx, nothing the schema does not say.

Each operation gets a bounded number of generated requests (valid and invalid ones), sent with
an admin key (or, under `/v1/me`, a member token) to an app on SQLite (or on each backend, see
FUZZ_BACKENDS). Every response must be a documented status with a documented content type and a
body matching its schema; invalid input must be refused with a 4xx, valid input not refused,
`Allow` must list the methods, and a request without credentials must get a 401."""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis.internal.conjecture import providers
from hypothesis.internal.constants_ast import Constants
from schemathesis.checks import CheckContext, CheckFunction
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from fideliza.api.app import create_app
from fideliza.api.settings import ApiSettings
from fideliza.core.clock import FixedClock
from fideliza.migrations import upgrade
from tests.api.conftest import SECRET_KEY, START
from tests.api.world import World, assert_problem, basket, enrol, make_world

# Enough to reach each operation's valid and invalid shapes in the few minutes CI can spare.
EXAMPLES_PER_OPERATION = 20
# SQLite by default, to stay within ~2 minutes; `FIDELIZA_FUZZ_BACKENDS=sqlite,postgres` for both.
FUZZ_BACKENDS = os.environ.get("FIDELIZA_FUZZ_BACKENDS", "sqlite").split(",")


@pytest.fixture(scope="module")
def fuzzed_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fideliza.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def fuzzed_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of its own on the test run's server (which `postgres_url` skips or requires)."""
    name = f"fideliza_fuzz_{secrets.token_hex(4)}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module", params=FUZZ_BACKENDS)
def fuzzed_app(request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    # A database of its own: what other tests left behind (ids taken by other programs) must not
    # change which generated requests reach real objects.
    url = str(request.getfixturevalue(f"fuzzed_{request.param}_url"))
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


@pytest.fixture
def schema_only_examples(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hypothesis mixes in literals of every project module in `sys.modules` (its "local
    constants"), so the examples depended on which other tests had imported what: alone this test
    drew other requests than after the rest of the suite. Without them, what is generated depends
    only on the schema and the (derandomized) seed."""
    monkeypatch.setattr(providers, "_get_local_constants", lambda: Constants())
    providers.CONSTANTS_CACHE.cache.clear()
    yield
    providers.CONSTANTS_CACHE.cache.clear()


# The schema is read at import time from an app that never touches its (in-memory) database;
# the requests go to `fuzzed_app`, on a database of its own.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app("sqlite://"))


# A schema-valid request may still be refused (422) for what no schema can state: the state of
# the data, the server's clock, a check digit, DNS, a rule across fields. Only these refusals,
# each naming its field (`*`: any) and its stable code, are accepted from schema-valid requests:
STATED_REFUSALS: dict[str, set[tuple[str, str]]] = {
    "POST /v1/api-keys": {("expires_at", "validation_error")},  # in the future of the server
    # Exactly one of four fields; a card's Luhn digit; e-mail and phone as the profile takes them
    # (the look-up's schema does not repeat their patterns yet).
    "POST /v1/members/lookup": {
        ("lookup", "validation_error"),
        ("card", "validation_error"),
        ("email", "validation_error"),
        ("phone", "validation_error"),
    },
    # Tiers must exist; `value` comes with `budget_money`; until after from (also with the
    # stored values, for a change); a discount names its coupon campaign.
    "POST /v1/rewards": {
        ("body", "validation_error"),
        ("available_until", "validation_error"),
        ("eligible_tiers", "validation_error"),
        ("tier_costs", "validation_error"),
        ("campaign_id", "validation_error"),
    },
    "PATCH /v1/rewards/{reward_id}": {
        ("*", "validation_error"),
    },
    # A basket is in the program's currency, with as many decimals as it has (the schema allows
    # any ISO-shaped code and up to 4 decimals, what the columns keep).
    "POST /v1/purchases": {("currency", "validation_error"), ("amount", "validation_error")},
    "POST /v1/dry-run": {("currency", "validation_error"), ("amount", "validation_error")},
    "PUT /v1/referrals/config": {("body", "validation_error")},  # one of two points above zero
    "PUT /v1/lifecycle/config": {("body", "validation_error")},
    "PUT /v1/cases/sla": {("resolution_minutes", "validation_error")},  # not before the response
    # The request body is documented as any object (the definition's schema is not in it yet).
    "POST /v1/surveys": {("*", "validation_error")},
    # The host must resolve, and not to a private address: DNS, not shape.
    "POST /v1/webhooks": {("url", "validation_error")},
    "PATCH /v1/webhooks/{webhook_id}": {("url", "validation_error")},
    "PATCH /v1/messaging/config": {
        ("quiet_hours.end", "validation_error"),  # not when they start
        ("url", "validation_error"),  # the provider's host must resolve
    },
    # Saved only if it renders with its kind's sample data; e-mail needs a subject.
    "PUT /v1/messaging/templates/{kind}/{channel}/{locale}": {
        ("subject", "validation_error"),
        ("body_text", "validation_error"),
        ("body_html", "validation_error"),
    },
}
# Anywhere: an `external_id` or `reference` reused with other content (state, not shape); a
# redemption or money write without a `reference` needs an Idempotency-Key (header and body
# together); a code with a wrong check character (a typo, which the check digit exists to catch).
REFUSED_ANYWHERE = {
    ("external_id", "idempotency_error"),
    ("reference", "idempotency_error"),
    ("Idempotency-Key", "validation_error"),
    ("code", "malformed_code"),
}


def is_stated_refusal(case: Case, response: Response) -> bool:
    if response.status_code != 422:
        return False
    problem = response.json()
    field, code = problem.get("field") or "body", problem.get("code")
    for stated, stated_code in STATED_REFUSALS.get(case.operation.label, set()) | REFUSED_ANYWHERE:
        names_it = stated in ("*", field) or field.startswith((f"{stated}[", f"{stated}."))
        if names_it and code == stated_code:
            return True
    return False


def valid_data_accepted(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """`positive_data_acceptance`, except for the refusals stated above."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if is_stated_refusal(case, response):
            return None
        raise


def checks_for(case: Case) -> dict[str, list[CheckFunction]]:
    # A cursor is opaque: only one this API gave is valid, a generated one is refused (422).
    if (case.query or {}).keys() & {"cursor", "before"}:
        return {"excluded_checks": [positive_data_acceptance]}
    return {
        "excluded_checks": [positive_data_acceptance],
        "additional_checks": [valid_data_accepted],
    }


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


@pytest.mark.contract  # 2-3.5 min per backend (104 operations) on a loaded 2-core machine
@pytest.mark.usefixtures("schema_only_examples")
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
    case.call_and_validate(app=fuzzed_app, headers=bearer(case, credentials), **checks_for(case))


def test_a_wrong_method_gets_every_method_of_its_path_in_allow(client: TestClient) -> None:
    response = client.put("/v1/members")  # GET lists, POST enrols: two routes, one path

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_literal_path_is_not_an_id_of_its_template(client: TestClient, world: World) -> None:
    # Found by schemathesis: PATCH /v1/members/lookup was read as member "lookup" (a 422).
    response = client.patch("/v1/members/lookup", json={}, headers=world.auth())

    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_an_unknown_query_parameter_is_refused_by_name(client: TestClient, world: World) -> None:
    misspelt = client.get("/v1/members?stauts=closed", headers=world.auth("read"))
    known = client.get("/v1/members?status=closed", headers=world.auth("read"))

    assert_problem(misspelt, 422, "validation_error", "stauts")
    assert known.status_code == 200, known.text


def test_numbers_are_taken_as_the_schema_states_them(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    url = f"/v1/members/{member['id']}/adjustments"

    whole = client.post(url, json={"points": 5.0, "reason": "fix"}, headers=world.auth())
    fraction = client.post(url, json={"points": 5.5, "reason": "fix"}, headers=world.auth())
    zero = client.post(url, json={"points": 0, "reason": "fix"}, headers=world.auth())
    text = client.post(url, json={"points": "5", "reason": "fix"}, headers=world.auth())

    assert whole.status_code == 201, whole.text  # JSON Schema's integer includes 5.0
    for refused in (fraction, zero, text):
        assert_problem(refused, 422, "validation_error", "points")


def test_a_timestamp_is_iso_text_within_the_stated_years(client: TestClient, world: World) -> None:
    member = enrol(client, world)
    for occurred_at in (0, "0", "1969-12-31T23:00:00Z", "2200-01-01T00:00:00Z"):
        body = {**basket(member, START), "occurred_at": occurred_at}
        response = client.post("/v1/purchases", json=body, headers=world.auth("pos"))
        assert_problem(response, 422, "validation_error", "occurred_at")
    pattern = client.get("/openapi.json").json()["components"]["schemas"]["PurchaseIn"]
    stated = re.compile(pattern["properties"]["occurred_at"]["pattern"])
    assert stated.match("1970-01-01T00:00:00+01:00") and stated.match("2199-12-31T23:59:59Z")
    assert not stated.match("1969-12-31T23:00:00Z") and not stated.match("2200-01-01T00:00:00Z")


def test_the_schema_states_what_every_body_must_be_storable_as(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    member = schemas["MemberCreate"]["properties"]
    purchase_id = schemas["CaseCreate"]["properties"]["purchase_id"]["anyOf"][0]

    # Exactly the 64-bit bounds, as integers (Pydantic's float would admit 2**63).
    assert (purchase_id["minimum"], purchase_id["maximum"]) == (1, 2**63 - 1)
    assert isinstance(purchase_id["maximum"], int)
    external_id = re.compile(member["external_id"]["pattern"])  # stripped, then at least 1
    assert external_id.fullmatch(" C-1 ")
    assert not external_id.fullmatch("C\x00") and not external_id.fullmatch(" \t")
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
