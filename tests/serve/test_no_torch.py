"""Serving needs neither torch nor the training stack (the serve-only install has neither)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from serve_helpers import gradient, jpeg_bytes


def test_app_serves_with_the_training_stack_blocked(models_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "x.jpg"
    image.write_bytes(jpeg_bytes(gradient()))
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "mlflow", "onnx", "scipy", "matplotlib"):
            sys.modules[name] = None  # any import of them raises ImportError
        from fastapi.testclient import TestClient
        from maskops.serve.app import create_app
        from maskops.serve.settings import ServeSettings
        import maskops.cli
        s = ServeSettings(models_dir={str(models_dir)!r}, work_dir={str(tmp_path / "w")!r}, warm_up=False)
        with TestClient(create_app(s)) as c:
            assert c.get("/ready").status_code == 200
            r = c.post("/v1/detect", files={{"file": ("x.jpg", open({str(image)!r}, "rb").read())}})
            assert r.status_code == 200, r.text
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")
