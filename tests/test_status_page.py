"""The HTML status page: components with 90-day uptime bars (gaps are no data), the response-time
chart, incidents and maintenance, history pages, configuration, escaping, and the static export."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from controlplane.status.views import warn_without_public_url
from controlplane.timeutil import utcnow
from tests.conftest import POSTAL_DOWN, new_key, serve_traffic
from tests.test_status_components import store, store_results


class Page(HTMLParser):
    """Just enough of the DOM to ask questions: elements with attributes and their text."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        if tag not in ("meta", "link", "input", "br", "img", "line", "polyline"):
            self._open.append(element)

    def handle_endtag(self, tag):
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index]["tag"] == tag:
                del self._open[index:]
                break

    def handle_data(self, data):
        for element in self._open:
            element["text"] += data

    def find(self, tag, **attrs) -> list[dict]:
        return [e for e in self.elements if e["tag"] == tag
                and all(e["attrs"].get(k.rstrip("_")) == v for k, v in attrs.items())]


def page(client, path="/status") -> Page:
    answer = client.get(path)
    assert answer.status_code == 200, answer.data[:500]
    assert answer.mimetype == "text/html"
    return Page(answer.get_data(as_text=True))


def bars_of(doc: Page, component_name: str) -> list[dict]:
    (svg,) = [e for e in doc.find("svg") if e["attrs"].get("aria-label", "").startswith(f"{component_name}:")]
    index = doc.elements.index(svg)
    return [e for e in doc.elements[index + 1:index + 1 + 90 * 2] if e["tag"] == "rect"][:90]


def test_the_page_shows_every_component_in_its_group_with_its_status(app):
    store_results(app, unhealthy=("postal",))
    doc = page(app.test_client())
    assert doc.find("html")[0]["attrs"]["lang"] == "en"
    assert doc.find("h1")[0]["text"].strip() == "Partially Degraded Service"
    groups = [e["text"].strip() for e in doc.find("h3", class_="group-name")]
    assert groups == ["Core", "Operations"]
    names = [e["text"] for e in doc.find("span", class_="name")]
    assert names == ["MailGoat API", "Mail delivery", "Background jobs"]
    states = [(e["attrs"]["class"], e["text"].strip()) for e in doc.elements
              if e["tag"] == "span" and e["attrs"].get("class", "").startswith("state ")]
    assert states[1] == ("state partial_outage", "Partial outage")
    assert states[0] == ("state operational", "Operational")


def test_uptime_bars_show_gaps_as_no_data_never_as_up(app):
    today = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    store(app, {"postal": "healthy"}, at=today - timedelta(days=3))
    store(app, {"postal": "healthy"}, at=today - timedelta(days=1))
    store(app, {"postal": "unhealthy"}, at=today - timedelta(days=1, hours=1))
    doc = page(app.test_client())
    bars = bars_of(doc, "Mail delivery")
    assert len(bars) == 90
    assert [b["attrs"]["class"] for b in bars[-4:]] == ["up", "nodata", "down", "nodata"]
    assert "50.00% up, 1 failed check" in bars[-2]["text"]
    assert bars[-1]["text"].endswith(": no data")
    assert all(b["attrs"]["class"] == "nodata" for b in bars[:-4])
    # Over the period: 2 of 3 results up; days without results do not count as up.
    (svg,) = [e for e in doc.find("svg") if e["attrs"].get("aria-label", "").startswith("Mail delivery:")]
    assert svg["attrs"]["aria-label"] == "Mail delivery: 66.67% uptime over 90 days"
    api_bars = bars_of(doc, "MailGoat API")
    assert {b["attrs"]["class"] for b in api_bars} == {"nodata"}
    assert "no data uptime" in "".join(e["text"] for e in doc.find("p", class_="bar-axis"))


