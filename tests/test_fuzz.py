"""Schemathesis over every operation of /api/v1/openapi.json, against the real app on PostgreSQL.

Twice: with an admin key (every route's validation is reached) and with no key (what the
internet reaches). A run fails on any 5xx and on any answer that violates the documented
response schema. Bounded: MAX_EXAMPLES generated cases per operation and run, well under three
minutes in all. The figures of the last run (operations, cases, answers >= 500) are written to
test-artifacts/fuzz-figures.json; docs/reliability.md ("Fuzzing and hostile input") records them.

Public routes outside the OpenAPI document are fuzzed in tests/test_hostile_input.py.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import update

from controlplane import create_app
from controlplane.extensions import db
from controlplane.gateway.models import ApiKey
from controlplane.gateway.openapi import document
from controlplane.schema import upgrade_database
from tests.conftest import ARTIFACTS, create_api_key, development_env

pytestmark = pytest.mark.postgres

MAX_EXAMPLES = 15
CHECKS = [not_a_server_error, response_schema_conformance]
# Generous limits, so the fuzzer reaches validation instead of being throttled.
UNTHROTTLED = {"burst": 1_000_000, "hour": 1_000_000, "today": 1_000_000}

FIGURES: dict[str, Counter] = {"admin key": Counter(), "no key": Counter()}
OPERATIONS: dict[str, set] = {"admin key": set(), "no key": set()}


@pytest.fixture(scope="module")
def fuzz_app(postgres_databases, tmp_path_factory):
    env = development_env(tmp_path_factory.mktemp("fuzz"), postgres_databases.create())
    app = create_app({**env, "LOGIN_ATTEMPTS_PER_MINUTE": "1000000", "EVENTS_STREAM_SECONDS": "1",
                      "EVENTS_POLL_SECONDS": "0.1"})
    with app.app_context():
        upgrade_database()
    yield app
    app.extensions["controlplane.request_stats"].stop()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    figures = json.dumps({run: {"operations": len(OPERATIONS[run]), "cases": FIGURES[run]["cases"],
                                "responses >= 500": FIGURES[run]["responses >= 500"]} for run in FIGURES})
    print(f"\nfuzz figures: {figures}")  # shown with -s
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz-figures.json").write_text(figures)


@pytest.fixture(scope="module")
def fuzz_admin_key(fuzz_app) -> str:
    return create_api_key(fuzz_app, "admin", name="fuzz admin", rate_limits=UNTHROTTLED)[1]


# The document the app serves at /api/v1/openapi.json (test_openapi.py checks they are the same),
# loaded at collection so each operation is its own test; cases are sent to the fixture's app.
schema = schemathesis.openapi.from_dict(document())
# The event stream answers for EVENTS_STREAM_SECONDS per case: it gets a few generated cases of its
# own instead of the hundreds of boundary cases the coverage phase writes for every other operation.
STREAM = {"path": "/api/v1/events"}


def call_and_count(case, app, run: str, headers: dict):
    OPERATIONS[run].add(case.operation.label)
    FIGURES[run]["cases"] += 1
    try:
        response = case.call(app=app, headers=headers)
    except Exception:
        # The WSGI transport re-raises what the app did not handle: that request was a 500.
        FIGURES[run]["responses >= 500"] += 1
        raise
    if case.operation.label == "DELETE /api/v1/credentials/{key_id}":
        give_back_revoked_keys(app)  # the fuzzer revokes whatever id it guesses, its own key included
    if response.status_code >= 500:
        FIGURES[run]["responses >= 500"] += 1
    case.validate_response(response, checks=CHECKS)


def give_back_revoked_keys(app) -> None:
    with app.app_context():
        db.session.execute(update(ApiKey).values(revoked_at=None))
        db.session.commit()


FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))
# Generated cases only: schemathesis hands its examples and coverage cases to hypothesis as explicit ones.
STREAM_SETTINGS = settings(FUZZ_SETTINGS, max_examples=4, phases=[Phase.generate])


@schema.exclude(**STREAM).parametrize()
@FUZZ_SETTINGS
def test_every_operation_with_an_admin_key(case, fuzz_app, fuzz_admin_key):
    call_and_count(case, fuzz_app, "admin key", {"X-Server-API-Key": fuzz_admin_key})


@schema.exclude(**STREAM).parametrize()
@FUZZ_SETTINGS
def test_every_operation_without_a_key(case, fuzz_app):
    call_and_count(case, fuzz_app, "no key", {})


@schema.include(**STREAM).parametrize()
@STREAM_SETTINGS
def test_the_event_stream_with_an_admin_key(case, fuzz_app, fuzz_admin_key):
    call_and_count(case, fuzz_app, "admin key", {"X-Server-API-Key": fuzz_admin_key})


@schema.include(**STREAM).parametrize()
@STREAM_SETTINGS
def test_the_event_stream_without_a_key(case, fuzz_app):
    call_and_count(case, fuzz_app, "no key", {})
