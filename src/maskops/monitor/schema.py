"""The prediction store's tables (SQLAlchemy 2 declarative models).

- ``requests``: one row per served request (the request id is the primary key).
- ``faces``: one row per face of a request, keyed by (request id, face index); the class
  probabilities both as the JSON the classifier gave and as one numeric column per class
  (``PROBABILITY_COLUMNS``), which drift windows read without decoding JSON.
- ``feedback``: ground truth for a face (the latest answer for a face wins).
- ``monitor_checks`` / ``drift_results``: one row per monitoring check of a window (the label-free
  accuracy estimate beside the measured one) and one per feature tested in it.
- ``alert_states`` / ``alert_events``: the current state of each alert rule (per site where the rule
  is per site) and the history of firing and resolved notifications.
- ``api_keys`` / ``rate_limit_windows``: the serving keys and rate-limit counters when several
  replicas share a PostgreSQL store (``maskops.serve.keys``, ``maskops.serve.ratelimit``).
- ``hourly_requests`` / ``hourly_faces`` and ``daily_requests`` / ``daily_faces``: rollups the
  writer keeps in the same transaction as the rows, so business stats over millions of faces read
  a few thousand rows. Latency goes into
  log-spaced bins (``LATENCY_BIN_RATIO``) from which the percentiles are read.

Every time is naive UTC. The schema is created and changed only by the Alembic migrations in
``maskops/monitor/migrations``; ``tests/monitor/test_migrations.py`` checks they match these models.
"""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from maskops.types import MaskClass

LATENCY_BIN_RATIO = 1.05  # bin k holds latencies in [1.05**k, 1.05**(k+1)) ms: percentiles within 5 %
_MIN_BIN = -60  # ~0.05 ms and below share one bin


def latency_bin(ms: float) -> int:
    """The rollup bin of a latency in milliseconds."""
    if not ms > 0 or not math.isfinite(ms):
        return _MIN_BIN
    return max(_MIN_BIN, math.floor(math.log(ms) / math.log(LATENCY_BIN_RATIO)))


def bin_latency_ms(k: int) -> float:
    """The geometric middle of bin ``k``, in milliseconds."""
    return LATENCY_BIN_RATIO ** (k + 0.5)


# class name -> its probability column in ``faces`` (migration 0006); NULL when the face's
# probabilities have no such class
PROBABILITY_COLUMNS: dict[str, str] = {name: f"p_{name}" for name in MaskClass.names()}


class Base(DeclarativeBase):
    pass


class RequestRow(Base):
    __tablename__ = "requests"

    request_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    hour: Mapped[int] = mapped_column(Integer, comment="hours since 1970-01-01 UTC")
    source: Mapped[str] = mapped_column(String(16))
    site: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(64))
    detector: Mapped[str | None] = mapped_column(String(64))
    detector_version: Mapped[str | None] = mapped_column(String(64))
    latency_ms: Mapped[float] = mapped_column(Float)
    stages_ms: Mapped[dict[str, float]] = mapped_column(JSON)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    brightness: Mapped[float | None] = mapped_column(Float)
    contrast: Mapped[float | None] = mapped_column(Float)
    sharpness: Mapped[float | None] = mapped_column(Float)
    saturation: Mapped[float | None] = mapped_column(Float)
    n_faces: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_requests_site_hour", "site", "hour"),)


class FaceRow(Base):
    __tablename__ = "faces"

    request_id: Mapped[str] = mapped_column(
        String(80), ForeignKey("requests.request_id", ondelete="CASCADE"), primary_key=True
    )
    face_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    size: Mapped[float] = mapped_column(Float, comment="shorter side of the box, px")
    face_score: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float, comment="top calibrated probability")
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON)
    p_with_mask: Mapped[float | None] = mapped_column(Float, comment="calibrated probability of with_mask")
    p_without_mask: Mapped[float | None] = mapped_column(
        Float, comment="calibrated probability of without_mask"
    )
    p_mask_weared_incorrect: Mapped[float | None] = mapped_column(
        Float, comment="calibrated probability of mask_weared_incorrect"
    )
    label: Mapped[str] = mapped_column(String(64))
    uncertain_reason: Mapped[str | None] = mapped_column(String(64))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (Index("ix_faces_label", "label"),)


class FeedbackRow(Base):
    __tablename__ = "feedback"

    request_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    face_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    true_label: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    origin: Mapped[str] = mapped_column(String(16), comment="api or review")

    __table_args__ = (
        # a face's feedback goes with the face (prune, cascade)
        ForeignKeyConstraint(
            ["request_id", "face_index"],
            ["faces.request_id", "faces.face_index"],
            ondelete="CASCADE",
            name="fk_feedback_face",
        ),
    )


class HourlyRequests(Base):
    __tablename__ = "hourly_requests"

    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64), primary_key=True, comment="'' when untagged")
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    latency_bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer)

    # covering index (migration 0007): business stats read the rollups from the index alone
    __table_args__ = (Index("ix_hourly_requests_cover", "hour", "site", "source", "latency_bin", "requests"),)


