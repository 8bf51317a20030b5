"""The fault suite (issue 11): each fault injected into a real running service, asserting what
on-call sees, which is what reaches PagerDuty.

Every scenario runs its own install (tests/processes.py): a fresh PostgreSQL database migrated
by `controlplane db upgrade`, gunicorn and `controlplane worker` as subprocesses with short
intervals, the PagerDuty double over HTTPS (tests/doubles/pagerduty.py) and, for the database
fault, a TCP proxy in front of PostgreSQL (tests/doubles/tcp_proxy.py): the machine's server is
never stopped. Each scenario writes its figures to test-artifacts/faults/NAME.json; they are
copied into docs/reliability.md.

The longest scenarios (three minutes of a fresh install, a PagerDuty outage, AlertRuleFailing's
`for: 2m`, a database gone silent) start in the background when the module starts, so the suite
takes about as long as the longest of them, not the sum.

These tests need PostgreSQL (several processes, advisory-lock leadership). CI runs the suite
twice, against SQLite and PostgreSQL; they run in the PostgreSQL pass only: in the SQLite pass
(CONTROLPLANE_REQUIRE_POSTGRES=1 without a PostgreSQL CONTROLPLANE_TEST_DATABASE_URL) they are
skipped with that reason. Run them alone with
    CONTROLPLANE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        ./dev test tests/test_faults.py -s
The backup fault (database dropped, restored from storage alone) is tests/test_backup_disaster.py.
"""
from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from controlplane.alerting.rules import load_rules
from controlplane.settings import PROJECT_ROOT
from tests.conftest import ARTIFACTS, REQUIRE_POSTGRES, SUITE_DATABASE_URL, free_port
from tests.doubles.pagerduty import PagerDutyDouble, Request, TestCertificateAuthority
from tests.doubles.receiver import Receiver
from tests.doubles.tcp_proxy import TcpProxy
from tests.processes import Install, pagerduty_env, wait_until, write_figures

CI_SQLITE_PASS = REQUIRE_POSTGRES and not SUITE_DATABASE_URL.startswith("postgres")
pytestmark = [
    pytest.mark.faults,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(CI_SQLITE_PASS, reason="the fault suite runs in CI's PostgreSQL pass"),
]

WATCHDOG_SECONDS = 15  # ALERT_WATCHDOG_SECONDS for the scenarios that expect the watchdog to page
STALLED = "AlertingStalled"
LOGS = f"process logs: {ARTIFACTS / 'faults' / 'logs'}"
# Rules about the database itself: the only ones allowed to page while it is unreachable.
DATABASE_RULES = {"DatabaseConnectionsHigh", "ConnectionPoolSaturated"}


def rule_of(request: Request) -> str:
    """The rule a PagerDuty event is about, from its dedup key (mailgoat-cp/RULE/... for rules,
    controlplane/AlertingStalled for the watchdog)."""
    parts = (request.dedup_key or "").split("/")
    return parts[1] if len(parts) > 1 else request.dedup_key or "?"


def paged(double: PagerDutyDouble, since: float = 0.0) -> Counter:
    """Accepted trigger events per rule since `since`."""
    return Counter(rule_of(page) for page in double.pages() if page.at >= since)


def first_page(double: PagerDutyDouble, rule: str, since: float) -> float | None:
    times = [page.at for page in double.pages() if rule_of(page) == rule and page.at >= since]
    return min(times) if times else None


# ---------------------------------------------------------------- the lab: installs and doubles


