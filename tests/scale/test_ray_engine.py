"""The Ray engine of ``maskops detect``: same records as the local engine, in input order.

One private Ray instance on 127.0.0.1 serves the whole module (starting Ray takes seconds). Inputs:
a few generated images, real facemask-voc photos when the shared data is present, and a corrupt
file. The model is the hand-built linear ONNX classifier of ``tests/conftest.py`` with the YuNet
detector, both read by the actors from their paths.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from maskops.cli import app
from maskops.detect.batch import BatchDetector, ImageRecord, collect_images
from maskops.detect.pipeline import detector_factory
from maskops.scale.inputs import InputError, read_list, resolve_input, resolve_inputs
from maskops.scale.ray_engine import LOOPBACK_ENV, PipelineSpec, RayEngineError, import_ray, in_input_order

pytestmark = pytest.mark.timeout(600)

DETECTOR = "yunet"


def _strip_timings(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in rec.items() if k != "timings_ms"} for rec in lines]


# ---- inputs and ordering (no Ray needed)


def test_inputs_paths_file_uris_and_lists(tmp_path: Path) -> None:
    assert resolve_input("file:///data/a%20b.jpg") == Path("/data/a b.jpg")
    assert resolve_input("file://localhost/data/x.png") == Path("/data/x.png")
    assert resolve_input("rel/x.png") == Path("rel/x.png")
    with pytest.raises(InputError, match="https:// URIs are not supported"):
        resolve_input("https://example.com/a.jpg")
    with pytest.raises(InputError, match="must name a local path"):
        resolve_input("file://otherhost/a.jpg")
    lst = tmp_path / "inputs.txt"
    lst.write_text("# images\nimgs/a.jpg\n\nfile:///abs/b.png\n/abs/c.png\n")
    assert read_list(lst) == [tmp_path / "imgs/a.jpg", Path("/abs/b.png"), Path("/abs/c.png")]
    assert resolve_inputs(["x.jpg"], [lst])[0] == Path("x.jpg")
    (tmp_path / "bad.txt").write_text("a.jpg\ns3://bucket/b.jpg\n")
    with pytest.raises(InputError, match=r"bad\.txt, line 2: s3://bucket/b\.jpg"):
        read_list(tmp_path / "bad.txt")
    with pytest.raises(InputError, match="cannot read the input list"):
        read_list(tmp_path / "missing.txt")


def test_records_come_back_in_input_order() -> None:
    recs = [ImageRecord(Path(f"{i}.jpg")) for i in range(6)]
    arrival = [3, 0, 5, 1, 2, 4]
    assert [r.path.name for r in in_input_order(iter((i, recs[i]) for i in arrival), 6)] == [
        f"{i}.jpg" for i in range(6)
    ]
    with pytest.raises(RayEngineError, match="returned 2 records for 3 inputs"):
        list(in_input_order(iter([(0, recs[0]), (2, recs[2])]), 3))


def test_ray_engine_without_ray_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, linear_model: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(RayEngineError, match=r"pip install 'maskops\[ray\]'"):
        import_ray()
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.full((32, 32, 3), 128, np.uint8))
    monkeypatch.setenv("MASKOPS_NO_PROGRESS", "1")
    result = CliRunner().invoke(
        app, ["detect", str(image), "--engine", "ray", "--model", str(linear_model), "--detector", DETECTOR]
    )
    assert result.exit_code == 2, result.output
    assert "maskops[ray]" in result.stderr and "--engine local" in result.stderr


def test_engine_and_address_are_checked(tmp_path: Path, linear_model: Path) -> None:
    args = ["detect", str(tmp_path), "--model", str(linear_model)]
    result = CliRunner().invoke(app, [*args, "--engine", "spark"])
    assert result.exit_code == 2 and "--engine must be local or ray" in result.stderr
    result = CliRunner().invoke(app, [*args, "--address", "127.0.0.1:6379"])
    assert result.exit_code == 2 and "--address needs --engine ray" in result.stderr
    result = CliRunner().invoke(app, ["detect", "https://example.com/a.jpg", "--model", str(linear_model)])
    assert result.exit_code == 2 and "https:// URIs are not supported" in result.stderr


# ---- on a local Ray instance


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    """A private instance on 127.0.0.1, or the one at ``MASKOPS_TEST_RAY_ADDRESS`` (a ``ray start
    --head --node-ip-address=127.0.0.1`` started beforehand, for hosts too loaded to start Ray within
    its fixed 30 s node start-up limit)."""
    address = os.environ.get("MASKOPS_TEST_RAY_ADDRESS")
    if not address and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")  # the node's own address is 127.0.0.1
    ray = pytest.importorskip("ray", reason="Ray is the optional 'ray' extra")
    env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("MASKOPS_")}}
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING, "runtime_env": env}
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(
                address="local",
                num_cpus=2,
                object_store_memory=128 * 1024 * 1024,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                **common,
            )
    except Exception as exc:  # Ray raises a bare Exception when its node start-up times out
        ray.shutdown()  # the processes a failed start left behind
        if address or "timed out during startup" not in str(exc):
            raise
        pytest.skip(f"Ray could not start a local node in time on this host (load {os.getloadavg()}): {exc}")
    yield ray
    ray.shutdown()


@pytest.fixture
def folder(tmp_path: Path, data_dir: Path) -> Path:
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(3):
        img = rng.integers(0, 255, size=(120 + 20 * i, 160, 3), dtype=np.uint8)
        cv2.imwrite(str(root / f"gen_{i}.png"), img)
    cv2.imwrite(str(root / "sub" / "tiny.jpg"), np.full((8, 8, 3), 200, np.uint8))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)  # a truncated JPEG
    voc = data_dir / "facemask-voc" / "images"
    for name in ("maksssksksss0.jpg", "maksssksksss1.jpg", "maksssksksss2.jpg"):
        if (voc / name).is_file():
            shutil.copy(voc / name, root / name)
    return root


def test_ray_records_equal_the_local_engine(ray_instance: Any, folder: Path, linear_model: Path) -> None:
    from maskops.scale.ray_engine import RayDetector

    spec = PipelineSpec(model=linear_model, detector=DETECTOR)
    jobs, _ = collect_images([folder])
    names = spec.build().class_names
    local = BatchDetector(spec.build(), detector_factory(DETECTOR, num_threads=1), workers=2)
    expected = [r.to_json(names) for r in local.run(jobs)]
    with RayDetector(spec, workers=2, batch_size=2) as engine:
        got = [r.to_json(names) for r in engine.run(jobs)]
    assert ray_instance.is_initialized()  # a joined instance is left running
    if not os.environ.get("MASKOPS_TEST_RAY_ADDRESS"):
        assert ray_instance.util.get_node_ip_address() == "127.0.0.1"
    assert _strip_timings(got) == _strip_timings(expected)
    broken = [r for r in got if r["path"].endswith("broken.jpg")]
    assert broken and broken[0]["error"] and "faces" not in broken[0]


def test_detect_command_ray_output_is_identical(
    ray_instance: Any, folder: Path, tmp_path: Path, linear_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASKOPS_NO_PROGRESS", "1")
    runner = CliRunner()
    base = ["detect", "--model", str(linear_model), "--detector", DETECTOR, "--workers", "2"]
    lst = tmp_path / "inputs.txt"
    lst.write_text(f"file://{folder}\n{tmp_path / 'nope.jpg'}\n")
    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"out_{engine}"
        result = runner.invoke(app, [*base, "--from-list", str(lst), "--out", str(out), "--engine", engine])
        assert result.exit_code == 1, result.output  # the broken file and the missing one
        assert "broken.jpg" in result.stderr and "nope.jpg" in result.stderr
        lines = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
        for rec in lines:  # annotated copies: same names, each in its own output folder
            if rec.get("annotated"):
                assert Path(rec["annotated"]).is_file()
                rec["annotated"] = str(Path(rec["annotated"]).relative_to(out))
        outputs[engine] = _strip_timings(lines)
        summary = json.loads((out / "summary.json").read_text())
        outputs[engine + "_summary"] = {k: summary[k] for k in ("images", "failed", "faces", "per_class")}
    assert outputs["ray"] == outputs["local"]
    assert outputs["ray_summary"] == outputs["local_summary"]
    assert outputs["local"][0]["path"] == str(tmp_path / "nope.jpg")  # missing inputs first, as locally
