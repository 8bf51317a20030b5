"""The status page in a real browser: Debian's headless chromium through chromedriver, at a desktop
and a phone width, with JavaScript on (auto-refresh) and off. Screenshots go to test-artifacts/.

Skips when chromium or chromedriver is missing, unless CONTROLPLANE_REQUIRE_BROWSER=1 (CI sets it
and installs both).
"""
from __future__ import annotations

import os
import shutil
import threading
from datetime import timedelta

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.keys import Keys

from controlplane.timeutil import utcnow
from tests.conftest import POSTAL_DOWN, free_port, new_key, serve_traffic, wait_for
from tests.test_status_components import store

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844, "pixelRatio": 3.0}


def _browser_or_skip() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    problem = "chromium and chromedriver are needed (Debian packages chromium, chromium-driver)"
    if os.environ.get("CONTROLPLANE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CONTROLPLANE_REQUIRE_BROWSER=1 but {problem}")
    pytest.skip(problem)


def heading(driver) -> str | None:
    """The page's h1, or None while the browser is between the old page and the new one."""
    try:
        return driver.find_element("tag name", "h1").text
    except StaleElementReferenceException:
        return None


@pytest.fixture
def browser():
    """browser(device, javascript=True) -> a WebDriver; all are quit at the end."""
    _browser_or_skip()

    drivers = []

    def start(device: dict, javascript: bool = True):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", "--force-device-scale-factor=1"):
            options.add_argument(argument)
        if device is PHONE:  # the phone's viewport, pixel ratio and touch, as Chrome's device mode does
            options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
        else:
            options.add_argument(f"--window-size={device['width']},{device['height']}")
        if not javascript:
            options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


@pytest.fixture
def served(make_app):
    """A status page with history, traffic, an incident and maintenance, served over real HTTP."""
    from werkzeug.serving import make_server

    app = make_app(**POSTAL_DOWN, STATUS_PAGE_REFRESH_SECONDS="1", STATUS_PAGE_NAME="MailGoat",
                   STATUS_PAGE_LINKS="Docs=https://docs.mailgoat.ai")
    noon = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    for days_ago in range(60):  # 60 days of history: one bad day, one partly bad, the rest fine
        states = {"database": "healthy", "postal": "healthy", "worker": "healthy", "disk": "healthy"}
        if days_ago == 12:
            states["postal"] = "unhealthy"
        store(app, states, at=noon - timedelta(days=days_ago))
        if days_ago == 30:
            for _ in range(50):
                store(app, {"database": "healthy"}, at=noon - timedelta(days=days_ago))
            store(app, {"database": "unhealthy"}, at=noon - timedelta(days=days_ago))
    app.extensions["controlplane.health"].cache.refresh()
    serve_traffic(app, ok=40, failing=2)
    app.extensions["controlplane.request_stats"].flush()
    _earlier_traffic(app)
    client, headers = app.test_client(), {"X-Server-API-Key": new_key(app, "admin")}
    client.post("/api/v1/incidents", json={
        "name": "Delayed delivery to some providers with a rather long incident title that must wrap",
        "body": "Postal's queue to one provider is growing; mail is accepted and will be delivered.",
        "impact": "minor", "components": {"delivery": "degraded_performance"}}, headers=headers)
    client.post("/api/v1/maintenances", json={
        "name": "Database upgrade", "body": "Writes pause for a minute.", "components": ["api"],
        "scheduled_for": (utcnow() + timedelta(days=1)).isoformat(),
        "scheduled_until": (utcnow() + timedelta(days=1, hours=1)).isoformat()}, headers=headers)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield app, f"http://127.0.0.1:{port}", headers
    server.shutdown()


def _earlier_traffic(app) -> None:
    """Per-minute request counts over the last day, with a quiet gap, as the flusher writes them."""
    from controlplane.dbtypes import add_counts
    from controlplane.extensions import db
    from controlplane.telemetry.models import BUCKET_COLUMNS, RequestMinute

    now = utcnow().replace(second=0, microsecond=0)
    with app.app_context():
        for minutes_ago in range(30, 24 * 60, 7):
            if 600 < minutes_ago < 720:  # two quiet hours: a gap in the chart, not a zero
                continue
            slow = 40 if 200 < minutes_ago < 260 else 2  # one slow spell
            buckets = {c: 0 for c in BUCKET_COLUMNS}
            buckets.update(b3=60, b4=30, b5=8, b7=slow)
            add_counts(RequestMinute, {"minute": now - timedelta(minutes=minutes_ago)},
                       {"count": sum(buckets.values()), "errors": 0, "duration_sum": 5.0, **buckets})
        db.session.commit()


