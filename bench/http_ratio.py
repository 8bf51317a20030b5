"""HTTP throughput ratios, baseline and ours measured in the same run with the same gunicorn config.

    .venv/bin/python -m bench.http_ratio [--seconds 4] [--rounds 9] [--connections 64] [--scenario all]

Scenarios (issue 2):
  health:    GET /health of the service, with Postal configured to a server that accepts
             connections and never answers and a worker refreshing checks, against a bare
             Flask app returning a constant JSON body. Target >= 0.70.
  telemetry: GET /bench/constant of the service with metrics and tracing on (every request
             sampled, spans to an in-memory exporter) against the same app with both off.
             Target >= 0.85.

Needs `wrk` (Debian package). Both servers run side by side and short wrk runs alternate
between them; each figure is the median of the per-pair ratios, so a burst of noise from the
machine's other tenants spoils one pair rather than the result.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing, contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(app_path: str, env: dict, workers: int, probe: str = "/health"):
    port = free_port()
    metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-")
    full_env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers), "GUNICORN_ACCESS_LOG": "/dev/null",
                "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    process = subprocess.Popen([PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", app_path], cwd=ROOT,
                               env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + probe, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"gunicorn for {app_path} did not start")
                time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def wrk(url: str, seconds: int, connections: int) -> float:
    return wrk_output(url, seconds, connections)


def wrk_output(url: str, seconds: int, connections: int, script=None) -> float:
    """Requests/s of one wrk run; `script` is a Lua file making each request."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx.group(1)} non-2xx responses")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def measure(baseline, ours, path, args, env, workers):
    """Ratio of ours to baseline, each a WSGI app path served by gunicorn, both hit at `path`."""
    with gunicorn(baseline, env, workers) as baseline_url, gunicorn(ours, env, workers) as ours_url:
        return alternate({"baseline": baseline_url + path, "ours": ours_url + path}, args)


def alternate(urls: dict[str, str], args, scripts: dict | None = None) -> float:
    """Both servers stay up; short wrk runs alternate between them, so a burst of noise from
    other tenants of this machine lands on one pair, and the median pair ratio ignores it.

    `urls` maps "baseline" and "ours" to a URL; `scripts` optionally maps them to wrk Lua files.
    """
    scripts = scripts or {}
    ratios, rates = [], {"baseline": [], "ours": []}
    for label, url in urls.items():
        wrk_output(url, 2, args.connections, scripts.get(label))  # warm-up
    for round_number in range(1, args.rounds + 1):
        order = ("baseline", "ours") if round_number % 2 else ("ours", "baseline")
        result = {label: wrk_output(urls[label], args.seconds, args.connections, scripts.get(label))
                  for label in order}
        for label in result:
            rates[label].append(result[label])
        ratios.append(result["ours"] / result["baseline"])
        print(f"  round {round_number}: baseline {result['baseline']:.0f} req/s, ours {result['ours']:.0f} req/s, "
              f"ratio {ratios[-1]:.3f}", flush=True)
    print(f"  medians: baseline {statistics.median(rates['baseline']):.0f} req/s, "
          f"ours {statistics.median(rates['ours']):.0f} req/s")
    return statistics.median(ratios)


class SilentServer:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=9, help="alternating baseline/ours pairs")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (same for both sides)")
    parser.add_argument("--scenario", choices=["health", "telemetry", "all"], default="all")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    data_dir = tempfile.mkdtemp(prefix="bench-data-")
    silent = SilentServer()
    env = {**os.environ, "APP_ENV": "development", "DATA_DIR": data_dir, "LOG_LEVEL": "WARNING",
           "POSTAL_API_URL": silent.url, "POSTAL_API_KEY": "b" * 24, "REDIS_URL": "", "SENTRY_DSN": "",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "", "PYTHONPATH": str(ROOT)}
    subprocess.run([PYTHON, "-m", "controlplane", "db", "upgrade"], env=env, check=True, capture_output=True)
    worker = subprocess.Popen([PYTHON, "-m", "controlplane", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"machine: {os.cpu_count()} cores; gunicorn workers {args.workers}; wrk -t2 -c{args.connections} "
          f"-d{args.seconds}s; {args.rounds} rounds")
    try:
        time.sleep(8)  # let the worker run the checks once (postal times out after 5 s)
        if args.scenario in ("health", "all"):
            print("health: GET /health (Postal hangs) vs bare Flask constant JSON")
            ratio = measure("bench.apps:make_bare()", "controlplane.wsgi:app", "/health", args, env, args.workers)
            print(f"health ratio (median): {ratio:.3f}  target >= 0.70  {'PASS' if ratio >= 0.70 else 'FAIL'}")
        if args.scenario in ("telemetry", "all"):
            print("telemetry: GET /bench/constant, metrics+tracing on vs off")
            ratio = measure("bench.apps:make_service(False)", "bench.apps:make_service()", "/bench/constant", args, env,
                            args.workers)
            print(f"telemetry ratio (median): {ratio:.3f}  target >= 0.85  {'PASS' if ratio >= 0.85 else 'FAIL'}")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
