"""The one place outbound HTTP clients are made: timeouts, identity and tracing set once."""
import httpx

from .telemetry.tracing import instrument_http_client
from .version import VERSION


def http_client(app, timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    client = httpx.Client(
        timeout=timeout,
        headers={"User-Agent": f"mailgoat-controlplane/{VERSION}"},
        follow_redirects=False,
        transport=transport,
    )
    instrument_http_client(client, app.extensions.get("controlplane.tracer_provider"))
    return client
