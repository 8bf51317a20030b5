"""Disk: free space where we write (the data and backup directories by default)."""
import shutil
from pathlib import Path

from . import CheckFailed, CheckKind, Metric, Observation

NAMED_DIRECTORIES = {"data": "data_dir", "backups": "backup_dir"}


class DiskCheck(CheckKind):
    name = "disk"
    metrics = {"free_percent": Metric("%", worse_when="below")}
    primary_metric = "free_percent"

    def validate_target(self, target) -> None:
        paths = target if isinstance(target, list) else [target] if target is not None else []
        for path in paths:
            if not isinstance(path, str) or not path:
                raise ValueError("must be a path or a list of paths ('data' and 'backups' name our directories)")

    def run(self, spec, ctx) -> Observation:
        targets = spec.target if isinstance(spec.target, list) else [spec.target or "data", "backups"]
        worst, parts = None, []
        for target in dict.fromkeys(targets):
            path = Path(getattr(ctx.settings, NAMED_DIRECTORIES[target])) if target in NAMED_DIRECTORIES else Path(target)
            existing = _nearest_existing(path)
            try:
                usage = shutil.disk_usage(existing)
            except OSError as exc:
                raise CheckFailed(f"cannot read free space of {path}: {exc.strerror}") from exc
            free_percent = round(usage.free / usage.total * 100, 2)
            parts.append(f"{path}: {usage.free / 2**30:.1f} GiB free ({free_percent}%)")
            worst = free_percent if worst is None else min(worst, free_percent)
        return Observation(values={"free_percent": worst}, message="; ".join(parts))


def _nearest_existing(path: Path) -> Path:
    # A directory not created yet lives on its parent's filesystem.
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
