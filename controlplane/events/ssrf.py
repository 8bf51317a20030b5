"""The SSRF guard for subscriber URLs: no private, loopback, link-local or otherwise internal targets.

An address passes only when it is globally reachable itself *and* when no IPv4 address that it
carries inside is internal: IPv6 transition forms route to the IPv4 address they embed, so
`[64:ff9b::7f00:1]` (NAT64), `[2002:7f00:1::]` (6to4) and `[::ffff:127.0.0.1]` (IPv4-mapped) all
reach 127.0.0.1. Forms that are deprecated or reach a target nobody can vet are refused outright:
IPv4-compatible IPv6 (::/96, RFC 4291), Teredo (2001::/32), 6to4 (2002::/16, RFC 7526), its relay
anycast 192.88.99.0/24, and local-use NAT64 (64:ff9b:1::/48, RFC 8215; its IPv4 may sit anywhere).
Well-known NAT64 (64:ff9b::/96, RFC 6052) stays usable for public IPv4 targets: on an IPv6-only
network with DNS64 that is how every IPv4-only receiver resolves.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


class UnsafeTarget(ValueError):
    pass


NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
# Refused whatever they embed: deprecated, or their real target cannot be read from the address.
REFUSED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "::/96",            # IPv4-compatible IPv6 (:: and ::1 are caught as non-global anyway)
    "2001::/32",        # Teredo
    "2002::/16",        # 6to4
    "64:ff9b:1::/48",   # local-use NAT64
    "192.88.99.0/24",   # 6to4 relay anycast
))


def embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address routes to (IPv4-mapped or well-known NAT64), if any."""
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why `address` is no webhook target, or None when it is a public address."""
    if any(address in network for network in REFUSED_NETWORKS if network.version == address.version):
        return "an IPv6 transition or relay address"
    inner = embedded_ipv4(address)
    if inner is not None:  # judged by where it leads (Python calls all of ::ffff:0:0/96 private)
        return None if _public(inner) else f"an IPv6 form of {inner}, which is not a public address"
    return None if _public(address) else "not a public address"


def _public(address) -> bool:
    return address.is_global and not address.is_multicast


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
        reason = refusal(address)
        if reason is not None:
            raise UnsafeTarget(f"{parts.hostname} resolves to {address}, which is {reason}")
        addresses.append(address)
    return addresses