class HourlyFaces(Base):
    __tablename__ = "hourly_faces"

    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64), primary_key=True, comment="'' when untagged")
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    faces: Mapped[int] = mapped_column(Integer)

    # covering index (migration 0007): business stats read the rollups from the index alone
    __table_args__ = (Index("ix_hourly_faces_cover", "hour", "site", "source", "label", "faces"),)


class DailyRequests(Base):
    """``hourly_requests`` summed per UTC day (day buckets read these: 24 times fewer rows)."""

    __tablename__ = "daily_requests"

    day: Mapped[int] = mapped_column(Integer, primary_key=True, comment="days since 1970-01-01 UTC")
    site: Mapped[str] = mapped_column(String(64), primary_key=True, comment="'' when untagged")
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    latency_bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer)

    # covering index (migration 0007): business stats read the rollups from the index alone
    __table_args__ = (Index("ix_daily_requests_cover", "day", "site", "source", "latency_bin", "requests"),)


class DailyFaces(Base):
    """``hourly_faces`` summed per UTC day."""

    __tablename__ = "daily_faces"

    day: Mapped[int] = mapped_column(Integer, primary_key=True, comment="days since 1970-01-01 UTC")
    site: Mapped[str] = mapped_column(String(64), primary_key=True, comment="'' when untagged")
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    faces: Mapped[int] = mapped_column(Integer)

    # covering index (migration 0007): business stats read the rollups from the index alone
    __table_args__ = (Index("ix_daily_faces_cover", "day", "site", "source", "label", "faces"),)


class FaceCropRow(Base):
    """The JPEG crop of a hard case (only with ``MASKOPS_STORE_FACES=hard``), for review."""

    __tablename__ = "face_crops"

    request_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    face_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        ForeignKeyConstraint(
            ["request_id", "face_index"],
            ["faces.request_id", "faces.face_index"],
            ondelete="CASCADE",
            name="fk_face_crops_face",
        ),
    )


class MonitorCheckRow(Base):
    """One monitoring check: a window of the store tested against the reference profile."""

    __tablename__ = "monitor_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    window_start: Mapped[datetime | None] = mapped_column(DateTime)
    window_end: Mapped[datetime | None] = mapped_column(DateTime)
    site: Mapped[str | None] = mapped_column(String(64))
    n_requests: Mapped[int] = mapped_column(Integer)
    n_faces: Mapped[int] = mapped_column(Integer)
    drifted: Mapped[bool] = mapped_column(Boolean)
    expected_accuracy: Mapped[float | None] = mapped_column(Float)
    accuracy_low: Mapped[float | None] = mapped_column(Float)
    accuracy_high: Mapped[float | None] = mapped_column(Float)
    measured_accuracy: Mapped[float | None] = mapped_column(Float)
    n_feedback: Mapped[int] = mapped_column(Integer, default=0)
    reference_accuracy: Mapped[float | None] = mapped_column(Float)
    report: Mapped[dict[str, object]] = mapped_column(JSON, comment="the full drift report")


class DriftResultRow(Base):
    """One feature's drift test inside a check."""

    __tablename__ = "drift_results"

    check_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("monitor_checks.id", ondelete="CASCADE"), primary_key=True
    )
    feature: Mapped[str] = mapped_column(String(64), primary_key=True)
    test: Mapped[str] = mapped_column(String(32))
    score: Mapped[float | None] = mapped_column(Float, comment="None: not enough data")
    threshold: Mapped[float] = mapped_column(Float)
    drifted: Mapped[bool] = mapped_column(Boolean)


class AlertStateRow(Base):
    """The current state of an alert rule for one key (a site, or '' for rules over all traffic)."""

    __tablename__ = "alert_states"

    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True, comment="'' when not per site")
    firing: Mapped[bool] = mapped_column(Boolean)
    since: Mapped[datetime] = mapped_column(DateTime, comment="when the current state began")
    last_notified_at: Mapped[datetime | None] = mapped_column(DateTime)
    incident_id: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)


class AlertEventRow(Base):
    """A notification: a rule started firing or resolved (both carry the incident id)."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    rule: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128), comment="'' when not per site")
    state: Mapped[str] = mapped_column(String(16), comment="firing or resolved")
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(String(1000))
    delivery: Mapped[dict[str, object]] = mapped_column(JSON, comment="channel -> outcome")


class ApiKeyRow(Base):
    """An API key of the service when the keys live in the shared database (``maskops.serve.keys``).

    Only the SHA-256 of the secret is stored; ``revoked_at`` set means refused from the next request.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    rate_per_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class RateWindowRow(Base):
    """Requests counted per rate-limit identity and fixed window, shared by every serving replica."""

    __tablename__ = "rate_limit_windows"

    ident: Mapped[str] = mapped_column(String(160), primary_key=True, comment="key:<id> or client:<host>")
    window_start: Mapped[int] = mapped_column(Integer, primary_key=True, comment="unix seconds")
    count: Mapped[int] = mapped_column(Integer)
