"""PostgreSQL physical: `pg_basebackup` (tar, with its manifest) as the full, WAL archived segment by
segment through `controlplane backup archive-wal %p` as the server's `archive_command`, and
restore to a point in time.

WAL reaches the archive one of two ways: the worker's leader runs `pg_receivewal` over a
replication slot and seals what it receives (wal.py; works wherever a replication connection is
allowed), or the server's `archive_command = 'controlplane backup archive-wal %p'` (with this
service's environment and `archive_timeout = 60`).

A point-in-time restore produces a data directory: the base backup unpacked, the archived WAL
beside it, recovery settings to stop at the requested time, archiving off. It is checked
completely (every artefact authenticated, the WAL unbroken from the base backup's start to the
newest archived segment, the server's major version available here) before the directory is
written, and then started on a spare port to replay; the command prints how to connect.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from ...database import libpq_args
from . import EngineError
from .pg_logical import _connect, _environment, libpq

READ_SIZE = 1 << 20
WAL_SLOT = "controlplane_backup"  # the replication slot pg_receivewal streams from
SEGMENT = re.compile(r"^[0-9A-F]{24}$")


def postgres_bindir(major: int | None = None, configured: str | None = None) -> Path:
    """Where the server binaries live (Debian keeps them off PATH); BACKUP_PG_BINDIR overrides."""
    if configured:
        return Path(configured)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for candidate in candidates:
        if major is None or candidate.parent.name == str(major):
            return candidate
    found = shutil.which("pg_ctl")
    if found and major is None:
        return Path(found).parent
    wanted = f"PostgreSQL {major}" if major else "PostgreSQL"
    raise EngineError(f"{wanted} server binaries are not installed here "
                      "(looked in /usr/lib/postgresql/*/bin; set BACKUP_PG_BINDIR)")


def as_data_owner(command: list[str], directory: Path) -> list[str]:
    """Run a server command as the owner of its data directory (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return command
    owner = pwd.getpwuid(directory.stat().st_uid).pw_name
    if owner == "root":
        owner = "postgres"
    return ["runuser", "-u", owner, "--", *command]


def segment_after(name: str) -> str:
    """The WAL segment that follows `name` (16 MiB segments: 256 per log id)."""
    timeline, log, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
    seg += 1
    if seg > 0xFF:
        log, seg = log + 1, 0
    return f"{timeline:08X}{log:08X}{seg:08X}"


class PostgresPhysical:
    name = "pg_physical"
    compression = "zstd"

    def __init__(self, database_url: str):
        self.url = database_url

    def dump(self) -> "BaseBackup":
        return BaseBackup(self.url)

    def checksums(self, url: str) -> dict:
        from .pg_logical import PostgresLogical

        return PostgresLogical(url).checksums(url)

    def check_target(self, url: str, replace: bool, manifest: dict) -> None:
        raise EngineError("a physical backup restores into a data directory: use --target-dir DIR "
                          "(with --to-time for a point in time)")

    def restore(self, files, url, replace) -> None:  # pragma: no cover - guarded by check_target
        raise EngineError("a physical backup restores into a data directory: use --target-dir DIR")


def _connect_uri(uri: str, env: dict):
    import psycopg2

    return psycopg2.connect(uri, **libpq_args(10, "controlplane-backup"),
                            **({"password": env["PGPASSWORD"]} if env else {}))


class BaseBackup:
    def __init__(self, url: str):
        self.uri, self.env = libpq(url)
        connection = _connect(url)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                               "current_setting('archive_mode'), (SELECT sum(pg_database_size(datname)) FROM pg_database), "
                               "EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)", (WAL_SLOT,))
                self.version, self.version_num, archive_mode, self.expected_bytes, receiving = cursor.fetchone()
        finally:
            connection.close()
        if archive_mode == "off" and not receiving:
            raise EngineError("no WAL is being kept: a base backup without WAL cannot be restored. Let the worker "
                              "run pg_receivewal (its replication slot is created on start), or set archive_mode = on "
                              "and archive_command = 'controlplane backup archive-wal %p'")
        self._stderr = tempfile.TemporaryFile()
        # Tar to stdout (one tablespace) with the manifest inside; the WAL the backup needs is
        # archived by archive_command, which pg_basebackup waits for.
        self.process = subprocess.Popen(
            ["pg_basebackup", "-D", "-", "-Ft", "-X", "none", "--checkpoint=fast", "--manifest-checksums=SHA256",
             "-d", self.uri], stdout=subprocess.PIPE, stderr=self._stderr, env=_environment(self.env))
        self.label: dict = {}
        self.artefacts = [("base.tar", self._read())]

    def _read(self):
        first = True
        while block := self.process.stdout.read(READ_SIZE):
            if first:  # pg_basebackup writes backup_label first: read the start LSN and timeline
                first = False
                start = re.search(rb"START WAL LOCATION: (\S+) \(file ([0-9A-F]{24})\)", block)
                timeline = re.search(rb"START TIMELINE: (\d+)", block)
                if start:
                    self.label = {"lsn_start": start.group(1).decode(), "timeline": int(timeline.group(1)) if timeline else None}
            yield block

    def finish(self) -> dict:
        code = self.process.wait()
        if code != 0:
            self._stderr.seek(0)
            raise EngineError(f"pg_basebackup exited with {code}: {self._stderr.read().decode(errors='replace').strip()}")
        connection = _connect_uri(self.uri, self.env)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_current_wal_lsn()::text")
                end = cursor.fetchone()[0]
        finally:
            connection.close()
        return {"server_version": f"PostgreSQL {self.version}", "server_version_num": self.version_num, "tables": {},
                "lsn_start": self.label.get("lsn_start"), "lsn": end, "timeline": self.label.get("timeline")}

    def abort(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def backup_label(base_tar: Path) -> dict:
    """START WAL LOCATION and the rest of backup_label, read from the base backup's tar."""
    with tarfile.open(base_tar) as archive:
        member = archive.extractfile("backup_label")
        if member is None:
            raise EngineError("the base backup has no backup_label")
        text = member.read().decode()
    start = re.search(r"START WAL LOCATION: (\S+) \(file ([0-9A-F]{24})\)", text)
    timeline = re.search(r"START TIMELINE: (\d+)", text)
    if not start:
        raise EngineError("the base backup's backup_label has no START WAL LOCATION")
    return {"start_lsn": start.group(1), "start_segment": start.group(2),
            "timeline": int(timeline.group(1)) if timeline else 1}


def check_wal_chain(start_segment: str, archived: list[str]) -> list[str]:
    """The segments to replay, from the base backup's first one to the newest archived, with no gap.

    The newest may be a `.partial` snapshot of the segment the receiver was still writing.
    """
    names = set(archived)
    segments = sorted(name for name in names if SEGMENT.match(name) and name[:8] == start_segment[:8])
    chain = [name for name in segments if name >= start_segment]
    if not chain or chain[0] != start_segment:
        if f"{start_segment}.partial" in names:
            return [f"{start_segment}.partial"]
        raise EngineError(f"WAL segment {start_segment} (where the base backup starts) is missing from the archive")
    expected = start_segment
    for name in chain:
        if name != expected:
            raise EngineError(f"WAL segment {expected} is missing from the archive (the next one archived is {name})")
        expected = segment_after(name)
    if f"{expected}.partial" in names:
        chain.append(f"{expected}.partial")
    return chain


def prepare_data_directory(base_tar: Path, wal_dir: Path, target: Path, to_time: str | None, port: int) -> None:
    """Unpack and configure `target` for recovery. Called only after every check passed."""
    if target.exists() and any(target.iterdir()):
        raise EngineError(f"{target} is not empty: restore into a new directory")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(base_tar) as archive:
        archive.extractall(target, filter="data")
    (target / "pg_wal").mkdir(exist_ok=True)
    restored_wal = target / "restore_wal"
    shutil.move(str(wal_dir), restored_wal)
    settings = {"port": str(port), "listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{target}'",
                # A restored copy must not archive into the original's WAL archive.
                "archive_mode": "off", "restore_command": f"'cp \"{restored_wal}/%f\" \"%p\"'",
                "recovery_target_action": "'promote'"}
    if to_time:  # without one, recovery replays every archived segment
        settings.update({"recovery_target_time": f"'{to_time}'", "recovery_target_inclusive": "on"})
    with open(target / "postgresql.auto.conf", "a") as conf:
        conf.write("\n# written by controlplane backup restore\n")
        conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
    (target / "recovery.signal").touch()
    target.chmod(0o700)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in [target, *target.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def start_and_wait(target: Path, bindir: Path, port: int, timeout: float = 300.0) -> str:
    """Start the restored server, wait until recovery has finished; returns its URL."""
    log = target / "restore.log"
    done = subprocess.run(as_data_owner([str(bindir / "pg_ctl"), "-D", str(target), "-l", str(log), "-w",
                                         "-t", str(int(timeout)), "start"], target), capture_output=True, text=True)
    if done.returncode != 0:
        raise EngineError(f"the restored server did not start: {done.stderr.strip()} {_tail(log)}")
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = _connect(url)
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_is_in_recovery()")
                    if not cursor.fetchone()[0]:
                        return url
            finally:
                connection.close()
        except Exception:
            pass
        time.sleep(0.2)
    raise EngineError(f"recovery did not finish within {timeout:.0f} s: {_tail(log)}")


def stop_server(data: Path) -> None:
    """Stop a server running on `data` (a restored copy), if there is one."""
    if not (data / "postmaster.pid").exists():
        return
    subprocess.run(as_data_owner([str(postgres_bindir() / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], data),
                   capture_output=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path) -> str:
    try:
        return " | ".join(path.read_text().strip().splitlines()[-5:])
    except OSError:
        return ""
