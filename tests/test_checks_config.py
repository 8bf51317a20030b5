import pytest
from click.testing import CliRunner

from controlplane.cli import main
from controlplane.health.config import ChecksConfigError, load_checks, parse_checks
from controlplane.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "checks" / "checks.yaml"


def doc(**check):
    return {"components": {"api": {"name": "API"}}, "checks": {"db": {"kind": "database", **check}}}


def test_shipped_checks_file_is_valid_and_covers_every_kind():
    config = load_checks(SHIPPED)
    assert {spec.kind for spec in config.checks} == {"database", "postal", "redis", "disk", "migrations", "worker", "alerting"}
    assert {spec.name for spec in config.checks if spec.hard} == {"database", "migrations"}
    # Every check feeds a public component but the alerting engine's own, which only on-call reads.
    assert {spec.name for spec in config.checks if not spec.component} == {"alerting"}


def test_durations_accept_units():
    spec = parse_checks(doc(timeout="500ms", interval="1m")).checks[0]
    assert (spec.timeout, spec.interval) == (0.5, 60)


@pytest.mark.parametrize("check,message", [
    ({"kind": "ftp"}, "check 'db': field 'kind': unknown kind 'ftp'"),
    ({"timeout": "soon"}, "check 'db': field 'timeout' must be a duration"),
    ({"timeout": "20s", "interval": "10s"}, "check 'db': field 'timeout' must not exceed 'interval'"),
    ({"hard": "yes"}, "check 'db': field 'hard' must be true or false"),
    ({"component": "mail"}, "check 'db': field 'component': 'mail' is not declared"),
    ({"thresholds": {"free_percent": {"warn": 1}}}, "check 'db': field 'thresholds.free_percent': kind 'database' has no such metric"),
    ({"thresholds": {"latency_ms": {"warn": "slow"}}}, "check 'db': field 'thresholds.latency_ms.warn' must be a number"),
    ({"thresholds": {"latency_ms": {"warn": 900, "fail": 100}}}, "'warn' must be reached before 'fail'"),
    ({"colour": "red"}, "check 'db': unknown field(s): colour"),
])
def test_invalid_check_errors_name_the_check_and_field(check, message):
    with pytest.raises(ChecksConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_checks(doc(**check))


def test_disk_thresholds_run_downwards():
    with pytest.raises(ChecksConfigError, match="free_percent is worse when below"):
        parse_checks({"checks": {"disk": {"kind": "disk", "thresholds": {"free_percent": {"warn": 5, "fail": 15}}}}})


def test_postal_target_must_be_a_url():
    with pytest.raises(ChecksConfigError, match="check 'postal': field 'target' must be an http"):
        parse_checks({"checks": {"postal": {"kind": "postal", "target": "postal.local"}}})


def test_invalid_yaml_is_reported_with_the_file(tmp_path):
    path = tmp_path / "checks.yaml"
    path.write_text("checks: [unclosed")
    with pytest.raises(ChecksConfigError, match=f"{path}: not valid YAML"):
        load_checks(path)


def test_cli_validate_exits_2_with_the_message(tmp_path):
    path = tmp_path / "checks.yaml"
    path.write_text("checks:\n  db:\n    kind: nosuch\n")
    result = CliRunner().invoke(main, ["checks", "validate", str(path)])
    assert result.exit_code == 2
    assert "check 'db': field 'kind': unknown kind 'nosuch'" in result.output


def test_cli_validate_accepts_the_shipped_file():
    result = CliRunner().invoke(main, ["checks", "validate"])
    assert result.exit_code == 0, result.output
    assert "7 checks" in result.output


def test_app_refuses_to_start_with_an_invalid_checks_file(tmp_path, make_app):
    path = tmp_path / "bad.yaml"
    path.write_text("checks:\n  db:\n    kind: database\n    interval: -1\n")
    with pytest.raises(ChecksConfigError, match="check 'db': field 'interval' must be greater than zero"):
        make_app(CHECKS_FILE=str(path))
