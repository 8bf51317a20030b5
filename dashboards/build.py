"""Builds the Grafana dashboards in this folder: `python dashboards/build.py`.

The JSON files are committed (Grafana provisioning reads them); a test fails when they differ
from what this script builds, and another checks every PromQL expression in them parses and names
only metrics the running app exports. Each dashboard has a fixed uid and a `datasource` template
variable (Grafana provisioning does not resolve `${DS_PROMETHEUS}`).
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
REQ = "http_server_request_duration_seconds"


def panel(title: str, exprs: list[tuple[str, str]], unit: str = "short", kind: str = "timeseries",
          thresholds: list[tuple[float, str]] | None = None, width: int = 12, height: int = 8,
          description: str = "") -> dict:
    steps = [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in (thresholds or [])]
    return {"type": kind, "title": title, "description": description, "datasource": DS,
            "gridPos": {"w": width, "h": height},
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
                                         **({"custom": {"thresholdsStyle": {"mode": "line"}}}
                                            if thresholds and kind == "timeseries" else {})},
                            "overrides": []},
            "targets": [{"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
                        for i, (expr, legend) in enumerate(exprs)]}


def dashboard(uid: str, title: str, panels: list[dict], tags: list[str]) -> dict:
    x = y = 0
    row_height = 0
    for number, item in enumerate(panels, start=1):
        w, h = item["gridPos"]["w"], item["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + row_height
            row_height = 0
        item["gridPos"].update({"x": x, "y": y})
        item["id"] = number
        x += w
        row_height = max(row_height, h)
    return {
        "uid": uid, "title": title, "tags": ["mailgoat", *tags], "timezone": "utc", "schemaVersion": 39,
        "version": 1, "editable": True, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "label": "Data source", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []}, "panels": panels,
    }


def quantile(q: float) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({REQ}_bucket[5m])))"


def service_red() -> dict:
    return dashboard("mailgoat-red", "MailGoat control plane: requests (RED)", [
        panel("Requests per second by status", [(f"sum by (status) (rate({REQ}_count[5m]))", "{{status}}")], "reqps"),
        panel("5xx ratio", [(f'sum(rate({REQ}_count{{status=~"5.."}}[5m])) / sum(rate({REQ}_count[5m]))', "5xx")],
              "percentunit", thresholds=[(0.01, "red")], description="Pages above 1% (HighErrorRate)."),
        panel("Latency p50 / p95 / p99 (the 2 s line is the alert)",
              [(quantile(0.5), "p50"), (quantile(0.95), "p95"), (quantile(0.99), "p99")], "s",
              thresholds=[(2.0, "red")], width=16),
        panel("Share slower than 2 s", [(f'1 - sum(rate({REQ}_bucket{{le="2.0"}}[5m])) / sum(rate({REQ}_count[5m]))',
                                         "> 2 s")], "percentunit", thresholds=[(0.05, "red")], width=8),
        panel("Requests by route", [(f"sum by (route) (rate({REQ}_count[5m]))", "{{route}}")], "reqps"),
        panel("In flight", [("sum(http_server_requests_in_flight)", "in flight")], "short"),
        panel("API errors by code", [("sum by (type) (rate(mailgoat_api_errors_total[5m]))", "{{type}}")], "reqps"),
        panel("Probes and scrapes by route and status",
              [("sum by (route, status) (rate(http_server_probe_duration_seconds_count[5m]))", "{{route}} {{status}}")],
              "reqps", description="/health, /ready, /live, /metrics and static files: not user traffic, so no "
              "rule reads them; a /ready answering 503 for long means instances are out of rotation."),
    ], ["red"])


def email_pipeline() -> dict:
    return dashboard("mailgoat-email", "MailGoat control plane: email pipeline", [
        panel("Sent to Postal by outcome", [("sum by (status) (rate(mailgoat_emails_sent_total[5m]))", "{{status}}")],
              "ops"),
        panel("Outbox depth by state", [("sum by (state) (mailgoat_outbox_messages)", "{{state}}")], "short"),
        panel("Oldest due message waiting", [("max(mailgoat_outbox_oldest_due_age_seconds)", "age")], "s",
              thresholds=[(600, "red")], description="Pages after 10 minutes (DeliveryBacklog)."),
        panel("Postal call latency p50 / p95", [
            ("histogram_quantile(0.5, sum by (le) (rate(mailgoat_send_duration_seconds_bucket[5m])))", "p50"),
            ("histogram_quantile(0.95, sum by (le) (rate(mailgoat_send_duration_seconds_bucket[5m])))", "p95")], "s"),
        panel("Retries", [("sum(rate(mailgoat_retries_total[5m]))", "retries")], "ops"),
        panel("Postal health", [('max(controlplane_check_status{check="postal",status="healthy"})', "healthy")],
              "bool", kind="stat", width=6),
        panel("Subscriber webhooks outbox", [("sum by (state) (mailgoat_webhook_outbox)", "{{state}}")], "short",
              width=18),
    ], ["email"])


def database() -> dict:
    return dashboard("mailgoat-db", "MailGoat control plane: database", [
        panel("Pool: checked out, idle, overflow", [
            ("sum(controlplane_db_pool_checked_out)", "checked out"), ("sum(controlplane_db_pool_idle)", "idle"),
            ("sum(controlplane_db_pool_overflow)", "overflow"), ("sum(controlplane_db_pool_max_connections)", "max")],
              "short"),
        panel("Pool saturation", [("max(controlplane_db_pool_checked_out / controlplane_db_pool_max_connections)",
                                   "busiest process")], "percentunit", thresholds=[(1.0, "red")]),
        panel("Server connections against max_connections", [
            ("max(controlplane_db_connections)", "connections"), ("max(controlplane_db_max_connections)", "max")],
              "short"),
        panel("Connections used", [("max(controlplane_db_connections / controlplane_db_max_connections)", "used")],
              "percentunit", thresholds=[(0.8, "red")]),
        panel("Database check latency (query round trip)", [
            ('max(controlplane_check_duration_seconds{check="database"})', "check")], "s", width=24),
    ], ["database"])


def operations() -> dict:
    return dashboard("mailgoat-ops", "MailGoat control plane: operations", [
        panel("Alerts firing", [("sum(controlplane_alerts_firing)", "firing")], "short", kind="stat", width=6,
              thresholds=[(1, "red")]),
        panel("Firing by rule", [("sum by (rule) (controlplane_alerts_firing)", "{{rule}}")], "short", kind="table",
              width=18),
        panel("Health checks", [("max by (check, status) (controlplane_check_status)", "{{check}} {{status}}")],
              "short", kind="table"),
        panel("Check results age", [("max by (check) (controlplane_check_age_seconds)", "{{check}}")], "s"),
        panel("Backup age (hours)", [('(time() - max by (kind) (controlplane_backup_last_success_timestamp_seconds)) / 3600',
                                      "{{kind}}")], "h", thresholds=[(26, "red")]),
        panel("Backup size", [("max by (kind) (controlplane_backup_last_size_bytes)", "{{kind}}")], "bytes"),
        panel("RPO now (age of the newest backup or sealed WAL)", [("max(controlplane_backup_rpo_seconds)", "RPO")], "s"),
        panel("Restore drill", [("max(controlplane_backup_drill_success)", "passed"),
                                ("max(controlplane_backup_drill_rto_seconds)", "RTO s")], "short", kind="stat"),
        panel("Job runs: last success", [("time() - max by (job) (controlplane_job_last_success_timestamp_seconds)",
                                          "{{job}}")], "s"),
        panel("Job runs: last run failed", [("1 - min by (job) (controlplane_job_last_run_success)", "{{job}}")],
              "short"),
        panel("Workers and leader", [("max(controlplane_workers_live)", "live"),
                                     ("max(controlplane_workers_leading)", "leading")], "short"),
        panel("Last alert evaluation", [("time() - max(controlplane_alert_last_evaluation_timestamp_seconds)", "age")],
              "s", thresholds=[(120, "red")], kind="stat", width=6,
              description="The web watchdog pages AlertingStalled past ALERT_WATCHDOG_SECONDS (default 120 s)."),
        panel("Alert rules in error", [("max(controlplane_alert_rules_in_error)", "in error")], "short", kind="stat",
              width=6, thresholds=[(1, "red")], description="Rules whose indicator raises (AlertRuleFailing)."),
        panel("Rule errors by rule", [("sum by (rule) (increase(controlplane_alert_rule_errors_total[15m]))", "{{rule}}")],
              "short", width=6),
        panel("Misconfigured alert channels", [("max by (channel) (controlplane_alert_channel_misconfigured)",
                                                "{{channel}}")], "short", kind="table", width=6),
        panel("Alert evaluation time p95", [
            ("histogram_quantile(0.95, sum by (le) (rate(controlplane_alert_evaluation_seconds_bucket[15m])))", "p95")],
              "s"),
        panel("Failed deployments and migrations", [("max by (kind) (controlplane_deployment_last_failed)", "{{kind}}")],
              "short", width=24),
        panel("Status subscribers", [("max by (kind, state) (controlplane_status_subscribers)", "{{kind}} {{state}}")],
              "short", kind="table", width=8),
        panel("Status notifications", [("max by (state) (controlplane_status_notifications)", "{{state}}")], "short",
              width=8),
        panel("Status notifier behind", [("max(controlplane_status_notify_backlog_seconds)", "behind")], "s",
              thresholds=[(300, "red")], width=8, description="Warns after 5 minutes (StatusNotificationsBehind)."),
    ], ["operations"])


BUILDERS = {"service-red.json": service_red, "email-pipeline.json": email_pipeline, "database.json": database,
            "operations.json": operations}


def render(builder) -> str:
    return json.dumps(builder(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    for name, builder in BUILDERS.items():
        (HERE / name).write_text(render(builder))
        print(f"wrote dashboards/{name}")
