"""The prediction store as a running part of a process: the engine plus its writer.

``PredictionStore.from_settings(settings)`` is what the service (and ``watch``/``detect`` with
``--log-to``) starts: it migrates the schema (or, when the database is down at startup, leaves that
to the writer's first write), starts the writer thread and takes records with ``record``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from maskops.config import Settings
from maskops.monitor.db import make_engine, upgrade
from maskops.monitor.records import PredictionRecord
from maskops.monitor.writer import UNREACHABLE, StoreWriter, WriterStatus

logger = logging.getLogger(__name__)


def spool_dir(work_dir: Path) -> Path:
    """The durable spool of a work dir (one process writes it at a time)."""
    return Path(work_dir) / "monitor" / "spool"


class PredictionStore:
    """Engine + writer; ``record`` never blocks on the database."""

    def __init__(
        self, url: str, spool: Path, *, registry: CollectorRegistry | None = None, **writer_options: object
    ) -> None:
        self.url = url
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
    def from_settings(
        cls, settings: Settings, *, registry: CollectorRegistry | None = None
    ) -> PredictionStore:
        return cls(settings.store_url(), spool_dir(settings.work_dir), registry=registry)

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
