"""A Postal double: a real local HTTP server speaking Postal 3.3's API envelope.

It answers the way Postal does (HTTP 200 with a status envelope, Postal's error codes and
messages) and can be told to fail: `mode` is "ok", "error500" (HTTP 500), or "slow" (sleeps
`delay` seconds before answering).
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_ROUTES = ("/api/v1/send/message", "/api/v1/send/raw", "/api/v1/messages/message", "/api/v1/messages/deliveries")


class PostalDouble:
    def __init__(self, api_key: str = "postaltestkey0123456789a"):
        self.api_key = api_key
        self.mode = "ok"
        self.delay = 0.0
        self.requests: list[dict] = []
        self.messages: dict[int, dict] = {}
        double = self

        class Handler(BaseHTTPRequestHandler):
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
        if path == "/api/v1/messages/message":
            message = self.messages.get(params.get("id"))
            if message is None:
                return "error", {"id": params.get("id"), "message": "No message found matching provided ID",
                                 "code": "MessageNotFound"}
            return "success", message
        return "error", {"message": "not implemented in this double", "code": "NotImplemented"}

    def start(self) -> "PostalDouble":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
