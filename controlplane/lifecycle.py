"""Process lifecycle as /ready reports it: serving, or draining after SIGTERM.

/ready's 503s while starting or draining are answers to the proxy, and /ready is a probe route
(telemetry/traffic.py): they never count as traffic, so a deploy or a scale-down pages nobody.
"""
import signal
import threading
import time


class Lifecycle:
    def __init__(self):
        self.started_monotonic = time.monotonic()
        self._draining = threading.Event()

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_monotonic

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def start_draining(self) -> None:
        self._draining.set()

    def chain_sigterm(self) -> None:
        """Mark draining on SIGTERM, then let whatever handled SIGTERM before carry on.

        Used in gunicorn workers (post_worker_init), whose own handler finishes in-flight
        requests and exits; meanwhile /ready answers 503 so the proxy stops routing here.
        """
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum, frame):
            self.start_draining()
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, handler)
