"""bench/soak.py's pure helpers: the traffic mix, outcomes, windows and the pass/fail criteria."""

from __future__ import annotations

import struct
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import soak
from soak import Sample


def test_pick_kinds_follows_the_weights_and_the_seed() -> None:
    kinds = soak.pick_kinds(soak.MIX, 20_000, seed=1)
    assert kinds == soak.pick_kinds(soak.MIX, 20_000, seed=1)
    share = Counter(kinds)
    for kind, weight in soak.MIX.items():
        assert share[kind] / len(kinds) == pytest.approx(weight, abs=0.015)
    assert soak.pick_kinds({"a": 1.0, "b": 0.0}, 50, seed=3) == ["a"] * 50


@pytest.mark.parametrize("weights", [{}, {"a": -1.0, "b": 2.0}, {"a": 0.0}])
def test_pick_kinds_refuses_bad_weights(weights: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="weights"):
        soak.pick_kinds(weights, 5, seed=0)


@pytest.mark.parametrize(
    ("kind", "status", "body", "expected"),
    [
        ("single", 200, None, "ok"),
        ("single", 503, None, "server_error"),
        ("single", 429, None, "http_429"),
        ("batch", 200, {"failed": 0}, "ok"),
        ("batch", 200, {"failed": 1}, "batch_item_failed"),
        ("bad", 415, None, "rejected"),
        ("bad", 413, None, "rejected"),
        ("bad", 200, None, "bad_accepted"),
        ("bad", 500, None, "server_error"),
    ],
)
def test_outcome_of(kind: str, status: int, body: dict | None, expected: str) -> None:
    assert soak.outcome_of(kind, status, body) == expected


def test_records_owed_per_good_image() -> None:
    assert soak.records_of("batch", "ok") == soak.BATCH_SIZE
    assert [soak.records_of(k, "ok") for k in ("single", "classify", "stream")] == [1, 1, 1]
    assert soak.records_of("single", "server_error") == 0
    assert soak.records_of("bad", "rejected") == 0


def test_windows_split_by_end_time_and_keep_late_ends_in_the_last() -> None:
    samples = [
        Sample(0.5, "single", "ok", 10.0, 1),
        Sample(1.5, "single", "ok", 30.0, 1),
        Sample(2.5, "bad", "rejected", 5.0),
        Sample(3.9, "batch", "server_error", 50.0),
        Sample(4.2, "single", "ok", 20.0, 1),  # ended after the 4 s run: last window
    ]
    rows = soak.windows(samples, 2.0, 4.0)
    assert [r["requests"] for r in rows] == [2, 3]
    assert rows[0]["p50_ms"] == pytest.approx(20.0)
    assert rows[0]["req_s"] == pytest.approx(1.0)
    assert rows[1]["errors"] == {"server_error": 1}
    assert rows[1]["rejected_bad"] == 1
    assert rows[1]["p99_ms"] == pytest.approx(20.0)  # only the good requests' latency
    assert soak.windows([], 60.0, 30.0)[0]["p99_ms"] is None
    with pytest.raises(ValueError, match="window_s"):
        soak.windows(samples, 0.0, 4.0)


def _rows(first: float | None, last: float | None) -> list[dict]:
    return [{"p99_ms": first}, {"p99_ms": last}]


def test_criteria_pass_and_fail() -> None:
    clean = soak.summarise([Sample(1.0, "single", "ok", 5.0, 1), Sample(1.0, "bad", "rejected", 5.0)], 1.0)
    checks = soak.criteria(clean, _rows(100.0, 140.0), 1000, 1090, 50, 50)
    assert all(c["pass"] for c in checks.values()), checks
    samples = [
        Sample(1.0, "single", "connection", 5.0),
        Sample(1.0, "classify", "http_429", 5.0),
        Sample(1.0, "stream", "stream_error", 5.0),
        Sample(1.0, "bad", "bad_accepted", 5.0),
    ]
    failing = soak.criteria(
        soak.summarise(samples, 1.0),
        _rows(100.0, 160.0),
        1000,
        1200,
        50,
        49,
        reloads={"ok": 3, "unexpected_503": 1},
    )
    assert failing["server_errors"]["value"] == 1
    assert failing["failed_good_requests"]["value"] == 3
    assert not any(c["pass"] for c in failing.values()), failing
    assert failing["bad_uploads_4xx"]["value"] == 1
    assert soak.criteria(clean, _rows(None, 10.0), 1, 1, 0, 0)["p99_last_vs_first_window"]["pass"] is False
    server_error_on_bad = soak.summarise([Sample(1.0, "bad", "server_error", 5.0)], 1.0)
    checks = soak.criteria(server_error_on_bad, _rows(1.0, 1.0), 1, 1, 0, 0)
    assert (checks["server_errors"]["value"], checks["failed_good_requests"]["value"]) == (1, 0)
    assert checks["bad_uploads_4xx"]["value"] == 1


def test_huge_png_is_a_complete_png_declaring_its_size() -> None:
    data = soak.huge_png(30000, 20000)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
    assert struct.unpack(">II", data[16:24]) == (30000, 20000)
    length = struct.unpack(">I", data[8:12])[0]
    assert struct.unpack(">I", data[16 + length : 20 + length])[0] == zlib.crc32(data[12 : 16 + length])
    assert len(data) < 10_000


def test_multipart_request_bytes() -> None:
    ctype, body = soak.multipart([("file", "a.jpg", "image/jpeg", b"xyz")])
    request = soak.http_request(8000, "/v1/detect", ctype, body)
    head, _, rest = request.partition(b"\r\n\r\n")
    assert rest == body and f"Content-Length: {len(body)}".encode() in head
    assert b'name="file"; filename="a.jpg"' in body and body.endswith(b"--\r\n")


def test_rss_drift() -> None:
    assert soak.rss_drift([{"rss_kb": 1000}, {"rss_kb": 1200}, {"rss_kb": 1100}]) == 0.1
    assert soak.rss_drift([{"rss_kb": 1000}]) is None
    assert soak.rss_drift([{"rss_kb": None}, {"rss_kb": 1000}]) is None
