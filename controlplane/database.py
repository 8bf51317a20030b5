"""PostgreSQL connections: the libpq arguments every connection is opened with, and a client-side
deadline on waiting for the server.

`libpq_args()` is the one place those arguments are built. The pool (`engine_options`) and the
leader lock take theirs from `service_connect_args()`, the backup engines theirs from
`libpq_args()` directly. Every connection gets TCP keepalives and `tcp_user_timeout`, so a host
that dies without a word is noticed in about 30 s instead of the kernel's two hours.

Keepalives cannot end every wait, though. When a server's side of a connection is gone but something
on the way still acknowledges our packets (a proxy, a NAT box, a load balancer), keepalives and
`tcp_user_timeout` never fire. `statement_timeout` cannot help either: the server enforces it,
and the server is gone. So the long-running processes (web, worker, `controlplane run`) call
`install_answer_deadline()`. psycopg2 then waits through `wait_for_server`, a wait callback modelled
on `psycopg2.extras.wait_select`. On a pool or leader connection, it raises `ServerSilent` when the
server sends nothing for `DB_ANSWER_TIMEOUT_SECONDS`. psycopg2 closes a connection whose wait
callback raised (`green_panic` in its green.c), so SQLAlchemy sees a disconnect and discards the
connection instead of returning it to the pool.

The same callback makes psycopg2 cooperative under gunicorn's gevent worker: without a wait
callback, libpq blocks the whole process (every greenlet) while it waits; with one, each wait is a
`select.poll()`, which gevent's monkey-patching (done by the worker before the app is imported)
turns into a wait that yields to the other greenlets. So a serving process installs the callback
even when DB_ANSWER_TIMEOUT_SECONDS is 0, then without a deadline.
"""
from __future__ import annotations

import select
from functools import partial

import psycopg2
from psycopg2 import extensions

# An idle connection is probed after 15 s, then every 5 s, and dropped after 3 unanswered probes:
# about 30 s, the same bound `tcp_user_timeout` puts on data the peer never acknowledges.
KEEPALIVES_IDLE_SECONDS = 15
KEEPALIVES_INTERVAL_SECONDS = 5
KEEPALIVES_COUNT = 3
TCP_USER_TIMEOUT_MS = 30_000
# A connection in any other state is still connecting (psycopg2's CONN_STATUS_CONNECTING and
# CONN_STATUS_DATESTYLE). Once a wait callback is installed, psycopg2 connects asynchronously, and
# libpq then leaves `connect_timeout` to the caller.
ESTABLISHED = (extensions.STATUS_READY, extensions.STATUS_BEGIN, extensions.STATUS_PREPARED)


class ServerSilent(psycopg2.OperationalError):
    """PostgreSQL sent nothing on a connection within its deadline. psycopg2 has closed it."""


class ServiceConnection(extensions.connection):
    """A pool or leader-lock connection: its statements are bounded by `statement_timeout`, so a wait
    longer than the answer deadline means the server is gone. Other connections (backups) wait as
    long as their statements run."""


def libpq_args(connect_timeout: int, application_name: str, statement_timeout_ms: int = 0) -> dict:
    """psycopg2.connect() keyword arguments for any PostgreSQL connection the service opens."""
    args = {
        "connect_timeout": connect_timeout,
        "application_name": application_name,
        "keepalives": 1,
        "keepalives_idle": KEEPALIVES_IDLE_SECONDS,
        "keepalives_interval": KEEPALIVES_INTERVAL_SECONDS,
        "keepalives_count": KEEPALIVES_COUNT,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
    }
    if statement_timeout_ms:
        args["options"] = f"-c statement_timeout={statement_timeout_ms}"
    return args


def service_connect_args(settings, application_name: str) -> dict:
    """connect_args for the pool and the leader lock: the answer deadline applies to them."""
    return {**libpq_args(settings.db_connect_timeout, application_name, settings.db_statement_timeout_ms),
            "connection_factory": ServiceConnection}


def install_answer_deadline(settings) -> None:
    """Make this process's waits on PostgreSQL end, and yield under gevent (long-running processes
    only; see above)."""
    if settings.is_sqlite:
        return
    extensions.set_wait_callback(partial(wait_for_server, answer_seconds=settings.db_answer_timeout or None))


def wait_for_server(conn, answer_seconds: float | None = None) -> None:
    """psycopg2 wait callback: wait_select with a limit on each wait for the server."""
    limit, what = _wait_limit(conn, answer_seconds)
    while (state := conn.poll()) != extensions.POLL_OK:
        if state not in (extensions.POLL_READ, extensions.POLL_WRITE):
            raise psycopg2.OperationalError(f"bad state from poll: {state}")
        if not _ready(conn.fileno(), state, limit):
            raise ServerSilent(f"PostgreSQL did not answer within {limit:g} s ({what}): "
                               f"giving up on the connection")


def _wait_limit(conn, answer_seconds: float | None) -> tuple[float | None, str]:
    if conn.status not in ESTABLISHED:
        timeout = extensions.parse_dsn(conn.dsn).get("connect_timeout")
        return (float(timeout) if timeout and float(timeout) > 0 else None), "connect_timeout"
    if isinstance(conn, ServiceConnection):
        return answer_seconds, "DB_ANSWER_TIMEOUT_SECONDS"
    return None, "no deadline"


def _ready(fileno: int, state: int, limit: float | None) -> bool:
    """Whether the socket became ready within `limit` seconds (None: however long it takes)."""
    # poll(), not select.select(): gunicorn may hold descriptors above FD_SETSIZE; and not a
    # selectors.DefaultSelector, whose epoll costs three system calls more on every query.
    # Looked up at each call, so a gevent-patched process gets gevent's cooperative poll.
    poller = select.poll()
    poller.register(fileno, select.POLLIN if state == extensions.POLL_READ else select.POLLOUT)
    return bool(poller.poll(None if limit is None else limit * 1000))
