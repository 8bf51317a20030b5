"""Peak memory of verifying and restoring a WAL bundle of highly compressible segments (issue 11).

    .venv/bin/python -m bench.backup_memory [--segments 18] [--rounds 1]

Builds what the physical engine's hourly bundle holds on a quiet server: --segments WAL segments of
16 MiB, each a few KiB of data and the rest zeros, tarred and sealed ("incremental", zstd +
AES-GCM) into a local backup directory with its sealed manifest. Then, each in a fresh process
that has only the storage and the key (an empty SQLite catalog), alternating per round:

  verify:  `verify_backup` of the bundle (read, authenticate, decompress, hash, discard)
  restore: `fetch_verified` into a private directory and unpack the tar, as a point-in-time
           restore does with each bundle before recovery starts

once with the old whole-frame decompression (each authenticated 1 MiB frame handed to zstd's
decompressobj at once, which returns all it expands to) as the baseline, and once with ours
(zstd's stream reader, at most sealing.OUTPUT_STEP bytes per step). Prints time and peak RSS of
each and the ratios. Target: peak RSS under 200 MiB whatever the artefact.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SEGMENT = 16 << 20
# A child process: build the app on the empty catalog, find the bundle in storage, run one mode.
MEASURED = """
import resource, sys, tempfile, time
from pathlib import Path
from controlplane import create_app
from controlplane.backups import operations, sealing
from controlplane.backups.catalog import locate_backup

approach, action, name = sys.argv[1:4]
if approach == "baseline":
    import zstandard

    def whole_frames(frames, compression, step=None):
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        for data in frames:
            plain = decompressor.decompress(data)
            if plain:
                yield plain

    sealing._decompressed = whole_frames
app = create_app()
with app.app_context():
    settings = app.extensions["controlplane.settings"]
    row = locate_backup(settings, name)
    started = time.perf_counter()
    if action == "verify":
        operations.verify_backup(settings, row)
    else:
        work = Path(tempfile.mkdtemp(dir=settings.backup_work_dir))
        files = operations.fetch_verified(settings, row, work)
        operations._unpack_bundle(files["wal.tar"], work / "wal")
        assert len(list((work / "wal").iterdir())) == int(sys.argv[4])
    seconds = time.perf_counter() - started
print("result", seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def segments(directory: Path, count: int) -> list[Path]:
    """Nearly empty WAL segments: a few KiB of page headers and records, zeros after."""
    paths = []
    for number in range(count):
        path = directory / f"0000000100000000000000{number + 1:02X}"
        with open(path, "wb") as out:
            out.write(os.urandom(4096))
            out.truncate(SEGMENT)
        paths.append(path)
    return paths


def build(root: Path, count: int, env: dict) -> str:
    """Seal a bundle of `count` segments into storage (with its manifest); returns its name."""
    from controlplane import create_app
    from controlplane.backups.manifests import write_manifest
    from controlplane.backups.models import Backup
    from controlplane.backups.operations import file_blocks, store_sealed
    from controlplane.backups.sealing import keyring
    from controlplane.backups.storage import storage_for
    from controlplane.timeutil import utcnow

    spool = root / "spool"
    spool.mkdir()
    files = segments(spool, count)
    bundle = root / "wal.tar"
    with tarfile.open(bundle, "w") as archive:
        for path in files:
            archive.add(path, arcname=path.name)
            path.unlink()
    app = create_app(env)
    with app.app_context():
        settings = app.extensions["controlplane.settings"]
        storage = storage_for(settings)
        name = f"wal-{files[0].name}-{files[-1].name}"
        artefact, result = store_sealed(settings, storage, name, f"wal-bundles/{name}.sealed", "wal.tar",
                                        file_blocks(bundle), "zstd", segments=[p.name for p in files])
        row = Backup(name=name, kind="incremental", engine="pg_physical", full_copy=False, status="succeeded",
                     started_at=utcnow(), finished_at=utcnow(), storage=storage.name, location=storage.describe(),
                     compression="zstd", key_id=result.key_id, size_bytes=result.sealed_bytes,
                     plain_bytes=result.plain_bytes, artefacts=json.dumps([artefact]))
        write_manifest(storage, keyring(settings), row)
    bundle.unlink()
    print(f"bundle {name}: {count} segments, {result.plain_bytes / 1e6:.0f} MB of WAL sealed into "
          f"{result.sealed_bytes / 1e3:.0f} KB")
    return name


def measure(approach: str, action: str, name: str, count: int, env: dict) -> tuple[float, float]:
    done = subprocess.run([sys.executable, "-c", MEASURED, approach, action, name, str(count)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{approach} {action} failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("result "))
    seconds, rss_kib = line.split()[1:]
    return float(seconds), int(rss_kib) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=18, help="16 MiB WAL segments in the bundle")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cp-bench-memory-") as folder:
        root = Path(folder)
        env = {**os.environ, "APP_ENV": "development", "DATA_DIR": str(root / "data"),
               "DATABASE_URL": f"sqlite:///{root / 'empty-catalog.db'}", "BACKUP_DIR": str(root / "storage"),
               "BACKUP_WORK_DIR": str(root), "BACKUP_ENCRYPTION_KEY": os.urandom(32).hex(), "LOG_LEVEL": "WARNING",
               "POSTAL_API_URL": "", "REDIS_URL": "", "SENTRY_DSN": "", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
        name = build(root, args.segments, env)
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for action in ("verify", "restore"):
                for approach in ("baseline", "ours"):
                    figures.setdefault((approach, action), []).append(measure(approach, action, name, args.segments,
                                                                              env))
    print(f"{'':<8} {'baseline s':>10} {'ours s':>8} {'ratio':>6}   {'baseline MiB':>12} {'ours MiB':>9} {'ratio':>6}")
    worst = 0.0
    for action in ("verify", "restore"):
        base_s = statistics.median(s for s, _ in figures[("baseline", action)])
        ours_s = statistics.median(s for s, _ in figures[("ours", action)])
        base_m = max(m for _, m in figures[("baseline", action)])
        ours_m = max(m for _, m in figures[("ours", action)])
        worst = max(worst, ours_m)
        print(f"{action:<8} {base_s:>10.2f} {ours_s:>8.2f} {ours_s / base_s:>5.2f}x   {base_m:>12.0f} {ours_m:>9.0f} "
              f"{ours_m / base_m:>5.2f}x")
    print(f"peak RSS (ours) {worst:.0f} MiB: {'within' if worst < 200 else 'OVER'} the 200 MiB target")
    return 0 if worst < 200 else 1


if __name__ == "__main__":
    sys.exit(main())
