"""A durable local spool for records the database could not take: JSON lines, fsynced per batch.

Appends go to the end of ``spool.jsonl``; replay reads from the committed offset (kept in
``spool.offset``, fsynced after each replayed chunk, or in memory while the disk is full) so a
crash during replay resumes where it stopped. Once everything is replayed both files are emptied. A line cut short by a crash in the
middle of an append is skipped with a warning (only the last line can be).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from maskops.monitor.records import PredictionRecord

logger = logging.getLogger(__name__)


class Spool:
    """Records waiting for the database, in arrival order. Safe to use from several threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "spool.jsonl"
        self.offset_path = self.directory / "spool.offset"
        self._lock = threading.Lock()
        self._tail_checked = False
        self._unsaved: int | None = None  # replay offset the disk had no room to save

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Append ``records`` and fsync before returning.

        Raises:
            OSError: the spool cannot be written (disk full, read-only, ...); nothing of ``records``
                is kept then: what a failed append wrote is cut off again, so the records are
                either all spooled or all dropped (a crash mid-append can still leave a cut last
                line, skipped on replay).
        """
        if not records:
            return
        data = "".join(r.to_json() + "\n" for r in records).encode("utf-8")
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                # a crash mid-append left a cut line: end it so the next record starts afresh
                if not self._tail_checked and self._ends_cut():
                    data = b"\n" + data
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError:
                    self._truncate(fd, size)
                    raise
                self._tail_checked = True
            finally:
                os.close(fd)

    def _truncate(self, fd: int, size: int) -> None:
        """Cut what a failed append wrote (a full disk takes part of a batch)."""
        try:
            os.ftruncate(fd, size)
        except OSError as exc:  # the next append ends the cut line instead
            self._tail_checked = False
            logger.warning("spool %s: could not cut a partly written append: %s", self.path, exc)

    def _ends_cut(self) -> bool:
        try:
            with open(self.path, "rb") as fh:
                if fh.seek(0, os.SEEK_END) == 0:
                    return False
                fh.seek(-1, os.SEEK_END)
                return fh.read(1) != b"\n"
        except OSError:
            return False

    def _offset(self) -> int:
        if self._unsaved is not None:
            return self._unsaved
        try:
            return int(self.offset_path.read_text(encoding="ascii").strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _save_offset(self, offset: int) -> None:
        tmp = self.offset_path.with_suffix(".tmp")
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(str(offset))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.offset_path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def _advance(self, offset: int) -> None:
        """Save the replay offset; on a full disk keep it in memory so the replay goes on (it empties
        the spool, which frees the disk). A restart before that replays from the last saved offset:
        the store skips the request ids it already holds, so nothing is stored twice."""
        try:
            self._save_offset(offset)
        except OSError as exc:
            if self._unsaved is None:
                logger.warning(
                    "spool %s: the replay offset cannot be saved (%s); kept in memory until the spool "
                    "is replayed",
                    self.path,
                    exc.strerror or exc,
                )
            self._unsaved = offset
            return
        self._unsaved = None

    def pending_bytes(self) -> int:
        try:
            return max(0, self.path.stat().st_size - self._offset())
        except FileNotFoundError:
            return 0

    def __bool__(self) -> bool:
        return self.pending_bytes() > 0

    def replay(self, write: Callable[[list[PredictionRecord]], object], chunk: int = 256) -> int:
        """Hand the spooled records to ``write`` in order, ``chunk`` at a time; returns how many.

        The offset advances after each chunk ``write`` returned for, so an exception from ``write``
        (the database is down again) leaves the rest for the next replay.
        """
        replayed = 0
        while True:
            with self._lock:
                if not self.path.exists():
                    return replayed
                offset = self._offset()
                with open(self.path, "rb") as fh:
                    fh.seek(offset)
                    lines = [fh.readline() for _ in range(chunk)]
                lines = [line for line in lines if line]
                if not lines:
                    # fully replayed: start the files afresh (appends wait for the lock)
                    self.path.unlink()
                    self.offset_path.unlink(missing_ok=True)
                    self._unsaved = None
                    return replayed
            records = []
            for line in lines:
                if not line.strip():
                    continue
                if not line.endswith(b"\n"):
                    logger.warning("spool %s: skipping a partly written last record", self.path)
                    continue
                try:
                    records.append(PredictionRecord.from_json(line.decode("utf-8")))
                except (ValueError, UnicodeDecodeError) as exc:
                    logger.warning("spool %s: skipping an unreadable record: %s", self.path, exc)
            if records:
                write(records)
            with self._lock:
                self._advance(offset + sum(len(line) for line in lines))
            replayed += len(records)
