"""The client's address when requests arrive through a reverse proxy.

Behind Fly's proxy every connection comes from the proxy. `ClientAddress` rewrites the WSGI
`REMOTE_ADDR` to the client's address, and only when the socket peer is a proxy we trust, so
every reader of `request.remote_addr` (key allowlists, the login and subscribe throttles, the
audit log, gunicorn's access log) sees the client without knowing proxies exist. From any other
peer the headers are ignored: anyone can send them.

Werkzeug's ProxyFix is not used: it believes a fixed number of hops from whoever connects,
without looking at the peer's address, and on Fly the right-most X-Forwarded-For entry is the
app's own anycast address, not the client.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

FLY_CLIENT_IP = "fly-client-ip"
X_FORWARDED_FOR = "x-forwarded-for"
CLIENT_ADDRESS_HEADERS = (FLY_CLIENT_IP, X_FORWARDED_FOR)
# Fly's proxy connects to a machine from 172.16.0.0/16 (nginx's `set_real_ip_from` for fly-proxy
# in github.com/forge-42/fly-sidecar-poc, nginx.conf; Fly documents only that it reaches a
# machine "through a private IPv4 address", fly.io/docs/networking/app-services/). It sets
# Fly-Client-IP (fly.io/docs/networking/request-headers/), replacing one the client sent (measured
# in github.com/arcjet/arcjet-js issue 5412), and appends the app's own address to X-Forwarded-For.
# gunicorn.conf.py repeats this default: it is read before the package may be imported.
FLY_PROXY_NETWORKS = ("172.16.0.0/16",)
# Where the socket peer is kept when REMOTE_ADDR is replaced (for debugging a proxy setup).
PEER_ENVIRON_KEY = "controlplane.proxy_peer"


def parse_networks(text: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDRs, strictly (`10.0.0.1/8` is a mistake, as gunicorn says),
    in canonical form; raises ValueError naming the bad entry."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if entry:
            try:
                networks.append(str(ipaddress.ip_network(entry)))
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an address or CIDR network ({exc})") from None
    return tuple(networks)


class ClientAddress:
    """WSGI middleware: REMOTE_ADDR becomes the client's address named by `header`, when the
    peer is in `trusted`. Nothing trusted: requests pass untouched."""

    def __init__(self, wsgi_app, trusted: Iterable[str], header: str):
        self.wsgi_app = wsgi_app
        self.networks = tuple(ipaddress.ip_network(network) for network in trusted)
        self.read_client = _fly_client_ip if header == FLY_CLIENT_IP else self._right_most_untrusted

    def __call__(self, environ, start_response):
        if self.networks and self._is_trusted(_address(environ.get("REMOTE_ADDR"))):
            client = self.read_client(environ)
            if client is not None:
                environ[PEER_ENVIRON_KEY] = environ["REMOTE_ADDR"]
                environ["REMOTE_ADDR"] = client
        return self.wsgi_app(environ, start_response)

    def _is_trusted(self, address) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def _right_most_untrusted(self, environ) -> str | None:
        """Each proxy appends the address it was connected from, so walking from the right the
        first address that is not one of our proxies is the client; what is left of it, the
        client may have written. All trusted: the left-most. Not an address: keep the peer."""
        entries = [entry.strip() for entry in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        client = None
        for entry in reversed(entries):
            client = _address(entry)
            if client is None:
                return None
            if not self._is_trusted(client):
                break
        return None if client is None else str(client)


def _fly_client_ip(environ) -> str | None:
    address = _address(environ.get("HTTP_FLY_CLIENT_IP"))
    return None if address is None else str(address)


def _address(text: str | None):
    """An IP address, IPv4-mapped IPv6 as IPv4; None for anything else, scoped IPv6 included
    (a link-local zone never comes from the internet)."""
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        return address.ipv4_mapped or address
    return address
