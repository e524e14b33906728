"""Alert rules: evaluation (pure), and the state machine that turns evaluations into notifications.

Evaluation (``evaluate_rules``) reads ``CheckFacts``, what one check measured, and gives one
``Evaluation`` per rule and key (key: the site for per-site rules, '' otherwise). ``firing`` is None
when the rule has no verdict (no reference profile, too few requests, ...): the rule's state is left
as it was.

The state machine (``step``, applied to the ``alert_states`` table by ``apply_evaluations``):

- a rule that starts firing is notified once (``firing``) and opens an incident (a new id);
- when it stops firing the incident's ``resolved`` notification carries the same id;
- notifications of one rule and key are at least ``cooldown`` apart: one that would come sooner
  waits, and is dropped if the rule flips back meanwhile. A rule flapping inside its cooldown
  therefore sends nothing more; the incident stays open until it has been quiet when the cooldown
  ends.

Table semantics (read by the dashboard):

- ``alert_states``: one row per (rule, key) ever evaluated. ``firing`` is the rule's current
  verdict and ``since`` when that verdict began; ``value`` the latest measured value;
  ``incident_id`` the open incident (notified as firing, resolution not notified yet; None
  otherwise); ``last_notified_at`` the time of the last notification.
- ``alert_events``: one row per notification, ``state`` ``firing`` or ``resolved`` (``STATE_FIRING``,
  ``STATE_RESOLVED``), with the incident id, value, threshold, message, and ``delivery``: channel
  name -> ``{"ok": bool, "attempts": int, "error": str | None}`` (``{"pending": true}`` until the
  delivery finished).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from maskops.monitor.alert_config import (
    AccuracyDropRule,
    ComplianceRule,
    DriftRule,
    ErrorRateRule,
    LatencyRule,
    NoTrafficRule,
    RuleConfig,
)
from maskops.monitor.schema import AlertEventRow, AlertStateRow
from maskops.monitor.window import DriftReport

logger = logging.getLogger(__name__)

STATE_FIRING = "firing"
STATE_RESOLVED = "resolved"
PER_SITE_KINDS = frozenset({"compliance"})


@dataclass(frozen=True)
class Evaluation:
    """One rule's verdict for one key (a site, or '' for rules over all traffic)."""

    rule: str
    key: str
    firing: bool | None
    value: float | None
    threshold: float | None
    message: str


@dataclass(frozen=True)
class CheckFacts:
    """What one check measured, the input of ``evaluate_rules``.

    Attributes:
        report: the window's drift report (None without a reference profile: drift rules skipped).
        estimate_accuracy / reference_accuracy: the label-free estimate and the reference's accuracy.
        requests: requests stored in the window; ``p95_ms`` their 95th percentile latency.
        compliance: site ('' untagged) -> (compliance rate, classified faces) in the window.
        answers / errors: API answers and 5xx answers in the window (None: not counted here).
        last_request_at: the latest stored request (None: none ever); ``last_by_site`` per site.
    """

    now: datetime
    report: DriftReport | None = None
    requests: int = 0
    p95_ms: float | None = None
    compliance: dict[str, tuple[float, int]] = field(default_factory=dict)
    answers: int | None = None
    errors: int | None = None
    last_request_at: datetime | None = None
    last_by_site: dict[str, datetime] = field(default_factory=dict)


def _no_verdict(rule: RuleConfig, why: str, key: str = "") -> Evaluation:
    return Evaluation(rule.name, key, None, None, None, why)


