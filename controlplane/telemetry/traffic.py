"""What counts as traffic: the one declaration of which routes are probes.

Fly's checks, load balancers and Prometheus call /health, /ready, /live and /metrics all day, and
browsers fetch static files; none of that is a user's request. A probe that answers 503 (/ready
while starting up or draining after SIGTERM) is the probe doing its job, not an outage. So a
request to a probe route:
- never reaches request_stats / request_minutes, which the error-ratio, latency and burn-rate rules
  and the status page's traffic components read;
- never reaches http_server_request_duration_seconds, which the exported Prometheus rules and the
  RED dashboard read;
- gets no trace span;
- keeps RED metrics of its own, `http_server_probe_duration_seconds`, because a /ready that keeps
  answering 503 or a slow /metrics is worth a Grafana panel, just never a page.

A view is a probe when decorated with `@probe`; static files (Flask's `static` endpoints) always are.
"""
from __future__ import annotations

PROBE_MARK = "controlplane_probe"


def probe(view):
    """Mark a view as a probe or scrape route (see the module docstring for what that changes)."""
    setattr(view, PROBE_MARK, True)
    return view


def _is_static(endpoint: str) -> bool:
    return endpoint == "static" or endpoint.endswith(".static")


class ProbeRoutes:
    """An app's probe routes, read from its views at the first request, when every blueprint is
    registered (Flask refuses new routes after that)."""

    def __init__(self, app):
        self.app = app
        self._routes: frozenset[str] | None = None
        self._paths: frozenset[str] = frozenset()
        self._prefixes: tuple[str, ...] = ()

    def _load(self) -> frozenset[str]:
        endpoints = {name for name, view in self.app.view_functions.items()
                     if getattr(view, PROBE_MARK, False) or _is_static(name)}
        rules = [rule for rule in self.app.url_map.iter_rules() if rule.endpoint in endpoints]
        self._paths = frozenset(rule.rule for rule in rules if not rule.arguments)
        self._prefixes = tuple(rule.rule.split("<", 1)[0] for rule in rules if rule.arguments)
        self._routes = frozenset(rule.rule for rule in rules)
        return self._routes

    @property
    def routes(self) -> frozenset[str]:
        """Route templates (what the telemetry middleware labels requests with) of every probe."""
        return self._routes if self._routes is not None else self._load()

    def is_probe_path(self, path: str) -> bool:
        """For decisions made before routing (whether to start a trace span)."""
        if self._routes is None:
            self._load()
        return path in self._paths or path.startswith(self._prefixes)
