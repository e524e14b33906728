"""Simulated traffic: a folder of images sent to the service at a steady rate, optionally changed
on the way (darker, blurred, noisier, smaller, harder JPEG) to imitate a camera that drifts.

The sending itself is a callable (``Send``): the command gives one that posts to a running
service, or one that calls an app in process; tests and benches use both.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

# (jpeg bytes, file name) -> HTTP status
Send = Callable[[bytes, str], int]
Transform = Callable[[np.ndarray, float], np.ndarray]


def _darken(image: np.ndarray, factor: float) -> np.ndarray:
    return cv2.convertScaleAbs(image, alpha=factor, beta=0)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0 else image


def _noise(image: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _scale(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def _desaturate(image: np.ndarray, factor: float) -> np.ndarray:
    gray = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(image, 1.0 - factor, gray, factor, 0.0)


TRANSFORMS: dict[str, tuple[Transform, str]] = {
    "darken": (_darken, "multiply pixel values by this factor (0.5: half as bright)"),
    "blur": (_blur, "Gaussian blur with this sigma in pixels"),
    "noise": (_noise, "add Gaussian noise with this sigma (0-255 scale)"),
    "scale": (_scale, "resize by this factor (0.5: half the width and height)"),
    "desaturate": (_desaturate, "blend towards gray by this share (1: gray)"),
}


def parse_transforms(text: str | None) -> list[tuple[str, float]]:
    """``darken=0.5,blur=2`` (or ``|``-separated) as [(name, value), ...], applied in order.

    Raises:
        ValueError: an unknown name (the message lists them) or a value that is not a number.
    """
    if not text:
        return []
    out = []
    for part in text.replace("|", ",").split(","):
        name, sep, value = part.strip().partition("=")
        if name not in TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}; choose from {', '.join(TRANSFORMS)}")
        try:
            out.append((name, float(value) if sep else 1.0))
        except ValueError:
            raise ValueError(f"transform {name}: {value!r} is not a number") from None
    return out


def apply_transforms(image: np.ndarray, transforms: Sequence[tuple[str, float]]) -> np.ndarray:
    for name, value in transforms:
        image = TRANSFORMS[name][0](image, value)
    return image


def image_files(source: Path) -> list[Path]:
    """The image files of a folder (recursively, sorted) or the file itself."""
    from maskops.detect.batch import collect_images

    jobs, _ = collect_images([source])
    return [job.path for job in jobs]


@dataclass
class ReplaySummary:
    sent: int = 0
    ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0


def _frames(
    files: Iterable[Path], transforms: Sequence[tuple[str, float]], summary: ReplaySummary
) -> Iterator[tuple[bytes, str]]:
    from maskops.data.images import ImageReadError, read_bgr

    for path in files:
        try:
            image = read_bgr(path)
        except ImageReadError as exc:
            summary.unreadable.append(str(exc))
            continue
        ok, buf = cv2.imencode(".jpg", apply_transforms(image, transforms), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if ok:
            yield buf.tobytes(), path.name


def replay(
    files: Sequence[Path],
    send: Send,
    *,
    rate: float | None = None,
    transforms: Sequence[tuple[str, float]] = (),
    limit: int | None = None,
    loop: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.perf_counter,
) -> ReplaySummary:
    """Send ``files`` (changed by ``transforms``) through ``send`` at ``rate`` images per second.

    Args:
        rate: images per second (None: as fast as ``send`` returns).
        limit: stop after this many images.
        loop: start over at the end of the files (until ``limit``).
        sleep, clock: how to wait and read the time (tests pass a fake pair).
    """
    summary = ReplaySummary()
    started = clock()
    interval = 1.0 / rate if rate else 0.0
    while True:
        before = summary.sent
        for data, name in _frames(files, transforms, summary):
            if limit is not None and summary.sent >= limit:
                break
            due = started + summary.sent * interval
            wait = due - clock()
            if wait > 0:
                sleep(wait)
            status = send(data, name)
            summary.sent += 1
            summary.statuses[status] += 1
            summary.ok += status == 200
        if not loop or summary.sent == before or (limit is not None and summary.sent >= limit):
            break
    summary.elapsed_s = clock() - started
    return summary


def http_sender(
    base_url: str, *, site: str | None = None, api_key: str | None = None, timeout: float = 30.0
) -> Send:
    """A ``Send`` posting each image to ``<base_url>/v1/detect`` (multipart); a connection error is
    status 0."""
    import urllib.error
    import urllib.request
    import uuid

    url = base_url.rstrip("/") + "/v1/detect"
    headers = {"X-Site": site} if site else {}
    if api_key:
        headers["X-API-Key"] = api_key

    def send(data: bytes, name: str) -> int:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        req = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                r.read()
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    return send