def screenshot(driver, path) -> None:
    """The whole page, not just the viewport (Chrome DevTools' capture beyond the viewport)."""
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def _luminance(rgb: tuple[float, ...]) -> float:
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two computed CSS colours (rgb(...) or rgba(...))."""
    def parse(css):
        return tuple(float(v) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])
    lighter, darker = sorted((_luminance(parse(foreground)), _luminance(parse(background))), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


LAYOUT = """
const doc = document.documentElement;
const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
const bars = [...document.querySelectorAll('svg.bars')].map(s => s.getBoundingClientRect());
return {
  overflow: doc.scrollWidth - window.innerWidth,
  viewport: window.innerWidth,
  heading: document.querySelector('h1').innerText,
  components: [...document.querySelectorAll('.component .name')].filter(visible).map(e => e.innerText),
  bars: bars.map(r => [r.left, r.right, r.width]),
  unlabelled: [...document.querySelectorAll('input, select, textarea')].filter(e => e.labels.length === 0).length,
  noAlt: [...document.querySelectorAll('img')].filter(e => !e.hasAttribute('alt')).length,
  landmarks: ['header', 'nav', 'main', 'footer'].filter(t => document.querySelector(t)),
  lang: doc.lang,
  colors: [...document.querySelectorAll('.state, .overall h1, .legend, .meta, a')].filter(visible).map(e => {
    let bg = 'rgba(0, 0, 0, 0)', node = e;
    while (node && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) {
      bg = getComputedStyle(node).backgroundColor; node = node.parentElement;
    }
    return [e.className || e.tagName, getComputedStyle(e).color, bg === 'rgba(0, 0, 0, 0)' ? 'rgb(255, 255, 255)' : bg];
  }),
  fontSize: parseFloat(getComputedStyle(document.body).fontSize),
};
"""


@pytest.mark.parametrize("device,name", [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_the_page_is_readable_and_accessible_at_each_width(browser, served, device, name, artifacts_dir):
    _, base, _ = served
    driver = browser(device)
    driver.get(f"{base}/status")
    layout = driver.execute_script(LAYOUT)
    screenshot(driver, artifacts_dir / f"status-{name}.png")
    assert layout["viewport"] == device["width"]
    assert layout["overflow"] <= 0, f"the page scrolls sideways by {layout['overflow']} px at {name} width"
    assert layout["heading"] == "Partially Degraded Service"
    assert layout["components"] == ["MailGoat API", "Mail delivery", "Background jobs"]
    for left, right, width in layout["bars"]:  # every bar chart fits the screen and is wide enough to read
        assert left >= 0 and right <= device["width"] and width >= 0.6 * min(device["width"], 960) - 40
    assert layout["unlabelled"] == 0 and layout["noAlt"] == 0 and layout["lang"] == "en"
    assert layout["landmarks"] == ["header", "nav", "main", "footer"]
    assert layout["fontSize"] >= 16
    for what, color, background in layout["colors"]:
        assert contrast(color, background) >= 4.5, f"{what}: {color} on {background}"
    # The incident page too.
    driver.find_element("css selector", "#active-incidents ~ article h3 a").click()
    wait_for(lambda: "Delayed delivery" in driver.find_element("tag name", "h1").text)
    assert driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth") <= 0
    screenshot(driver, artifacts_dir / f"status-incident-{name}.png")


def test_the_page_refreshes_itself_with_javascript(browser, served, artifacts_dir):
    app, base, headers = served
    driver = browser(DESKTOP)
    driver.get(f"{base}/status")
    assert "Totally new outage" not in driver.page_source
    app.test_client().post("/api/v1/incidents", json={"name": "Totally new outage", "body": "b", "impact": "major",
                                                      "components": {"api": "major_outage"}}, headers=headers)
    wait_for(lambda: "Totally new outage" in driver.find_element("id", "main").text, timeout=15)
    assert driver.execute_script("return document.body.dataset.refreshed")  # swapped in place, not reloaded
    assert driver.find_element("tag name", "h1").text == "Partial System Outage"
    screenshot(driver, artifacts_dir / "status-refreshed.png")


def test_the_page_works_without_javascript(browser, served, artifacts_dir):
    _, base, _ = served
    driver = browser(PHONE, javascript=False)
    driver.get(f"{base}/status")
    names = [e.text for e in driver.find_elements("css selector", ".component .name")]
    assert names == ["MailGoat API", "Mail delivery", "Background jobs"]
    assert "Database upgrade" in driver.find_element("id", "main").text
    # The form posts without script: subscribe, and the answer is a page.
    driver.find_element("id", "email").send_keys("reader@example.com", Keys.ENTER)  # a native submit
    wait_for(lambda: heading(driver) == "Check your inbox")
    screenshot(driver, artifacts_dir / "status-subscribed-nojs.png")
