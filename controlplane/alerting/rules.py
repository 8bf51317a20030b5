"""Loading and validating `alerts/rules.yaml`. Every error names the rule and the field."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

OPERATORS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}
SEVERITIES = ("critical", "error", "warning", "info")
NO_DATA = ("ok", "alerting", "keep")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
VALUE_FIELD = re.compile(r"\{value(:[^{}]*)?\}")  # {value}, {value:.1%}, ... in an annotation
NO_DATA_TEXT = "no data"
# What a status-page incident opened by the rule says: written for customers, so no figures.
PUBLIC_ANNOTATIONS = ("public_title", "public_description")
RULE_FIELDS = {"name", "indicator", "params", "op", "threshold", "resolve_threshold", "for", "keep_firing_for",
               "no_data", "labels", "annotations", "status_component", "open_incident"}


class RulesError(ValueError):
    pass


def parse_duration(value, where: str) -> int:
    """Seconds from "30s", "5m", "2h", "1d" (or a plain number of seconds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    match = DURATION.match(str(value).strip()) if isinstance(value, str) else None
    if not match:
        raise RulesError(f"{where}: {value!r} is not a duration like 30s, 5m, 2h or 1d")
    return int(match.group(1)) * UNITS[match.group(2)]


@dataclass(frozen=True)
class Rule:
    name: str
    indicator: str
    params: dict
    op: str
    threshold: float
    for_seconds: int
    keep_firing_seconds: int
    no_data: str
    labels: dict
    annotations: dict
    resolve_threshold: float | None = None
    status_component: str | None = None
    open_incident: bool = False

    def breached(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.threshold)

    def recovered(self, value: float) -> bool:
        """Back to normal: past the resolve threshold when there is one (hysteresis)."""
        if self.resolve_threshold is None:
            return not self.breached(value)
        return not OPERATORS[self.op](value, self.resolve_threshold)

    @property
    def severity(self) -> str:
        return self.labels["severity"]

    def render(self, key: str, value: float | None) -> str:
        """An annotation with the value and the rule's figures filled in; without a value (no
        data, or not a number) the value reads "no data", never nan."""
        template = self.annotations.get(key, "")
        if value is None or math.isnan(value):
            template = VALUE_FIELD.sub(NO_DATA_TEXT, template)
        context = {"value": value, "threshold": self.threshold,
                   "window": self.params.get("window", ""), "rule": self.name, **self.labels}
        try:
            return template.format(**context)
        except (KeyError, ValueError, IndexError):
            return template


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str = ""
    by_name: dict = field(default_factory=dict, compare=False)

    def get(self, name: str) -> Rule | None:
        return self.by_name.get(name)


def load_rules(path: Path, runbook_base: str | None = None) -> RuleSet:
    """The rules in `path`; `runbook_base` (ALERT_RUNBOOK_BASE_URL) replaces the file's own
    `defaults.runbook_base`, so pages can link to where the runbooks are published."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from None
    return parse_rules(document, str(path), runbook_base)


def parse_rules(document, source: str = "rules", runbook_base: str | None = None) -> RuleSet:
    from .indicators import INDICATORS

    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise RulesError(f"{source}: expected a mapping with a 'rules' list")
    defaults = document.get("defaults") or {}
    default_labels = defaults.get("labels") or {}
    runbook_base = runbook_base or str(defaults.get("runbook_base", ""))
    rules, seen = [], set()
    for index, raw in enumerate(document["rules"]):
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"rule {name!r}" if isinstance(name, str) and name else f"rule #{index + 1}"
        if not isinstance(raw, dict):
            raise RulesError(f"{where}: expected a mapping")
        unknown = set(raw) - RULE_FIELDS
        if unknown:
            raise RulesError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        if not isinstance(name, str) or not NAME.match(name):
            raise RulesError(f"{where}.name: must start with a letter and hold letters, digits or _ (max 63)")
        if name in seen:
            raise RulesError(f"{where}.name: defined twice")
        seen.add(name)
        indicator = INDICATORS.get(raw.get("indicator"))
        if indicator is None:
            raise RulesError(f"{where}.indicator: {raw.get('indicator')!r} is not one of {', '.join(sorted(INDICATORS))}")
        params = raw.get("params") or {}
        if not isinstance(params, dict):
            raise RulesError(f"{where}.params: expected a mapping")
        try:
            params = indicator.validate(params)
        except ValueError as exc:
            raise RulesError(f"{where}.params: {exc}") from None
        op = raw.get("op")
        if op not in OPERATORS:
            raise RulesError(f"{where}.op: must be one of {', '.join(OPERATORS)}")
        threshold = _number(raw.get("threshold"), f"{where}.threshold")
        resolve = raw.get("resolve_threshold")
        if resolve is not None:
            resolve = _number(resolve, f"{where}.resolve_threshold")
            if OPERATORS[op](resolve, threshold) and resolve != threshold:
                raise RulesError(f"{where}.resolve_threshold: must lie on the healthy side of the threshold")
        no_data = raw.get("no_data", "ok")
        if no_data not in NO_DATA:
            raise RulesError(f"{where}.no_data: must be one of {', '.join(NO_DATA)}")
        labels = {**default_labels, **(raw.get("labels") or {})}
        if labels.get("severity") not in SEVERITIES:
            raise RulesError(f"{where}.labels.severity: must be one of {', '.join(SEVERITIES)}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise RulesError(f"{where}.labels: keys and values must be strings")
        annotations = {k: str(v).replace("{runbook_base}", runbook_base) for k, v in (raw.get("annotations") or {}).items()}
        if not annotations.get("summary"):
            raise RulesError(f"{where}.annotations.summary: required")
        open_incident = bool(raw.get("open_incident", False))
        _check_public_text(annotations, open_incident, where)
        rules.append(Rule(
            name=name, indicator=indicator.name, params=params, op=op, threshold=threshold,
            for_seconds=parse_duration(raw.get("for", 0), f"{where}.for"),
            keep_firing_seconds=parse_duration(raw.get("keep_firing_for", 0), f"{where}.keep_firing_for"),
            no_data=no_data, labels=labels, annotations=annotations, resolve_threshold=resolve,
            status_component=raw.get("status_component"), open_incident=open_incident,
        ))
    return RuleSet(tuple(rules), source, {rule.name: rule for rule in rules})


def _check_public_text(annotations: dict, open_incident: bool, where: str) -> None:
    """A rule that opens status-page incidents says what customers read; internal figures
    ({value}, {threshold}) stay in the summary, PagerDuty and the operator views."""
    for key in PUBLIC_ANNOTATIONS:
        text = annotations.get(key, "").strip()
        if open_incident and not text:
            raise RulesError(f"{where}.annotations.{key}: required for a rule with open_incident (customers read it)")
        if "{" in text:
            raise RulesError(f"{where}.annotations.{key}: public text takes no placeholders (it is shown to customers)")


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RulesError(f"{where}: must be a number")
    return float(value)
