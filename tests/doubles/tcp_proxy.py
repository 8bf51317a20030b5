"""A TCP proxy in front of a server (PostgreSQL), which a test can cut, silence and restore.

Processes under test connect through the proxy, so the test can make "the database unreachable"
without touching the real server, which other tests share:

- `cut()`: every open connection is reset and new ones are refused (accepted, then reset at
  once), as when the server goes away and its host says so;
- `silence()`: the server's side of every open connection is closed (PostgreSQL ends those
  sessions, and their advisory locks), but the clients hear nothing: their connections stay open
  and silent, and new connections are accepted and never answered, as when the server's host
  vanishes without a word (a dead machine, a dropped route);
- `restore()`: new connections are forwarded again. Silenced connections stay silent: their
  server is gone, and a client that waits for an answer on one waits until its own timeouts.
"""
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
        self.mode = "forward"  # forward, refuse, silent
        self._open: set[socket.socket] = set()
        self._upstreams: set[socket.socket] = set()  # the server's side of each open connection
        self._held: list[socket.socket] = []  # silent client sockets, kept open on purpose
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
        for sock in self._switch("refuse"):
            _reset(sock)

    def silence(self) -> None:
        # Only the upstream sockets are closed (the pumps tell them apart by the mode).
        for sock in self._switch("silent"):
            if sock in self._upstreams:
                _reset(sock)

    def restore(self) -> None:
        self._switch("forward")

    def stop(self) -> None:
        self._closed = True
        self.cut()
        for sock in self._held:
            _reset(sock)
        with suppress(OSError):
            self.listener.close()

    def _switch(self, mode: str) -> set[socket.socket]:
        with self._lock:
            self.mode = mode
            if mode == "forward":
                return set()
            open_sockets, self._open = self._open, set()
            return open_sockets

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                if self._closed:
                    return
                continue  # e.g. a client that gave up before we accepted it
            if self.mode == "refuse":
                _reset(client)
            elif self.mode == "silent":
                self._held.append(client)
            else:
                self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            _reset(client)
            return
        with self._lock:
            self._open.update((client, upstream))
            self._upstreams.add(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink, upstream), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                if self.mode == "silent":
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        with self._lock:
            self._open.discard(source)
            self._open.discard(sink)
            silent = self.mode == "silent"
            # Told, not guessed from _upstreams: the other pump may have removed it already, and a
            # guess would then reset the client (which a silent server never does).
            self._upstreams.discard(upstream)
        if silent:  # the client's side stays open and hears nothing more
            _reset(upstream)
            self._held.append(sink if upstream is source else source)
            return
        # One side went away: so does the other (PostgreSQL then ends the session, and with it
        # any advisory lock the session held).
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                sock.close()
