"""The one error a backup operation ends with (the bottom of the backups package: imports nothing)."""


class BackupError(Exception):
    """A backup, verification or restore that cannot go on; the message names the backup and why."""
