"""`controlplane alerts export`: the rules as Prometheus rule files, for teams running Prometheus
and Alertmanager themselves. Same thresholds, windows, `for`, `keep_firing_for` and labels; the
expressions read the metrics this service exports (see README "Metrics"). Hysteresis
(`resolve_threshold`) has no Prometheus equivalent and is noted in the rule's annotations.
"""
from __future__ import annotations

from pathlib import Path

import yaml

REQUESTS = "http_server_request_duration_seconds"


def _requests(window: str, errors: bool = False) -> str:
    selector = '{status=~"5.."}' if errors else ""
    return f"sum(rate({REQUESTS}_count{selector}[{window}]))"


def _guard(params: dict, window: str) -> str:
    minimum = params.get("min_requests") or 0
    return f" and on() sum(increase({REQUESTS}_count[{window}])) >= {minimum}" if minimum else ""


def _error_ratio(window: str) -> str:
    return f"({_requests(window, True)} / {_requests(window)})"


def expression(rule) -> str:
    """The PromQL whose value is compared with the threshold, as the indicator measures it."""
    p, kind = rule.params, rule.indicator
    if kind == "http_error_ratio":
        return _error_ratio(p["window"]), _guard(p, p["window"])
    if kind == "slow_request_ratio":
        window, edge = p["window"], repr(float(p["seconds"]))
        return (f"(1 - sum(rate({REQUESTS}_bucket{{le=\"{edge}\"}}[{window}])) / {_requests(window)})",
                _guard(p, window))
    if kind == "burn_rate":
        budget = round(1 - p["objective"], 10)
        long_, short = p["long_window"], p["short_window"]
        # min(long, short) > T  is  long > T and short > T: both windows must burn.
        return (f"({_error_ratio(long_)} / {budget})",
                f" and on() ({_error_ratio(short)} / {budget}) {rule.op} {rule.threshold:g}" + _guard(p, short))
    if kind == "db_connections_ratio":
        return "(controlplane_db_connections / controlplane_db_max_connections)", ""
    if kind == "pool_saturation":
        return "max(controlplane_db_pool_checked_out / controlplane_db_pool_max_connections)", ""
    if kind == "backup_age_hours":
        return f"((time() - {_backup_due_from(p)}) / 3600)", ""
    if kind == "restore_drill_failed":
        return "(1 - controlplane_backup_drill_success)", ""
    if kind == "deployment_failed":
        return f'controlplane_deployment_last_failed{{kind="{p["kind"]}"}}', ""
    if kind == "outbox_oldest_age_seconds":
        return "max(mailgoat_outbox_oldest_due_age_seconds)", ""
    if kind == "status_notify_backlog_seconds":
        return "max(controlplane_status_notify_backlog_seconds)", ""
    if kind == "check_unhealthy":
        return f'max(controlplane_check_status{{check="{p["check"]}",status="unhealthy"}})', ""
    if kind == "live_workers":
        return "max(controlplane_workers_live)", _starting_up(p)
    if kind == "live_leaders":
        return "max(controlplane_workers_leading)", _starting_up(p)
    if kind == "rules_in_error":
        return "max(controlplane_alert_rules_in_error)", ""
    raise ValueError(f"no Prometheus form for indicator {kind}")


MIGRATED = "controlplane_database_first_migrated_timestamp_seconds"


def _backup_series(params: dict) -> str:
    """The newest succeeded backup's time; `kind: full` counts full, manual and pre-migration."""
    from ..backups.models import FULL_COPY_KINDS

    kinds = FULL_COPY_KINDS if params["kind"] == "full" else (params["kind"],)
    return f'controlplane_backup_last_success_timestamp_seconds{{kind=~"{"|".join(kinds)}"}}'


def _backup_due_from(params: dict) -> str:
    """The later of the newest backup and the first migration plus the grace, as the indicator
    measures; the newest backup alone when the service does not say when it was migrated."""
    backup, migrated = f"max({_backup_series(params)})", f"(max({MIGRATED}) + {params['grace_seconds']})"
    return f"(({backup} > on() {migrated}) or on() {migrated} or on() {backup})"


def _starting_up(params: dict) -> str:
    """Quiet within `startup_grace` of the first migration (Prometheus cannot tell whether a
    worker ever joined, so the whole grace is quiet); a service that does not say when it was
    migrated is never starting up."""
    return f" unless on() (time() - max({MIGRATED}) < {params['startup_grace_seconds']})"


def _absent(rule) -> str | None:
    """What "no data" is in Prometheus, for the rules whose no data is alerting."""
    if rule.indicator == "backup_age_hours":
        return f"absent({MIGRATED}) and on() absent({_backup_series(rule.params)})"
    return {"live_workers": "absent(controlplane_workers_live)",
            "live_leaders": "absent(controlplane_workers_leading)"}.get(rule.indicator)


def prometheus_rule(rule) -> dict:
    value, extra = expression(rule)
    expr = f"{value} {rule.op} {rule.threshold:g}{extra}"
    absent = _absent(rule) if rule.no_data == "alerting" else None
    if absent:
        expr = f"({expr}) or {absent}"
    out = {"alert": rule.name, "expr": expr}
    if rule.for_seconds:
        out["for"] = _duration(rule.for_seconds)
    if rule.keep_firing_seconds:
        out["keep_firing_for"] = _duration(rule.keep_firing_seconds)
    out["labels"] = dict(sorted(rule.labels.items()))
    annotations = {"summary": _template(rule, rule.annotations["summary"])}
    if rule.annotations.get("description"):
        annotations["description"] = _template(rule, rule.annotations["description"])
    if rule.annotations.get("runbook_url"):
        annotations["runbook_url"] = rule.annotations["runbook_url"]
    if rule.resolve_threshold is not None:
        annotations["resolve_threshold"] = (f"{rule.resolve_threshold:g} (the control plane's own engine resolves "
                                            "only past this; Prometheus resolves at the threshold)")
    out["annotations"] = annotations
    return out


def _template(rule, text: str) -> str:
    """Our annotation with the rule's own threshold and window filled in, and {value...} as a
    Prometheus template (percent formats humanized as percentages)."""
    import re

    from .rules import VALUE_FIELD

    text = re.sub(r"\{value:[^}]*%\}", "\x00PCT\x00", text)
    text = VALUE_FIELD.sub("\x00NUM\x00", text)
    try:
        text = text.format(threshold=rule.threshold, window=rule.params.get("window", ""), rule=rule.name,
                           **rule.labels)
    except (KeyError, ValueError, IndexError):
        pass
    return text.replace("\x00PCT\x00", "{{ $value | humanizePercentage }}").replace("\x00NUM\x00", "{{ $value | humanize }}")


def _duration(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render(rules, interval_seconds: float) -> str:
    document = {"groups": [{"name": "mailgoat-controlplane", "interval": f"{int(interval_seconds)}s",
                            "rules": [prometheus_rule(rule) for rule in rules.rules]}]}
    header = ("# Generated by `controlplane alerts export` from alerts/rules.yaml: do not edit by hand.\n"
              "# A test fails when this file and rules.yaml disagree.\n")
    return header + yaml.safe_dump(document, sort_keys=False, width=200)


def export(rules, directory: Path, interval_seconds: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "controlplane.rules.yml"
    path.write_text(render(rules, interval_seconds))
    return path
