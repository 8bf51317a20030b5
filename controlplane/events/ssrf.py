"""The SSRF guard for subscriber URLs: no private, loopback, link-local or otherwise internal targets."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeTarget(ValueError):
    pass


def check_url(url: str, allow_private: bool) -> None:
    """Raise UnsafeTarget unless `url` is http(s) and every address its host resolves to is public."""
    if not isinstance(url, str) or len(url) > 2048:
        raise UnsafeTarget("url must be a string of at most 2048 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("url must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise UnsafeTarget("url must not carry credentials")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise UnsafeTarget(f"cannot resolve {parts.hostname}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise UnsafeTarget(f"{parts.hostname} resolves to {address}, which is not a public address")