def _drift(rule: DriftRule, facts: CheckFacts) -> list[Evaluation]:
    report = facts.report
    if report is None:
        return [_no_verdict(rule, "no reference profile: drift not tested")]
    watched = [
        f for f in report.features if rule.params.features is None or f.feature in rule.params.features
    ]
    scored = [f for f in watched if f.result.score is not None]
    if not scored:
        return [_no_verdict(rule, f"not enough data in the window ({report.window.n_faces} face(s))")]
    drifted = [f for f in scored if f.result.drifted]
    if drifted:
        parts = ", ".join(
            f"{f.feature} ({f.result.test} {f.result.score:.3g}, threshold {f.result.threshold:g})"
            for f in drifted
        )  # type: ignore[str-format]
        message = f"drift in {len(drifted)} feature(s) over {report.window.n_faces} face(s): {parts}"
    else:
        message = f"no drift in {len(scored)} feature(s) over {report.window.n_faces} face(s)"
    return [Evaluation(rule.name, "", bool(drifted), float(len(drifted)), 0.0, message)]


def _accuracy(rule: AccuracyDropRule, facts: CheckFacts) -> list[Evaluation]:
    report = facts.report
    if report is None:
        return [_no_verdict(rule, "no reference profile: no reference accuracy")]
    ref = report.reference_accuracy
    est = report.estimate.expected_accuracy if report.estimate is not None else None
    if ref is None:
        return [_no_verdict(rule, "the reference profile holds no measured accuracy")]
    if est is None:
        return [_no_verdict(rule, "no accuracy estimate for the window (no faces)")]
    floor = ref - rule.params.max_drop
    drop = ref - est
    firing = drop > rule.params.max_drop
    message = (
        f"estimated accuracy {est:.3f} is {drop:.3f} below the reference's {ref:.3f} "
        f"(allowed {rule.params.max_drop:g})"
        if firing
        else f"estimated accuracy {est:.3f} against the reference's {ref:.3f} (floor {floor:.3f})"
    )
    return [Evaluation(rule.name, "", firing, est, floor, message)]


def _error_rate(rule: ErrorRateRule, facts: CheckFacts) -> list[Evaluation]:
    if facts.answers is None or facts.errors is None:
        return [
            _no_verdict(rule, "errors are counted by the service only (the store keeps served predictions)")
        ]
    if facts.answers < rule.params.min_requests:
        return [
            _no_verdict(
                rule, f"{facts.answers} answer(s) in the window, fewer than {rule.params.min_requests}"
            )
        ]
    rate = facts.errors / facts.answers
    firing = rate > rule.params.max_rate
    message = (
        f"{facts.errors} of {facts.answers} answers were 5xx ({rate:.1%}, limit {rule.params.max_rate:.1%})"
    )
    return [Evaluation(rule.name, "", firing, rate, rule.params.max_rate, message)]


def _latency(rule: LatencyRule, facts: CheckFacts) -> list[Evaluation]:
    if facts.p95_ms is None or facts.requests < rule.params.min_requests:
        return [
            _no_verdict(
                rule, f"{facts.requests} request(s) in the window, fewer than {rule.params.min_requests}"
            )
        ]
    firing = facts.p95_ms > rule.params.max_ms
    message = f"p95 latency {facts.p95_ms:.1f} ms over {facts.requests} request(s) (limit {rule.params.max_ms:g} ms)"
    return [Evaluation(rule.name, "", firing, facts.p95_ms, rule.params.max_ms, message)]


def _compliance(rule: ComplianceRule, facts: CheckFacts) -> list[Evaluation]:
    out = []
    for site, (rate, faces) in sorted(facts.compliance.items()):
        if rule.params.sites is not None and site not in rule.params.sites:
            continue
        name = site or "untagged traffic"
        if faces < rule.params.min_faces:
            out.append(
                _no_verdict(
                    rule, f"{name}: {faces} classified face(s), fewer than {rule.params.min_faces}", site
                )
            )
            continue
        firing = rate < rule.params.min_rate
        message = f"{name}: compliance {rate:.1%} over {faces} face(s) (minimum {rule.params.min_rate:.1%})"
        out.append(Evaluation(rule.name, site, firing, rate, rule.params.min_rate, message))
    return out


