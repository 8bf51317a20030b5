"""Check kinds: one small module each, behind one contract, found through `KINDS`.

A kind observes one dependency and returns numbers; it does not decide health. The runner turns
the numbers into a status with the thresholds from `checks/checks.yaml`, so operators tune
sensitivity without touching Python.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


class CheckFailed(Exception):
    """The dependency is down or misbehaving; the message says how, for a human."""


@dataclass
class Observation:
    values: dict[str, float] = field(default_factory=dict)
    message: str = ""
    # "unconfigured" when the dependency is simply not set up; None lets thresholds decide.
    status: str | None = None
    # A ceiling the kind itself knows (e.g. "degraded" when reachable but unauthenticated).
    at_most: str | None = None


@dataclass(frozen=True)
class Metric:
    unit: str
    # "above": higher is worse (latency); "below": lower is worse (free space).
    worse_when: str = "above"


class CheckKind:
    """Contract: `run(spec, ctx) -> Observation`, raising `CheckFailed` when the dependency fails."""

    name: ClassVar[str]
    metrics: ClassVar[dict[str, Metric]]
    primary_metric: ClassVar[str | None] = None

    def validate_target(self, target: Any) -> None:
        """Raise ValueError with a message when `target` is not usable by this kind."""

    def run(self, spec, ctx) -> Observation:
        raise NotImplementedError


def _build_registry() -> dict[str, CheckKind]:
    from .alerting import AlertingCheck
    from .database import DatabaseCheck
    from .disk import DiskCheck
    from .migrations import MigrationsCheck
    from .postal import PostalCheck
    from .redis import RedisCheck
    from .worker import WorkerCheck

    kinds = (DatabaseCheck, PostalCheck, RedisCheck, DiskCheck, MigrationsCheck, WorkerCheck, AlertingCheck)
    return {kind.name: kind() for kind in kinds}


KINDS: dict[str, CheckKind] = _build_registry()
