"""A throwaway PostgreSQL cluster for physical backups: initdb'd and started as the `postgres`
user (initdb refuses root), replication allowed for pg_basebackup and pg_receivewal."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from controlplane.backups.engines.pg_physical import as_data_owner, postgres_bindir, stop_server


class Cluster:
    def __init__(self, root: Path, port: int):
        self.root = root
        self.data = root / "data"
        self.port = port
        self.bindir = postgres_bindir()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self, archive_command: str | None = None) -> "Cluster":
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        subprocess.run(as_data_owner([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                                      "--auth=trust", "--no-sync"], self.root), check=True, capture_output=True)
        settings = {"port": str(self.port), "listen_addresses": "'127.0.0.1'",
                    "unix_socket_directories": f"'{self.root}'", "wal_level": "replica", "fsync": "off",
                    "max_wal_senders": "4", "shared_buffers": "32MB"}
        if archive_command:
            settings.update({"archive_mode": "on", "archive_command": f"'{archive_command}'"})
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        return self

    def start(self) -> "Cluster":
        subprocess.run(as_data_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                                      str(self.root / "server.log"), "-w", "start"], self.data),
                       check=True, capture_output=True)
        return self

    def stop(self) -> None:
        stop_server(self.data)

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text()
        except OSError:
            return ""

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

