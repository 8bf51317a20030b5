"""Evaluation: measure every rule, step its persisted state, record transitions.

States per rule and label set: inactive → pending (the condition holds) → firing (it held for
`for`) → resolved (back to inactive once recovered: past `resolve_threshold` when there is one,
and not breached for `keep_firing_for`). A pending alert whose condition stops holding goes back
to inactive without ever having fired. No data follows the rule's `no_data`: `ok` counts as
recovered, `alerting` as breached, `keep` changes nothing.

Each rule is evaluated in its own savepoint. One whose indicator raises is in error (the
reason on its state, `controlplane_alert_rule_errors_total`), keeps its alert state, and the
`rules_in_error` indicator (rule AlertRuleFailing) pages about it; the error clears when it
measures again.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Histogram
from sqlalchemy import select

from ..dbtypes import begin_as_writer
from ..extensions import db
from ..timeutil import as_utc, isoformat, utcnow
from .indicators import INDICATORS, STARTING_UP, Context
from .metrics import RULE_ERRORS
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
    """The rule's stored state (read for every rule at once at the start of the pass), or a new
    one; a new state whose savepoint rolled back is gone from the session and made again."""
    state = known.get((rule.name, labels_key))
    if state is None or state not in db.session:
        state = AlertState(rule=rule.name, labels_key=labels_key, state="inactive")
        db.session.add(state)
        known[(rule.name, labels_key)] = state
    return state


def evaluate(settings, rules: RuleSet, now: datetime | None = None) -> list[Transition]:
    """One evaluation of every rule, each in its own savepoint (its state, history and the
    notifications it causes stand or fall together), committed at the end; returns the
    transitions."""
    started = time.perf_counter()
    ctx = Context(now=now or utcnow(), settings=settings, rule_names=tuple(rule.name for rule in rules.rules))
    begin_as_writer()  # on SQLite: a pass reads first, and its savepoints must still be able to write
    known = {(s.rule, s.labels_key): s for s in db.session.execute(select(AlertState)).scalars()}
    transitions = []
    for rule in rules.rules:
        RULE_ERRORS.labels(rule=rule.name)  # a series at 0 from the first pass on
        transitions += _evaluate_rule(rule, ctx, known)
    db.session.commit()
    for transition in transitions:  # logged once committed: a logged page is a stored page
        log.log(logging.WARNING if transition.name == "firing" else logging.INFO, "alert %s", transition.name,
                extra={"rule": transition.rule.name, "value": transition.value, "severity": transition.rule.severity})
    _incidents_for(transitions)
    EVALUATION_SECONDS.observe(time.perf_counter() - started)
    return transitions


def _evaluate_rule(rule: Rule, ctx: Context, known: dict) -> list[Transition]:
    """Measure one rule and record what it changes, in a savepoint. A rule that cannot be
    evaluated (its indicator raises, say on a table a failed migration never made) rolls back
    only its savepoint and goes into the error state; rules before and after it still fire,
    persist and page."""
    try:
        with db.session.begin_nested():
            state = _state_for(rule, NO_LABELS, known)
            value = INDICATORS[rule.indicator].measure(rule.params, ctx)
            if isinstance(value, float) and math.isnan(value):
                value = None  # not a number is no data: the rule's no_data decides, and texts say so
            if state.error:
                log.info("rule %s can be evaluated again", rule.name, extra={"rule": rule.name})
            state.error = state.error_since = None
            if value is STARTING_UP:
                state.last_evaluated_at = ctx.now  # too early to judge either way: the state holds
                return []
            return _advance(rule, state, value, ctx)
    except Exception as exc:
        _record_error(rule, exc, ctx.now, known)
        return []


def _advance(rule: Rule, state: AlertState, value: float | None, ctx: Context) -> list[Transition]:
    """Step the state by the measured value; record the transition and enqueue its notifications."""
    settings, now = ctx.settings, ctx.now
    name = step(rule, state, value, now)
    if name == "firing":
        state.last_notified_at = now
    elif name is None and state.state == "firing" and _repeat_due(settings, state, now):
        # Still firing after the repeat interval: page again (same dedup key, same incident).
        state.last_notified_at = now
        enqueue(Transition(rule, NO_LABELS, "firing", value, now), settings)
        db.session.add(AlertEvent(rule=rule.name, labels_key=NO_LABELS, transition="renotified", value=value,
                                  at=now, detail=rule.render("summary", value)))
    if name is None:
        return []
    transition = Transition(rule, NO_LABELS, name, value, now)
    db.session.add(AlertEvent(rule=rule.name, labels_key=NO_LABELS, transition=name, value=value, at=now,
                              detail=rule.render("summary", value)))
    enqueue(transition, settings)
    return [transition]


def _record_error(rule: Rule, exc: Exception, now: datetime, known: dict) -> None:
    """The rule's error state: the reason and since when, its alert state untouched (a firing
    alert neither resolves nor pages again while nothing can be measured)."""
    RULE_ERRORS.labels(rule=rule.name).inc()
    reason = _error_reason(exc)
    try:
        with db.session.begin_nested():
            state = _state_for(rule, NO_LABELS, known)
            if state.error is None:  # the traceback once, when the rule goes into error; then one line
                log.error("rule %s cannot be evaluated (indicator %s)", rule.name, rule.indicator, exc_info=exc,
                          extra={"rule": rule.name, "error": reason})
            else:
                log.warning("rule %s still cannot be evaluated: %s", rule.name, reason, extra={"rule": rule.name})
            state.error = reason
            state.error_since = state.error_since or now
            state.last_evaluated_at = now
    except Exception:  # the database itself is failing: the counter and the log still say so
        log.error("rule %s cannot be evaluated (%s), and its error state cannot be stored", rule.name, reason,
                  exc_info=exc, extra={"rule": rule.name, "error": reason})


def _error_reason(exc: Exception) -> str:
    """One line for operators: the exception's type and the first line of its message."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}"[:500] if message else type(exc).__name__


def current_states(rules: RuleSet) -> list[dict]:
    """Every rule with its state, as operators see it (the API and `alerts list`): `error` with
    the reason while the rule cannot be evaluated, else inactive, pending or firing."""
    states = {s.rule: s for s in db.session.execute(select(AlertState).where(AlertState.labels_key == NO_LABELS))
              .scalars()}
    rows = []
    for rule in rules.rules:
        state = states.get(rule.name) or AlertState(rule=rule.name, labels_key=NO_LABELS, state="inactive")
        rows.append({"rule": rule.name, "severity": rule.severity, "indicator": rule.indicator,
                     "threshold": rule.threshold, "op": rule.op,
                     "state": "error" if state.error else state.state,
                     "alert_state": state.state, "value": state.last_value,
                     "fired_at": isoformat(state.fired_at),
                     "since": isoformat(_since(state)),
                     "error": state.error, "summary": rule.render("summary", state.last_value)})
    return rows


def _since(state: AlertState) -> datetime | None:
    if state.error:
        return state.error_since
    return None if state.state == "inactive" else state.fired_at or state.active_since


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
