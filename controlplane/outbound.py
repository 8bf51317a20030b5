"""The one place outbound HTTP clients are made: timeouts, identity and tracing set once."""
import httpx

from .telemetry.tracing import instrument_http_client
from .version import VERSION


def http_client(app, timeout: float = 10.0, transport: httpx.BaseTransport | None = None,
                connections: int = 20) -> httpx.Client:
    """`connections`: how many calls may run at once; as many are kept alive between calls.

    httpx keeps 20 idle connections by default: more threads than that close and reopen
    connections on every call, which halves throughput against Postal.
    """
    client = httpx.Client(
        timeout=timeout,
        limits=httpx.Limits(max_connections=max(connections, 1), max_keepalive_connections=max(connections, 1)),
        headers={"User-Agent": f"mailgoat-controlplane/{VERSION}"},
        follow_redirects=False,
        transport=transport,
    )
    instrument_http_client(client, app.extensions.get("controlplane.tracer_provider"))
    return client
