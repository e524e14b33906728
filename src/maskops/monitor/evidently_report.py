"""An Evidently data drift report of a store window against the reference profile, for users who
already read Evidently's reports.

Both sides become pandas DataFrames with one column per logged feature (the names of
``maskops.monitor.window``: ``confidence``, ``face_size``, ``face_score``, the image quality
features, ``face_count`` and the class mix ``label``):

- current (``window_frame``): a face feature holds one value per face of the window, an image
  feature one value per request; the shorter columns are padded with NaN, which Evidently's drift
  tests drop column by column (rows are not faces: read the frame column-wise);
- reference (``reference_frame``): the profile keeps sketches, not rows, so each numeric column is
  its sketch's stand-in sample (``NumericSketch.sample``, the same values ``maskops monitor drift``
  tests against) and the class mix is its counts scaled to the same number of rows.

Evidently is an optional extra: ``pip install 'maskops[monitor-report]'``. Its own column tests
and thresholds are used (its ``DataDriftPreset``), so its verdicts may differ from
``maskops monitor drift``'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskops.monitor.reference import SKETCH_SAMPLE, ReferenceProfile, probability_features
from maskops.monitor.window import CLASS_MIX, FaceWindow, load_window

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]  # pandas-stubs not installed
    from sqlalchemy import Engine

logger = logging.getLogger(__name__)

EXTRA = "monitor-report"


class EvidentlyMissingError(RuntimeError):
    """Evidently (the optional extra) is not installed."""


def _pandas3_compat() -> None:
    # evidently 0.7.x imports pandas.core.dtypes.common.infer_dtype_from_object, removed in pandas 3;
    # only a legacy column-type test (not part of the drift preset) calls it. Give it pandas 2's meaning.
    import pandas.core.dtypes.common as common  # type: ignore[import-untyped]

    if not hasattr(common, "infer_dtype_from_object"):
        from pandas.api.types import pandas_dtype  # type: ignore[import-untyped]

        def infer_dtype_from_object(dtype: Any) -> Any:
            return pandas_dtype(dtype).type

        common.infer_dtype_from_object = infer_dtype_from_object  # type: ignore[attr-defined]


def require_evidently() -> Any:
    """The ``evidently`` module, importable.

    Raises:
        EvidentlyMissingError: Evidently (or pandas) is not installed; the message names the extra.
    """
    try:
        _pandas3_compat()
        import evidently  # type: ignore[import-untyped]  # evidently ships no type information
    except ImportError as exc:
        raise EvidentlyMissingError(
            f"the Evidently report needs the optional extra {EXTRA!r}: pip install 'maskops[{EXTRA}]' ({exc})"
        ) from None
    return evidently


def _class_mix_rows(counts: dict[str, int], size: int) -> list[str]:
    # counts scaled to ``size`` rows by largest remainder, so the shares survive the scaling
    total = sum(counts.values())
    if total == 0 or size == 0:
        return []
    names = list(counts)
    exact = np.array([counts[c] for c in names], dtype=np.float64) * size / total
    rows = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - rows), kind="stable")[: size - int(rows.sum())]:
        rows[i] += 1
    return [c for c, k in zip(names, rows.tolist(), strict=True) for _ in range(k)]


def reference_frame(
    profile: ReferenceProfile, columns: list[str] | None = None, size: int | None = None
) -> pd.DataFrame:
    """The reference side: each numeric feature's stand-in sample and the class mix, ``size`` rows.

    Args:
        profile: the reference profile.
        columns: the features to keep (default: all of the profile's numeric and categorical ones).
        size: rows (default: the largest stand-in sample, ``min(n, SKETCH_SAMPLE)`` of any feature).
    """
    import pandas as pd

    numeric = {k: v for k, v in profile.numeric.items() if columns is None or k in columns}
    categorical = {k: v for k, v in profile.categorical.items() if columns is None or k in columns}
    if size is None:
        sizes = [min(s.n, SKETCH_SAMPLE) for s in numeric.values()]
        sizes += [min(sum(c.values()), SKETCH_SAMPLE) for c in categorical.values()]
        size = max(sizes, default=0)
    data: dict[str, Any] = {name: sketch.sample(size) for name, sketch in sorted(numeric.items())}
    for name, counts in sorted(categorical.items()):
        data[name] = pd.Series(_class_mix_rows(counts, size), dtype=object)
    return pd.DataFrame(data)


def window_frame(window: FaceWindow, columns: list[str] | None = None) -> pd.DataFrame:
    """The current side: the window's features, one column each (see the module docstring).

    Args:
        window: a store window (``load_window``).
        columns: the features to keep (default: all; the per-class probabilities ``p_<class>``
            are included only when named here).
    """
    import pandas as pd

    numeric: dict[str, np.ndarray] = dict(window.numeric)
    for name, values in probability_features(window.probabilities, window.class_names).items():
        numeric.setdefault(name, values)
    every = set(numeric) | set(window.categorical)
    keep = every - {f"p_{c}" for c in window.class_names} if columns is None else set(columns)
    series = [
        pd.Series(values, name=name, dtype=np.float64) for name, values in numeric.items() if name in keep
    ]
    series += [
        pd.Series(values, name=name, dtype=object)
        for name, values in window.categorical.items()
        if name in keep
    ]
    if not series:
        return pd.DataFrame()
    return pd.concat(series, axis=1)


@dataclass(frozen=True)
class EvidentlyReport:
    """What was written: the file, the compared features and the row counts of each side."""

    path: Path
    numeric: list[str]
    categorical: list[str]
    n_reference: int
    n_faces: int
    n_requests: int
    drifted: list[str]


def drift_snapshot(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> Any:
    """Evidently's ``DataDriftPreset`` run on the two frames (its default tests and thresholds).

    Raises:
        EvidentlyMissingError: Evidently is not installed.
    """
    require_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset  # type: ignore[import-untyped]

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report([DataDriftPreset(columns=numeric + categorical)])
    return report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


def drifted_columns(snapshot: Any) -> list[str]:
    """The columns Evidently's snapshot calls drifted (its per-column p-value or distance against its
    threshold), sorted."""
    out = []
    for metric in snapshot.dict().get("metrics", []):
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        value, threshold = metric.get("value"), config.get("threshold")
        if value is None or threshold is None:
            continue
        # p-value methods drift below the threshold, distance methods at or above it
        is_p_value = "p_value" in str(config.get("method", "")) or "p_value" in metric.get("metric_name", "")
        if (float(value) < threshold) if is_p_value else (float(value) >= threshold):
            out.append(str(config.get("column")))
    return sorted(out)


def write_evidently_report(
    engine: Engine,
    profile: ReferenceProfile,
    out: Path,
    *,
    since: datetime | None = None,
    last: int | None = None,
    site: str | None = None,
) -> EvidentlyReport:
    """Load a window of the store and write Evidently's data drift report against the profile as HTML.

    Only features in both the profile and the window are compared; a feature without any value in the
    window (no face score logged) is left out.

    Raises:
        EvidentlyMissingError: Evidently is not installed.
        ValueError: a bad window (see ``load_window``), or no feature to compare.
    """
    require_evidently()
    window = load_window(engine, since=since, last=last, site=site)
    current = window_frame(window, columns=[*profile.numeric, *profile.categorical])
    numeric = sorted(
        c for c in set(profile.numeric) & set(current.columns) if current[c].notna().any() and c != CLASS_MIX
    )
    categorical = sorted(
        c for c in set(profile.categorical) & set(current.columns) if current[c].notna().any()
    )
    if not numeric and not categorical:
        raise ValueError(
            f"nothing to compare: the window has {window.n_faces} face(s) and shares no feature with "
            f"the reference profile (profile: {', '.join(sorted(profile.numeric) + sorted(profile.categorical))})"
        )
    wanted = sorted(set(profile.numeric) | set(profile.categorical))
    left_out = [c for c in wanted if c not in numeric and c not in categorical]
    if left_out:
        logger.info("left out of the Evidently report (no value in the window): %s", ", ".join(left_out))
    reference = reference_frame(profile, columns=numeric + categorical)
    current = current[numeric + categorical]
    snapshot = drift_snapshot(reference, current, numeric, categorical)
    out.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out))
    return EvidentlyReport(
        path=out,
        numeric=numeric,
        categorical=categorical,
        n_reference=len(reference),
        n_faces=window.n_faces,
        n_requests=window.n_requests,
        drifted=drifted_columns(snapshot),
    )
