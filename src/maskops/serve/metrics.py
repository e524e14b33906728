"""What the service counts: Prometheus metrics (``/metrics``) and JSON aggregates (``/v1/stats``).

Each app gets its own ``CollectorRegistry`` so several apps (tests, reloads) never clash.
``MonitorCollector`` adds the monitoring gauges (drift, the accuracy estimate, firing alerts), read
from the prediction store at scrape time and cached for a few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from maskops.monitor.dashboard import GaugeSnapshot, gauge_snapshot

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WINDOW = 2048  # requests kept for the JSON latency percentiles


class ServiceMetrics:
    """Prometheus collectors plus in-process aggregates, updated from any thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # the gauge's value and when the last request ended, as plain numbers (set on the event loop)
        self.busy = 0
        self.last_done = time.monotonic()
        self.requests = PromCounter(
            "maskops_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "maskops_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge("maskops_http_requests_in_flight", "requests being served", registry=r)
        self.stage = Histogram(
            "maskops_inference_stage_seconds",
            "time per inference stage (decode, detect, classify, annotate)",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.images = PromCounter("maskops_images", "images processed by outcome", ["outcome"], registry=r)
        self.faces = PromCounter("maskops_faces", "faces found, by predicted label", ["label"], registry=r)
        self.errors = PromCounter("maskops_errors", "error responses by code", ["code"], registry=r)
        self.queue = Gauge("maskops_inference_queue", "inference jobs waiting or running", registry=r)
        self.model_info = Gauge(
            "maskops_model_info", "loaded models (value 1)", ["name", "task", "version"], registry=r
        )
        self.stream_clients = Gauge("maskops_stream_clients", "open /v1/stream connections", registry=r)
        self.stream_dropped = PromCounter(
            "maskops_stream_frames_dropped",
            "stream frames replaced by a newer one before processing",
            registry=r,
        )
        self.reloads = PromCounter(
            "maskops_model_reloads", "model reloads by outcome", ["outcome"], registry=r
        )
        self.monitor = MonitorCollector()
        r.register(self.monitor)

        self._lock = threading.Lock()
        self._started = time.time()
        self._routes: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._error_codes: Counter[str] = Counter()
        self._faces: Counter[str] = Counter()
        self._images: Counter[str] = Counter()
        self._latency_ms: dict[str, deque[float]] = {}

    # --- updates
    def observe_request(
        self, method: str, route: str, status: int, seconds: float, *, api: bool = True
    ) -> None:
        """Count one request; ``api=False`` (pages, static files, docs, 404s) is left out of ``snapshot()``."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if not api:
            return
        with self._lock:
            key = f"{method} {route}"
            self._routes[key] += 1
            self._statuses[str(status)] += 1
            self._latency_ms.setdefault(key, deque(maxlen=_WINDOW)).append(seconds * 1000.0)

    def observe_error(self, code: str) -> None:
        self.errors.labels(code).inc()
        with self._lock:
            self._error_codes[code] += 1

    def observe_image(
        self, outcome: str, labels: Iterable[str] = (), timings_ms: dict[str, float] | None = None
    ) -> None:
        self.images.labels(outcome).inc()
        counted = Counter(labels)
        for label, n in counted.items():
            self.faces.labels(label).inc(n)
        for stage, ms in (timings_ms or {}).items():
            self.stage.labels(stage).observe(ms / 1000.0)
        with self._lock:
            self._images[outcome] += 1
            self._faces.update(counted)

    def set_models(self, models: Iterable[tuple[str, str, str]]) -> None:
        self.model_info.clear()
        for name, task, version in models:
            self.model_info.labels(name, task, version).set(1)

    # --- reads
    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """JSON aggregates of the API routes since start: counts, faces per label, latency percentiles."""
        with self._lock:
            latency = {}
            for key, values in self._latency_ms.items():
                arr = np.fromiter(values, float)
                latency[key] = {
                    "count": int(arr.size),
                    "p50_ms": round(float(np.percentile(arr, 50)), 2),
                    "p95_ms": round(float(np.percentile(arr, 95)), 2),
                    "p99_ms": round(float(np.percentile(arr, 99)), 2),
                }
            faces = dict(self._faces)
            return {
                "uptime_s": round(time.time() - self._started, 1),
                "requests_total": sum(self._routes.values()),
                "requests_by_route": dict(self._routes),
                "responses_by_status": dict(self._statuses),
                "errors_by_code": dict(self._error_codes),
                "images": dict(self._images),
                "faces_total": sum(faces.values()),
                "faces_by_label": faces,
                "latency_window": latency,
            }


EngineSource = Callable[[], Engine | None]


class MonitorCollector(Collector):
    """Monitoring gauges read from the prediction store: the latest check per site (drift score,
    threshold and flag per feature, the label-free accuracy estimate with its interval, the measured
    and reference accuracy), the alert keys firing per rule, and the review queue.

    The store's reads (``gauge_snapshot``: a few indexed queries) run at most once per ``ttl_s``;
    scrapes in between reuse the last answer. Without a store, or while it does not answer, the
    families are exported without samples (and ``maskops_monitor_store_up`` says 0 when it failed).

    Args:
        ttl_s: seconds a snapshot is reused.
    """

    def __init__(self, ttl_s: float = 10.0) -> None:
        self.ttl_s = ttl_s
        self._source: EngineSource = lambda: None
        self._lock = threading.Lock()
        self._snapshot: GaugeSnapshot | None = None
        self._ok: bool | None = None  # None: no store to read
        self._read_at = -float("inf")

    def watch(self, source: EngineSource) -> None:
        """Read the store's engine from ``source`` at each refresh (None: no store)."""
        with self._lock:
            self._source = source
            self._read_at = -float("inf")

    def _refresh(self) -> tuple[GaugeSnapshot | None, bool | None]:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= self.ttl_s:
                self._read_at = now
                engine = self._source()
                if engine is None:
                    self._snapshot, self._ok = None, None
                else:
                    try:
                        self._snapshot, self._ok = gauge_snapshot(engine), True
                    except SQLAlchemyError as exc:
                        if self._ok is not False:
                            logger.warning("monitoring gauges unavailable: %s", str(exc).splitlines()[0])
                        self._snapshot, self._ok = None, False
                    except Exception:  # a scrape must never fail: the request metrics come with it
                        logger.exception("monitoring gauges failed")
                        self._snapshot, self._ok = None, False
            return self._snapshot, self._ok

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # the names without samples: registering the collector does not read the store
        return self._families(None, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(*self._refresh())

    @staticmethod
    def _families(snap: GaugeSnapshot | None, ok: bool | None) -> Iterator[GaugeMetricFamily]:
        g = {
            name: GaugeMetricFamily(f"maskops_monitor_{name}", doc, labels=labels)
            for name, doc, labels in (
                (
                    "drift_score",
                    "drift score per feature of the latest check (p-value or distance)",
                    ["site", "feature", "test"],
                ),
                (
                    "drift_threshold",
                    "the threshold the drift score was held against",
                    ["site", "feature", "test"],
                ),
                ("feature_drifted", "1 when the feature drifted in the latest check", ["site", "feature"]),
                ("drifted", "1 when any feature drifted in the latest check", ["site"]),
                ("estimated_accuracy", "label-free accuracy estimate of the latest check", ["site"]),
                ("estimated_accuracy_low", "lower end of the estimate's interval", ["site"]),
                ("estimated_accuracy_high", "upper end of the estimate's interval", ["site"]),
                ("measured_accuracy", "accuracy on the faces with feedback in the latest check", ["site"]),
                ("reference_accuracy", "measured accuracy of the reference profile", ["site"]),
                ("check_faces", "faces in the latest check's window", ["site"]),
                ("check_timestamp_seconds", "when the latest check ran (Unix time)", ["site"]),
            )
        }
        alerts = GaugeMetricFamily("maskops_alerts_firing", "alert keys firing per rule", labels=["rule"])
        review = GaugeMetricFamily("maskops_review_queue", "hard-case crops waiting for an answer")
        up = GaugeMetricFamily(
            "maskops_monitor_store_up", "1 when the monitoring gauges could read the store"
        )
        if ok is not None:
            up.add_metric([], 1.0 if ok else 0.0)
        if snap is not None:
            for site, latest in snap.checks.items():
                c = latest.check
                for r in latest.results:
                    if r.score is not None:
                        g["drift_score"].add_metric([site, r.feature, r.test], r.score)
                    g["drift_threshold"].add_metric([site, r.feature, r.test], r.threshold)
                    g["feature_drifted"].add_metric([site, r.feature], 1.0 if r.drifted else 0.0)
                g["drifted"].add_metric([site], 1.0 if c.drifted else 0.0)
                g["check_faces"].add_metric([site], c.n_faces)
                g["check_timestamp_seconds"].add_metric([site], _unix(c.created_at))
                for name, value in (
                    ("estimated_accuracy", c.expected_accuracy),
                    ("estimated_accuracy_low", c.accuracy_low),
                    ("estimated_accuracy_high", c.accuracy_high),
                    ("measured_accuracy", c.measured_accuracy),
                    ("reference_accuracy", c.reference_accuracy),
                ):
                    if value is not None:
                        g[name].add_metric([site], value)
            for rule, n in snap.firing.items():
                alerts.add_metric([rule], n)
            review.add_metric([], snap.review_waiting)
        yield from g.values()
        yield alerts
        yield review
        yield up


def _unix(ts: datetime) -> float:
    """A naive-UTC datetime as Unix seconds."""
    return float(ts.replace(tzinfo=UTC).timestamp())
