"""The serving image against ``make run`` on the same machine: start-to-``/ready`` time of the
container, and ``POST /v1/detect`` throughput at concurrency 8 of both, side by side.

    make image BASE_IMAGE=localhost/debian-py:bookworm          # the image under test
    .venv/bin/python bench/container_load.py --json work/bench/container_load.json

- start: ``podman run -d`` of the image (runc, host network, the YuNet weights mounted as the
  test and the README do) until ``/ready`` answers 200, from the moment ``podman run`` is called;
  the median of ``--starts`` starts, each on a fresh container.
- throughput: both servers up at once, each given the same models (the repository's ``models/``,
  mounted into the container over the copy it holds), the same YuNet file, the same settings
  (JSON logs, a fresh work dir each) and the same load: bench/serve_load.py's closed-loop client
  and payload (a 640x480 JPEG with four faces). The host server is ``maskops serve`` as
  ``make run`` starts it, moved into a CPU cgroup of its own beside the container's (podman puts
  the container in one: on a busy machine a group with the default share gets far more CPU than
  one process among the machine's others, which would favour the container), so that both
  compete for the CPU as one group each, at the same niceness. Runs alternate (host, container, container, host, ...) so a change of
  the machine's load hits both; the figure is the median req/s of each and their ratio.

Prints the figures with the load averages before and after; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import serve_load as sl  # noqa: E402

from maskops.config import Settings  # noqa: E402

# crun fails on this kind of machine's cgroup mode, and raising rlimits is not permitted
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
CGROUP_ROOT = Path("/sys/fs/cgroup")


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False)


def wait_ready(port: int, timeout: float = 120.0) -> float:
    """Seconds until ``/ready`` on ``port`` answers 200; raises SystemExit after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"/ready on port {port} did not answer 200 within {timeout:.0f} s")


def start_container(image: str, name: str, port: int, yunet: Path, models_dir: Path | None) -> float:
    """Run the image detached; seconds from ``podman run`` to ``/ready``."""
    mounts = ["--volume", f"{yunet.parent}:/opt/maskops/yunet:ro"]
    if models_dir is not None:
        mounts += ["--volume", f"{models_dir}:/opt/maskops/models:ro"]
    start = time.monotonic()
    run = podman(
        "run",
        "-d",
        "--name",
        name,
        *LIMITS,
        "--network",
        "host",
        "-e",
        f"MASKOPS_PORT={port}",
        "-e",
        f"MASKOPS_YUNET_PATH=/opt/maskops/yunet/{yunet.name}",
        *mounts,
        image,
    )
    if run.returncode != 0:
        raise SystemExit(f"podman run {image} failed: {run.stderr.strip()}")
    try:
        wait_ready(port)
    except SystemExit:
        logs = podman("logs", name)
        remove_container(name)
        raise SystemExit(f"container {name} not ready:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}") from None
    return time.monotonic() - start


def remove_container(name: str) -> None:
    podman("rm", "-f", "-v", name)