def test_day_counts_outlive_the_raw_results(app):
    """The raw results are pruned after 14 days; the daily counts keep 90 days of bars."""
    from controlplane.extensions import db
    from controlplane.health.models import CheckDay, CheckResult
    from controlplane.health.runner import prune_check_results

    store(app, {"postal": "unhealthy"}, at=utcnow() - timedelta(days=40))
    store(app, {"postal": "healthy"}, at=utcnow() - timedelta(days=120))
    with app.app_context():
        prune_check_results(14)
        assert db.session.query(CheckResult).count() == 0
        assert [(d.total, d.unhealthy) for d in db.session.query(CheckDay)] == [(1, 1)]
    bars = bars_of(page(app.test_client()), "Mail delivery")
    assert bars[-41]["attrs"]["class"] == "down"


def test_the_response_time_chart_follows_real_requests(make_app):
    app = make_app(**POSTAL_DOWN)
    doc = page(app.test_client())
    assert "No requests in the last 24 hours." in doc.find("figcaption")[0]["text"]
    assert not doc.find("polyline")
    serve_traffic(app, ok=30, failing=5)
    app.extensions["controlplane.request_stats"].flush()
    doc = page(app.test_client())
    caption = doc.find("figcaption")[0]["text"]
    assert re.search(r"Over the last 24 hours, \d+ requests; the slowest 15 minutes", caption)
    assert len(doc.find("polyline", class_="p95")) == 1
    rows = doc.find("tr")
    assert len(rows) >= 2  # a header and at least this slot


def test_active_incidents_maintenance_and_recent_history_are_shown_escaped(app):
    store_results(app)
    client, headers = app.test_client(), {"X-Server-API-Key": new_key(app, "admin")}
    created = client.post("/api/v1/incidents", json={
        "name": "<script>alert(1)</script> & co", "body": "Queues <b>growing</b>",
        "components": {"delivery": "major_outage"}}, headers=headers).get_json()["data"]
    now = utcnow()
    client.post("/api/v1/maintenances", json={
        "name": "Database upgrade", "body": "PostgreSQL 17", "components": ["api"],
        "scheduled_for": (now + timedelta(hours=1)).isoformat(), "scheduled_until": (now + timedelta(hours=2)).isoformat()},
        headers=headers)
    html = client.get("/status").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert "Queues &lt;b&gt;growing&lt;/b&gt;" in html
    doc = Page(html)
    assert doc.find("h2", id="active-incidents") and doc.find("h2", id="maintenance")
    assert "Database upgrade" in [e["text"] for e in doc.find("h3")]
    assert doc.find("a", href=f"/incidents/{created['id']}")
    client.post(f"/api/v1/incidents/{created['id']}/updates", json={"status": "resolved", "body": "Fixed"},
                headers=headers)
    doc = page(client)
    assert not doc.find("h2", id="active-incidents")
    recent = doc.elements[doc.elements.index(doc.find("h2", id="recent")[0]):]
    assert any(e["tag"] == "a" and e["attrs"].get("href") == f"/incidents/{created['id']}" for e in recent)


def test_incident_pages_and_history_pages(app):
    store_results(app)
    client, headers = app.test_client(), {"X-Server-API-Key": new_key(app, "admin")}
    ids = [client.post("/api/v1/incidents", json={"name": f"Incident {n}", "body": "b"}, headers=headers)
           .get_json()["data"]["id"] for n in range(25)]
    client.put(f"/api/v1/incidents/{ids[0]}/postmortem", json={"body": "Root cause: <disk>"}, headers=headers)
    first, second = page(client, "/history"), page(client, "/history?page=2")
    assert len(first.find("article")) == 20 and len(second.find("article")) == 5
    assert first.find("a", rel="next")[0]["attrs"]["href"] == "/history?page=2"
    assert second.find("a", rel="prev")[0]["attrs"]["href"] == "/history"
    incident = page(client, f"/incidents/{ids[0]}")
    assert incident.find("h1")[0]["text"] == "Incident 0"
    assert "Root cause: <disk>" in incident.find("div", class_="postmortem")[0]["text"]
    missing = client.get("/incidents/99999")
    assert missing.status_code == 404 and missing.mimetype == "text/html" and b"no incident 99999" in missing.data
    assert client.get("/incidents/99999", headers={"Accept": "application/json"}).get_json()["error"] == "IncidentNotFound"
    assert client.get("/history?page=3").status_code == 404
    assert client.get("/history?page=x").status_code == 422


