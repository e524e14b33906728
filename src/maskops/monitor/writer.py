"""The store writer: records leave the request path through a bounded queue to one thread that
commits them in batches.

When the database is unreachable, batches go to the durable local spool (``Spool``) and are
replayed in order once it answers again; new records keep going to the spool until it is empty, so
the store receives them in arrival order. A full queue also overflows into the spool (on the
caller's thread), so a record is dropped only when the spool itself cannot be written (disk full):
that sets ``degraded`` with the reason and logs an error.

Counters (Prometheus, in the registry given): ``maskops_store_records_logged``, ``_spooled``,
``_replayed``, ``_dropped``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError

from maskops.monitor.records import PredictionRecord
from maskops.monitor.spool import Spool
from maskops.monitor.store import write_records

logger = logging.getLogger(__name__)

_STOP = object()
# errors meaning "the database is not there": anything else is a refused record
UNREACHABLE = (OperationalError, InterfaceError, DisconnectionError)


@dataclass(frozen=True)
class WriterStatus:
    """What ``/ready`` and ``/metrics`` show of the writer."""

    running: bool
    database: str  # "up", "down" or "unknown" (nothing written yet)
    queued: int
    spooled_bytes: int
    degraded: str | None  # reason, when records are being dropped
    last_error: str | None


class WriterCounters:
    """The writer's Prometheus counters, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.logged = Counter("maskops_store_records_logged", "records committed to the store", registry=r)
        self.spooled = Counter(
            "maskops_store_records_spooled", "records written to the local spool (database down)", registry=r
        )
        self.replayed = Counter(
            "maskops_store_records_replayed", "spooled records committed to the store later", registry=r
        )
        self.dropped = Counter(
            "maskops_store_records_dropped", "records lost: the spool could not be written", registry=r
        )
        self.rejected = Counter(
            "maskops_store_records_rejected", "records the database refused (a bug: see the log)", registry=r
        )
        self.queue = Gauge("maskops_store_queue", "records waiting for the writer", registry=r)
        self.degraded = Gauge("maskops_store_degraded", "1 while records are being dropped", registry=r)


