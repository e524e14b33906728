"""The serving image built from deploy/Dockerfile and run with podman: `/ready`, a real photo
through `POST /v1/detect`, a 415 on a text file. Skipped, with the reason, where podman cannot run.

The base image comes from Debian packages (no registry is reachable for one): an existing
`localhost/debian-py:bookworm`, else one made with mmdebstrap and imported (1.5 to 4 minutes, on the mirror's speed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from maskops.config import Settings

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("MASKOPS_TEST_BASE_IMAGE", "localhost/debian-py:bookworm")
IMAGE = "localhost/maskops:serve-test"
FACE_PHOTO = "maksssksksss123.jpg"  # two annotated faces (tests/serve uses it too)
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# crun fails on this kind of machine's cgroup mode, and raising rlimits is not permitted
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]

# the base image recipe (the Makefile's `base-image` and docs/deployment.md give the same): Debian's
# minbase with python3, venv and CA certificates; merged /usr made by mmdebstrap's hook (the
# usrmerge package would pull in perl, about 50 MB); no documentation, manual pages or translations
MMDEBSTRAP = [
    "mmdebstrap",
    "--variant=minbase",
    "--include=python3,python3-venv,ca-certificates",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    '--aptopt=Acquire::Languages "none"',
    "bookworm",
]

pytestmark = [pytest.mark.container, pytest.mark.slow]


def _run(args: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def _ensure_base_image(tmp: Path) -> None:
    if _run([*PODMAN, "image", "exists", BASE_IMAGE], 60).returncode == 0:
        return
    if shutil.which("mmdebstrap") is None:
        pytest.skip(f"no base image {BASE_IMAGE} and no mmdebstrap to make one (apt-get install mmdebstrap)")
    tar = tmp / "base.tar"
    made = _run([*MMDEBSTRAP, str(tar)], 900)
    if made.returncode != 0:
        pytest.skip(f"mmdebstrap could not make the base image: {made.stderr[-800:]}")
    imported = _run([*PODMAN, "import", str(tar), BASE_IMAGE], 300)
    assert imported.returncode == 0, imported.stderr


@pytest.fixture(scope="module")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install podman runc mmdebstrap)")
    probe = _run([*PODMAN, "info"], 120)
    if probe.returncode != 0:
        pytest.skip(f"podman cannot run here: {probe.stderr[-500:]}")
    _ensure_base_image(tmp_path_factory.mktemp("base"))
    volume = ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.is_file() else []
    started = time.monotonic()
    build = _run(
        [
            *PODMAN,
            "build",
            "--format",
            "docker",
            *LIMITS,
            "--network",
            "host",
            *volume,
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "--target",
            "serve",
            "-f",
            "deploy/Dockerfile",
            "-t",
            IMAGE,
            ".",
        ],
        1800,
        cwd=ROOT,
    )
    assert build.returncode == 0, f"image build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    size = _run([*PODMAN, "image", "inspect", IMAGE, "--format", "{{.Size}}"], 60).stdout.strip()
    print(f"serving image built in {time.monotonic() - started:.0f} s, {int(size) / 1e6:.0f} MB")
    yield IMAGE
    _run([*PODMAN, "rmi", "-f", IMAGE], 120)


@pytest.fixture(scope="module")
def container_url(built_image: str) -> Iterator[str]:
    yunet = Settings().yunet_path
    if yunet is None:
        pytest.skip("YuNet weights not found (set MASKOPS_YUNET_PATH): the image mounts them at run time")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = f"maskops-test-{os.getpid()}"
    started = time.monotonic()
    run = _run(
        [
            *PODMAN,
            "run",
            "-d",
            "--name",
            name,
            *LIMITS,
            "--network",
            "host",
            "-e",
            f"MASKOPS_PORT={port}",
            "--volume",
            f"{yunet.parent}:/opt/maskops/yunet:ro",
            built_image,
        ],
        120,
    )
    assert run.returncode == 0, run.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                logs = _run([*PODMAN, "logs", name], 30)
                pytest.fail(
                    f"/ready did not answer 200 within 90 s:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
                )
            time.sleep(0.25)
        print(f"container start to /ready: {time.monotonic() - started:.1f} s")
        yield url
    finally:
        _run([*PODMAN, "rm", "-f", "-v", name], 120)  # -v: the anonymous volume of /var/lib/maskops too


def test_container_is_ready_with_its_models(container_url: str) -> None:
    body = httpx.get(f"{container_url}/ready", timeout=5).json()
    assert body["checks"]["face_model"] == "ok"
    assert body["checks"]["detector"] == "ok"
    assert httpx.get(f"{container_url}/health", timeout=5).status_code == 200


def test_container_detects_the_faces_of_a_real_photo(container_url: str) -> None:
    photo = Settings().data_dir / "facemask-voc" / "images" / FACE_PHOTO
    if not photo.is_file():
        pytest.skip(f"face photo not found at {photo} (set MASKOPS_DATA_DIR to the shared datasets)")
    r = httpx.post(
        f"{container_url}/v1/detect",
        files={"file": ("two.jpg", photo.read_bytes(), "image/jpeg")},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["faces"]) == 2


def test_container_refuses_a_text_file(container_url: str) -> None:
    r = httpx.post(
        f"{container_url}/v1/detect", files={"file": ("a.txt", b"hello", "text/plain")}, timeout=30
    )
    assert r.status_code == 415, r.text


def test_container_runs_as_non_root(built_image: str) -> None:
    user = _run([*PODMAN, "image", "inspect", built_image, "--format", "{{.Config.User}}"], 60)
    assert user.stdout.strip() == "10001:10001"
