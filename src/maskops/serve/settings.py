"""Serving settings: the process-wide ``Settings`` plus the API's limits, security and pool sizes.

Every field reads a ``MASKOPS_*`` environment variable (e.g. ``MASKOPS_MAX_BATCH=32``,
``MASKOPS_AUTH=true``, ``MASKOPS_CORS_ORIGINS='["https://example.org"]'``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from maskops.config import Settings
from maskops.detect.base import DEFAULT_DETECTOR


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


class ServeSettings(Settings):
    """Settings of ``maskops serve`` (and ``create_app``)."""

    # --- models
    face_model: str = Field(
        default="facemask", description="stem of the face-crop classifier in models_dir (<stem>.onnx + card)"
    )
    detector: str = Field(
        default=DEFAULT_DETECTOR,
        description="face detector name (see maskops.detect.registry); yunet_cal = YuNet with its box calibration",
    )
    detector_options: dict[str, Any] = Field(
        default_factory=dict, description='keyword arguments of the detector, e.g. {"score_threshold": 0.5}'
    )
    model_source: Literal["dir", "registry"] = Field(
        default="dir",
        description="where /v1/models/reload reads models from: models_dir, or the MLflow registry's champion",
    )
    # --- inference pool
    workers: int = Field(
        default_factory=_default_workers, ge=1, description="inference threads (default: one per core)"
    )
    onnx_threads: int = Field(default=1, ge=1, description="ONNX Runtime intra-op threads per call")
    opencv_threads: int | None = Field(
        default=1, ge=0, description="cv2.setNumThreads while serving (None: leave OpenCV's default)"
    )
    max_queue: int = Field(
        default=256, ge=1, description="jobs waiting for a worker before requests get 503 overloaded"
    )
    warm_up: bool = Field(default=True, description="run a blank image through each worker at startup")
    timeout_s: float = Field(default=30.0, gt=0, description="processing timeout per image")
    shutdown_timeout_s: int = Field(
        default=30,
        ge=1,
        description="on SIGTERM, seconds the requests in flight get to finish before they are cancelled",
    )
    idle_trim_s: float = Field(
        default=10.0,
        ge=0,
        description="after this many seconds without a request, hand the heap's free memory back to the "
        "OS once (glibc malloc_trim; 0: never)",
    )
    # --- limits
    max_request_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="request body limit")
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="one image's byte limit")
    max_image_pixels: int = Field(
        default=40_000_000, ge=1, description="width x height limit, checked from the header before decoding"
    )
    max_batch: int = Field(default=16, ge=1, description="images per /v1/detect/batch request")
    # --- security
    auth: bool = Field(default=False, description="require API keys (X-API-Key or Authorization: Bearer)")
    keys_db: Path | None = Field(default=None, description="API key store (default <work_dir>/serve/keys.db)")
    api_keys: SecretStr | None = Field(
        default=None,
        description="API keys given to the process, name:role:key or name:role:key:rate entries separated by "
        "commas (role predict or admin, key at least 32 characters from `maskops keys entry`); hashed at "
        "startup, never logged; checked before the key store",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="a secret file of API keys (a mounted Kubernetes Secret or compose secret), one "
        "name:role:key[:rate] entry a line, # comments; read at startup",
    )
    rate_limit_per_s: float = Field(
        default=0.0, ge=0, description="token-bucket refill per key (or per client when auth is off); 0 = off"
    )
    rate_limit_burst: int = Field(default=20, ge=1, description="token-bucket capacity")
    auth_failures_per_minute: int = Field(
        default=10,
        ge=0,
        description="invalid API keys per client address per minute before that address gets 429; 0 = off",
    )
    request_body_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="time allowed to receive a request body; a slower client gets 408 and is disconnected",
    )
    cors_origins: list[str] = Field(default_factory=list, description="allowed CORS origins ([] = no CORS)")
    # --- monitoring
    monitor_config: Path | None = Field(
        default=None,
        description="monitoring config (e.g. configs/monitor.yaml): drift checks and alert rules run in the "
        "background every interval of the config; unset = off (maskops monitor run does the same checks)",
    )
    # --- logs
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="json, text, or auto: text on a terminal, JSON otherwise"
    )

    @field_validator("api_keys", "api_keys_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, v: Any) -> Any:
        """``MASKOPS_API_KEYS=`` (e.g. compose's ``${MASKOPS_API_KEYS:-}``) means no keys."""
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _check(self) -> ServeSettings:
        if self.max_image_bytes > self.max_request_bytes:
            self.max_image_bytes = self.max_request_bytes
        return self

    @property
    def keys_path(self) -> Path:
        return self.keys_db or self.work_dir / "serve" / "keys.db"

    @classmethod
    def from_settings(cls, settings: Settings | None) -> ServeSettings:
        """``settings`` as ``ServeSettings`` (a plain ``Settings`` keeps its values; the rest from env)."""
        if settings is None:
            return cls()
        if isinstance(settings, ServeSettings):
            return settings
        return cls(**settings.model_dump())
