"""A PagerDuty Events API v2 double: a real HTTPS server on 127.0.0.1.

The `pagerduty` package insists on an https base URL, so the double serves TLS with a certificate
made at test time (`TestCertificateAuthority`); processes under test trust it through
SSL_CERT_FILE, which is where httpx2 (the package's HTTP client) looks first.

It answers as PagerDuty does: 202 with `{"status": "success", "dedup_key": ...}` for a valid
event on /v2/enqueue or /v2/change/enqueue, 400 for an invalid one, and whatever `failing` says
while it is set (429 "throttle event" or a 5xx). Every request is recorded, answered or not.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
THROTTLED = {"status": "throttle event", "message": "Requests for this service are arriving too quickly. "
                                                    "Please retry later."}


class TestCertificateAuthority:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost, written under `folder`."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MailGoat test CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False, encipher_only=False,
                                           decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = (x509.CertificateBuilder()
                  .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                  .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
                  .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                  .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                              x509.DNSName("localhost")]), critical=False)
                  .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                  .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                 critical=False)
                  .sign(ca_key, hashes.SHA256()))
        self.ca_file = folder / "ca.pem"
        self.cert_file = folder / "server.pem"
        self.key_file = folder / "server.key"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        self.key_file.write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass(frozen=True)
class Request:
    at: float  # time.time() when it arrived
    path: str
    event: dict | None  # the decoded body (None when it was not JSON)
    status: int  # what the double answered

    @property
    def accepted(self) -> bool:
        return self.status == 202

    @property
    def action(self) -> str | None:
        return "change" if self.path == "/v2/change/enqueue" else (self.event or {}).get("event_action")

    @property
    def dedup_key(self) -> str | None:
        return (self.event or {}).get("dedup_key")

    @property
    def summary(self) -> str:
        return ((self.event or {}).get("payload") or {}).get("summary", "")


class PagerDutyDouble:
    def __init__(self, authority: TestCertificateAuthority):
        self.requests: list[Request] = []
        self._failing = None  # an iterator of statuses to answer while PagerDuty is "down"
        self._lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body = double._answer(self.path, raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = authority.server_context().wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ what the test controls

    def fail_with(self, *statuses: int) -> None:
        """Answer every request with these statuses in turn (429, 500, 503...) until `recover()`."""
        with self._lock:
            self._failing = itertools.cycle(statuses)

    def recover(self) -> None:
        with self._lock:
            self._failing = None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------ what the test reads

    def accepted(self, action: str | None = None) -> list[Request]:
        return [r for r in list(self.requests) if r.accepted and (action is None or r.action == action)]

    def pages(self) -> list[Request]:
        """Accepted trigger events: what pages someone."""
        return self.accepted("trigger")

    def most_in_a_minute(self, requests: list[Request]) -> int:
        """The largest number of `requests` that arrived within any 60 seconds."""
        times = sorted(r.at for r in requests)
        most, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= 60:
                start += 1
            most = max(most, end - start + 1)
        return most

    # ------------------------------------------------------------ PagerDuty's side

    def _answer(self, path: str, raw: bytes) -> tuple[int, dict]:
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        with self._lock:
            failing = next(self._failing) if self._failing is not None else None
        if failing is not None:
            status, body = failing, THROTTLED if failing == 429 else {"status": "error", "message": "unavailable"}
        else:
            problem = self._invalid(path, event)
            status = 400 if problem else 202
            body = ({"status": "invalid event", "message": "Event object is invalid", "errors": [problem]} if problem
                    else {"status": "success", "message": "Event processed",
                          "dedup_key": (event or {}).get("dedup_key") or uuid.uuid4().hex})
        self.requests.append(Request(time.time(), path, event if isinstance(event, dict) else None, status))
        return status, body

    @staticmethod
    def _invalid(path: str, event) -> str | None:
        if path not in ("/v2/enqueue", "/v2/change/enqueue"):
            return f"unknown path {path}"
        if not isinstance(event, dict) or not event.get("routing_key"):
            return "'routing_key' is missing or blank"
        if path == "/v2/change/enqueue":
            return None if (event.get("payload") or {}).get("summary") else "'payload.summary' is missing"
        if event.get("event_action") not in ACTIONS:
            return "'event_action' is invalid"
        if event["event_action"] != "trigger":
            return None if event.get("dedup_key") else "'dedup_key' is required"
        payload = event.get("payload") or {}
        for name in ("summary", "source", "severity"):
            if not payload.get(name):
                return f"'payload.{name}' is missing or blank"
        if payload["severity"] not in SEVERITIES:
            return "'payload.severity' is invalid"
        return None