def test_name_logo_links_and_refresh_are_configurable(make_app):
    app = make_app(STATUS_PAGE_NAME="Goat & Co", STATUS_PAGE_LOGO_URL="https://cdn.example/logo.svg",
                   STATUS_PAGE_LINKS="Docs=https://docs.example, Support=https://help.example",
                   STATUS_PAGE_REFRESH_SECONDS="0")
    answer = app.test_client().get("/")
    assert answer.status_code == 200 and "default-src 'none'" in answer.headers["Content-Security-Policy"]
    doc = Page(answer.get_data(as_text=True))
    assert doc.find("title")[0]["text"] == "Goat & Co status"
    assert doc.find("img", src="https://cdn.example/logo.svg", alt="Goat & Co")
    assert [e["text"] for e in doc.find("a", rel="noopener")] == ["Docs", "Support"]
    assert not doc.find("script")  # refresh off: no script at all
    assert page(make_app().test_client()).find("script", src="/status/static/refresh.js")


def test_bad_page_links_are_a_configuration_error(base_env):
    from click.testing import CliRunner

    from controlplane.cli import main

    result = CliRunner().invoke(main, ["config"], env={**base_env, "STATUS_PAGE_LINKS": "Docs=ftp://x"})
    assert result.exit_code != 0 and "STATUS_PAGE_LINKS" in result.output


def test_export_writes_a_self_contained_static_copy(app, tmp_path):
    from controlplane.status.export import export

    store_results(app)
    client, headers = app.test_client(), {"X-Server-API-Key": new_key(app, "admin")}
    incident_id = client.post("/api/v1/incidents", json={"name": "Slow sends", "body": "b"},
                              headers=headers).get_json()["data"]["id"]
    files = export(app, tmp_path / "site")
    site = tmp_path / "site"
    for name in ("index.html", "history.html", f"incident-{incident_id}.html", "status.css", "refresh.js",
                 "api/v2/summary.json", "history.atom", "badges/api.svg", "badges/api/uptime.svg"):
        assert name in files and (site / name).is_file()
    summary = json.loads((site / "api/v2/summary.json").read_text())
    assert [i["name"] for i in summary["incidents"]] == ["Slow sends"]
    ET.parse(site / "history.atom")
    ET.parse(site / "badges/api/uptime.svg")
    for html in site.glob("*.html"):  # every relative link points at a file of the copy
        for element in Page(html.read_text()).elements:
            target = element["attrs"].get("href") or element["attrs"].get("src")
            if target and not target.startswith(("http", "#", "mailto:", "data:")):
                assert (site / target).is_file(), f"{html.name} links to missing {target}"


def test_export_cli(app, base_env, tmp_path):
    from click.testing import CliRunner

    from controlplane.cli import main

    result = CliRunner().invoke(main, ["status", "export", str(tmp_path / "out")], env=base_env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "index.html").is_file() and "files written" in result.output


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_publish_pushes_only_what_changed(make_app, tmp_path, storage, request):
    from controlplane.backups.storage import storage_for
    from controlplane.status.export import publish

    overrides = {"STATUS_EXPORT_PREFIX": "status-site", "BACKUP_DIR": str(tmp_path / "store")}
    if storage == "s3":
        overrides.update(request.getfixturevalue("s3_env"))
    app = make_app(**overrides)
    settings = app.extensions["controlplane.settings"]
    with app.app_context():
        first = publish(app, settings)
        again = publish(app, settings)
    assert first > 10 and again < first  # the second push skips what did not change
    store_ = storage_for(settings)
    summary = json.loads(b"".join(store_.open("status-site/api/v2/summary.json")))
    assert summary["page"]["name"] == "MailGoat"
    if storage == "s3":
        head = store_.client.head_object(Bucket=store_.bucket, Key=store_._key("status-site/index.html"))
        assert head["ContentType"] == "text/html; charset=utf-8"


