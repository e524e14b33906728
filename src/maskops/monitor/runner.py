"""One monitoring check: the window's drift report and estimate stored, every alert rule evaluated, the
notifications delivered. ``maskops monitor run`` and the service's background task both call
``run_checks``.

A check writes, in one transaction, a ``monitor_checks`` row (the window, the estimate beside the
measured accuracy, the full report as JSON), one ``drift_results`` row per tested feature, the new
``alert_states`` and one ``alert_events`` row per notification; the delivery outcomes are added to
the events once the channels answered (or the delivery timed out).

Without a reference profile the check still runs: the window and the estimate are stored
(``drifted`` false, no ``drift_results``) and the drift and accuracy-drop rules have no verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, func, insert, select

from maskops.config import Settings
from maskops.monitor.alert_config import (
    MonitorConfig,
    MonitorConfigError,
    load_monitor_config,
    reference_path,
)
from maskops.monitor.alerts import (
    CheckFacts,
    Evaluation,
    Notification,
    apply_evaluations,
    evaluate_rules,
    firing_states,
    record_delivery,
)
from maskops.monitor.channels import Channel, Dispatcher, build_channels
from maskops.monitor.records import utc_naive
from maskops.monitor.reference import ReferenceProfile
from maskops.monitor.schema import DriftResultRow, FaceRow, HourlyRequests, MonitorCheckRow, RequestRow
from maskops.monitor.stats import CLASSIFIED, COMPLIANT
from maskops.monitor.window import DriftReport, drift_report

logger = logging.getLogger(__name__)

ErrorSource = Callable[[], tuple[int, int]]


def load_reference(path: Path) -> ReferenceProfile | None:
    """The reference profile at ``path``, or None (logged as a warning: drift rules are skipped)."""
    try:
        return ReferenceProfile.load(path)
    except FileNotFoundError:
        logger.warning("no reference profile at %s: drift and accuracy-drop rules are skipped", path)
    except (OSError, ValueError) as exc:
        logger.warning(
            "reference profile %s unreadable (%s): drift and accuracy-drop rules are skipped", path, exc
        )
    return None


def config_reference(config: MonitorConfig) -> ReferenceProfile | None:
    """The profile the config points at (default: the shipped model's, from the settings)."""
    settings = Settings()
    face_model = str(getattr(settings, "face_model", "facemask"))
    return load_reference(reference_path(config, settings.models_dir, face_model))


class ErrorRateTracker:
    """API answers and 5xx answers in a window, from the service's cumulative counts.

    The store keeps only served predictions, so errors come from the service's in-memory counters
    (``source``: cumulative (answers, 5xx answers)); each check samples them, and a window's counts
    are the difference with the latest sample at or before the window's start (the counts at
    ``started_at`` are zero).
    """

    def __init__(self, source: ErrorSource, started_at: datetime, keep: int = 10_000) -> None:
        self.source = source
        self._samples: deque[tuple[datetime, int, int]] = deque([(utc_naive(started_at), 0, 0)], maxlen=keep)
        self._lock = threading.Lock()

    def window(self, start: datetime, now: datetime) -> tuple[int, int]:
        answers, errors = self.source()
        with self._lock:
            base = self._samples[0]
            for sample in self._samples:
                if sample[0] <= start:
                    base = sample
            while len(self._samples) > 1 and self._samples[1][0] <= start:
                self._samples.popleft()  # older samples are never a baseline again
            self._samples.append((now, answers, errors))
        return max(0, answers - base[1]), max(0, errors - base[2])


def status_counts(responses_by_status: dict[str, int]) -> tuple[int, int]:
    """(answers, 5xx answers) from counts by HTTP status."""
    total = sum(responses_by_status.values())
    errors = sum(n for status, n in responses_by_status.items() if str(status).startswith("5"))
    return total, errors


@dataclass(frozen=True)
class CheckResult:
    """What one check did.

    Attributes:
        check_id: the ``monitor_checks`` row.
        firing: (rule, key) of every alert firing after the check.
        delivery: per notification, channel -> outcome (``DeliveryOutcome.to_dict``).
    """

    check_id: int
    now: datetime
    report: DriftReport
    reference: bool
    evaluations: list[Evaluation]
    notifications: list[Notification]
    delivery: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    firing: list[tuple[str, str]] = field(default_factory=list)


def _finite(x: Any) -> Any:
    """JSON-safe data: NaN and infinities as None (PostgreSQL's JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _last_by_site(conn: Connection) -> dict[str, datetime]:
    """The latest request per site ('' untagged): each site's latest hour from the hourly rollup (a
    small table), then the requests of that site from that hour on (``ix_requests_site_hour``), so
    no scan of the whole requests table."""
    out: dict[str, datetime] = {}
    hours = select(HourlyRequests.site, func.max(HourlyRequests.hour)).group_by(HourlyRequests.site)
    for site, hour in conn.execute(hours).all():
        match = RequestRow.site.is_(None) if site == "" else RequestRow.site == site
        last = conn.execute(
            select(func.max(RequestRow.created_at)).where(match, RequestRow.hour >= hour)
        ).scalar_one()
        if last is not None:  # None: that hour's requests were pruned (the rollup stays)
            out[site] = last
    return out


def window_facts(engine: Engine, start: datetime | None, now: datetime) -> dict[str, Any]:
    """Latency, compliance per site and the latest requests, over the requests in ``[start, now]``."""
    facts: dict[str, Any] = {"requests": 0, "p95_ms": None, "compliance": {}}
    with engine.connect() as conn:
        last_by_site = _last_by_site(conn)
        facts["last_by_site"] = last_by_site
        facts["last_request_at"] = max(last_by_site.values()) if last_by_site else None
        if start is None:
            return facts
        in_window = (RequestRow.created_at >= start, RequestRow.created_at <= now)
        latency = np.fromiter(
            conn.execute(select(RequestRow.latency_ms).where(*in_window)).scalars(), dtype=np.float64
        )
        facts["requests"] = int(latency.size)
        if latency.size:
            facts["p95_ms"] = float(np.percentile(latency, 95, method="inverted_cdf"))
        faces: dict[str, dict[str, int]] = {}
        q = (
            select(RequestRow.site, FaceRow.label, func.count())
            .join(RequestRow, RequestRow.request_id == FaceRow.request_id)
            .where(*in_window)
            .group_by(RequestRow.site, FaceRow.label)
        )
        for site, label, n in conn.execute(q):
            faces.setdefault(site or "", {})[label] = int(n)
    for site, counts in faces.items():
        classified = sum(n for label, n in counts.items() if label in CLASSIFIED)
        if classified:
            facts["compliance"][site] = (counts.get(COMPLIANT, 0) / classified, classified)
    return facts


def run_checks(
    engine: Engine,
    config: MonitorConfig,
    *,
    now: datetime | None = None,
    reference: ReferenceProfile | str | None = "config",
    channels: dict[str, Channel] | None = None,
    dispatcher: Dispatcher | None = None,
    errors: ErrorRateTracker | None = None,
) -> CheckResult:
    """Run one check (see the module docstring).

    Args:
        engine: the prediction store (migrated).
        config: the monitoring config.
        now: the check's time (default: the current UTC time).
        reference: the reference profile; ``"config"`` (default) loads the one the config points at,
            None runs without one.
        channels: channels by name (default: ``build_channels(config)``).
        dispatcher: delivers the notifications (default: one for this check, closed after it).
        errors: the service's answer counts (without it the error-rate rules have no verdict).

    Raises:
        MonitorConfigError: channels that cannot be built (credential variables not set).
        sqlalchemy.exc.SQLAlchemyError: the store does not answer.
    """
    now = utc_naive(now or datetime.now(UTC))
    profile = config_reference(config) if isinstance(reference, str) else reference
    channels = build_channels(config) if channels is None else channels
    since = now - config.window.since if config.window.since is not None else None
    report = drift_report(
        engine,
        profile or ReferenceProfile(),
        since=since,
        last=None if since is not None else config.window.last,
        tests=config.drift_tests,
    )
    start = since if since is not None else report.window.start
    wf = window_facts(engine, start, now)
    answers = errs = None
    if errors is not None:
        answers, errs = errors.window(start or now, now)
    facts = CheckFacts(
        now=now,
        report=report if profile is not None else None,
        requests=wf["requests"],
        p95_ms=wf["p95_ms"],
        compliance=wf["compliance"],
        answers=answers,
        errors=errs,
        last_request_at=wf["last_request_at"],
        last_by_site=wf["last_by_site"],
    )
    evaluations = evaluate_rules(config.rules, facts)
    est = report.estimate
    with engine.begin() as conn:
        check_id = int(
            conn.execute(
                insert(MonitorCheckRow)
                .values(
                    created_at=now,
                    window_start=report.window.start,
                    window_end=report.window.end,
                    site=None,
                    n_requests=report.window.n_requests,
                    n_faces=report.window.n_faces,
                    drifted=bool(profile is not None and report.drifted),
                    expected_accuracy=_finite(est.expected_accuracy) if est else None,
                    accuracy_low=_finite(est.accuracy_low) if est else None,
                    accuracy_high=_finite(est.accuracy_high) if est else None,
                    measured_accuracy=_finite(est.measured_accuracy) if est else None,
                    n_feedback=est.n_labelled if est else 0,
                    reference_accuracy=report.reference_accuracy,
                    report=_finite(json.loads(json.dumps(report.to_dict(), default=_json_default))),
                )
                .returning(MonitorCheckRow.id)
            ).scalar_one()
        )
        if profile is not None and report.features:
            conn.execute(
                insert(DriftResultRow),
                [
                    {
                        "check_id": check_id,
                        "feature": f.feature,
                        "test": f.result.test,
                        "score": _finite(f.result.score),
                        "threshold": f.result.threshold,
                        "drifted": f.result.drifted,
                    }
                    for f in report.features
                ],
            )
        pending = apply_evaluations(conn, config.rules, evaluations, now)
    delivery = _deliver(engine, config, channels, dispatcher, pending)
    with engine.connect() as conn:
        firing = firing_states(conn)
    for ev in evaluations:
        if ev.firing:
            logger.debug("alert rule %s%s firing: %s", ev.rule, f" [{ev.key}]" if ev.key else "", ev.message)
    return CheckResult(
        check_id=check_id,
        now=now,
        report=report,
        reference=profile is not None,
        evaluations=evaluations,
        notifications=[n for _, n in pending],
        delivery=delivery,
        firing=firing,
    )


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, datetime):
        return x.isoformat()
    return str(x)


def _deliver(
    engine: Engine,
    config: MonitorConfig,
    channels: dict[str, Channel],
    dispatcher: Dispatcher | None,
    pending: list[tuple[int, Notification]],
) -> list[dict[str, dict[str, Any]]]:
    if not pending:
        return []
    own = dispatcher is None
    d = dispatcher or Dispatcher(config.delivery)
    try:
        items = [
            (note, [channels[c] for c in config.rule(note.rule).channels if c in channels])
            for _, note in pending
        ]
        outcomes = d.deliver_many(items)
    finally:
        if own:
            d.close()
    results = [{name: o.to_dict() for name, o in per.items()} for per in outcomes]
    with engine.begin() as conn:
        for (event_id, _), result in zip(pending, results, strict=True):
            record_delivery(conn, event_id, result)
    return results


class MonitorLoop:
    """``run_checks`` every ``config.interval`` until stopped; a failing check is logged, never raised.

    Used by ``maskops monitor run`` (in the foreground) and by the service (in a thread of its own,
    from an asyncio task).
    """

    def __init__(
        self,
        engine: Engine,
        config: MonitorConfig,
        *,
        reference: ReferenceProfile | None,
        errors: ErrorRateTracker | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.reference = reference
        self.errors = errors
        self.channels = build_channels(config)
        self.dispatcher = Dispatcher(config.delivery)
        self.checks = 0
        self.last: CheckResult | None = None

    def check_once(self, now: datetime | None = None) -> CheckResult | None:
        """One check; None when it failed (logged)."""
        try:
            self.last = run_checks(
                self.engine,
                self.config,
                now=now,
                reference=self.reference,
                channels=self.channels,
                dispatcher=self.dispatcher,
                errors=self.errors,
            )
        except Exception:  # a check must never take its caller down
            logger.exception("monitoring check failed")
            return None
        finally:
            self.checks += 1
        return self.last

    def close(self) -> None:
        self.dispatcher.close()


def interval_seconds(config: MonitorConfig) -> float:
    return max(1.0, config.interval / timedelta(seconds=1))


class BackgroundMonitor:
    """The service's monitoring: ``MonitorLoop.check_once`` in a worker thread every interval, from an
    asyncio task started with the app and stopped at shutdown. A check that fails is logged; nothing
    here ever raises into the service."""

    def __init__(self, loop: MonitorLoop, interval_s: float) -> None:
        self.loop = loop
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="maskops-monitor")

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.to_thread(self.loop.check_once)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the check in progress (waiting at most ``timeout_s``; retries are cut short)."""
        self._stopping = True
        self._wake.set()
        self.loop.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=timeout_s)
            except TimeoutError:
                logger.warning("monitoring check still running at shutdown; left behind")
                self._task.cancel()
            except Exception:  # pragma: no cover - _run never raises
                logger.exception("monitoring task failed")
            self._task = None


def start_monitor(
    settings: Settings, engine: Engine | None, error_source: ErrorSource | None = None
) -> BackgroundMonitor | None:
    """The service's background monitor, started (None when ``monitor_config`` is not set, the store
    is off, or the config is invalid: logged, the service runs without monitoring). Call from the
    event loop."""
    path = getattr(settings, "monitor_config", None)
    if path is None:
        return None
    if engine is None:
        logger.warning("monitoring configured (%s) but the prediction store is off: no checks run", path)
        return None
    try:
        config = load_monitor_config(path)
        face_model = str(getattr(settings, "face_model", "facemask"))
        reference = load_reference(reference_path(config, settings.models_dir, face_model))
        errors = None
        if error_source is not None:
            errors = ErrorRateTracker(error_source, datetime.now(UTC))
        loop = MonitorLoop(engine, config, reference=reference, errors=errors)
    except MonitorConfigError as exc:
        logger.error("monitoring off: invalid monitoring config:\n%s", exc)
        return None
    monitor = BackgroundMonitor(loop, interval_seconds(config))
    monitor.start()
    logger.info("monitoring every %g s with %d rule(s) from %s", monitor.interval_s, len(config.rules), path)
    return monitor