class Lab:
    """What every scenario needs, made once per module; torn down at its end."""

    def __init__(self, root: Path, databases):
        self.root = root
        self.databases = databases
        self.authority = TestCertificateAuthority(root / "tls")
        self._cleanups = []
        self._lock = threading.Lock()

    def pagerduty(self) -> PagerDutyDouble:
        double = PagerDutyDouble(self.authority)
        self._on_teardown(double.stop)
        return double

    def heartbeat_watcher(self) -> Receiver:
        """An outside watcher (healthchecks.io style) for ALERT_HEARTBEAT_URL."""
        watcher = Receiver()
        self._on_teardown(watcher.stop)
        return watcher

    def database(self) -> str:
        with self._lock:
            return self.databases.create()

    def proxy(self, database_url: str) -> TcpProxy:
        proxy = TcpProxy.for_database(database_url)
        self._on_teardown(proxy.stop)
        return proxy

    def install(self, name: str, double: PagerDutyDouble, database_url: str | None = None,
                direct_url: str | None = None, **overrides: str) -> Install:
        url = database_url or self.database()
        install = Install(self.root / name, url, direct_url=direct_url,
                          **pagerduty_env(double, self.authority), **overrides)
        self._on_teardown(install.stop)
        return install

    def _on_teardown(self, cleanup) -> None:
        with self._lock:
            self._cleanups.append(cleanup)

    def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            cleanup()
        keep = ARTIFACTS / "faults" / "logs"  # every process's log, kept past tmp_path's cleanup
        for log in self.root.glob("*/*.log"):
            (keep / log.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(log, keep / log.parent.name / log.name)


SCENARIOS = {}
# Minutes each (or, for database_silent, mostly waiting): started with the module.
BACKGROUND = ("fresh_install", "pagerduty_outage", "rule_failing", "database_silent")


def scenario(func):
    SCENARIOS[func.__name__] = func
    return func


class Runner:
    """Runs scenarios (in threads, so the long ones overlap) and keeps their figures."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.pool = ThreadPoolExecutor(max_workers=len(BACKGROUND) + 1, thread_name_prefix="fault")
        self.futures: dict[str, Future] = {}

    def start(self, name: str) -> None:
        if name not in self.futures:
            self.futures[name] = self.pool.submit(self._run, name)

    def result(self, name: str) -> dict:
        self.start(name)
        return self.futures[name].result()

    def _run(self, name: str) -> dict:
        figures = SCENARIOS[name](self.lab)
        write_figures(ARTIFACTS, name, figures)
        return figures


@pytest.fixture(scope="module", autouse=True)
def faults(request, tmp_path_factory, postgres_databases):
    """Autouse, so the background scenarios start with the module's first test."""
    lab = Lab(tmp_path_factory.mktemp("faults"), postgres_databases)
    runner = Runner(lab)
    selected = {item.originalname for item in request.session.items if item.module is request.module}
    for name in BACKGROUND:
        if any(test.startswith(f"test_{name}") for test in selected):
            runner.start(name)
    yield runner
    for future in runner.futures.values():
        future.exception()  # wait for every scenario before tearing its processes down
    runner.pool.shutdown()
    lab.close()


# ---------------------------------------------------------------- workers SIGKILLed


def _worker_named(install: Install, pid: int) -> str:
    return next(name for name, process in install.processes.items() if process.pid == pid)


@scenario
def workers_killed(lab: Lab) -> dict:
    """Two workers and two web instances; SIGKILL the leader (the other worker must take over, and
    nothing pages), then the last worker (the web watchdog must page, once, and resolve when a
    worker is back; the heartbeat URL's outside watcher hears silence meanwhile)."""
    double, watcher = lab.pagerduty(), lab.heartbeat_watcher()
    install = lab.install("workers-killed", double, ALERT_WATCHDOG_SECONDS=str(WATCHDOG_SECONDS),
                          ALERT_HEARTBEAT_URL=watcher.url)
    install.migrate()
    install.start_web("web-1")
    install.start_web("web-2")
    install.start_worker("worker-1")
    install.start_worker("worker-2")
    observer = install.observer
    assert wait_until(lambda: len(observer.leaders()) == 1 and observer.last_evaluation(), 30), install.logs()

    leader = observer.leaders()[0]["pid"]
    killed = time.time()
    install.kill(_worker_named(install, leader))
    survivor = next(p.pid for name, p in install.processes.items() if name.startswith("worker") and p.pid != leader)
    took_over = wait_until(lambda: any(row["pid"] == survivor for row in observer.leaders()), 20, interval=0.05)
    took_over_at = time.time()
    resumed = wait_until(lambda: (observer.last_evaluation() or 0) > killed + 0.5, 20, interval=0.1)
    resumed_at = time.time()
    time.sleep(max(0.0, killed + WATCHDOG_SECONDS + 10 - time.time()))  # the watchdog bound, and then some
    pages_during_failover = paged(double, killed)

    install.kill(_worker_named(install, survivor))
    all_dead = time.time()
    time.sleep(1)  # a ping already on its way when the worker died
    pings_when_all_dead = len(watcher.received)
    wait_until(lambda: first_page(double, STALLED, all_dead), WATCHDOG_SECONDS + 60)
    stalled_at = first_page(double, STALLED, all_dead)
    time.sleep(10)  # both web instances watch: still one page?
    stalled_events = [r for r in double.pages() if rule_of(r) == STALLED]
    health_while_all_dead = httpx.get(install.urls[0] + "/health", timeout=10).json()
    pings_while_all_dead = len(watcher.received) - pings_when_all_dead

    install.start_worker("worker-3")
    back = time.time()
    resolved = wait_until(lambda: [r for r in double.accepted("resolve") if rule_of(r) == STALLED and r.at >= back],
                          WATCHDOG_SECONDS + 30)
    pings_after_restart = len(watcher.received) - pings_when_all_dead - pings_while_all_dead
    pages = paged(double)
    return {
        "injected": "SIGKILL the leader of two workers; then SIGKILL the last worker; then start one",
        "watchdog_seconds": WATCHDOG_SECONDS,
        "leader_took_over": bool(took_over),
        "failover_seconds": round(took_over_at - killed, 2) if took_over else None,
        "evaluation_resumed_after_seconds": round(resumed_at - killed, 2) if resumed else None,
        "pages_during_failover": dict(pages_during_failover),
        "stalled_time_to_page_seconds": round(stalled_at - all_dead, 2) if stalled_at else None,
        "stalled_trigger_events": len(stalled_events),
        "stalled_dedup_keys": sorted({r.dedup_key for r in stalled_events}),
        "stalled_resolved_after_seconds": round(resolved[0].at - back, 2) if resolved else None,
        "health_alerting_check_while_all_dead": health_while_all_dead.get("checks", {}).get("alerting"),
        "heartbeat_pings_before_all_dead": pings_when_all_dead,
        "heartbeat_pings_while_all_dead": pings_while_all_dead,
        "heartbeat_pings_after_restart": pings_after_restart,
        "pages_expected": [STALLED],
        "pages_sent": dict(pages),
        "false_pages": sorted(set(pages) - {STALLED}),
    }


def test_killing_the_leader_fails_over_without_a_page(faults):
    figures = faults.result("workers_killed")
    assert figures["leader_took_over"], "the surviving worker never became leader"
    assert figures["failover_seconds"] <= 0.5 + 2.0  # LEADER_POLL_SECONDS, plus a heartbeat and our polling
    assert figures["evaluation_resumed_after_seconds"] is not None, "evaluation stopped with the leader"
    assert figures["pages_during_failover"] == {}


def test_killing_the_only_worker_pages_from_the_web_watchdog_within_its_bound(faults):
    figures = faults.result("workers_killed")
    assert figures["stalled_time_to_page_seconds"] is not None, LOGS
    assert figures["stalled_time_to_page_seconds"] <= WATCHDOG_SECONDS + 20
    assert figures["stalled_dedup_keys"] == [f"controlplane/{STALLED}"]
    assert figures["stalled_trigger_events"] == 1, "two web instances, one page"
    assert figures["stalled_resolved_after_seconds"] is not None, "a worker is back: the page resolves"
    assert figures["health_alerting_check_while_all_dead"] not in (None, "healthy")
    # The outside watcher (ALERT_HEARTBEAT_URL) hears pings while evaluation runs, silence after.
    assert figures["heartbeat_pings_before_all_dead"] > 0
    assert figures["heartbeat_pings_while_all_dead"] == 0
    assert figures["heartbeat_pings_after_restart"] > 0
    assert figures["false_pages"] == []


# ---------------------------------------------------------------- the database unreachable


DATABASE_OUTAGE_SECONDS = 30


def health_status(url: str) -> str:
    try:
        return str(httpx.get(url + "/health", timeout=10).status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def database_outage(lab: Lab, name: str, inject, injected: str) -> dict:
    """The database out of reach for 30 s through the proxy (`inject(proxy)`), then back."""
    double = lab.pagerduty()
    direct = lab.database()
    proxy = lab.proxy(direct)
    # The watchdog bound is longer than the outage: a 30 s outage is not (yet) a stalled engine.
    install = lab.install(name, double, database_url=proxy.url_for(direct), direct_url=direct,
                          ALERT_WATCHDOG_SECONDS="90")
    install.migrate()
    url = install.start_web()
    install.start_worker()
    observer = install.observer
    assert wait_until(observer.last_evaluation, 30), install.logs()

    started = time.time()
    inject(proxy)
    time.sleep(DATABASE_OUTAGE_SECONDS)
    during = health_status(url)
    proxy.restore()
    restored = time.time()
    resumed = wait_until(lambda: (observer.last_evaluation() or 0) > restored, 60, interval=0.2)
    resumed_at = time.time()
    leading = wait_until(lambda: any(row["seen"] > restored for row in observer.leaders()), 30)
    time.sleep(15)  # anything that would page because of the outage does so now
    pages = paged(double, started)
    return {
        "injected": f"{injected} for {DATABASE_OUTAGE_SECONDS} s",
        "health_during": during,
        "health_after": health_status(url),
        "evaluation_resumed_after_seconds": round(resumed_at - restored, 2) if resumed else None,
        "leader_back": bool(leading),
        "processes_alive": sorted(name for name, p in install.processes.items() if p.poll() is None),
        "pages_expected": "none, or only rules about the database: " + ", ".join(sorted(DATABASE_RULES)),
        "pages_sent": dict(pages),
        "false_pages": sorted(set(pages) - DATABASE_RULES),
    }


@scenario
def database_unreachable(lab: Lab) -> dict:
    return database_outage(lab, "database-unreachable", TcpProxy.cut,
                           "TCP proxy resets every PostgreSQL connection and refuses new ones")


def test_database_unreachable_for_30s_evaluation_resumes_by_itself_without_false_pages(faults):
    figures = faults.result("database_unreachable")
    assert figures["processes_alive"] == ["web", "worker"], "nothing died of the outage"
    assert figures["evaluation_resumed_after_seconds"] is not None, LOGS
    assert figures["evaluation_resumed_after_seconds"] <= 15
    assert figures["leader_back"]
    assert figures["health_after"] == "200"
    assert figures["false_pages"] == []


@scenario
def database_silent(lab: Lab) -> dict:
    return database_outage(lab, "database-silent", TcpProxy.silence,
                           "PostgreSQL's side of every connection closed, the clients told nothing "
                           "(open connections go silent, new ones are never answered)")


def test_database_silent_for_30s_evaluation_resumes_by_itself_without_false_pages(faults):
    figures = faults.result("database_silent")
    assert figures["evaluation_resumed_after_seconds"] is not None, LOGS
    assert figures["evaluation_resumed_after_seconds"] <= 30
    assert figures["leader_back"]
    assert figures["false_pages"] == []


# ---------------------------------------------------------------- one rule's indicator raising


def shipped_for_seconds(rule: str, default: int = 0) -> int:
    """The `for` of a shipped rule: how long a test must wait for it to page."""
    shipped = load_rules(PROJECT_ROOT / "alerts" / "rules.yaml").get(rule)
    return shipped.for_seconds if shipped else default


@scenario
def rule_failing(lab: Lab) -> dict:
    """The backup catalog's table becomes unreadable (as after a half-failed migration), so
    BackupMissing's indicator raises on every pass; a failed deploy is recorded through the API,
    so DeploymentFailed must page in the same passes."""
    double = lab.pagerduty()
    install = lab.install("rule-failing", double)
    install.migrate()
    key = install.create_key("admin")
    url = install.start_web()
    install.start_worker()
    observer = install.observer
    assert wait_until(observer.last_evaluation, 30), f"no evaluation ran:\n{install.logs()}"
    quiet_before = paged(double)

    observer.execute("ALTER TABLE backups RENAME TO backups_unreadable")
    injected = time.time()
    admin = {"X-Server-API-Key": key}
    deploy = httpx.post(url + "/api/v1/deployments", headers=admin, timeout=10,
                        json={"kind": "deploy", "status": "failed", "version": "v-broken", "detail": "fault suite"})
    expected = {"DeploymentFailed", "AlertRuleFailing"}
    wait_until(lambda: expected <= set(paged(double, injected)), shipped_for_seconds("AlertRuleFailing", 30) + 30)
    time.sleep(5)  # a few more passes: anything else that would page does so now
    pages = paged(double, injected)
    alerts = httpx.get(url + "/api/v1/alerts", headers=admin, timeout=10).json().get("data") or []
    return {
        "injected": "ALTER TABLE backups RENAME (BackupMissing's indicator raises on every pass); "
                    "a failed deploy recorded through POST /api/v1/deployments",
        "deploy_answer": deploy.status_code,
        "pages_before_fault": dict(quiet_before),
        "pages_expected": sorted(expected),
        "pages_sent": dict(pages),
        "false_pages": sorted(set(pages) - expected),
        "time_to_page_seconds": {rule: round(at - injected, 2) for rule in expected
                                 if (at := first_page(double, rule, injected)) is not None},
        "alert_rule_failing_for_seconds": shipped_for_seconds("AlertRuleFailing"),
        "operator_view": {row["rule"]: {"state": row.get("state"), "error": row.get("error")} for row in alerts
                          if isinstance(row, dict) and (row.get("state") != "inactive" or row.get("error"))},
        "notifications": observer.notifications(),
    }


def test_rule_failing_goes_to_error_pages_alert_rule_failing_and_the_others_still_page(faults):
    figures = faults.result("rule_failing")
    assert figures["deploy_answer"] == 201
    assert figures["pages_before_fault"] == {}, "a fresh install paged before any fault"
    backup_missing = figures["operator_view"].get("BackupMissing", {})
    assert backup_missing.get("state") == "error", figures["operator_view"]
    assert "backups" in (backup_missing.get("error") or ""), "the reason names what is broken"
    assert set(figures["pages_sent"]) == set(figures["pages_expected"]), LOGS
    assert figures["pages_sent"]["DeploymentFailed"] == 1
    assert figures["false_pages"] == []


# ---------------------------------------------------------------- PagerDuty answering 429 and 5xx


BURST_RULES = 125  # more pages than PagerDuty takes in a minute (120)
OUTAGE_PHASES = ((429,), (500, 502, 503))
PHASE_SECONDS = 30


def burst_rules(folder: Path, count: int) -> Path:
    """`count` rules that all fire on the first evaluation (a live worker exists)."""
    rules = [{"name": f"Burst{n:03d}", "indicator": "live_workers", "op": ">", "threshold": 0, "for": "0s",
              "labels": {"severity": "warning"}, "annotations": {"summary": f"Burst page {n}"}}
             for n in range(count)]
    path = folder / "burst-rules.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"rules": rules}))
    return path


@scenario
def pagerduty_outage(lab: Lab) -> dict:
    """PagerDuty answers 429 for 30 s, then 5xx for 30 s, while 125 rules fire at once."""
    double = lab.pagerduty()
    double.fail_with(*OUTAGE_PHASES[0])
    root = lab.root / "pagerduty-outage"
    install = lab.install("pagerduty-outage", double, ALERT_RULES_FILE=str(burst_rules(root, BURST_RULES)),
                          ALERT_EVALUATION_SECONDS="2")
    install.migrate()
    install.start_web()
    install.start_worker()
    observer = install.observer
    outage_started = time.time()
    lags, passes = [], set()
    for statuses in OUTAGE_PHASES:
        double.fail_with(*statuses)
        phase_end = time.time() + PHASE_SECONDS
        while time.time() < phase_end:
            evaluated = observer.last_evaluation()
            if evaluated:
                lags.append(time.time() - evaluated)
                passes.add(evaluated)
            time.sleep(1)
    double.recover()
    recovered = time.time()
    keys = wait_until(lambda: len({r.dedup_key for r in double.pages() if rule_of(r).startswith("Burst")})
                      >= BURST_RULES, 240, interval=1)
    time.sleep(3)
    burst_pages = [r for r in double.pages() if rule_of(r).startswith("Burst")]
    during = [r for r in double.requests if outage_started <= r.at < recovered]
    per_key = Counter(r.dedup_key for r in burst_pages)
    pages = paged(double)
    return {
        "injected": f"PagerDuty answers 429 for {PHASE_SECONDS} s then 500/502/503 for {PHASE_SECONDS} s; "
                    f"{BURST_RULES} rules fire at once",
        "outage_seconds": round(recovered - outage_started, 1),
        "requests_during_outage": len(during),
        "answers_during_outage": dict(Counter(str(r.status) for r in during)),
        "most_requests_in_a_minute_during_outage": double.most_in_a_minute(during),
        "pages_expected": BURST_RULES,
        "pages_sent": len(per_key),
        "all_sent": bool(keys),
        "duplicate_pages": sum(n - 1 for n in per_key.values()),
        "most_pages_in_a_minute": double.most_in_a_minute(burst_pages),
        "last_page_after_recovery_seconds":
            round(max(r.at for r in burst_pages) - recovered, 1) if burst_pages else None,
        "evaluation_lag_max_seconds_during_outage": round(max(lags), 1) if lags else None,
        "evaluation_samples_during_outage": len(lags),
        "evaluation_passes_seen_during_outage": len(passes),
        "false_pages": sorted(rule for rule in pages if not rule.startswith("Burst")),
    }


def test_pagerduty_outage_every_page_sent_after_recovery_within_the_rate_limit(faults):
    figures = faults.result("pagerduty_outage")
    assert figures["answers_during_outage"].keys() >= {"429", "500"}, "the double did fail"
    assert figures["all_sent"], f"{figures['pages_sent']} of {figures['pages_expected']} pages sent"
    assert figures["duplicate_pages"] == 0
    assert figures["most_pages_in_a_minute"] <= 120
    assert figures["false_pages"] == []


def test_pagerduty_outage_never_blocks_evaluation(faults):
    figures = faults.result("pagerduty_outage")
    # Evaluation every 2 s, 125 rules a pass on a busy 2-core machine: blocked would mean one pass
    # for the whole minute and a lag growing with the outage.
    assert figures["evaluation_passes_seen_during_outage"] >= 10
    assert figures["evaluation_lag_max_seconds_during_outage"] <= 15


def test_pagerduty_outage_attempts_stay_within_120_a_minute(faults):
    figures = faults.result("pagerduty_outage")
    assert figures["most_requests_in_a_minute_during_outage"] <= 120


# ---------------------------------------------------------------- a fresh install, three minutes


FRESH_SECONDS = 180


def probe(url: str, stop: threading.Event, answers: Counter) -> None:
    """Fly's health checks: /health and /ready every second, from before the server is up."""
    while not stop.is_set():
        for path in ("/health", "/ready"):
            try:
                answers[f"{path} {httpx.get(url + path, timeout=2).status_code}"] += 1
            except httpx.HTTPError:
                answers[f"{path} refused"] += 1
        stop.wait(1)


@scenario
def fresh_install(lab: Lab) -> dict:
    double = lab.pagerduty()
    install = lab.install("fresh-install", double)
    port = free_port()
    stop, answers = threading.Event(), Counter()
    prober = threading.Thread(target=probe, args=(f"http://127.0.0.1:{port}", stop, answers), daemon=True)
    prober.start()
    try:
        install.migrate()
        install.start_web(port=port)
        install.start_worker()
        started = time.time()
        time.sleep(FRESH_SECONDS)
    finally:
        stop.set()
        prober.join()
    observer = install.observer
    pages = paged(double)
    return {
        "injected": f"nothing: db upgrade, gunicorn and one worker for {FRESH_SECONDS} s with PagerDuty configured, "
                    "probed every second from before start-up",
        "ran_seconds": round(time.time() - started),
        "probe_answers": dict(answers),
        "evaluations_ran": bool(observer.last_evaluation()),
        "pages_expected": [],
        "pages_sent": dict(pages),
        "false_pages": sorted(pages),
        "events_by_action": dict(Counter(r.action for r in double.requests)),
        "trigger_notifications": observer.scalar("SELECT count(*) FROM alert_notifications WHERE action = 'trigger'"),
        "rules_not_inactive": {row["rule"]: row["state"] for row in
                               observer.rows("SELECT rule, state FROM alert_states WHERE state <> 'inactive'")},
        "incidents_opened": observer.scalar("SELECT count(*) FROM incidents"),
        "requests_counted_as_traffic": observer.scalar("SELECT coalesce(sum(count), 0)::bigint FROM request_minutes"),
    }


def test_fresh_install_running_three_minutes_pages_nobody(faults):
    figures = faults.result("fresh_install")
    assert figures["evaluations_ran"]
    assert figures["pages_sent"] == {}
    assert figures["trigger_notifications"] == 0
    assert figures["rules_not_inactive"] == {}
    assert figures["incidents_opened"] == 0
    assert figures["requests_counted_as_traffic"] == 0, "probes are not traffic"
    # A PagerDuty change event for the migration is expected (change events never page).
    assert set(figures["events_by_action"]) <= {"change"}
