"""Only scheduled check runs feed uptime: a diagnostic `controlplane checks run` is stored as manual
and never reaches the bars, the uptime badge, component status, /health or the alert rules."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from controlplane.alerting.indicators import INDICATORS, Context
from controlplane.cli import main
from controlplane.extensions import db
from controlplane.health.models import CheckDay, CheckResult
from controlplane.timeutil import utcnow
from tests.conftest import POSTAL_DOWN, run_scheduled_checks
from tests.test_status_page import bars_of, page


@pytest.fixture
def postal_app(make_app, postal):
    """An app whose scheduled checks reach a healthy Postal (the double)."""
    return make_app(POSTAL_TRANSPORT="http", POSTAL_API_URL=postal.url, POSTAL_API_KEY=postal.api_key)


def postal_unreachable_measures(app) -> float | None:
    """What the shipped PostalUnreachable rule's indicator reads now."""
    rule = app.extensions["controlplane.alert_rules"].by_name["PostalUnreachable"]
    with app.app_context():
        return INDICATORS[rule.indicator].measure(rule.params, Context(now=utcnow(), settings=app.extensions[
            "controlplane.settings"]))


def what_the_public_sees(app) -> dict:
    client = app.test_client()
    delivery = next(c for c in client.get("/api/v2/components.json").get_json()["components"]
                    if c["name"] == "Mail delivery")
    badge = client.get("/badges/delivery/uptime.svg?days=1").get_data(as_text=True)
    return {"bar": bars_of(page(client), "Mail delivery")[-1]["attrs"]["class"],
            "status": delivery["status"], "badge_says_100": "100.00%" in badge,
            "health": client.get("/health").get_json()["checks"]["postal"],
            "postal_unreachable": postal_unreachable_measures(app)}


def test_a_cli_run_against_a_wrong_postal_url_writes_nothing_the_bars_count(postal_app, base_env):
    assert run_scheduled_checks(postal_app)["postal"] == "healthy"
    before = what_the_public_sees(postal_app)
    assert before == {"bar": "up", "status": "operational", "badge_says_100": True, "health": "healthy",
                      "postal_unreachable": 0.0}

    # The diagnostic from the issue: the same database, a mistyped Postal URL.
    result = CliRunner().invoke(main, ["checks", "run"], env={**base_env, **POSTAL_DOWN})
    postal_line = next(line for line in result.output.splitlines() if line.startswith("postal"))
    assert "unhealthy" in postal_line, result.output
    assert "manual run" in result.output

    assert what_the_public_sees(postal_app) == before
    with postal_app.app_context():
        manual = db.session.query(CheckResult).filter_by(check_name="postal", source="manual").one()
        assert manual.status == "unhealthy"  # kept for the record
        day = db.session.query(CheckDay).filter_by(check_name="postal").one()
        assert (day.total, day.unhealthy) == (1, 0)  # only the scheduled run


def test_a_scheduled_run_against_a_failing_postal_counts(make_app):
    app = make_app(**POSTAL_DOWN)
    assert run_scheduled_checks(app)["postal"] == "unhealthy"
    seen = what_the_public_sees(app)
    assert seen == {"bar": "down", "status": "partial_outage", "badge_says_100": False, "health": "unhealthy",
                    "postal_unreachable": 1.0}
    with app.app_context():
        assert db.session.query(CheckResult).filter_by(check_name="postal").one().source == "scheduled"
