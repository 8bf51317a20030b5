"""The SSRF guard for subscriber URLs: no private, loopback, link-local or otherwise internal targets."""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


class UnsafeTarget(ValueError):
    pass


@dataclass(frozen=True)
class PinnedTarget:
    """Where to connect: the vetted address itself, so a second DNS answer cannot differ.

    `url` has the address in place of the host name; `headers` carry the original Host and
    `extensions` the TLS server name, so virtual hosting and certificate checks still use the name.
    """

    url: str
    headers: dict = field(default_factory=dict)
    extensions: dict = field(default_factory=dict)


def pin_url(url: str, allow_private: bool) -> PinnedTarget:
    """Check `url` and resolve it once; raise UnsafeTarget as check_url does."""
    addresses = check_url(url, allow_private)
    if not addresses:  # private targets allowed (development): nothing to pin
        return PinnedTarget(url)
    parts = urlsplit(url)
    address = addresses[0]
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parts.port}" if parts.port else host
    original_host = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return PinnedTarget(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)),
                        {"Host": original_host}, extensions)


def check_url(url: str, allow_private: bool) -> list:
    """Raise UnsafeTarget unless `url` is http(s) and every address its host resolves to is public;
    returns those addresses (none when private targets are allowed)."""
    if not isinstance(url, str) or len(url) > 2048:
        raise UnsafeTarget("url must be a string of at most 2048 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("url must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise UnsafeTarget("url must not carry credentials")
    if allow_private:
        return []
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise UnsafeTarget(f"cannot resolve {parts.hostname}") from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise UnsafeTarget(f"{parts.hostname} resolves to {address}, which is not a public address")
        addresses.append(address)
    return addresses
