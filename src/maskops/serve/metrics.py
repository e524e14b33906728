"""What the service counts: Prometheus metrics (``/metrics``) and JSON aggregates (``/v1/stats``).

Each app gets its own ``CollectorRegistry`` so several apps (tests, reloads) never clash.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WINDOW = 2048  # requests kept for the JSON latency percentiles


class ServiceMetrics:
    """Prometheus collectors plus in-process aggregates, updated from any thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
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
