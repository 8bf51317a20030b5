"""Open event streams against API latency (issue 12): does the web tier starve?

    .venv/bin/python -m bench.event_streams [--streams 500] [--rounds 3] [--seconds 10] [--connections 32]

The service runs under the project's gunicorn.conf.py (gevent workers, WEB_CONCURRENCY=2) on a
fresh PostgreSQL database, with `controlplane worker` refreshing checks and delivering into the
sink. Each round runs `wrk --latency` on GET /health and on POST /api/v1/send/message (a fresh
idempotency key per request) twice: with no stream open, then while `--streams` /api/v1/events
streams are held open (spread over ten keys other than the sending one, as many clients would).
It prints, per endpoint, wrk's timeouts, the median p99 of each side and the median of the
rounds' p99 ratios (with / without).
Target: no timeouts and p99 with streams within 20% of p99 without (ratio <= 1.20).

EVENTS_STREAMS_MAX is raised to --streams for the run, since the kernel does not split the streams
evenly between the two workers. Needs `wrk` (Debian package) and a PostgreSQL server
(CONTROLPLANE_BENCH_POSTGRES_URL, default the local one).
"""
from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urlsplit

from bench.gateway import LUA, bench_key, controlplane, environment
from bench.http_ratio import gunicorn
from bench.pg import fresh_database
from controlplane.events.stream import KEEPALIVE_SECONDS

STREAM_KEYS = 10
TARGET_RATIO = 1.20
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


class HeldStreams:
    """Holds N event streams open on raw sockets from one thread, reading and discarding what
    comes; counts the streams answered 200 and those the server closed early."""

    def __init__(self, url: str, keys: list[str], count: int):
        self.address = (urlsplit(url).hostname, urlsplit(url).port)
        self.keys, self.count = keys, count
        self.selector = selectors.DefaultSelector()
        self.opened = self.refused = self.closed_early = 0
        self._heads: dict[socket.socket, bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> "HeldStreams":
        for number in range(self.count):
            sock = socket.create_connection(self.address, timeout=10)
            key = self.keys[number % len(self.keys)]
            sock.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: bench\r\nX-Server-API-Key: {key}\r\n"
                         f"Accept: text/event-stream\r\n\r\n".encode())
            sock.setblocking(False)
            self._heads[sock] = b""
            self.selector.register(sock, selectors.EVENT_READ)
        self._thread.start()
        deadline = time.monotonic() + 60
        while self.opened + self.refused < self.count and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.opened < self.count:
            raise RuntimeError(f"only {self.opened} of {self.count} streams opened ({self.refused} refused)")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in list(self._heads):
            sock.close()
        self.selector.close()
        # The server notices a closed stream at its next write (a keep-alive at the latest), and
        # until then the stream holds its slot: the next run starts once every slot is free.
        time.sleep(KEEPALIVE_SECONDS + 2)

    def _read(self) -> None:
        while not self._stop.is_set():
            for selected, _ in self.selector.select(timeout=0.2):
                self._receive(selected.fileobj)

    def _receive(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        if not data:
            self.closed_early += 1
            self.selector.unregister(sock)
            return
        head = self._heads[sock]
        if head is not None:
            head += data
            if b"\r\n" in head:
                if head.startswith(b"HTTP/1.1 200"):
                    self.opened += 1
                else:
                    self.refused += 1
                head = None
            self._heads[sock] = head


def wrk_latency(url: str, seconds: int, connections: int, script: Path | None = None) -> dict:
    """One `wrk --latency` run: requests/s, p99 in ms, timeouts and other socket errors, non-2xx."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "2s", "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    connect, read, write, timeouts = (int(n) for n in errors.groups()) if errors else (0, 0, 0, 0)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p99_ms": float(p99.group(1)) * UNITS[p99.group(2)], "timeouts": timeouts,
            "errors": connect + read + write, "non_2xx": int(non_2xx.group(1)) if non_2xx else 0}


def run(args) -> bool:
    database_url, drop = fresh_database()
    data_dir = tempfile.mkdtemp(prefix="bench-streams-")
    env = {**environment(database_url, data_dir), "EVENTS_STREAMS_MAX": str(max(args.streams, 1)),
           "EVENTS_STREAMS_PER_KEY": str(max(args.streams, 1)), "EVENTS_STREAM_SECONDS": "3600"}
    worker = None
    try:
        controlplane(env, "db", "upgrade")
        send_key = bench_key(env)
        stream_keys = [bench_key(env) for _ in range(STREAM_KEYS)]
        script = Path(data_dir) / "send.lua"
        script.write_text(LUA % {"path": "/api/v1/send/message", "key": send_key})
        worker = subprocess.Popen([sys.executable, "-m", "controlplane", "worker"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with gunicorn("controlplane.wsgi:app", env, args.workers) as url:
            time.sleep(3)  # the worker's first check results, so /health has a snapshot
            targets = {"health": (url + "/health", None), "send": (url, script)}
            for name, (target, lua) in targets.items():
                wrk_latency(target, 2, args.connections, lua)  # warm-up
            results = {(name, side): [] for name in targets for side in ("without", "with")}
            for round_number in range(1, args.rounds + 1):
                for side in ("without", "with"):
                    with HeldStreams(url, stream_keys, args.streams) if side == "with" else nullcontext() as streams:
                        for name, (target, lua) in targets.items():
                            result = wrk_latency(target, args.seconds, args.connections, lua)
                            results[(name, side)].append(result)
                            print(f"  round {round_number} {name:6} {side:7} streams: {result['rps']:.0f} req/s, "
                                  f"p99 {result['p99_ms']:.1f} ms, timeouts {result['timeouts']}, "
                                  f"errors {result['errors']}, non-2xx {result['non_2xx']}", flush=True)
                        if streams is not None:
                            print(f"  round {round_number}: {streams.opened} streams held, "
                                  f"{streams.closed_early} closed early", flush=True)
            return report(results)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)
        drop()


def report(results: dict) -> bool:
    passed = True
    for name in ("health", "send"):
        without, with_streams = results[(name, "without")], results[(name, "with")]
        p99_without = statistics.median(r["p99_ms"] for r in without)
        p99_with = statistics.median(r["p99_ms"] for r in with_streams)
        timeouts = sum(r["timeouts"] + r["errors"] + r["non_2xx"] for r in with_streams + without)
        # The median of the rounds' ratios, as bench/http_ratio.py: other tenants' bursts spoil a round, not the figure.
        ratio = statistics.median(w["p99_ms"] / o["p99_ms"] for w, o in zip(with_streams, without))
        ok = timeouts == 0 and ratio <= TARGET_RATIO
        passed &= ok
        print(f"{name}: p99 without streams {p99_without:.1f} ms, with {p99_with:.1f} ms, ratio {ratio:.2f}; "
              f"timeouts+errors {timeouts}; rps {statistics.median(r['rps'] for r in without):.0f} vs "
              f"{statistics.median(r['rps'] for r in with_streams):.0f}  target ratio <= {TARGET_RATIO}, "
              f"0 timeouts  {'PASS' if ok else 'FAIL'}")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    print(f"machine: {os.cpu_count()} cores; gunicorn {args.workers} workers "
          f"({os.environ.get('GUNICORN_WORKER_CLASS', 'gevent')}); wrk -t2 -c{args.connections} -d{args.seconds}s; "
          f"{args.streams} streams; {args.rounds} rounds")
    return 0 if run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
