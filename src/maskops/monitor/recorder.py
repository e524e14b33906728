"""The prediction store as a running part of a process: the engine plus its writer.

``PredictionStore.from_settings(settings)`` is what the service (and ``watch``/``detect`` with
``--log-to``) starts: it migrates the schema (or, when the database is down at startup, leaves that
to the writer's first write), starts the writer thread and takes records with ``record``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from maskops.config import Settings
from maskops.monitor.capture import HardCasePolicy, detector_version
from maskops.monitor.db import make_engine, upgrade
from maskops.monitor.records import PredictionRecord
from maskops.monitor.writer import UNREACHABLE, StoreWriter, WriterStatus

logger = logging.getLogger(__name__)


def hard_case_policy(settings: Settings) -> HardCasePolicy | None:
    """The crops policy of ``MASKOPS_STORE_FACES`` (None: no pixels are kept)."""
    if settings.store_faces != "hard":
        return None
    return HardCasePolicy(confidence=settings.hard_case_confidence, rate=settings.hard_case_rate)


def spool_dir(work_dir: Path) -> Path:
    """The durable spool of a work dir (one process writes it at a time)."""
    return Path(work_dir) / "monitor" / "spool"


class PredictionStore:
    """Engine + writer; ``record`` never blocks on the database."""

    def __init__(
        self,
        url: str,
        spool: Path,
        *,
        registry: CollectorRegistry | None = None,
        hard_cases: HardCasePolicy | None = None,
        **writer_options: object,
    ) -> None:
        self.url = url
        self.hard_cases = hard_cases  # crops of hard cases are kept only with a policy
        self.detector_version: str | None = None  # set by the process that knows its detector
        self.engine: Engine = make_engine(url)
        self._migrated = False
        self.writer = StoreWriter(
            self.engine,
            spool,
            registry=registry,
            prepare=self.migrate,
            **writer_options,  # type: ignore[arg-type]
        )

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> PredictionStore:
        """The store of ``settings``: its URL, the work dir's spool and the hard-case policy."""
        return cls(
            settings.store_url(),
            spool_dir(settings.work_dir),
            hard_cases=hard_case_policy(settings),
            **options,
        )

    def migrate(self) -> None:
        if not self._migrated:
            upgrade(self.engine)
            self._migrated = True

    def start(self) -> PredictionStore:
        """Migrate (when the database answers) and start the writer."""
        try:
            self.migrate()
        except UNREACHABLE as exc:
            logger.error(
                "prediction store %s unreachable at startup (%s); records are spooled until it answers",
                self.engine.url.render_as_string(hide_password=True),
                str(exc).splitlines()[0],
            )
        self.writer.start()
        return self

    def stop(self) -> None:
        self.writer.stop()
        self.engine.dispose()

    def __enter__(self) -> PredictionStore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, record: PredictionRecord) -> None:
        self.writer.submit(record)

    def status(self) -> WriterStatus:
        return self.writer.status()


class RunRecorder:
    """The records of one command-line run (``maskops detect`` / ``watch`` with ``--log-to``).

    Each image or frame gets the id ``<source>-<run id>-<n>``. The run's spool is
    ``<work_dir>/monitor/spool-<source>``: what a run could not write (database down at its end)
    is replayed by the next run of the same command.

    Args:
        url: the store (a ``MASKOPS_DATABASE_URL``-style URL).
        work_dir: where the spool lives.
        source: ``detect`` or ``watch``.
        site: the site or camera tag of every record.
        model_path: the classifier file (its sha256 prefix is the model version).
        detector: the face detector's name.
    """

    def __init__(
        self,
        url: str,
        work_dir: Path,
        source: str,
        *,
        site: str | None = None,
        model_path: Path | None = None,
        detector: str | None = None,
    ) -> None:
        from maskops.data.images import sha256_file
        from maskops.monitor.db import parse_database_url

        parse_database_url(url, name="--log-to")  # a malformed URL stops the run before any work
        self.source = source
        self.site = site
        self.detector = detector
        self.model_name = model_path.stem if model_path else None
        self.model_version = sha256_file(model_path)[:12] if model_path and model_path.is_file() else None
        self.detector_version = detector_version(detector, Settings().yunet_path)
        self.run_id = uuid.uuid4().hex[:12]
        self.count = 0
        self.store = PredictionStore(url, Path(work_dir) / "monitor" / f"spool-{source}").start()

    def add(
        self,
        result: Any,
        *,
        width: int,
        height: int,
        timings_ms: Mapping[str, float],
        image: np.ndarray | None = None,
    ) -> None:
        """Record one image's ``FaceResult`` (quality features when ``image`` is given)."""
        from maskops.monitor.capture import build_record
        from maskops.monitor.features import image_quality

        self.count += 1
        self.store.record(
            build_record(
                result,
                result.class_names,
                request_id=f"{self.source}-{self.run_id}-{self.count}",
                source=self.source,
                width=width,
                height=height,
                latency_ms=sum(timings_ms.values()),
                stages_ms=timings_ms,
                quality=image_quality(image).as_dict() if image is not None else None,
                site=self.site,
                model_name=self.model_name,
                model_version=self.model_version,
                detector=self.detector,
                detector_version=self.detector_version,
            )
        )

    def close(self) -> WriterStatus:
        """Write what is queued (or spool it) and stop; returns the writer's last status."""
        self.store.writer.stop()  # drains the queue into the store, or the spool when it is down
        status = self.store.status()
        self.store.stop()
        return status
