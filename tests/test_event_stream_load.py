"""Open event streams never starve the API (issue 12): the real gunicorn (gunicorn.conf.py, one
worker process, as a small Fly machine) holds more /api/v1/events streams than the old gthread
worker had threads, while /ready, send/message and /status still answer at once.

Run alone with
    ./dev test tests/test_event_stream_load.py -q
(needs a PostgreSQL server; `GUNICORN_WORKER_CLASS=gthread` in the environment reproduces the
old starvation: this test then fails.)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from controlplane.settings import PROJECT_ROOT
from tests.conftest import development_env
from tests.processes import Install

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STREAMS = 16  # the old web tier had 4 request threads per process
PROMPT_SECONDS = 2.0
MESSAGE = {"to": ["a@example.com"], "from": "agent@mailgoat.dev", "subject": "s", "plain_body": "b"}


class OpenStream(threading.Thread):
    """One EventSource-like client: holds its stream open and keeps what it receives."""

    def __init__(self, url: str, key: str):
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.opened = threading.Event()
        self.stop = threading.Event()
        self.status: int | None = None
        self.events: list[dict] = []

    def run(self) -> None:
        timeout = httpx.Timeout(5, read=30)
        with httpx.stream("GET", self.url + "/api/v1/events", headers={"X-Server-API-Key": self.key},
                          timeout=timeout) as response:
            self.status = response.status_code
            self.opened.set()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    self.events.append(json.loads(line[len("data: "):]))
                if self.stop.is_set():
                    return


def timed(call) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@pytest.fixture
def install(tmp_path, postgres_url):
    install = Install(tmp_path, postgres_url, EVENTS_POLL_SECONDS="0.2", EVENTS_STREAM_SECONDS="120",
                      EVENTS_STREAMS_MAX=str(STREAMS), EVENTS_STREAMS_PER_KEY=str(STREAMS + 1),
                      **({"GUNICORN_WORKER_CLASS": os.environ["GUNICORN_WORKER_CLASS"]}
                         if "GUNICORN_WORKER_CLASS" in os.environ else {}))
    install.migrate()
    yield install
    install.stop()


def test_sixteen_open_streams_leave_ready_send_and_status_prompt(install):
    key = install.create_key("admin")
    url = install.start_web()
    install.start_worker()  # runs the checks /ready answers from
    assert _wait(lambda: httpx.get(url + "/ready", timeout=5).status_code == 200, 30), install.logs()
    streams = [OpenStream(url, key) for _ in range(STREAMS)]
    for stream in streams:
        stream.start()
    try:
        for stream in streams:
            assert stream.opened.wait(10) and stream.status == 200, install.logs()

        with httpx.Client(base_url=url, timeout=PROMPT_SECONDS * 5) as client:
            ready, ready_seconds = timed(lambda: client.get("/ready"))
            sent, send_seconds = timed(lambda: client.post("/api/v1/send/message", json=MESSAGE,
                                                           headers={"X-Server-API-Key": key}))
            status, status_seconds = timed(lambda: client.get("/status"))
            beyond = client.get("/api/v1/events", headers={"X-Server-API-Key": key})

        assert ready.status_code == 200 and ready_seconds < PROMPT_SECONDS, (ready_seconds, ready.text)
        assert sent.status_code == 200 and send_seconds < PROMPT_SECONDS, (send_seconds, sent.text)
        assert status.status_code == 200 and status_seconds < PROMPT_SECONDS, status_seconds
        # One stream more than EVENTS_STREAMS_MAX is refused, not queued behind the others.
        assert beyond.status_code == 503 and beyond.headers["Retry-After"] == "5"
        assert beyond.json()["data"]["code"] == "EventStreamsFull"
        # Every open stream is live: the message's event reaches all of them.
        message_id = sent.json()["data"]["message_id"]
        for stream in streams:
            assert _wait(lambda: any(e["data"].get("message_id") == message_id for e in stream.events), 10), \
                install.logs()
    finally:
        for stream in streams:
            stream.stop.set()


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


# What a gevent web worker does: patch, build the app, then wait on PostgreSQL from many greenlets.
GREENLETS_WAITING_ON_POSTGRES = """
from gevent import monkey; monkey.patch_all()
import time, gevent
from sqlalchemy import text
from controlplane import create_app
from controlplane.database import install_answer_deadline
from controlplane.extensions import db

app = create_app()
install_answer_deadline(app.extensions["controlplane.settings"])

def sleep_in_postgres():
    with app.app_context():
        db.session.execute(text("SELECT pg_sleep(0.5)"))
        db.session.remove()

started = time.monotonic()
gevent.joinall([gevent.spawn(sleep_in_postgres) for _ in range(8)], raise_error=True)
print(time.monotonic() - started)
"""


@pytest.mark.parametrize("answer_timeout", ["0", "40"])
def test_greenlets_wait_on_postgres_together_with_or_without_an_answer_deadline(tmp_path, postgres_url,
                                                                                answer_timeout):
    env = {**os.environ, **development_env(tmp_path, postgres_url), "DB_ANSWER_TIMEOUT_SECONDS": answer_timeout,
           "LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-c", GREENLETS_WAITING_ON_POSTGRES], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    # Eight 0.5 s queries one after another take 4 s: a psycopg2 wait that blocked the hub.
    assert float(done.stdout.strip().splitlines()[-1]) < 2.0


def test_open_streams_end_at_sigterm_so_gunicorn_stops_without_waiting_out_its_graceful_timeout(install):
    key = install.create_key("admin")
    url = install.start_web()  # GUNICORN_GRACEFUL_TIMEOUT=3: a stream held to the end would cost 3 s
    streams = [OpenStream(url, key) for _ in range(4)]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.opened.wait(10) and stream.status == 200, install.logs()

    web = install.processes["web"]
    stopping = time.monotonic()
    web.send_signal(signal.SIGTERM)
    for stream in streams:
        stream.join(10)
        assert not stream.is_alive(), "a stream outlived the drain"
    # Within a poll interval or so of the signal, not when the graceful timeout cuts them off.
    assert time.monotonic() - stopping < 2, install.logs()
    assert web.wait(10) == 0
