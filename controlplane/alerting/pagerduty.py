"""PagerDuty: the one outbound chokepoint for pages, through the `pagerduty` package's
EventsApiV2Client, bounded and never blocking evaluation.

The package retries 429 forever (sleeping) and network errors several times. Evaluation never
calls this; the notifier job does, one attempt per notification per run: 429, 5xx and network
errors surface at once as `retry` (our outbox retries with backoff), a 400 as permanent; a 429 as
`throttled`, with its Retry-After, which pauses the route. At most 120 requests per minute leave
per route (PagerDuty's own limit), counted from the shared database whatever their answer
(routes.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

log = logging.getLogger("controlplane.alerting")
EVENTS_PER_MINUTE = 120


class _Answered(Exception):
    """Raised by our transport for statuses the package would otherwise sleep on."""

    def __init__(self, status: int, body: str, retry_after: float | None = None):
        super().__init__(f"HTTP {status}")
        self.status, self.body, self.retry_after = status, body, retry_after


def _bounded_transport(inner):
    # httpx2 and pagerduty are imported only when a page goes out: they cost ~60 ms at start-up,
    # which every web process would pay for nothing.
    import httpx2

    class Bounded(httpx2.BaseTransport):
        def handle_request(self, request):
            response = inner.handle_request(request)
            if response.status_code == 429 or response.status_code >= 500:
                response.read()
                raise _Answered(response.status_code, response.text[:300],
                                retry_after_seconds(response.headers.get("Retry-After")))
            return response

        def close(self):
            inner.close()

    return Bounded()


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date (RFC 9110); None when
    absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


@dataclass(frozen=True)
class Outcome:
    """One attempt's result, for every channel: `throttled` (a 429) pauses the whole route, for
    `retry_after` seconds when the far end said how long."""

    ok: bool
    permanent: bool = False
    error: str | None = None
    throttled: bool = False
    retry_after: float | None = None


def dedup_key(rule: str, labels_key: str) -> str:
    """Stable across restarts and config edits: only the rule's name and its label set."""
    return "mailgoat-cp/" + rule + "/" + hashlib.sha256(labels_key.encode()).hexdigest()[:16]


class PagerDutySender:
    """Built once per app (`app.extensions["controlplane.pagerduty"]`); `transport` is an httpx2
    transport, which tests replace with a double."""

    def __init__(self, base_url: str, transport=None, timeout: float = 10.0):
        self.base_url = base_url
        self.transport = transport
        self.timeout = timeout

    @staticmethod
    def url_problem(base_url: str) -> str | None:
        """Why the package would refuse this events URL (it raises UrlError for anything but https)."""
        if not base_url.startswith("https://"):
            return f"PAGERDUTY_EVENTS_URL must be an https:// URL, got {base_url!r}"
        return None

    def _client(self, routing_key: str):
        import httpx2
        import pagerduty

        client = pagerduty.EventsApiV2Client(
            routing_key, base_url=self.base_url, timeout=self.timeout,
            transport=_bounded_transport(self.transport or httpx2.HTTPTransport()))
        client.max_network_attempts = 0  # one try; our outbox schedules the next
        client.retry = {}
        return client

    def send(self, routing_key: str, action: str, dedup: str, payload: dict | None) -> Outcome:
        import httpx2
        import pagerduty

        problem = self.url_problem(self.base_url)
        if problem:  # held by the outbox before it gets here; a direct caller gets the reason
            return Outcome(False, error=problem)
        client = self._client(routing_key)
        try:
            if action == "trigger":
                client.send_event("trigger", dedup_key=dedup, payload=payload,
                                  **({"links": payload.pop("links")} if payload and "links" in payload else {}))
            elif action == "change":  # a deploy: PagerDuty's change events never page
                client.send_change_event(payload=payload)
            else:
                client.send_event(action, dedup_key=dedup)
            return Outcome(True)
        except _Answered as exc:
            return Outcome(False, error=f"PagerDuty answered {exc} {exc.body}".strip(), throttled=exc.status == 429,
                           retry_after=exc.retry_after)
        except pagerduty.ServerHttpError as exc:  # an answer that is not PagerDuty's: try again later
            return Outcome(False, error=f"PagerDuty: {exc}")
        except pagerduty.HttpError as exc:  # 4xx: the event itself is wrong; sending again cannot help
            response = getattr(exc, "response", None)
            body = response.text[:300] if response is not None else ""
            return Outcome(False, permanent=True, error=f"PagerDuty refused the event: {exc} {body}".strip())
        except (pagerduty.Error, httpx2.HTTPError, OSError) as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}")
        finally:
            client.close()


def trigger_payload(rule, value, now, settings, source: str) -> dict:
    """PagerDuty's trigger payload for a firing rule (CONTRACTS.md §4)."""
    details = {"observed_value": value, "threshold": rule.threshold, "op": rule.op,
               "window": rule.params.get("window") or rule.params.get("long_window"),
               "for_seconds": rule.for_seconds, "description": rule.render("description", value),
               "runbook_url": rule.annotations.get("runbook_url")}
    links = []
    if rule.annotations.get("runbook_url"):
        links.append({"href": rule.annotations["runbook_url"], "text": "Runbook"})
    if settings.grafana_url:
        panel = f"{settings.grafana_url.rstrip('/')}/d/mailgoat-ops/operations?var-alert={rule.name}"
        details["grafana_url"] = panel
        links.append({"href": panel, "text": "Grafana"})
    payload = {"summary": rule.render("summary", value)[:1024], "source": source, "severity": rule.severity,
               "timestamp": now.isoformat(), "component": rule.status_component or rule.indicator,
               "group": rule.labels.get("team", "platform"), "class": rule.indicator,
               "custom_details": json.loads(json.dumps(details, default=str))}
    if links:
        payload["links"] = links
    return payload
