"""FastAPI app factory: settings, models loaded in ``lifespan``, routers, middleware, the web app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import cv2
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from maskops import __version__
from maskops.config import Settings
from maskops.serve.authguard import AuthGuard
from maskops.serve.errors import install_error_handlers
from maskops.serve.keys import load_provisioned_keys, open_key_store
from maskops.serve.metrics import ServiceMetrics
from maskops.serve.middleware import RequestContextMiddleware
from maskops.serve.ratelimit import make_rate_limiter
from maskops.serve.recording import start_store, store_counters
from maskops.serve.routes import (
    classify,
    compat,
    dashboard,
    detect,
    docs,
    feedback,
    health,
    models,
    monitoring,
    pages,
    review,
    stream,
)
from maskops.serve.routes.pages import STATIC_DIR
from maskops.serve.service import MaskService, trim_when_idle
from maskops.serve.settings import ServeSettings

logger = logging.getLogger(__name__)

DESCRIPTION = """Face-mask detection: every face in an image with its mask status
(`with_mask`, `without_mask`, `mask_weared_incorrect`, or `uncertain`), plus whole-image
classification for classification tasks.

Errors always read `{"error": {"code", "message", "details", "request_id"}}`; every response
carries `X-Request-ID`. With `MASKOPS_AUTH=true`, send an API key as `X-API-Key` or
`Authorization: Bearer` (create one with `maskops keys create`)."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Models load at startup; a missing model never stops the app from starting
    (``/ready`` says what is missing and the inference routes answer 503)."""
    s = ServeSettings.from_settings(settings)
    provisioned = load_provisioned_keys(s)  # a malformed MASKOPS_API_KEYS(_FILE) stops here
    metrics = ServiceMetrics()
    service = MaskService(s, metrics)
    # SQLite file, or the shared PostgreSQL for replicas; the provisioned keys checked first
    keys = open_key_store(s, provisioned=provisioned)
    counters = store_counters(metrics.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        previous_threads = cv2.getNumThreads()
        if s.opencv_threads is not None:
            cv2.setNumThreads(s.opencv_threads)
        models_set = await asyncio.to_thread(service.load)
        if s.warm_up:
            await asyncio.to_thread(service.warm_up)
        if models_set.face_problem():
            logger.warning("not ready: %s", models_set.face_problem())
        app.state.prediction_store = await asyncio.to_thread(start_store, s, counters)
        service.measure_quality = app.state.prediction_store is not None
        app.state.monitor = None
        if s.monitor_config is not None:  # drift checks and alert rules in the background
            from maskops.monitor.runner import start_monitor, status_counts

            store = app.state.prediction_store
            app.state.monitor = start_monitor(
                s,
                store.engine if store else None,
                lambda: status_counts(metrics.snapshot()["responses_by_status"]),
            )
        logger.info(
            "serving %s with %d worker(s); auth %s",
            ", ".join(f"{m.name}@{m.version}" for m in models_set.models.values()) or "no models",
            s.workers,
            "on" if s.auth else "off",
        )
        # this frame lives until shutdown: holding the first set here would keep it after every reload
        del models_set
        trimmer = asyncio.create_task(trim_when_idle(metrics, s.idle_trim_s)) if s.idle_trim_s > 0 else None
        try:
            yield
        finally:
            if trimmer is not None:
                trimmer.cancel()
            if app.state.monitor is not None:
                await app.state.monitor.stop()  # before the store it reads
                app.state.monitor = None
            if app.state.prediction_store is not None:
                await asyncio.to_thread(app.state.prediction_store.stop)  # writes what is queued
                app.state.prediction_store = None
            service.close()
            keys.close()
            if s.opencv_threads is not None:
                cv2.setNumThreads(previous_threads)

    # the docs pages are served by routes.docs with local assets (FastAPI's own load from a CDN)
    app = FastAPI(
        title="maskops",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = s
    app.state.metrics = metrics
    app.state.service = service
    app.state.keys = keys
    app.state.limiter = make_rate_limiter(s, keys)  # in memory, or a counter shared by replicas
    app.state.auth_guard = AuthGuard(s.auth_failures_per_minute)  # invalid keys per client address
    app.state.prediction_store = None  # started in lifespan (maskops.serve.recording)
    metrics.monitor.watch(lambda: getattr(app.state.prediction_store, "engine", None))
    app.state.monitor = None  # started in lifespan with MASKOPS_MONITOR_CONFIG (maskops.monitor.runner)

    install_error_handlers(app)
    for r in (health, detect, classify, models, monitoring, feedback, review, stream, compat, pages, docs):
        app.include_router(r.router)
    app.include_router(dashboard.router)  # /monitor and /v1/monitor/*
    # before /static, which would otherwise take /static/vendor/... too
    app.mount(docs.VENDOR_URL, StaticFiles(directory=docs.VENDOR_DIR), name="vendor")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    if s.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=s.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    # outermost: request id and size limit apply to everything, CORS preflights included
    app.add_middleware(
        RequestContextMiddleware,
        max_body=s.max_request_bytes,
        metrics=metrics,
        body_timeout=s.request_body_timeout_s,
    )
    return app