def _no_traffic(rule: NoTrafficRule, facts: CheckFacts) -> list[Evaluation]:
    limit = rule.params.minutes

    def one(key: str, last: datetime | None, name: str) -> Evaluation:
        if last is None:
            return _no_verdict(rule, f"no request stored yet ({name})", key)
        silent = max(0.0, (facts.now - last).total_seconds() / 60)
        firing = silent > limit
        message = f"{name}: last request {silent:.0f} min ago (limit {limit:g} min)"
        return Evaluation(rule.name, key, firing, silent, float(limit), message)

    if rule.params.per_site:
        return [
            one(site, last, site or "untagged traffic") for site, last in sorted(facts.last_by_site.items())
        ]
    return [one("", facts.last_request_at, "all traffic")]


_EVALUATORS: dict[str, Callable[[Any, CheckFacts], list[Evaluation]]] = {
    "drift": _drift,
    "accuracy_drop": _accuracy,
    "error_rate": _error_rate,
    "latency_p95": _latency,
    "compliance": _compliance,
    "no_traffic": _no_traffic,
}


def evaluate_rules(rules: Iterable[RuleConfig], facts: CheckFacts) -> list[Evaluation]:
    """Every rule's verdicts on one check (see the module docstring)."""
    out: list[Evaluation] = []
    for rule in rules:
        out += _EVALUATORS[rule.kind](rule, facts)
    return out


# --- the state machine


@dataclass(frozen=True)
class AlertState:
    """A (rule, key)'s state, as kept in ``alert_states``."""

    firing: bool
    since: datetime
    last_notified_at: datetime | None = None
    incident_id: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class Notification:
    """A rule started firing or resolved; what the channels deliver."""

    rule: str
    key: str
    state: str
    incident_id: str
    severity: str
    value: float | None
    threshold: float | None
    message: str
    created_at: datetime
    retrain: bool = False

    @property
    def title(self) -> str:
        where = f" [{self.key}]" if self.key else ""
        return f"[{self.state.upper()}] {self.rule}{where} ({self.severity})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "key": self.key,
            "state": self.state,
            "incident_id": self.incident_id,
            "severity": self.severity,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "created_at": self.created_at.isoformat() + "Z",
            "retrain": self.retrain,
        }


def new_incident_id() -> str:
    return uuid.uuid4().hex


def step(
    state: AlertState | None,
    firing: bool | None,
    value: float | None,
    *,
    now: datetime,
    cooldown: timedelta,
    new_id: Callable[[], str] = new_incident_id,
) -> tuple[AlertState, str | None, str | None]:
    """One evaluation applied to a (rule, key)'s state.

    Returns:
        The new state, the notification to send (``firing``, ``resolved`` or None) and its incident id.
    """
    if state is None:
        state = AlertState(firing=False, since=now)
    if firing is None:
        return state, None, None
    if firing != state.firing:
        state = replace(state, firing=firing, since=now)
    state = replace(state, value=value)
    may_notify = state.last_notified_at is None or now - state.last_notified_at >= cooldown
    if not may_notify:
        return state, None, None
    if state.firing and state.incident_id is None:
        incident = new_id()
        return replace(state, incident_id=incident, last_notified_at=now), STATE_FIRING, incident
    if not state.firing and state.incident_id is not None:
        incident = state.incident_id
        return replace(state, incident_id=None, last_notified_at=now), STATE_RESOLVED, incident
    return state, None, None


def _with_stale(
    evaluations: Sequence[Evaluation], states: dict[tuple[str, str], AlertState], rules: dict[str, RuleConfig]
) -> list[Evaluation]:
    """Evaluations plus a resolving one for each firing key of a per-site rule that had no verdict this
    time while the rule had others (a site gone from the window)."""
    seen = {(e.rule, e.key) for e in evaluations}
    evaluated = {e.rule for e in evaluations}
    out = list(evaluations)
    for (rule, key), st in sorted(states.items()):
        if (
            st.firing
            and (rule, key) not in seen
            and rule in evaluated
            and rule in rules
            and rules[rule].kind in PER_SITE_KINDS
        ):
            out.append(
                Evaluation(
                    rule, key, False, None, None, f"{key or 'untagged traffic'}: no data in the window"
                )
            )
    return out


