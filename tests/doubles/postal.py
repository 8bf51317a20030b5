"""A Postal double: a real local HTTP server speaking Postal 3.3's API envelope.

It answers the way Postal does (HTTP 200 with a status envelope, Postal's error codes and
messages) and can be told to fail: `mode` is "ok", "error500" (HTTP 500), or "slow" (sleeps
`delay` seconds before answering).
"""
from __future__ import annotations

import json
import random
import string
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_ROUTES = ("/api/v1/send/message", "/api/v1/send/raw", "/api/v1/messages/message", "/api/v1/messages/deliveries")


class PostalDouble:
    def __init__(self, api_key: str = "postaltestkey0123456789a"):
        self.api_key = api_key
        self.mode = "ok"
        self.delay = 0.0
        self.requests: list[dict] = []
        self.messages: dict[int, dict] = {}
        self.sent: list[dict] = []
        self.unauthenticated_domains: set[str] = set()
        self._next_id = 1000
        double = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as a real Postal behind its proxy: no new connection (and thread) per call.
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
            # adds ~40 ms to every answer, which a real Postal (Puma) does not.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._handle()

            def do_POST(self):
                self._handle()

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                double.requests.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                if double.mode == "slow":
                    time.sleep(double.delay)
                if double.mode == "error500":
                    return self._send(500, b"Internal Server Error", "text/plain")
                started = time.perf_counter()
                status, data = double.answer(self.path, self.headers, raw)
                envelope = {"status": status, "time": round(time.perf_counter() - started, 3), "flags": {}, "data": data}
                self._send(200, json.dumps(envelope).encode(), "application/json")

            def _send(self, code, body, content_type):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, headers, raw: bytes) -> tuple[str, dict]:
        if path not in API_ROUTES:
            return "error", {"message": f"No route matches '{path}'", "code": "RouteNotFound"}
        key = headers.get("X-Server-API-Key")
        if not key:
            return "error", {"message": "Must be authenticated as a server.", "code": "AccessDenied"}
        if key != self.api_key:
            return "error", {"message": "The API token provided in X-Server-API-Key was not valid.",
                             "code": "InvalidServerAPIKey"}
        params = json.loads(raw or b"{}") if headers.get("Content-Type", "").startswith("application/json") else {}
        if path == "/api/v1/send/message":
            return self._send_message(params)
        if path == "/api/v1/send/raw":
            for name in ("mail_from", "rcpt_to", "data"):
                if not params.get(name):
                    return "parameter-error", {"message": f"`{name}` parameter is required but is missing"}
            return "success", self._store(params["rcpt_to"], params["mail_from"], params)
        if path == "/api/v1/messages/message":
            message = self.messages.get(params.get("id"))
            if message is None:
                return "error", {"id": params.get("id"), "message": "No message found matching provided ID",
                                 "code": "MessageNotFound"}
            return "success", message
        return "error", {"message": "not implemented in this double", "code": "NotImplemented"}

    def _send_message(self, params: dict) -> tuple[str, dict]:
        def listed(value):
            return [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value or [])

        to, cc, bcc = listed(params.get("to")), listed(params.get("cc")), listed(params.get("bcc"))
        if not (to or cc or bcc):
            return "error", {"message": "There are no recipients defined to receive this message", "code": "NoRecipients"}
        if not (params.get("plain_body") or params.get("html_body")):
            return "error", {"message": "There is no content defined for this e-mail", "code": "NoContent"}
        if not params.get("from"):
            return "error", {"message": "The From address is missing and is required", "code": "FromAddressMissing"}
        if params["from"].rsplit("@", 1)[-1].rstrip(">") in self.unauthenticated_domains:
            return "error", {"message": "The From address is not authorised to send mail from this server",
                             "code": "UnauthenticatedFromAddress"}
        return "success", self._store(to + cc + bcc, params["from"], params)

    def _store(self, recipients, sender, params) -> dict:
        message_id = f"{uuid.uuid4()}@{sender.rsplit('@', 1)[-1].rstrip('>')}"
        messages = {}
        for address in recipients:
            self._next_id += 1
            token = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(16))
            messages[address] = {"id": self._next_id, "token": token}
            self.messages[self._next_id] = {"id": self._next_id, "token": token, "status": {"status": "Pending"},
                                            "details": {"rcpt_to": address, "mail_from": sender,
                                                        "message_id": message_id}}
        self.sent.append({"message_id": message_id, "messages": messages, "params": params})
        return {"message_id": message_id, "messages": messages}

    def start(self) -> "PostalDouble":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PostalSigner:
    """Signs webhook bodies the way Postal does, with a freshly generated RSA key."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key = self.private_key.public_key()

    @property
    def public_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def body(self, event: str, payload: dict, uuid_: str | None = None) -> bytes:
        document = {"event": event, "timestamp": time.time(), "payload": payload, "uuid": uuid_ or str(uuid.uuid4())}
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        # Postal (Ruby's JSON) escapes these three; it sends other non-ASCII as UTF-8.
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return text.encode("utf-8")

    def headers(self, body: bytes, sha1: bool = False, with_256: bool = True) -> dict:
        import base64
        import hashlib

        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        headers = {"Content-Type": "application/json"}
        if with_256:
            headers["X-Postal-Signature-256"] = base64.b64encode(
                self.private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
        if sha1:
            headers["X-Postal-Signature"] = base64.b64encode(
                self.private_key.sign(body, padding.PKCS1v15(), hashes.SHA1())).decode()
        der = self.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        headers["X-Postal-Signature-KID"] = hashlib.sha256(der).hexdigest()
        return headers


def serve_forever(delay_ms: int = 20) -> None:
    """Run a double in its own process (benchmarks): prints its URL, then serves until killed."""
    import sys

    double = PostalDouble()
    double.mode, double.delay = "slow", delay_ms / 1000
    print(double.url, double.api_key, flush=True)
    sys.stdout.close()
    double.server.serve_forever()


if __name__ == "__main__":
    import sys

    serve_forever(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
