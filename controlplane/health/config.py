"""`checks/checks.yaml`: what is probed, how often, how hard, and which status-page component it feeds.

Loaded and validated at start-up; every error names the check (or component) and the field, so a
bad edit is caught by CI or by the first `controlplane` command, not at 3 a.m.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .kinds import KINDS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
CHECK_FIELDS = {"kind", "target", "timeout", "interval", "thresholds", "hard", "component", "description"}
COMPONENT_FIELDS = {"name", "group", "description", "traffic"}


class ChecksConfigError(ValueError):
    """checks.yaml is invalid; the message names the file, the check and the field."""


@dataclass(frozen=True)
class Threshold:
    warn: float | None
    fail: float | None


@dataclass(frozen=True)
class CheckSpec:
    name: str
    kind: str
    target: Any
    timeout: float
    interval: float
    thresholds: dict[str, Threshold]
    hard: bool
    component: str | None
    description: str = ""

    @property
    def stale_after(self) -> float:
        """A result older than this no longer describes the present."""
        return 3 * self.interval + self.timeout


@dataclass(frozen=True)
class Component:
    id: str
    name: str
    group: str | None
    description: str = ""
    # Its status also follows the live request statistics (error ratio, share slower than 2 s).
    traffic: bool = False


@dataclass(frozen=True)
class ChecksConfig:
    checks: tuple[CheckSpec, ...]
    components: tuple[Component, ...] = field(default=())

    def by_name(self) -> dict[str, CheckSpec]:
        return {spec.name: spec for spec in self.checks}


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 5, 5s, 500ms or 1m")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"must be a duration such as 5, 5s, 500ms or 1m, got {value!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def load_checks(path: Path) -> ChecksConfig:
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ChecksConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ChecksConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_checks(document, source=str(path))


def parse_checks(document: Any, source: str = "checks.yaml") -> ChecksConfig:
    if not isinstance(document, dict):
        raise ChecksConfigError(f"{source}: must be a mapping with 'checks' (and optionally 'defaults', 'components')")
    unknown = set(document) - {"defaults", "checks", "components"}
    if unknown:
        raise ChecksConfigError(f"{source}: unknown top-level key(s): {', '.join(sorted(unknown))}")
    components = _parse_components(document.get("components") or {}, source)
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ChecksConfigError(f"{source}: 'defaults' must be a mapping")
    raw_checks = document.get("checks")
    if not isinstance(raw_checks, dict) or not raw_checks:
        raise ChecksConfigError(f"{source}: 'checks' must be a non-empty mapping of check name to settings")
    component_ids = {c.id for c in components}
    checks = tuple(
        _parse_check(name, {**defaults, **(body or {})}, component_ids, source)
        for name, body in raw_checks.items()
    )
    return ChecksConfig(checks=checks, components=components)


def _boolean(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise ChecksConfigError(f"{where} must be true or false")
    return value


def _parse_components(raw: Any, source: str) -> tuple[Component, ...]:
    if not isinstance(raw, dict):
        raise ChecksConfigError(f"{source}: 'components' must be a mapping of component id to settings")
    components = []
    for component_id, body in raw.items():
        where = f"{source}: component {component_id!r}"
        if not isinstance(component_id, str) or not _NAME.match(component_id):
            raise ChecksConfigError(f"{where}: id must be lowercase letters, digits, '-' or '_'")
        body = body or {}
        if not isinstance(body, dict):
            raise ChecksConfigError(f"{where}: must be a mapping")
        unknown = set(body) - COMPONENT_FIELDS
        if unknown:
            raise ChecksConfigError(f"{where}: unknown field(s): {', '.join(sorted(unknown))}")
        components.append(Component(
            id=component_id, name=str(body.get("name") or component_id),
            group=body.get("group"), description=str(body.get("description") or ""),
            traffic=_boolean(body.get("traffic", False), f"{where}: traffic"),
        ))
    return tuple(components)


def _parse_check(name: Any, body: dict, component_ids: set[str], source: str) -> CheckSpec:
    where = f"{source}: check {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ChecksConfigError(f"{where}: name must be lowercase letters, digits, '-' or '_'")
    unknown = set(body) - CHECK_FIELDS
    if unknown:
        raise ChecksConfigError(f"{where}: unknown field(s): {', '.join(sorted(unknown))}")
    kind_name = body.get("kind", name)
    kind = KINDS.get(kind_name)
    if kind is None:
        raise ChecksConfigError(f"{where}: field 'kind': unknown kind {kind_name!r}; known: {', '.join(sorted(KINDS))}")
    timings = {}
    for field_name, default in (("timeout", 5), ("interval", 15)):
        try:
            timings[field_name] = parse_duration(body.get(field_name, default))
        except ValueError as exc:
            raise ChecksConfigError(f"{where}: field '{field_name}' {exc}") from None
    if timings["timeout"] > timings["interval"]:
        raise ChecksConfigError(f"{where}: field 'timeout' must not exceed 'interval'")
    try:
        kind.validate_target(body.get("target"))
    except ValueError as exc:
        raise ChecksConfigError(f"{where}: field 'target' {exc}") from None
    hard = body.get("hard", False)
    if not isinstance(hard, bool):
        raise ChecksConfigError(f"{where}: field 'hard' must be true or false")
    component = body.get("component")
    if component is not None and component not in component_ids:
        raise ChecksConfigError(f"{where}: field 'component': {component!r} is not declared under 'components'")
    return CheckSpec(
        name=name, kind=kind_name, target=body.get("target"), hard=hard, component=component,
        thresholds=_parse_thresholds(body.get("thresholds") or {}, kind, where),
        description=str(body.get("description") or ""), **timings,
    )


def _parse_thresholds(raw: Any, kind, where: str) -> dict[str, Threshold]:
    if not isinstance(raw, dict):
        raise ChecksConfigError(f"{where}: field 'thresholds' must map a metric to {{warn, fail}}")
    thresholds = {}
    for metric, levels in raw.items():
        field_name = f"thresholds.{metric}"
        if metric not in kind.metrics:
            known = ", ".join(sorted(kind.metrics)) or "none"
            raise ChecksConfigError(f"{where}: field '{field_name}': kind {kind.name!r} has no such metric (known: {known})")
        if not isinstance(levels, dict) or not set(levels) <= {"warn", "fail"} or not levels:
            raise ChecksConfigError(f"{where}: field '{field_name}' must be a mapping with 'warn' and/or 'fail'")
        values = {}
        for level in ("warn", "fail"):
            value = levels.get(level)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ChecksConfigError(f"{where}: field '{field_name}.{level}' must be a number, got {value!r}")
            values[level] = None if value is None else float(value)
        warn, fail = values["warn"], values["fail"]
        if warn is not None and fail is not None:
            worse_first = kind.metrics[metric].worse_when == "above"
            if (worse_first and warn > fail) or (not worse_first and warn < fail):
                raise ChecksConfigError(
                    f"{where}: field '{field_name}': 'warn' must be reached before 'fail' "
                    f"({metric} is worse when {kind.metrics[metric].worse_when})"
                )
        thresholds[metric] = Threshold(warn=warn, fail=fail)
    return thresholds
