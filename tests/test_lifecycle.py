import os
import signal

from controlplane.lifecycle import Lifecycle


def test_sigterm_marks_draining_then_runs_the_previous_handler():
    calls = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        lifecycle = Lifecycle()
        lifecycle.chain_sigterm()
        assert not lifecycle.draining
        os.kill(os.getpid(), signal.SIGTERM)
        assert lifecycle.draining
        assert calls == [signal.SIGTERM], "gunicorn's own handler must still run"
    finally:
        signal.signal(signal.SIGTERM, original)


def test_uptime_grows():
    lifecycle = Lifecycle()
    assert 0 <= lifecycle.uptime_seconds < 5
