"""Deployment artefacts: fly.toml, the Dockerfile, gunicorn (multiprocess metrics), the smoke test."""
import os
import signal
import subprocess
import sys
import time
import tomllib

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.extensions import db
from controlplane.settings import PROJECT_ROOT
from controlplane.smoke import run_smoke
from controlplane.telemetry.models import RequestMinute
from tests.conftest import free_port, new_key, wait_for

FLY = tomllib.loads((PROJECT_ROOT / "fly.toml").read_text())


def duration_seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60}
    for unit in ("ms", "s", "m"):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * units[unit]
    raise ValueError(value)


def test_fly_shuts_down_gracefully_and_longer_than_gunicorn(monkeypatch):
    # The config sets PROMETHEUS_MULTIPROC_DIR when loaded; keep that out of this process.
    monkeypatch.setattr(os, "environ", dict(os.environ))
    gunicorn_conf = {}
    exec(compile((PROJECT_ROOT / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), gunicorn_conf)
    assert FLY["kill_signal"] == "SIGTERM"
    assert FLY["kill_timeout"] >= gunicorn_conf["graceful_timeout"]


def test_fly_runs_migrations_and_both_processes():
    assert FLY["deploy"]["release_command"] == "controlplane db upgrade"
    assert FLY["processes"]["web"].startswith("gunicorn -c gunicorn.conf.py")
    assert FLY["processes"]["worker"] == "controlplane worker"


def test_fly_http_service_and_health_check_follow_the_plan():
    service = FLY["http_service"]
    assert service["internal_port"] == 8080
    assert service["auto_stop_machines"] in ("stop", "suspend", True)
    assert service["auto_start_machines"] is True
    assert service["min_machines_running"] >= 1
    assert service["processes"] == ["web"]
    (check,) = service["checks"]
    assert check["method"] == "GET" and check["path"] == "/health"
    assert (duration_seconds(check["interval"]), duration_seconds(check["timeout"]),
            duration_seconds(check["grace_period"])) == (15, 10, 30)


def test_fly_scrapes_both_process_groups_and_sizes_their_vms(tmp_path):
    from controlplane.settings import Settings

    worker_port = Settings.from_env({"APP_ENV": "development", "DATA_DIR": str(tmp_path)}).worker_metrics_port
    targets = {tuple(m["processes"]): (m["port"], m["path"]) for m in FLY["metrics"]}
    assert targets == {("web",): (8080, "/metrics"), ("worker",): (worker_port, "/metrics")}
    assert "WORKER_METRICS_PORT" not in FLY["env"]  # the default is what fly.toml scrapes
    assert {tuple(vm["processes"]) for vm in FLY["vm"]} == {("web",), ("worker",)}


def test_dockerfile_runs_from_the_repository_tree():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "COPY . ." in dockerfile and "pip install -e ." in dockerfile
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py"]' in dockerfile
    assert "USER " in dockerfile  # not root


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read().decode()[-3000:]}")
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server never became ready")


@pytest.fixture
def live_server(base_env, tmp_path):
    """`controlplane run` in a subprocess, as a newcomer starts it."""
    port = free_port()
    # A worker metrics port is set to prove `run` leaves it alone: its web /metrics has everything.
    env = {**os.environ, **base_env, "LOG_LEVEL": "WARNING", "DRAIN_SECONDS": "3", "LEADER_POLL_SECONDS": "0.5",
           "WORKER_METRICS_PORT": str(free_port()), "DELIVERY_INTERVAL_SECONDS": "0.2"}
    process = subprocess.Popen([sys.executable, "-m", "controlplane", "run", "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    process.worker_metrics_port = int(env["WORKER_METRICS_PORT"])
    try:
        wait_until_ready(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_run_serves_health_and_drains_on_sigterm_without_counting_its_503s(live_server, make_app):
    url, process = live_server
    body = httpx.get(url + "/health").json()
    assert body["status"] == "healthy", body
    assert body["checks"]["worker"] == "healthy" and body["checks"]["database"] == "healthy"
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    for _ in range(10):
        ready = httpx.get(url + "/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert process.wait(timeout=15) == 0
    # Its last flush has run: the draining 503s, like every probe, are no requests to alert on.
    with make_app(migrate=False).app_context():
        assert db.session.query(RequestMinute).count() == 0


@pytest.mark.slow
def test_run_serves_the_workers_series_on_its_web_metrics_and_opens_no_worker_port(live_server, make_app):
    url, process = live_server
    key = new_key(make_app(migrate=False), "send")
    sent = httpx.post(url + "/api/v1/send/message", headers={"X-Server-API-Key": key},
                      json={"to": ["alice@example.com"], "from": "ops@mailgoat.dev", "subject": "hi", "plain_body": "b"})
    assert sent.status_code == 200, sent.text

    def delivered():
        text = httpx.get(url + "/metrics").text
        return [s for family in text_string_to_metric_families(text) if family.name == "mailgoat_emails_sent"
                for s in family.samples if s.name == "mailgoat_emails_sent_total" and s.labels == {"status": "sent"}]

    (sample,) = wait_for(delivered, timeout=30)
    assert sample.value == 1  # delivered by the in-process worker, counted once, on the one target
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{process.worker_metrics_port}/metrics", timeout=2)


@pytest.mark.slow
def test_smoke_passes_against_a_live_server(live_server):
    url, _ = live_server
    lines = []
    assert run_smoke(url, None, 5, echo=lines.append) is True
    assert [line.split(":")[0] for line in lines] == ["ok   live", "ok   health", "ok   ready", "ok   metrics",
                                                      "smoke test passed"]


@pytest.mark.slow
def test_smoke_fails_fast_and_says_why(live_server):
    url, _ = live_server
    lines = []
    # The API round trip expects the gateway's MessageNotFound for a message that cannot exist.
    assert run_smoke(url, "not-a-valid-key", 5, echo=lines.append) is False
    assert lines[-1].startswith("FAIL api round trip:")
    lines.clear()
    assert run_smoke(f"http://127.0.0.1:{free_port()}", None, 2, echo=lines.append) is False
    assert lines == [lines[0]] and lines[0].startswith("FAIL live: ConnectError")


def test_smoke_cli_exit_code_on_failure():
    result = subprocess.run([sys.executable, "-m", "controlplane", "smoke", "--url", f"http://127.0.0.1:{free_port()}",
                             "--timeout", "2"], capture_output=True, text=True)
    assert result.returncode == 1 and "FAIL live" in result.stdout


@pytest.mark.slow
def test_gunicorn_merges_metrics_across_workers_and_stops_gracefully(make_app, base_env, tmp_path):
    make_app()  # migrates the database the server will use
    port = free_port()
    env = {**os.environ, **base_env, "PORT": str(port), "WEB_CONCURRENCY": "2", "LOG_LEVEL": "WARNING",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "GUNICORN_ACCESS_LOG": "/dev/null"}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py")],
                               cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                httpx.get(url + "/live", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and process.poll() is None, process.stderr.read().decode()[-3000:]
                time.sleep(0.2)
        for _ in range(40):
            # Fresh connections spread requests over both workers.
            with httpx.Client() as client:
                client.get(url + "/live")
        assert len(list((tmp_path / "metrics").glob("*.db"))) >= 2, "both workers wrote metric files"
        text = httpx.get(url + "/metrics").text
        counts = {
            s.labels["route"]: s.value
            for family in text_string_to_metric_families(text) if family.name == "http_server_probe_duration_seconds"
            for s in family.samples if s.name.endswith("_count")
        }
        assert counts["/live"] >= 40  # the first probe(s) plus our 40, whichever worker answered
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
