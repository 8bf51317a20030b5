"""A short-lived per-process cache of the public status answers (page, JSON, feeds, badges).

Every visitor, widget and monitor polling the status page would otherwise cost a dozen queries
and a render each; with STATUS_CACHE_SECONDS (2 s by default) each process computes an answer at
most once per period, whatever the traffic. While one thread recomputes an expired answer, the
others keep serving the previous one, so a slow database is not multiplied by the request rate.
Writes through the API (incidents, maintenance) clear this process's cache at once; other
processes follow within the period. 304s are still answered per request from the cached ETag.
"""
from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from flask import Response, current_app, request

from ..extensions import limiter

MAX_ENTRIES = 256  # paths with query strings (?page=, ?days=) are bounded by this, oldest out first


@dataclass(frozen=True)
class Entry:
    expires: float
    body: bytes
    headers: tuple[tuple[str, str], ...]
    mimetype: str


class PublicCache:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._rendering: set[str] = set()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def answer(self, key: str, render) -> Response:
        if self.seconds <= 0:
            return render()
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            fresh = entry is not None and entry.expires > now
            # Someone else is already recomputing it: serve the previous answer meanwhile.
            if not fresh and entry is not None and key in self._rendering:
                fresh = True
            if not fresh:
                self._rendering.add(key)
        if fresh:
            return self._response(entry)
        try:
            response = render()
            if response.status_code == 200 and not response.is_streamed:
                self._store(key, response)
            return response
        finally:
            with self._lock:
                self._rendering.discard(key)

    def _store(self, key: str, response: Response) -> None:
        headers = tuple((name, value) for name, value in response.headers.items()
                        if name not in ("Content-Length", "Content-Type"))
        entry = Entry(time.monotonic() + self.seconds, response.get_data(), headers, response.mimetype)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    @staticmethod
    def _response(entry: Entry) -> Response:
        response = Response(entry.body, mimetype=entry.mimetype, headers=entry.headers)
        environ = request.environ
        if "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ:
            return response.make_conditional(request)
        return response


def cached(view):
    """Serve `view` from the process's PublicCache, keyed by path and query string. The static
    export renders uncached (its links differ). Such public reads are not rate limited: the
    cache is what bounds their cost."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        from .page import EXPORT_ENVIRON_KEY

        if request.environ.get(EXPORT_ENVIRON_KEY):
            return view(*args, **kwargs)
        cache: PublicCache = current_app.extensions["controlplane.status_cache"]
        # The Accept header picks JSON or HTML for error answers only, which are never cached.
        return cache.answer(request.full_path, lambda: current_app.make_response(view(*args, **kwargs)))

    wrapper.public_status_read = True
    return wrapper


@limiter.request_filter
def _is_public_read() -> bool:
    """Flask-Limiter's check costs a third of a cached answer's time; these routes carry no limit."""
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, "public_status_read", False)


def clear_after_write(response):
    """after_request of the write APIs: a successful change shows on this process's page at once."""
    if request.method != "GET" and response.status_code < 400:
        current_app.extensions["controlplane.status_cache"].clear()
    return response