class StoreWriter:
    """One background thread writing ``PredictionRecord`` batches into the store.

    Args:
        engine: the store (already migrated: ``maskops.monitor.db.open_store``).
        spool_dir: folder of the durable spool.
        max_queue: records held in memory; beyond it ``submit`` spools on the caller's thread.
        batch_size: records per transaction.
        flush_interval: seconds the writer waits to fill a batch before committing a partial one.
        retry_interval: seconds between attempts to reach a database that is down.
        registry: where the counters are registered (each app has its own).
        counters: counters made beforehand (an app that starts its writer more than once).
        prepare: run once before the first write, retried until the database answers (migrations
            of a database that was down at startup).
    """

    def __init__(
        self,
        engine: Engine,
        spool_dir: Path,
        *,
        max_queue: int = 10_000,
        batch_size: int = 256,
        flush_interval: float = 0.2,
        retry_interval: float = 1.0,
        registry: CollectorRegistry | None = None,
        counters: WriterCounters | None = None,
        prepare: Callable[[], object] | None = None,
    ) -> None:
        self.engine = engine
        self._prepare = prepare
        self.spool = Spool(spool_dir)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.counters = counters if counters is not None else WriterCounters(registry)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._db_up: bool | None = None
        self._degraded: str | None = None
        self._last_error: str | None = None
        self._next_retry = 0.0

    # --- lifecycle
    def start(self) -> StoreWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="maskops-store-writer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (to the store, or the spool when it is down) and stop the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            # stuck on the database: what is still queued goes to the spool from here
            leftover: list[PredictionRecord] = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._queue.task_done()
                if item is not _STOP:
                    leftover.append(item)  # type: ignore[arg-type]
            self._to_spool(leftover)
            logger.error(
                "store writer did not stop within %.0f s; %d queued record(s) spooled", timeout, len(leftover)
            )
        self._thread = None

    def __enter__(self) -> StoreWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request path
    def submit(self, record: PredictionRecord) -> None:
        """Queue ``record`` for the store; never blocks on the database.

        A full queue spools the record right away instead of waiting.
        """
        try:
            self._queue.put_nowait(record)
            self.counters.queue.inc()
        except queue.Full:
            self._to_spool([record])

    def status(self) -> WriterStatus:
        return WriterStatus(
            running=self._thread is not None and self._thread.is_alive(),
            database={None: "unknown", True: "up", False: "down"}[self._db_up],
            queued=self._queue.qsize(),
            spooled_bytes=self.spool.pending_bytes(),
            degraded=self._degraded,
            last_error=self._last_error,
        )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and nothing waits in the spool while the database is up;
        True when it got there within ``timeout`` (tests and benches use it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0 and not self.spool:
                return True
            time.sleep(0.01)
        return False

    # --- writer thread
    def _take_batch(self) -> tuple[list[PredictionRecord], bool]:
        batch: list[PredictionRecord] = []
        stop = False
        timeout = self.retry_interval if self.spool else self.flush_interval
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return batch, stop
        deadline = time.monotonic() + self.flush_interval
        while True:
            if item is _STOP:
                stop = True
                self._queue.task_done()
            else:
                batch.append(item)  # type: ignore[arg-type]
            if stop or len(batch) >= self.batch_size:
                break
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
        return batch, stop

    def _run(self) -> None:
        while True:
            batch, stop = self._take_batch()
            try:
                self._handle(batch)
            except Exception:  # the thread must live on: a bad batch is spooled and logged
                logger.exception("store writer: unexpected error; batch spooled")
                self._to_spool(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
                self.counters.queue.dec(len(batch))
            if stop:
                return

    def _handle(self, batch: list[PredictionRecord]) -> None:
        if self.spool and not self._replay():
            self._to_spool(batch)  # keep the order: nothing overtakes the spool
            return
        if not batch:
            return
        try:
            self._write(batch)
        except UNREACHABLE as exc:
            self._down(exc)
            self._to_spool(batch)
            return
        self._up()
        self.counters.logged.inc(len(batch))
        self._clear_degraded()

    def _replay(self) -> bool:
        """Replay the spool when the database may be back; True when it is empty afterwards."""
        if self._db_up is False and time.monotonic() < self._next_retry:
            return False

        def write(records: list[PredictionRecord]) -> None:
            self._write(records)
            self.counters.replayed.inc(len(records))

        try:
            n = self.spool.replay(write, chunk=self.batch_size)
        except UNREACHABLE as exc:
            self._down(exc)
            return False
        self._up()
        if n:
            logger.info("store writer: replayed %d spooled record(s)", n)
        return not self.spool

    def _write(self, records: Sequence[PredictionRecord]) -> None:
        """Write a batch; if the database refuses it (not a connection problem), write the records
        one by one so a single bad record cannot hold up the others or the spool forever.

        Raises:
            OperationalError, InterfaceError, DisconnectionError: the database is unreachable.
        """
        if self._prepare is not None:
            self._prepare()
            self._prepare = None
        try:
            write_records(self.engine, records)
            return
        except UNREACHABLE:
            raise
        except SQLAlchemyError as exc:
            logger.error("store writer: batch refused (%s); writing its records one by one", exc)
        for record in records:
            try:
                write_records(self.engine, [record])
            except UNREACHABLE:
                raise
            except SQLAlchemyError as exc:
                self.counters.rejected.inc()
                logger.error("store writer: record %s refused: %s", record.request_id, exc)

    def _up(self) -> None:
        if self._db_up is False:
            logger.warning("prediction store reachable again")
        self._db_up = True

    def _down(self, exc: Exception) -> None:
        self._last_error = str(exc).splitlines()[0][:300]
        if self._db_up is not False:
            logger.error("prediction store unreachable, spooling records: %s", self._last_error)
        self._db_up = False
        self._next_retry = time.monotonic() + self.retry_interval

    def _to_spool(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        try:
            self.spool.append(records)
        except OSError as exc:
            self.counters.dropped.inc(len(records))
            # the file's name only: the reason is shown on /ready, the server's path goes to the log
            reason = (
                f"spool {self.spool.path.name} cannot be written ({exc.strerror or exc}): records are dropped"
            )
            if self._degraded != reason:
                logger.error("prediction store degraded: %s (%s)", reason, self.spool.path)
            self._degraded = reason
            self.counters.degraded.set(1)
            return
        self.counters.spooled.inc(len(records))
        self._clear_degraded()

    def _clear_degraded(self) -> None:
        if self._degraded is not None:
            logger.warning("prediction store: records are kept again")
            self._degraded = None
            self.counters.degraded.set(0)
