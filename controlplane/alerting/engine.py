"""Evaluation: measure every rule, step its persisted state, record transitions.

States per rule and label set: inactive → pending (the condition holds) → firing (it held for
`for`) → resolved (back to inactive once recovered: past `resolve_threshold` when there is one,
and not breached for `keep_firing_for`). A pending alert whose condition stops holding goes back
to inactive without ever having fired. No data follows the rule's `no_data`: `ok` counts as
recovered, `alerting` as breached, `keep` changes nothing.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Histogram
from sqlalchemy import select

from ..extensions import db
from ..timeutil import as_utc, utcnow
from .indicators import INDICATORS, Context
from .models import AlertEvent, AlertState
from .notifications import enqueue
from .rules import Rule, RuleSet

log = logging.getLogger("controlplane.alerting")
EVALUATION_SECONDS = Histogram("controlplane_alert_evaluation_seconds", "Time to evaluate every alert rule once.",
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0))
NO_LABELS = json.dumps({})


@dataclass(frozen=True)
class Transition:
    rule: Rule
    labels_key: str
    name: str  # pending, firing, resolved, cleared
    value: float | None
    at: datetime


def step(rule: Rule, state: AlertState, value: float | None, now: datetime) -> str | None:
    """Advance `state` by one evaluation; returns the transition's name, or None."""
    state.last_evaluated_at = now
    if value is None:
        if rule.no_data == "keep":
            return None
        breached = rule.no_data == "alerting"
        recovered = not breached
    else:
        state.last_value = value
        breached, recovered = rule.breached(value), rule.recovered(value)
    if breached:
        state.last_breach_at = now
    if state.state == "firing":
        if not recovered:
            return None  # still breached, or between the thresholds (hysteresis)
        if rule.keep_firing_seconds and state.last_breach_at is not None and \
                now - as_utc(state.last_breach_at) < timedelta(seconds=rule.keep_firing_seconds):
            return None
        state.state, state.resolved_at, state.active_since = "inactive", now, None
        return "resolved"
    if not breached:
        if state.state == "pending":
            state.state, state.active_since = "inactive", None
            return "cleared"
        return None
    transition = None
    if state.state == "inactive":
        state.state, state.active_since, transition = "pending", now, "pending"
    if now - as_utc(state.active_since) >= timedelta(seconds=rule.for_seconds):
        state.state, state.fired_at, state.resolved_at = "firing", now, None
        return "firing"
    return transition


def _repeat_due(settings, state: AlertState, now: datetime) -> bool:
    repeat = settings.alert_repeat_seconds
    return bool(repeat) and state.last_notified_at is not None and \
        now - as_utc(state.last_notified_at) >= timedelta(seconds=repeat)


def _state_for(rule: Rule, labels_key: str, known: dict) -> AlertState:
    state = known.get((rule.name, labels_key))
    if state is None:
        state = AlertState(rule=rule.name, labels_key=labels_key, state="inactive")
        db.session.add(state)
        known[(rule.name, labels_key)] = state
    return state


def evaluate(settings, rules: RuleSet, now: datetime | None = None) -> list[Transition]:
    """One evaluation of every rule; commits states, history and the notifications they cause
    together; returns the transitions."""
    started = time.perf_counter()
    now = now or utcnow()
    ctx = Context(now=now, settings=settings)
    known = {(s.rule, s.labels_key): s for s in db.session.execute(select(AlertState)).scalars()}
    transitions = []
    for rule in rules.rules:
        try:
            value = INDICATORS[rule.indicator].measure(rule.params, ctx)
        except Exception:  # one broken indicator must not stop the others: it counts as no data
            db.session.rollback()
            log.exception("indicator %s failed for rule %s", rule.indicator, rule.name)
            value = None
            known = {(s.rule, s.labels_key): s for s in db.session.execute(select(AlertState)).scalars()}
        state = _state_for(rule, NO_LABELS, known)
        name = step(rule, state, value, now)
        if name == "firing":
            state.last_notified_at = now
        elif name is None and state.state == "firing" and _repeat_due(settings, state, now):
            # Still firing after the repeat interval: page again (same dedup key, same incident).
            state.last_notified_at = now
            enqueue(Transition(rule, NO_LABELS, "firing", value, now), settings)
            db.session.add(AlertEvent(rule=rule.name, labels_key=NO_LABELS, transition="renotified", value=value,
                                      at=now, detail=rule.render("summary", value)))
        if name is not None:
            transitions.append(Transition(rule, NO_LABELS, name, value, now))
            db.session.add(AlertEvent(rule=rule.name, labels_key=NO_LABELS, transition=name, value=value, at=now,
                                      detail=rule.render("summary", value)))
            enqueue(transitions[-1], settings)
            log.log(logging.WARNING if name == "firing" else logging.INFO, "alert %s", name,
                    extra={"rule": rule.name, "value": value, "severity": rule.severity})
    db.session.commit()
    _incidents_for(transitions)
    EVALUATION_SECONDS.observe(time.perf_counter() - started)
    return transitions


def _incidents_for(transitions: list[Transition]) -> None:
    """Rules with `open_incident` open and close status-page incidents (after the state commit)."""
    from flask import current_app

    from ..status.incidents import on_alert_transition

    config = current_app.extensions["controlplane.health"].config
    for transition in transitions:
        try:
            on_alert_transition(config, transition)
        except Exception:
            db.session.rollback()
            log.exception("could not open or close the incident for %s", transition.rule.name)
