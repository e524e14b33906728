"""Alert rules (pure evaluation) and the state machine: one firing and one resolved notification per
incident, a cooldown that holds back repeats, per-site keys, the tables the dashboard reads."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from maskops.monitor.alert_config import parse_monitor_config
from maskops.monitor.alerts import (
    AlertState,
    CheckFacts,
    Evaluation,
    apply_evaluations,
    evaluate_rules,
    step,
)
from maskops.monitor.drift import DriftResult
from maskops.monitor.estimate import PerformanceEstimate
from maskops.monitor.reference import FeatureDrift
from maskops.monitor.schema import AlertEventRow, AlertStateRow
from maskops.monitor.window import DriftReport, FaceWindow

T0 = datetime(2026, 12, 3, 9, 0, 0)
COOL = timedelta(minutes=30)


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"inc{next(counter)}"


def run(
    sequence: list[bool | None], minutes_apart: float = 1, cooldown: timedelta = COOL
) -> list[tuple[int, str, str]]:
    """Feed verdicts a few minutes apart; (index, notification, incident) per notification."""
    state, new_id, out = None, ids(), []
    for i, firing in enumerate(sequence):
        state, kind, incident = step(
            state,
            firing,
            1.0,
            now=T0 + timedelta(minutes=i * minutes_apart),
            cooldown=cooldown,
            new_id=new_id,
        )
        if kind:
            out.append((i, kind, incident))
    return out


def test_one_firing_and_one_resolved_per_incident() -> None:
    assert run([False, True, True, True, False, False], minutes_apart=40) == [
        (1, "firing", "inc1"),
        (4, "resolved", "inc1"),
    ]


def test_flapping_inside_the_cooldown_does_not_renotify() -> None:
    # fires at 0, flaps every minute for 20 minutes, quiet from then on: the resolve waits for the cooldown
    seq = [True, False] * 10 + [False] * 20
    assert run(seq) == [(0, "firing", "inc1"), (30, "resolved", "inc1")]


def test_a_new_incident_after_the_cooldown() -> None:
    seq = [True] + [False] * 70 + [True] * 5
    assert run(seq) == [(0, "firing", "inc1"), (30, "resolved", "inc1"), (71, "firing", "inc2")]


def test_refiring_soon_after_a_resolve_waits_for_the_cooldown() -> None:
    seq = [True] + [False] * 30 + [True] * 40
    # resolved at 30; fires again at 31, told at 60 (30 minutes after the last notification)
    assert run(seq) == [(0, "firing", "inc1"), (30, "resolved", "inc1"), (60, "firing", "inc2")]
    # ...and dropped when it is quiet again before then
    assert run([True] + [False] * 30 + [True] * 5 + [False] * 40)[2:] == []


def test_no_verdict_leaves_the_state() -> None:
    assert run([True, None, None, False], minutes_apart=40) == [
        (0, "firing", "inc1"),
        (3, "resolved", "inc1"),
    ]
    state = AlertState(firing=True, since=T0, last_notified_at=T0, incident_id="x", value=3.0)
    assert step(state, None, None, now=T0 + COOL * 3, cooldown=COOL) == (state, None, None)


def test_zero_cooldown_notifies_every_change() -> None:
    assert [k for _, k, _ in run([True, False, True, False], cooldown=timedelta(0))] == [
        "firing",
        "resolved",
    ] * 2


# --- evaluation


def rules(*items: dict[str, Any]) -> Any:
    return parse_monitor_config({"channels": {"log": {"kind": "log"}}, "rules": list(items)}).rules


def report(
    drifted: dict[str, bool], expected: float | None = 0.8, reference: float | None = 0.9
) -> DriftReport:
    window = FaceWindow(T0, T0, 10, 10, {}, {}, None, [], [])  # type: ignore[arg-type]
    feats = [
        FeatureDrift(name, "numeric", DriftResult("ks", 0.001 if d else 0.5, 0.05, d, 100, 10))
        for name, d in drifted.items()
    ]
    est = PerformanceEstimate(10, expected, None, None, {}, {}) if expected is not None else None
    return DriftReport(window, feats, est, reference)


def verdicts(evs: list[Evaluation]) -> dict[tuple[str, str], bool | None]:
    return {(e.rule, e.key): e.firing for e in evs}


def test_drift_rules() -> None:
    rs = rules(
        {"name": "any", "kind": "drift"},
        {"name": "label-only", "kind": "drift", "params": {"features": ["label"]}},
    )
    facts = CheckFacts(now=T0, report=report({"brightness": True, "label": False}))
    evs = evaluate_rules(rs, facts)
    assert verdicts(evs) == {("any", ""): True, ("label-only", ""): False}
    assert "brightness (ks 0.001, threshold 0.05)" in evs[0].message
    assert verdicts(evaluate_rules(rs, CheckFacts(now=T0))) == {("any", ""): None, ("label-only", ""): None}


def test_accuracy_drop() -> None:
    (r,) = rules({"name": "acc", "kind": "accuracy_drop", "params": {"max_drop": 0.05}})
    (ev,) = evaluate_rules([r], CheckFacts(now=T0, report=report({}, expected=0.8, reference=0.9)))
    assert ev.firing is True and ev.value == 0.8 and ev.threshold == pytest.approx(0.85)
    assert "0.100 below the reference's 0.900" in ev.message
    (ev,) = evaluate_rules([r], CheckFacts(now=T0, report=report({}, expected=0.88, reference=0.9)))
    assert ev.firing is False
    for rep in (report({}, expected=None), report({}, reference=None)):
        assert evaluate_rules([r], CheckFacts(now=T0, report=rep))[0].firing is None


def test_error_rate_latency_compliance_no_traffic() -> None:
    rs = rules(
        {"name": "err", "kind": "error_rate", "params": {"max_rate": 0.1, "min_requests": 10}},
        {"name": "p95", "kind": "latency_p95", "params": {"max_ms": 100, "min_requests": 5}},
        {"name": "comp", "kind": "compliance", "params": {"min_rate": 0.8, "min_faces": 10}},
        {"name": "quiet", "kind": "no_traffic", "params": {"minutes": 30}},
        {"name": "quiet-site", "kind": "no_traffic", "params": {"minutes": 30, "per_site": True}},
    )
    facts = CheckFacts(
        now=T0,
        requests=50,
        p95_ms=150.0,
        compliance={"gate-1": (0.5, 40), "gate-2": (0.9, 40), "gate-3": (0.1, 3)},
        answers=50,
        errors=10,
        last_request_at=T0 - timedelta(minutes=5),
        last_by_site={"gate-1": T0 - timedelta(minutes=5), "gate-2": T0 - timedelta(hours=2)},
    )
    assert verdicts(evaluate_rules(rs, facts)) == {
        ("err", ""): True,
        ("p95", ""): True,
        ("comp", "gate-1"): True,
        ("comp", "gate-2"): False,
        ("comp", "gate-3"): None,  # too few faces
        ("quiet", ""): False,
        ("quiet-site", "gate-1"): False,
        ("quiet-site", "gate-2"): True,
    }
    empty = verdicts(evaluate_rules(rs, CheckFacts(now=T0)))
    assert empty == {("err", ""): None, ("p95", ""): None, ("quiet", ""): None}


# --- on the store


def states(engine: Engine) -> dict[tuple[str, str], Any]:
    with engine.connect() as conn:
        return {(r.rule, r.key): r for r in conn.execute(select(AlertStateRow)).all()}


def events(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(AlertEventRow).order_by(AlertEventRow.id)).all())


def test_state_machine_on_the_store(store: Engine) -> None:
    (r,) = rules(
        {
            "name": "comp",
            "kind": "compliance",
            "params": {"min_rate": 0.8},
            "channels": ["log"],
            "cooldown": "10m",
        }
    )
    new_id = ids()

    def apply(minute: int, *evs: Evaluation) -> list[Any]:
        with store.begin() as conn:
            return apply_evaluations(conn, [r], list(evs), T0 + timedelta(minutes=minute), new_id=new_id)

    low = Evaluation("comp", "gate-1", True, 0.5, 0.8, "gate-1: compliance 50%")
    ok2 = Evaluation("comp", "gate-2", False, 0.9, 0.8, "gate-2: compliance 90%")
    out = apply(0, low, ok2)
    assert [(n.rule, n.key, n.state, n.incident_id, n.retrain) for _, n in out] == [
        ("comp", "gate-1", "firing", "inc1", False)
    ]
    assert apply(5, low, ok2) == []  # still firing: nothing new
    st = states(store)
    assert st[("comp", "gate-1")].firing and st[("comp", "gate-1")].incident_id == "inc1"
    assert st[("comp", "gate-1")].since == T0 and st[("comp", "gate-1")].last_notified_at == T0
    assert not st[("comp", "gate-2")].firing and st[("comp", "gate-2")].incident_id is None
    # gate-1 gone from the window while the rule has other verdicts: resolved
    out = apply(20, ok2)
    assert [(n.key, n.state, n.incident_id) for _, n in out] == [("gate-1", "resolved", "inc1")]
    assert "no data in the window" in out[0][1].message
    ev = events(store)
    assert [(e.rule, e.key, e.state, e.incident_id) for e in ev] == [
        ("comp", "gate-1", "firing", "inc1"),
        ("comp", "gate-1", "resolved", "inc1"),
    ]
    assert ev[0].delivery == {"log": {"pending": True}} and ev[0].value == 0.5 and ev[0].threshold == 0.8
    assert states(store)[("comp", "gate-1")].incident_id is None
