"""A real install under test: `controlplane db upgrade`, gunicorn and `controlplane worker` as
subprocesses of this test, on one database, with the short intervals a test can wait for.

    install = Install(root, database_url, PAGERDUTY_EVENTS_URL=..., ...)
    install.migrate()
    install.start_web(); install.start_worker()
    ...
    install.stop()

Output of every process goes to a log file under `root` (never a pipe nobody reads, which
blocks the process once it fills); `install.logs()` gives their tails for assertion messages.
`Observer` reads what on-call would look at (alert states, notifications, heartbeats) straight
from the database, not through a proxy the test may have cut.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from controlplane.settings import PROJECT_ROOT
from tests.conftest import development_env, free_port, wait_for

# Fast enough for a test to see several of each within seconds.
FAST_INTERVALS = {
    "ALERT_EVALUATION_SECONDS": "1",
    "LEADER_POLL_SECONDS": "0.5",
    "WORKER_STALE_SECONDS": "5",
    "REQUEST_STATS_FLUSH_SECONDS": "1",
    "DB_CONNECT_TIMEOUT_SECONDS": "2",
}
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, as PagerDuty's are


def install_env(root: Path, database_url: str, **overrides: str) -> dict[str, str]:
    """Environment for every process of one install: what tests/conftest.py's base_env gives an
    app in the test's own process (development, no outside service configured unless `overrides`
    configure one), with short intervals."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PROMETHEUS_MULTIPROC_DIR", "CONTROLPLANE_TEST", "PAGERDUTY_", "ALERT_"))}
    env.update(development_env(root, database_url))
    env.update({
        "LOG_LEVEL": "WARNING",
        "INSTANCE_ID": "fault-suite",
        "DRAIN_SECONDS": "0",
        **FAST_INTERVALS,
    })
    env.update(overrides)
    return env


def pagerduty_env(double, authority) -> dict[str, str]:
    """Point the install at the PagerDuty double and make its processes trust its certificate."""
    return {"PAGERDUTY_EVENTS_URL": double.url, "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "SSL_CERT_FILE": str(authority.ca_file)}


class Install:
    def __init__(self, root: Path, database_url: str, direct_url: str | None = None, **overrides: str):
        """`database_url` is what the processes use (perhaps through a proxy); `direct_url` is how
        the test itself reads the same database (default: the same URL)."""
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.env = install_env(root, database_url, **overrides)
        self.observer = Observer(direct_url or database_url)
        self.processes: dict[str, subprocess.Popen] = {}
        self.urls: list[str] = []

    # ------------------------------------------------------------ one-off commands

    def cli(self, *args: str, timeout: float = 120) -> str:
        """`controlplane ARGS...`; returns its output; fails the test with that output if it fails."""
        done = subprocess.run([sys.executable, "-m", "controlplane", *args], env=self.env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"controlplane {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return done.stdout

    def migrate(self) -> str:
        """What Fly's release_command runs before every deploy."""
        return self.cli("db", "upgrade")

    def create_key(self, scopes: str = "admin") -> str:
        output = self.cli("keys", "create", "--name", f"fault suite {scopes}", "--scopes", scopes)
        return next(line.split()[1] for line in output.splitlines() if line.startswith("key "))

    # ------------------------------------------------------------ long-running processes

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        log.close()  # the child holds its own copy
        self.processes[name] = process
        return process

    def start_web(self, name: str = "web", port: int | None = None) -> str:
        """gunicorn with gunicorn.conf.py (one worker process, as a small Fly machine); returns its URL
        once it answers /live."""
        port = port or free_port()
        env = {**self.env, "PORT": str(port), "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4",
               "GUNICORN_ACCESS_LOG": "/dev/null", "GUNICORN_GRACEFUL_TIMEOUT": "3",
               "PROMETHEUS_MULTIPROC_DIR": str(self.root / f"{name}-metrics")}
        process = self._spawn(name, [sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py")],
                              env)
        url = f"http://127.0.0.1:{port}"
        self._wait_until(lambda: self._answers(url + "/live"), process, name)
        self.urls.append(url)
        return url

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        """`controlplane worker`; returns once it has written its first heartbeat."""
        process = self._spawn(name, [sys.executable, "-m", "controlplane", "worker"], self.env)
        self._wait_until(lambda: self.observer.scalar(
            "SELECT count(*) FROM worker_heartbeats WHERE pid = :pid", pid=process.pid), process, name)
        return process

    def kill(self, name: str) -> int:
        """SIGKILL, as the OOM killer or a lost machine does: no handler runs, nothing is cleaned up."""
        process = self.processes[name]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        return process.pid

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.observer.close()

    def logs(self, chars: int = 3000) -> str:
        """The end of every process's log, for assertion messages."""
        return "\n".join(f"--- {path.name}\n" + path.read_text(errors="replace")[-chars:]
                         for path in sorted(self.root.glob("*.log")))

    def _wait_until(self, ready, process: subprocess.Popen, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.logs()}")
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{name} not ready within {timeout}s:\n{self.logs()}")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


class Observer:
    """Reads the install's database directly (what `controlplane alerts list` and friends show)."""

    def __init__(self, database_url: str):
        self.engine = create_engine(database_url, poolclass=NullPool, connect_args={"connect_timeout": 5})

    def rows(self, sql: str, **params) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(sql), params)]

    def scalar(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def execute(self, *statements: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            for statement in statements:
                conn.execute(text(statement))

    def last_evaluation(self) -> float | None:
        """Epoch seconds of the newest evaluation any rule recorded (alert_states.last_evaluated_at:
        stored in UTC, so epoch() reads it the same with or without a time zone)."""
        value = self.scalar("SELECT extract(epoch FROM max(last_evaluated_at)) FROM alert_states")
        return None if value is None else float(value)

    def states(self) -> dict[str, dict]:
        return {row["rule"]: row for row in self.rows("SELECT * FROM alert_states")}

    def notifications(self) -> list[dict]:
        """The alert outbox: what was meant for PagerDuty, and how it went."""
        return self.rows("SELECT rule, action, state, attempts, last_error FROM alert_notifications ORDER BY id")

    def leaders(self) -> list[dict]:
        return self.rows("SELECT instance, pid, is_leader, extract(epoch FROM last_seen_at)::float AS seen "
                         "FROM worker_heartbeats WHERE is_leader")

    def close(self) -> None:
        self.engine.dispose()


def wait_until(predicate, timeout: float, interval: float = 0.25):
    """conftest's wait_for, but None after `timeout` instead of failing: a fault test records that
    nothing came rather than failing mid-measurement."""
    try:
        return wait_for(predicate, timeout, interval)
    except AssertionError:
        return None


def write_figures(artifacts: Path, name: str, figures: dict) -> Path:
    """One fault's measured figures, as test-artifacts/faults/NAME.json (copied into docs/reliability.md)."""
    folder = artifacts / "faults"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True, default=str) + "\n")
    print(f"\nfault {name}: {json.dumps(figures, sort_keys=True, default=str)}")
    return path
