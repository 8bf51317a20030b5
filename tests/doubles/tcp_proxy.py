"""A TCP proxy in front of a server (PostgreSQL), which a test can cut and restore.

Processes under test connect through the proxy; the test makes "the database unreachable" with
`cut()`: every open connection is reset and new ones are refused (accepted, then reset at once),
as when the server goes away, without touching the real server, which other tests share.
`restore()` forwards again.

(A peer that vanishes without a word, so that an open connection simply goes silent, is another
fault: clients without TCP keepalives or statement timeouts then wait on it for as long as the
kernel keeps retransmitting.)
"""
from __future__ import annotations

import socket
import struct
import threading
from contextlib import suppress

from sqlalchemy.engine import make_url


def _reset(sock: socket.socket) -> None:
    """Close at once, telling the peer (RST), as a server that went away does."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # shutdown() first: close() alone neither wakes a pump thread blocked in recv() on this socket
    # nor tells the peer anything while that thread holds it, and the peer would then wait forever
    # on a connection nobody forwards (a different fault: see the module's docstring).
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_now = False
        self.connections = 0  # accepted while forwarding
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @classmethod
    def for_database(cls, database_url: str) -> "TcpProxy":
        url = make_url(database_url)
        return cls(url.host or "127.0.0.1", url.port or 5432)

    def url_for(self, database_url: str) -> str:
        """`database_url`, reached through this proxy."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def cut(self) -> None:
        with self._lock:
            self.cut_now = True
            open_sockets, self._open = self._open, set()
        for sock in open_sockets:
            _reset(sock)

    def restore(self) -> None:
        with self._lock:
            self.cut_now = False

    def stop(self) -> None:
        self._closed = True
        self.cut()
        with suppress(OSError):
            self.listener.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_now:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self.connections += 1
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        # One side went away: so does the other (PostgreSQL then ends the session, and with it
        # any advisory lock the session held).
        with self._lock:
            self._open.discard(source)
            self._open.discard(sink)
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                sock.close()
