"""Backup benchmarks on PostgreSQL (issue 4).

    .venv/bin/python -m bench.backup [--megabytes 1024] [--rounds 1] [--keep]

Generates a database of about --megabytes (our migrated schema plus one large table of mixed,
partly compressible rows), then in the same run, alternating per round:

  backup:  plain `pg_dump -Fc -f FILE` against `controlplane backup run --kind full`
           (pg_dump in a snapshot + table checksums + zstd + AES-GCM + SHA-256 + local storage)
  restore: CREATE DATABASE + plain `pg_restore -d NEWDB FILE` against `controlplane backup restore ID --target-url NEWDB`
           (the RTO the command prints: read, verify and decrypt, then pg_restore)

Targets: backup time <= 1.25x pg_dump, RTO <= 1.25x pg_restore, peak RSS of the backup process
<= 200 MB. Needs a PostgreSQL server (CONTROLPLANE_BENCH_POSTGRES_URL, default the local one)
and about 3x --megabytes of free disk.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.pg import create_database, drop_database, url_for
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
# Runs `controlplane backup run` and reports the process's own peak RSS on its last line.
MEASURED = """
import resource, sys
from controlplane.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("peak_rss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def generate(name: str, megabytes: int, env: dict) -> int:
    create_database(name)
    subprocess.run([sys.executable, "-m", "controlplane", "db", "upgrade"], env=env, check=True, capture_output=True)
    rows = megabytes * 1024 * 1024 // 200  # about 200 bytes a row on disk
    engine = create_engine(url_for(name), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text(
            "CREATE TABLE bench_rows (id bigint PRIMARY KEY, account int NOT NULL, state text NOT NULL, "
            "payload text NOT NULL, created_at timestamptz NOT NULL)"))
        step = 500_000
        for start in range(1, rows + 1, step):
            conn.execute(text(
                "INSERT INTO bench_rows SELECT g, g % 977, (ARRAY['queued','sent','delivered','bounced'])[1 + g % 4], "
                "md5(g::text) || md5((g * 7)::text) || repeat('mailgoat ', 6), now() - g * interval '1 second' "
                "FROM generate_series(:a, :b) AS g"), {"a": start, "b": min(start + step - 1, rows)})
    with engine.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    engine.dispose()
    return size


def timed(command: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the generated database (named in the output)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    source = f"cp_bench_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "APP_ENV": "development", "DATA_DIR": str(work / "data"), "DATABASE_URL": url_for(source),
           "LOG_LEVEL": "WARNING", "BACKUP_ENCRYPTION_KEY": "ab" * 32, "BACKUP_WORK_DIR": str(work),
           "PYTHONPATH": str(ROOT)}
    created = [source]
    try:
        started = time.perf_counter()
        size = generate(source, args.megabytes, env)
        print(f"generated {source}: {size / 2**20:.0f} MiB in {time.perf_counter() - started:.0f} s")
        results = {"dump": [], "ours": [], "restore": [], "rto": []}
        peak = 0
        for round_number in range(1, args.rounds + 1):
            dump_file = work / "plain.dump"
            seconds, _ = timed(["pg_dump", "-Fc", "-f", str(dump_file), "-d", url_for(source)])
            results["dump"].append(seconds)
            seconds, done = timed([sys.executable, "-c", MEASURED, "backup", "run", "--kind", "full"], env)
            results["ours"].append(seconds)
            peak = max(peak, int(re.search(r"peak_rss_kib (\d+)", done.stderr).group(1)))
            backup_id = re.search(r"backup (\d+) \(", done.stdout).group(1)
            plain_target, our_target = f"{source}_plain_{round_number}", f"{source}_ours_{round_number}"
            created += [plain_target, our_target]
            # The baseline creates its database too, as ours does: a restore needs somewhere to go.
            started = time.perf_counter()
            create_database(plain_target)
            timed(["pg_restore", "--exit-on-error", "--no-owner", "--single-transaction",
                   "-d", url_for(plain_target), str(dump_file)])
            results["restore"].append(time.perf_counter() - started)
            _, done = timed([sys.executable, "-m", "controlplane", "backup", "restore", backup_id,
                             "--target-url", url_for(our_target), "--yes"], env)
            results["rto"].append(float(re.search(r"in ([\d.]+) s \(the RTO achieved", done.stdout).group(1)))
            read = float(re.search(r"; ([\d.]+) s reading", done.stdout).group(1))
            print(f"  round {round_number}: pg_dump -Fc {results['dump'][-1]:.1f} s ({dump_file.stat().st_size / 2**20:.0f} MiB), "
                  f"ours {results['ours'][-1]:.1f} s; pg_restore {results['restore'][-1]:.1f} s, ours (RTO) "
                  f"{results['rto'][-1]:.1f} s (of which reading and verifying {read:.1f} s)")
            dump_file.unlink()
            for name in (plain_target, our_target):
                drop_database(name)
            shutil.rmtree(work / "data" / "backups", ignore_errors=True)
        median = {k: statistics.median(v) for k, v in results.items()}
        backup_ratio, restore_ratio = median["ours"] / median["dump"], median["rto"] / median["restore"]
        print(f"backup time ratio (ours / pg_dump -Fc): {backup_ratio:.2f}  target <= 1.25  "
              f"{'PASS' if backup_ratio <= 1.25 else 'FAIL'}")
        print(f"restore time ratio (our RTO / pg_restore): {restore_ratio:.2f}  target <= 1.25  "
              f"{'PASS' if restore_ratio <= 1.25 else 'FAIL'}")
        print(f"peak RSS of the backup process: {peak / 1024:.0f} MiB  target <= 200  "
              f"{'PASS' if peak / 1024 <= 200 else 'FAIL'}")
        return 0
    finally:
        for name in created if not args.keep else created[1:]:
            drop_database(name)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
