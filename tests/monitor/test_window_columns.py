"""The store window read from the numeric probability columns gives exactly what decoding every
face's JSON gave (the previous reading, kept below as the oracle), and so the same drift report;
on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from monitor_helpers import make_record
from sqlalchemy import Engine, and_, select

from maskops.inference.projection import embedding_bytes, embedding_from_bytes
from maskops.monitor import window as window_module
from maskops.monitor.feedback import add_feedback
from maskops.monitor.records import FaceRecord, PredictionRecord, utc_naive
from maskops.monitor.reference import build_reference
from maskops.monitor.schema import PROBABILITY_COLUMNS, FaceRow, FeedbackRow, RequestRow
from maskops.monitor.store import write_records
from maskops.monitor.window import CLASS_MIX, IMAGE_FEATURES, FaceWindow, drift_report, load_window
from maskops.types import MaskClass

T0 = datetime(2026, 12, 3, 8, 0, 0)
NAMES = MaskClass.names()


def _json_window(
    engine: Engine, *, since: datetime | None = None, last: int | None = None, site: str | None = None
) -> FaceWindow:
    """The window as it was read before the probability columns: every face's JSON decoded, the
    requests of a ``last`` window fetched by id in chunks of 500 sorted ids."""
    names = MaskClass.names()
    site_filter = [RequestRow.site == site] if site is not None else []
    req_cols = (
        RequestRow.created_at,
        RequestRow.n_faces,
        RequestRow.brightness,
        RequestRow.contrast,
        RequestRow.sharpness,
        RequestRow.saturation,
    )
    face_cols = (
        FaceRow.request_id,
        FaceRow.confidence,
        FaceRow.size,
        FaceRow.face_score,
        FaceRow.label,
        FaceRow.embedding,
    )
    on = and_(FeedbackRow.request_id == FaceRow.request_id, FeedbackRow.face_index == FaceRow.face_index)
    query = (
        select(*face_cols, FaceRow.probabilities, FeedbackRow.true_label)
        .select_from(FaceRow)
        .outerjoin(FeedbackRow, on)
        .join(RequestRow, RequestRow.request_id == FaceRow.request_id)
    )
    with engine.connect() as conn:
        if since is not None:
            since = utc_naive(since)
            reqs = list(
                conn.execute(select(*req_cols).where(RequestRow.created_at >= since, *site_filter)).all()
            )
            faces = conn.execute(query.where(RequestRow.created_at >= since, *site_filter)).all()
        else:
            faces = conn.execute(
                query.where(*site_filter)
                .order_by(RequestRow.created_at.desc(), FaceRow.request_id, FaceRow.face_index)
                .limit(last)
            ).all()
            ids = sorted({f.request_id for f in faces})
            reqs = []
            for i in range(0, len(ids), 500):
                reqs += conn.execute(
                    select(*req_cols).where(RequestRow.request_id.in_(ids[i : i + 500]))
                ).all()

    def floats(values: list[Any]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    numeric = {
        "confidence": floats([f.confidence for f in faces]),
        "face_size": floats([f.size for f in faces]),
        "face_score": floats([f.face_score for f in faces]),
        **{q: floats([getattr(r, q) for r in reqs]) for q in IMAGE_FEATURES if q != "face_count"},
        "face_count": floats([r.n_faces for r in reqs]),
    }
    probs = np.array([[float(f.probabilities.get(c, 0.0)) for c in names] for f in faces], dtype=np.float64)
    arrays = [embedding_from_bytes(f.embedding) for f in faces if f.embedding]
    embeddings = None
    if arrays:
        width = Counter(len(a) for a in arrays).most_common(1)[0][0]
        embeddings = np.stack([a for a in arrays if len(a) == width]).astype(np.float32)
    times = [r.created_at for r in reqs]
    return FaceWindow(
        start=min(times) if times else None,
        end=max(times) if times else None,
        n_requests=len(reqs),
        n_faces=len(faces),
        numeric=numeric,
        categorical={CLASS_MIX: [f.label for f in faces]},
        probabilities=probs.reshape(-1, len(names)),
        class_names=names,
        true_labels=[f.true_label for f in faces],
        embeddings=embeddings,
    )


def _records(n: int = 800, *, complete: bool = False) -> list[PredictionRecord]:
    """Requests with 0-4 faces, two sites and untagged, ties in time (ids break them), missing
    quality, faces without a detector score, embeddings of two widths; unless ``complete``, faces
    lacking a class probability or with rounded ones (no estimate for such a window)."""
    rng = np.random.default_rng(3)
    records = []
    for i in range(n):
        k = int(rng.integers(0, 5))
        faces = []
        for j in range(k):
            p = rng.dirichlet([6.0, 2.0, 0.7])
            probs = {c: float(v) for c, v in zip(NAMES, p, strict=True)}
            if (i + j) % 17 == 0 and not complete:
                del probs[NAMES[2]]
            if (i + j) % 29 == 0 and not complete:
                probs = {c: round(v, 4) for c, v in probs.items()}
            width = 16 if (i + j) % 9 == 0 else 24
            emb = None if (i + j) % 5 == 0 else embedding_bytes(rng.normal(0.0, 1.0, width))
            side = float(rng.lognormal(3.5, 0.5))
            faces.append(
                FaceRecord(
                    box=(1.0, 2.0, 1.0 + side, 2.0 + side * 1.2),
                    face_score=None if (i + j) % 11 == 0 else float(rng.uniform(0.3, 1.0)),
                    probabilities=probs,
                    label=NAMES[int(p.argmax())] if p.max() >= 0.5 else "uncertain",
                    embedding=emb,
                )
            )
        quality = {
            "brightness": float(rng.beta(5, 5)),
            "contrast": float(rng.uniform(0.1, 0.3)),
            "sharpness": float(rng.lognormal(6, 0.7)),
            "saturation": float(rng.beta(3, 5)),
        }
        if i % 13 == 0:
            del quality["sharpness"]
        base = make_record(f"q{(i * 7919) % n:05d}", created_at=T0 + timedelta(seconds=i // 3))
        records.append(
            dataclasses.replace(base, site=(None, "gate", "hall")[i % 3], quality=quality, faces=tuple(faces))
        )
    return records


@pytest.fixture
def filled(store: Engine) -> Engine:
    records = _records()
    write_records(store, records)
    with_faces = [r for r in records if r.faces]
    for k, r in enumerate(with_faces[::7]):
        add_feedback(store, request_id=r.request_id, face_index=0, true_label=NAMES[k % 3])
    add_feedback(store, request_id=with_faces[1].request_id, face_index=0, true_label="not_a_face")
    return store


def _assert_same(new: FaceWindow, old: FaceWindow, dialect: str, case: str) -> None:
    """Exactly equal. The one freedom: on PostgreSQL the old read's request rows of a ``last`` window
    came in whatever order the plan of its ``IN`` queries gave (SQLite: sorted by id, as now), so
    there the per-request features are compared as multisets."""
    assert (new.start, new.end, new.n_requests, new.n_faces) == (
        old.start,
        old.end,
        old.n_requests,
        old.n_faces,
    )
    assert list(new.numeric) == list(old.numeric)
    for name, values in old.numeric.items():
        got = new.numeric[name]
        if dialect == "postgresql" and name in IMAGE_FEATURES:
            got, values = np.sort(got), np.sort(values)
        np.testing.assert_array_equal(got, values, err_msg=f"{case}: {name}", strict=True)
    assert new.categorical == old.categorical
    np.testing.assert_array_equal(new.probabilities, old.probabilities, strict=True)
    assert new.class_names == old.class_names
    assert new.true_labels == old.true_labels
    np.testing.assert_array_equal(new.label_ids(), old.label_ids(), strict=True)
    if old.embeddings is None:
        assert new.embeddings is None
    else:
        assert new.embeddings is not None
        np.testing.assert_array_equal(new.embeddings, old.embeddings, strict=True)


def test_last_windows_are_what_the_json_gave(filled: Engine) -> None:
    for site in (None, "gate"):
        for last in (1, 2, 3, 50, 501, 1_000, 10_000):
            new, old = load_window(filled, last=last, site=site), _json_window(filled, last=last, site=site)
            _assert_same(new, old, filled.dialect.name, f"last={last} site={site}")


def test_since_windows_are_what_the_json_gave(filled: Engine) -> None:
    for site in (None, "hall"):
        for since in (T0, T0 + timedelta(seconds=200), T0 + timedelta(hours=1)):
            new, old = (
                load_window(filled, since=since, site=site),
                _json_window(filled, since=since, site=site),
            )
            _assert_same(new, old, filled.dialect.name, f"since={since} site={site}")


def test_drift_report_is_unchanged(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    filled = store
    write_records(filled, _records(complete=True))
    reference = _json_window(filled, last=400)
    profile = build_reference(
        reference.numeric, reference.categorical, embeddings=reference.embeddings, accuracy=0.9
    )
    new = drift_report(filled, profile, last=1_000)
    assert new.window.n_faces == 1_000 and new.estimate is not None
    assert {f.feature for f in new.features} >= {"brightness", "confidence", "label", "embedding"}
    monkeypatch.setattr(window_module, "load_window", _json_window)
    old = drift_report(filled, profile, last=1_000)
    assert json.dumps(new.to_dict(), sort_keys=True) == json.dumps(old.to_dict(), sort_keys=True)


def test_every_insert_writes_the_probability_columns(store: Engine) -> None:
    records = [make_record("a", ("with_mask", "uncertain")), make_record("b", ("without_mask",))]
    partial = FaceRecord(
        box=(0, 0, 9, 9), face_score=None, probabilities={"with_mask": 0.25}, label="uncertain"
    )
    records.append(dataclasses.replace(make_record("c"), faces=(partial,)))
    write_records(store, records)
    cols = [FaceRow.__table__.c[c] for c in PROBABILITY_COLUMNS.values()]
    with store.connect() as conn:
        rows = conn.execute(
            select(FaceRow.probabilities, *cols).order_by(FaceRow.request_id, FaceRow.face_index)
        ).all()
    assert [list(r[1:]) for r in rows] == [[r[0].get(n) for n in NAMES] for r in rows]
    assert list(rows[-1][1:]) == [0.25, None, None]
    window = load_window(store, last=10)
    assert window.probabilities[window.categorical[CLASS_MIX].index("uncertain")].tolist() in (
        [0.4, 0.35, 0.25],
        [0.25, 0.0, 0.0],
    )


def test_embedding_blob_of_a_partial_value_is_named(store: Engine) -> None:
    face = FaceRecord(box=(0, 0, 9, 9), face_score=0.9, probabilities={"with_mask": 1.0}, label="with_mask")
    write_records(
        store,
        [dataclasses.replace(make_record("e"), faces=(dataclasses.replace(face, embedding=b"\x00" * 5),))],
    )
    with pytest.raises(ValueError, match=r"faces\.embedding: a blob of 5 bytes"):
        load_window(store, last=10)


def test_writer_and_spool_replay_write_the_probability_columns(store: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from maskops.monitor.spool import Spool
    from maskops.monitor.writer import StoreWriter

    Spool(tmp_path / "spool").append([make_record("spooled", ("without_mask",))])  # replayed first
    with StoreWriter(store, tmp_path / "spool", flush_interval=0.05) as writer:
        writer.submit(make_record("queued", ("mask_weared_incorrect", "uncertain")))
        assert writer.flush()
    cols = [FaceRow.__table__.c[c] for c in PROBABILITY_COLUMNS.values()]
    with store.connect() as conn:
        rows = conn.execute(select(FaceRow.request_id, FaceRow.probabilities, *cols)).all()
    assert sorted(r[0] for r in rows) == ["queued", "queued", "spooled"]
    assert all(list(r[2:]) == [r[1][n] for n in NAMES] for r in rows)