def own_cpu_cgroup(pid: int, name: str) -> Path | None:
    """Move process ``pid`` into a new CPU cgroup ``name`` under the root (cgroup v1 ``cpu``
    hierarchy, else the v2 unified one), beside podman's; None where cgroups cannot be written."""
    v1 = CGROUP_ROOT / "cpu"
    if (v1 / "cgroup.procs").is_file():
        base = v1
    elif (CGROUP_ROOT / "cgroup.controllers").is_file():
        base = CGROUP_ROOT
    else:
        return None
    group = base / name
    try:
        group.mkdir()
        (group / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        print(f"host server left in its cgroup ({group}: {exc})", flush=True)
        if group.is_dir():
            group.rmdir()
        return None
    return group


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default="localhost/maskops:serve", help="the serving image (make image)")
    p.add_argument("--starts", type=int, default=5, help="container starts timed (median)")
    p.add_argument("--runs", type=int, default=4, help="load runs per server, alternating")
    p.add_argument("--seconds", type=float, default=20.0, help="duration of each load run")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=int, default=30, help="requests sent to each server before measuring")
    p.add_argument("--models-dir", type=Path, default=REPO / "models")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MASKOPS_DATA_DIR", REPO.parent / "shared" / "datasets")),
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = p.parse_args()

    if podman("image", "exists", args.image).returncode != 0:
        raise SystemExit(
            f"no image {args.image}: build it with `make image IMAGE={args.image} BASE_IMAGE=...`"
        )
    yunet = Settings().yunet_path
    if yunet is None:
        raise SystemExit("YuNet weights not found (set MASKOPS_YUNET_PATH)")
    models_dir = args.models_dir.resolve()
    if not (models_dir / "facemask.onnx").is_file():
        raise SystemExit(f"no facemask.onnx in {models_dir}")
    size = int(podman("image", "inspect", args.image, "--format", "{{.Size}}").stdout.strip())
    load_before = loadavg()
    print(f"image {args.image}: {size / 1e6:.0f} MB; cores {os.cpu_count()}; load {load_before}", flush=True)

    # ---------------------------------------------------------------- start to /ready
    starts: list[float] = []
    for i in range(args.starts):
        name = f"maskops-bench-start-{os.getpid()}-{i}"
        try:
            starts.append(start_container(args.image, name, sl.free_port(), yunet, None))
        finally:
            remove_container(name)
        print(f"start {i + 1}: {starts[-1]:.2f} s to /ready", flush=True)

    # ---------------------------------------------------------------- throughput, side by side
    # the same settings for both: JSON logs, a fresh work dir (the host one is a temp dir)
    work = Path(tempfile.mkdtemp(prefix="maskops-container-load-"))
    os.environ.update(
        {
            "MASKOPS_WORK_DIR": str(work / "work"),
            "MASKOPS_LOG_FORMAT": "json",
            "MASKOPS_YUNET_PATH": str(yunet),
        }
    )
    jpeg = sl.payload(args.data_dir, sl.DEFAULT_IMAGE)
    host_port, container_port = sl.free_port(), sl.free_port()
    name = f"maskops-bench-load-{os.getpid()}"
    host = sl.start_server("maskops", host_port, models_dir, work / "host.log")
    host_cgroup = own_cpu_cgroup(host.pid, f"maskops-bench-host-{os.getpid()}")
    req_s: dict[str, list[float]] = {"host": [], "container": []}
    rows: list[dict[str, float | int | str]] = []
    try:
        start_container(args.image, name, container_port, yunet, models_dir)
        ports = {"host": host_port, "container": container_port}
        requests = {k: sl.build_request(port, "/v1/detect", jpeg) for k, port in ports.items()}
        for kind, port in ports.items():
            sample = asyncio.run(sl.warm_up(port, requests[kind], args.warmup))
            faces = len(json.loads(sample)["faces"]) if sample else 0
            print(f"{kind}: ready on port {port}; the payload gives {faces} faces", flush=True)
        for i in range(args.runs):
            order = ["host", "container"] if i % 2 == 0 else ["container", "host"]
            for kind in order:
                phase, _ = asyncio.run(
                    sl.run_phase(kind, ports[kind], requests[kind], args.concurrency, args.seconds)
                )
                row = phase.row()
                rows.append(row)
                req_s[kind].append(float(row["req_s"]))
                print(
                    f"run {i + 1} {kind}: {row['req_s']} req/s, p50 {row['p50_ms']} ms, "
                    f"p99 {row['p99_ms']} ms, errors {row['errors']}",
                    flush=True,
                )
    finally:
        remove_container(name)
        sl.stop_server(host)
        if host_cgroup is not None:
            host_cgroup.rmdir()

    host_med = statistics.median(req_s["host"])
    container_med = statistics.median(req_s["container"])
    ratio = container_med / host_med if host_med else float("nan")
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "image": args.image,
        "image_size_mb": round(size / 1e6),
        "cores": os.cpu_count(),
        "start_to_ready_s": [round(s, 2) for s in starts],
        "start_to_ready_median_s": round(statistics.median(starts), 2),
        "concurrency": args.concurrency,
        "seconds_per_run": args.seconds,
        "host_req_s": req_s["host"],
        "container_req_s": req_s["container"],
        "host_req_s_median": host_med,
        "container_req_s_median": container_med,
        "container_over_host": round(ratio, 3),
        "errors": sum(int(r["errors"]) for r in rows),
        "host_cpu_cgroup": str(host_cgroup) if host_cgroup else None,
        "niceness": os.nice(0),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "rows": rows,
    }
    print()
    print(sl.table(rows))
    print(
        f"\nstart to /ready: median {result['start_to_ready_median_s']} s of {len(starts)} "
        f"(target <= 10 s: {'met' if result['start_to_ready_median_s'] <= 10 else 'NOT met'})"
    )
    print(
        f"req/s at concurrency {args.concurrency}: container {container_med}, host {host_med}, "
        f"ratio {ratio:.3f} (target within 10%: {'met' if abs(ratio - 1) <= 0.10 else 'NOT met'}; "
        f"container at least 90% of the host: {'met' if ratio >= 0.90 else 'NOT met'})"
    )
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