def apply_evaluations(
    conn: Connection,
    rules: Sequence[RuleConfig],
    evaluations: Sequence[Evaluation],
    now: datetime,
    *,
    new_id: Callable[[], str] = new_incident_id,
) -> list[tuple[int, Notification]]:
    """Advance ``alert_states`` by the evaluations and write one ``alert_events`` row per notification
    (delivery pending). Call inside a transaction.

    Returns:
        (event id, notification) per notification to deliver.
    """
    by_name = {r.name: r for r in rules}
    states = {
        (r.rule, r.key): AlertState(r.firing, r.since, r.last_notified_at, r.incident_id, r.value)
        # FOR UPDATE: two processes checking the same store (the service and `maskops monitor run`)
        # take turns on PostgreSQL instead of both notifying; on SQLite the check's first write
        # (its monitor_checks row) already serialises them
        for r in conn.execute(select(AlertStateRow).with_for_update()).all()
    }
    out: list[tuple[int, Notification]] = []
    for ev in _with_stale(evaluations, states, by_name):
        rule = by_name.get(ev.rule)
        if rule is None:
            continue
        old = states.get((ev.rule, ev.key))
        new, kind, incident = step(old, ev.firing, ev.value, now=now, cooldown=rule.cooldown, new_id=new_id)
        values = {
            "firing": new.firing,
            "since": new.since,
            "last_notified_at": new.last_notified_at,
            "incident_id": new.incident_id,
            "value": new.value,
        }
        if old is None:
            conn.execute(insert(AlertStateRow).values(rule=ev.rule, key=ev.key, **values))
        elif new != old:
            conn.execute(
                update(AlertStateRow)
                .where(AlertStateRow.rule == ev.rule, AlertStateRow.key == ev.key)
                .values(**values)
            )
        if kind is None or incident is None:
            continue
        message = ev.message if kind == STATE_FIRING else f"resolved: {ev.message}"
        note = Notification(
            rule=ev.rule,
            key=ev.key,
            state=kind,
            incident_id=incident,
            severity=rule.severity,
            value=ev.value,
            threshold=ev.threshold,
            message=message[:1000],
            created_at=now,
            retrain=rule.retrain,
        )
        event_id = conn.execute(
            insert(AlertEventRow)
            .values(
                created_at=now,
                rule=note.rule,
                key=note.key,
                state=note.state,
                incident_id=note.incident_id,
                value=note.value,
                threshold=note.threshold,
                message=note.message,
                delivery={c: {"pending": True} for c in rule.channels},
            )
            .returning(AlertEventRow.id)
        ).scalar_one()
        out.append((int(event_id), note))
    return out


def record_delivery(conn: Connection, event_id: int, delivery: dict[str, Any]) -> None:
    """Store the per-channel outcome of a notification's delivery."""
    conn.execute(update(AlertEventRow).where(AlertEventRow.id == event_id).values(delivery=delivery))


def firing_states(conn: Connection) -> list[tuple[str, str]]:
    """(rule, key) of every alert firing now."""
    q = select(AlertStateRow.rule, AlertStateRow.key).where(AlertStateRow.firing.is_(True))
    return [(r, k) for r, k in conn.execute(q.order_by(AlertStateRow.rule, AlertStateRow.key)).all()]


def retrain_requested(conn: Connection, rules: Sequence[RuleConfig]) -> list[tuple[str, str]]:
    """(rule, key) of the alerts firing now whose rule says ``retrain: true`` (read by a retraining
    flow to decide whether to start)."""
    wanted = {r.name for r in rules if r.retrain}
    return [(rule, key) for rule, key in firing_states(conn) if rule in wanted]