def test_response_time_slots_are_exact_at_their_edges(app):
    """Minutes on a slot boundary and just before it land in the right 15-minute slot, on the
    database under test (the slot is computed in SQL)."""
    from controlplane.dbtypes import add_counts
    from controlplane.extensions import db
    from controlplane.status.history import response_times
    from controlplane.telemetry.models import BUCKET_COLUMNS, RequestMinute

    now = utcnow().replace(minute=7, second=30, microsecond=0)
    boundary = now.replace(minute=0, second=0)  # the current slot starts here
    with app.app_context():
        for minute, count in ((boundary, 5), (boundary - timedelta(minutes=1), 3),
                              (boundary - timedelta(hours=23, minutes=45), 2), (boundary - timedelta(hours=24), 100)):
            add_counts(RequestMinute, {"minute": minute},
                       {"count": count, "errors": 0, "duration_sum": 0.0, **{c: 0 for c in BUCKET_COLUMNS},
                        "b4": count})
        db.session.commit()
        slots = response_times(now)
    assert len(slots) == 96
    assert (slots[-1].start, slots[-1].count) == (boundary, 5)
    assert (slots[-2].count, slots[0].count) == (3, 2)  # the one 24 h back is outside the window
    assert sum(s.count for s in slots) == 10
    assert 0.05 < slots[-1].p95 <= 0.1  # all in the 50-100 ms bucket


