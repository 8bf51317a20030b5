"""The worker is scraped: gunicorn and `controlplane worker` as separate processes on one PostgreSQL
database, mail sent through the web and delivered by the worker through a Postal double, both
targets scraped the way fly.toml scrapes them. Every metric a shipped rule or dashboard names has
a sample on one of the two, and what the worker counts is counted once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from controlplane.cli import main
from controlplane.settings import PROJECT_ROOT
from tests.conftest import free_port, new_key, wait_for
from tests.test_dashboards import dashboard_expressions, metric_names, rule_expressions

pytestmark = pytest.mark.slow

MESSAGES = 5
# Series that exist only while their event lasts, by design: a sample for them on a quiet system
# would be a false alarm. Their families must still be declared (a TYPE line) on a target.
WHILE_IT_HAPPENS = {"controlplane_alerts_firing": "one series per firing rule; none while nothing fires"}


def scrape(url: str) -> tuple[dict[str, list], str]:
    """(samples by sample name, the raw text) of one scrape target."""
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text[:500]
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples, answer.text


def total(samples: dict[str, list], name: str, **labels) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def started(process: subprocess.Popen, url: str, name: str) -> None:
    def up():
        assert process.poll() is None, f"{name} exited: {process.stderr.read().decode()[-3000:]}"
        return answers(url)

    wait_for(up, timeout=40, interval=0.2)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def service(make_app, postgres_url, base_env, tmp_path, postal):
    """(app on the same database, web URL, worker metrics URL, env) of a running web and worker."""
    app = make_app(DATABASE_URL=postgres_url)  # migrates the database both processes use
    web_port, metrics_port = free_port(), free_port()
    env = {**os.environ, **base_env, "DATABASE_URL": postgres_url, "LOG_LEVEL": "WARNING",
           "POSTAL_TRANSPORT": "http", "POSTAL_API_URL": postal.url, "POSTAL_API_KEY": postal.api_key,
           "PORT": str(web_port), "WEB_CONCURRENCY": "2", "GUNICORN_ACCESS_LOG": "/dev/null",
           # The worker inherits gunicorn's directory on purpose: the case where both could count its series.
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
           "WORKER_METRICS_PORT": str(metrics_port), "LEADER_POLL_SECONDS": "0.5",
           "DELIVERY_INTERVAL_SECONDS": "0.2", "DELIVERY_BACKOFF_SECONDS": "1", "ALERT_EVALUATION_SECONDS": "1"}
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py")],
                           cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    worker = None
    try:
        web_url = f"http://127.0.0.1:{web_port}"
        started(web, web_url + "/live", "gunicorn")  # it creates the metrics directory
        worker = subprocess.Popen([sys.executable, "-m", "controlplane", "worker"], cwd=PROJECT_ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        started(worker, metrics_url, "worker")
        yield app, web_url, metrics_url, env
    finally:
        for process in (worker, web):
            if process is not None:
                stop(process)


def send(web_url: str, key: str, subject: str) -> httpx.Response:
    return httpx.post(web_url + "/api/v1/send/message", headers={"X-Server-API-Key": key}, timeout=10,
                      json={"to": ["alice@example.com"], "from": "ops@mailgoat.dev", "subject": subject,
                            "plain_body": "hello"})


@pytest.mark.postgres
def test_both_targets_together_hold_every_metric_the_rules_and_dashboards_name(service, postal):
    app, web_url, metrics_url, env = service
    key = new_key(app, "send")

    # The first attempt fails: a retry. The backoff (DELIVERY_BACKOFF_SECONDS=1) leaves the test time to
    # heal Postal before the next attempt; with no backoff the message used up its attempts in milliseconds.
    postal.mode = "error500"
    assert send(web_url, key, "first").status_code == 200
    wait_for(lambda: any(r["path"] == "/api/v1/send/message" for r in postal.requests), timeout=30)
    postal.mode = "ok"
    for number in range(2, MESSAGES + 1):
        assert send(web_url, key, f"message {number}").status_code == 200
    wait_for(lambda: len(postal.sent) == MESSAGES, timeout=60)
    assert send(web_url, "not-a-key", "refused").status_code == 401  # mailgoat_api_errors_total
    runner = CliRunner()
    for command in (["backup", "run"], ["backup", "drill"]):  # the backup and drill series
        result = runner.invoke(main, command, env=env)
        assert result.exit_code == 0, result.output

    def worker_counted_everything():
        samples, _ = scrape(metrics_url)
        return total(samples, "mailgoat_emails_sent_total", status="sent") == MESSAGES and samples

    worker = wait_for(worker_counted_everything, timeout=30)
    # The leader has evaluated the rules a few times by now (every second).
    wait_for(lambda: total(scrape(metrics_url)[0], "controlplane_alert_evaluation_seconds_count") >= 2, timeout=30)
    worker, _ = scrape(metrics_url)
    web, web_text = scrape(web_url + "/metrics")

    # Counted once: the web's merge skips the worker's files although they share the directory.
    assert total(web, "mailgoat_emails_sent_total", status="sent") == 0
    assert total(worker, "mailgoat_retries_total") >= 1
    assert total(worker, "mailgoat_send_duration_seconds_count") >= MESSAGES
    assert total(web, "mailgoat_api_errors_total", type="InvalidServerAPIKey") == 1
    # Shared state is the web's: the worker serves none of it.
    assert "controlplane_check_status" not in worker and "mailgoat_outbox_messages" not in worker
    assert total(web, "mailgoat_outbox_messages") == 0  # everything delivered

    named = set()
    for expr in dashboard_expressions() + rule_expressions():
        named |= metric_names(expr)
    missing = sorted(name for name in named - set(WHILE_IT_HAPPENS) if name not in web and name not in worker)
    assert not missing, f"no sample on either target for {missing}"
    for family in set(WHILE_IT_HAPPENS) & named:
        assert f"# TYPE {family} " in web_text, family


def test_a_taken_worker_metrics_port_is_one_log_line_and_the_worker_runs_on(make_app, base_env):
    """Another process holds the port: the worker says so once and keeps its heartbeat (and delivery) going."""
    import socket

    make_app()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **base_env, "WORKER_METRICS_PORT": str(port), "LEADER_POLL_SECONDS": "0.2",
               "LOG_LEVEL": "INFO"}
        worker = subprocess.Popen([sys.executable, "-m", "controlplane", "worker"], cwd=PROJECT_ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            from controlplane.extensions import db
            from controlplane.jobs.models import WorkerHeartbeat

            app = make_app(migrate=False)

            def beating():
                assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
                with app.app_context():
                    return db.session.query(WorkerHeartbeat).count()

            wait_for(beating, timeout=30)
        finally:
            stop(worker)
        log = worker.stderr.read().decode()
    assert f"worker metrics: cannot listen on 0.0.0.0:{port}" in log
    assert "Traceback" not in log