def test_public_answers_are_cached_briefly_and_cleared_by_writes(make_app):
    """STATUS_CACHE_SECONDS: one computation per period per process; an API write shows at once."""
    app = make_app(STATUS_CACHE_SECONDS="60")
    store_results(app)
    client, headers = app.test_client(), {"X-Server-API-Key": new_key(app, "admin")}
    first = client.get("/api/v2/summary.json")
    store_results(app, unhealthy=("postal",))  # the worker's next results, written behind our back
    assert client.get("/api/v2/summary.json").data == first.data  # still the cached answer
    assert client.get("/api/v2/summary.json", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    page_before = client.get("/status")
    assert page_before.headers["ETag"] and client.get(
        "/status", headers={"If-None-Match": page_before.headers["ETag"]}).status_code == 304
    client.post("/api/v1/incidents", json={"name": "Now", "body": "b"}, headers=headers)
    fresh = client.get("/api/v2/summary.json").get_json()
    assert [i["name"] for i in fresh["incidents"]] == ["Now"]
    assert {c["id"]: c["status"] for c in fresh["components"]}["delivery"] == "partial_outage"
    assert client.get("/incidents/424242").status_code == 404  # errors are not cached...
    assert client.get("/incidents/424242").status_code == 404  # ...and stay errors


def test_an_expired_answer_is_served_while_another_thread_recomputes(app):
    import threading

    from controlplane.status.cache import PublicCache

    cache, started, release, renders = PublicCache(0.01), threading.Event(), threading.Event(), []

    def slow():
        from flask import Response

        renders.append(1)
        if len(renders) == 2:
            started.set()
            release.wait(5)
        return Response(f"render {len(renders)}")

    with app.test_request_context("/x"):
        assert cache.answer("/x", slow).get_data(as_text=True) == "render 1"
    import time

    time.sleep(0.02)

    def second():
        with app.test_request_context("/x"):
            cache.answer("/x", slow)

    worker = threading.Thread(target=second)
    worker.start()
    assert started.wait(5)
    with app.test_request_context("/x"):  # expired, but being recomputed: the previous answer
        assert cache.answer("/x", slow).get_data(as_text=True) == "render 1"
    release.set()
    worker.join()
    with app.test_request_context("/x"):
        assert cache.answer("/x", slow).get_data(as_text=True) == "render 2"


def test_exporting_is_not_counted_as_traffic(app, tmp_path):
    from controlplane.status.export import export

    stats = app.extensions["controlplane.request_stats"]
    export(app, tmp_path / "site")
    with app.app_context():
        assert stats.flush() == 0  # nothing recorded


@pytest.mark.slow
def test_the_worker_publishes_again_soon_after_an_incident(make_app, tmp_path):
    """status-publish runs every minute, and at once when status-notify sees a new event."""
    from controlplane.jobs import Worker
    from tests.conftest import wait_for

    app = make_app(STATUS_EXPORT_PREFIX="status-site", BACKUP_DIR=str(tmp_path / "store"))
    manifest = tmp_path / "store" / "status-site" / "manifest.json"
    index = tmp_path / "store" / "status-site" / "index.html"
    worker = Worker(app)
    worker.start()
    try:
        wait_for(manifest.exists, timeout=30)  # every job runs once at start
        client, headers = app.test_client(), {"X-Server-API-Key": new_key(app, "admin")}
        client.post("/api/v1/incidents", json={"name": "Published quickly", "body": "b"}, headers=headers)
        wait_for(lambda: b"Published quickly" in index.read_bytes(), timeout=20)  # not the 60 s tick
    finally:
        worker.stop()


def _public_paths(app, incident_id: str, component_id: str) -> list[str]:
    """Every cached public answer: each rule whose view is served from the public cache."""
    paths = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if getattr(view, "public_status_read", False) and "GET" in rule.methods:
            paths.append(rule.rule.replace("<int:incident_id>", incident_id).replace("<component_id>", component_id))
    return sorted(paths)


@pytest.mark.parametrize("page_url", ["https://status.mailgoat.example", None])
def test_a_forged_host_never_reaches_a_cached_answer(make_app, page_url):
    """One request with `Host: evil.example` fills the cache every later visitor is served from."""
    app = make_app(STATUS_CACHE_SECONDS="60", **({"STATUS_PAGE_URL": page_url} if page_url else {}))
    store_results(app)
    client, headers = app.test_client(), {"X-Server-API-Key": new_key(app, "admin")}
    incident = client.post("/api/v1/incidents", json={"name": "Slow", "body": "b", "components": {"api": "partial_outage"}},
                           headers=headers).get_json()["data"]
    now = utcnow()
    client.post("/api/v1/maintenances", json={
        "name": "Upgrade", "body": "b", "components": ["api"], "scheduled_for": (now + timedelta(hours=1)).isoformat(),
        "scheduled_until": (now + timedelta(hours=2)).isoformat()}, headers=headers)
    paths = _public_paths(app, incident["id"], "api")
    assert {"/api/v2/summary.json", "/history.atom", "/history.rss", "/status", "/badges/api.svg"} <= set(paths)
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    for path in paths:
        assert client.get(path, base_url="http://evil.example", headers=forged).status_code == 200, path
    for path in paths:
        answer = client.get(path)
        assert answer.status_code == 200, path
        seen = answer.get_data(as_text=True) + "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
        assert "evil.example" not in seen, path
    expected_base = page_url or "http://127.0.0.1:8080"
    summary = client.get("/api/v2/summary.json").get_json()
    assert summary["page"]["url"] == expected_base
    assert summary["incidents"][0]["shortlink"] == f"{expected_base}/incidents/{incident['id']}"
    atom = ET.fromstring(client.get("/history.atom").data)
    links = [link.get("href") for link in atom.iter("{http://www.w3.org/2005/Atom}link")]
    assert links and all(href.startswith(expected_base + "/") for href in links)


def test_production_without_status_page_url_warns_loudly(caplog):
    with caplog.at_level("WARNING", logger="controlplane.status"):
        warn_without_public_url(SimpleNamespace(status_page_url=None, env="production"))
        warn_without_public_url(SimpleNamespace(status_page_url="https://status.example", env="production"))
    (record,) = [r for r in caplog.records if "STATUS_PAGE_URL" in r.getMessage()]
    assert "http://127.0.0.1:8080" in record.getMessage()
