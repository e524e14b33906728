"""Train the proposal refiner (``maskops.detect.refine``) with torch on CPU: samples, network, loop, export.

Samples come from the ``train`` split only: the base detector's proposals on every train image (at a
low score, so the refiner sees the false positives it must reject) plus jittered copies of every true
box (extra, well-spread regression examples). Each sample is a crop (see ``refine.crop_proposals``) with

* ``deltas``: offsets to the best-overlapping true box, learned when IoU >= ``reg_iou``;
* ``face``: 1 when IoU >= ``pos_iou``, 0 when IoU < ``neg_iou``, ignored in between;
* ``cls``: the true box's class for positives, -1 otherwise.

Training is resumable: ``last.pt`` (model, optimiser, epoch, best) is written after every epoch and
picked up by the next call with the same ``out_dir``. The best epoch on the ``val`` loss is exported to
ONNX with a ``RefinerSpec`` beside it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskops.detect.detectors import FaceDetector
from maskops.detect.refine import RefinerSpec, crop_proposals, encode_boxes
from maskops.evaluate.detection import box_iou

logger = logging.getLogger(__name__)

__all__ = ["RefinerSamples", "TrainSettings", "build_samples", "export_refiner", "make_net", "train_refiner"]


@dataclass
class RefinerSamples:
    """Crops and targets; arrays of equal length ``n``."""

    crops: np.ndarray  # (n, S, S, 3) uint8 RGB
    deltas: np.ndarray  # (n, 4) float32
    reg_mask: np.ndarray  # (n,) bool
    face: np.ndarray  # (n,) float32 in {0, 1}, or -1 = ignore
    cls: np.ndarray  # (n,) int64, -1 = none

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez(path, **asdict(self))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RefinerSamples:
        with np.load(path) as z:
            return cls(**{k: z[k] for k in z.files})


@dataclass
class TrainSettings:
    """Hyperparameters of the refiner training."""

    epochs: int = 14
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    reg_weight: float = 4.0
    cls_weight: float = 0.5
    num_threads: int = 2
    seed: int = 0


def build_samples(
    detector: FaceDetector,
    images: Sequence[np.ndarray],
    gts: Sequence[Any],
    spec: RefinerSpec,
    *,
    jitter_per_face: int = 4,
    reg_iou: float = 0.25,
    pos_iou: float = 0.4,
    neg_iou: float = 0.2,
    seed: int = 0,
) -> RefinerSamples:
    """Proposals and jittered true boxes of every image, cut into crops with their targets.

    Args:
        detector: the proposal detector (the refiner's base, at the refiner's proposal score).
        images: BGR images.
        gts: their ground truth (``Detections`` with class ids).
        spec: crop size and context.
        jitter_per_face: jittered copies of every true box (centre +-20 %, size x0.7..1.4).
        reg_iou, pos_iou, neg_iou: target rules (see the module docs).
        seed: jitter seed.
    """
    rng = np.random.default_rng(seed)
    crops, deltas, reg, face, cls = [], [], [], [], []
    for image, gt in zip(images, gts, strict=True):
        props = detector.detect(image).xyxy.astype(np.float64)
        g = gt.xyxy.astype(np.float64)
        if len(g) and jitter_per_face:
            gw = (g[:, 2] - g[:, 0])[:, None]
            gh = (g[:, 3] - g[:, 1])[:, None]
            k = jitter_per_face
            cx = (g[:, 0] + g[:, 2])[:, None] / 2 + rng.uniform(-0.2, 0.2, (len(g), k)) * gw
            cy = (g[:, 1] + g[:, 3])[:, None] / 2 + rng.uniform(-0.2, 0.2, (len(g), k)) * gh
            w = gw * np.exp(rng.uniform(np.log(0.7), np.log(1.4), (len(g), k)))
            h = gh * np.exp(rng.uniform(np.log(0.7), np.log(1.4), (len(g), k)))
            jit = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).reshape(-1, 4)
            props = np.concatenate([props, jit])
        ok = (props[:, 2] - props[:, 0] >= 2) & (props[:, 3] - props[:, 1] >= 2)
        props = props[ok]
        if not len(props):
            continue
        n = len(props)
        if len(g):
            iou = box_iou(props, g)
            best = iou.argmax(1)
            best_iou = iou.max(1)
            d = encode_boxes(props, g[best])
            c = np.where(best_iou >= pos_iou, gt.class_id[best], -1)
        else:
            best_iou = np.zeros(n)
            d = np.zeros((n, 4), np.float32)
            c = np.full(n, -1)
        f = np.where(best_iou >= pos_iou, 1.0, np.where(best_iou < neg_iou, 0.0, -1.0))
        crops.append(crop_proposals(image, props, spec.size, spec.context))
        deltas.append(d)
        reg.append(best_iou >= reg_iou)
        face.append(f.astype(np.float32))
        cls.append(c.astype(np.int64))
    s = spec.size
    if not crops:
        return RefinerSamples(
            np.zeros((0, s, s, 3), np.uint8), np.zeros((0, 4), np.float32), np.zeros(0, bool),
            np.zeros(0, np.float32), np.zeros(0, np.int64),
        )  # fmt: skip
    return RefinerSamples(
        np.concatenate(crops),
        np.concatenate(deltas),
        np.concatenate(reg),
        np.concatenate(face),
        np.concatenate(cls),
    )


def make_net(num_classes: int = 3, size: int = 48) -> Any:
    """A small CNN: four conv stages (16-32-64-128 channels, max-pool) and a two-layer head.

    Output: ``(n, 4 + 1 + num_classes)``: box deltas, face logit, class logits.
    """
    import torch
    from torch import nn

    def conv(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    side = size // 16
    # one conv at the two large resolutions, two at the small ones: ~19 M multiply-adds per 48 px crop
    net = nn.Sequential(
        *conv(3, 16), nn.MaxPool2d(2),
        *conv(16, 32), nn.MaxPool2d(2),
        *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
        *conv(64, 128), *conv(128, 128), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * side * side, 256), nn.ReLU(inplace=True), nn.Dropout(0.1),
        nn.Linear(256, 4 + 1 + num_classes),
    )  # fmt: skip
    torch.nn.init.zeros_(net[-1].weight)
    torch.nn.init.zeros_(net[-1].bias)
    return net


def _augment(x: Any, deltas: Any, gen: Any) -> tuple[Any, Any]:
    """Random horizontal flip (negates tx) and brightness/contrast jitter, on a float batch."""
    import torch

    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    deltas = deltas.clone()
    deltas[flip, 0] = -deltas[flip, 0]
    a = 1 + (torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 0.5) * 0.4
    b = (torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 0.5) * 0.4
    return x * a + b, deltas


def _losses(out: Any, deltas: Any, reg: Any, face: Any, cls: Any, settings: TrainSettings, cls_w: Any) -> Any:
    import torch
    import torch.nn.functional as F

    k = out.shape[1] - 5
    zero = out.sum() * 0
    reg_loss = F.smooth_l1_loss(out[reg, :4], deltas[reg], beta=0.05) if reg.any() else zero
    keep = face >= 0
    face_loss = F.binary_cross_entropy_with_logits(out[keep, 4], face[keep]) if keep.any() else zero
    has = cls >= 0
    cls_loss = F.cross_entropy(out[has, 5 : 5 + k], cls[has], weight=cls_w) if has.any() else zero
    total = settings.reg_weight * reg_loss + face_loss + settings.cls_weight * cls_loss
    return total, torch.stack([reg_loss.detach(), face_loss.detach(), cls_loss.detach()])


def _tensors(s: RefinerSamples, idx: np.ndarray) -> tuple[Any, ...]:
    import torch

    from maskops.detect.refine import to_input

    return (
        torch.from_numpy(to_input(s.crops[idx])),
        torch.from_numpy(s.deltas[idx]),
        torch.from_numpy(s.reg_mask[idx]),
        torch.from_numpy(s.face[idx]),
        torch.from_numpy(s.cls[idx]),
    )


def _evaluate(net: Any, s: RefinerSamples, settings: TrainSettings, cls_w: Any) -> dict[str, float]:
    import torch

    net.eval()
    parts = torch.zeros(3)
    total = 0.0
    n = 0
    with torch.no_grad():
        for start in range(0, len(s), 512):
            idx = np.arange(start, min(start + 512, len(s)))
            x, d, r, f, c = _tensors(s, idx)
            out = net(x)
            loss, p = _losses(out, d, r, f, c, settings, cls_w)
            total += float(loss) * len(idx)
            parts += p * len(idx)
            n += len(idx)
    parts /= max(n, 1)
    return {
        "loss": total / max(n, 1),
        "reg": float(parts[0]),
        "face": float(parts[1]),
        "cls": float(parts[2]),
    }


def train_refiner(
    train: RefinerSamples,
    val: RefinerSamples,
    out_dir: str | Path,
    spec: RefinerSpec,
    settings: TrainSettings | None = None,
) -> Path:
    """Train (or resume) the refiner; returns the best checkpoint (``best.pt``).

    Each epoch logs train/val losses to ``out_dir/log.jsonl``; ``last.pt`` holds everything needed to
    resume, so an interrupted run continues where it stopped.
    """
    import torch

    settings = settings or TrainSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(settings.num_threads)
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    k = len(spec.class_names)
    net = make_net(k, spec.size)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, (len(train) + settings.batch_size - 1) // settings.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch, pct_start=0.15
    )
    counts = np.bincount(train.cls[train.cls >= 0], minlength=k).astype(np.float64)
    cls_w = torch.tensor((counts.sum() / np.maximum(counts, 1) / k) ** 0.5, dtype=torch.float32)
    start_epoch, best = 0, float("inf")
    last = out / "last.pt"
    if last.is_file():
        state = torch.load(last, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        start_epoch, best = int(state["epoch"]), float(state["best"])
        logger.info("resuming refiner training at epoch %d (best val loss %.4f)", start_epoch + 1, best)
    order_rng = np.random.default_rng(settings.seed)
    for _ in range(start_epoch):  # keep the shuffles of a resumed run identical to an uninterrupted one
        order_rng.permutation(len(train))
    for epoch in range(start_epoch, settings.epochs):
        net.train()
        t0 = time.perf_counter()
        order = order_rng.permutation(len(train))
        running = 0.0
        for s in range(0, len(order), settings.batch_size):
            x, d, r, f, c = _tensors(train, order[s : s + settings.batch_size])
            x, d = _augment(x, d, gen)
            loss, _ = _losses(net(x), d, r, f, c, settings, cls_w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item() * len(x)
        metrics = _evaluate(net, val, settings, cls_w)
        record = {
            "epoch": epoch + 1,
            "train_loss": running / max(len(train), 1),
            **{f"val_{k2}": v for k2, v in metrics.items()},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        with (out / "log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        logger.info("refiner epoch %s", record)
        if metrics["loss"] < best:
            best = metrics["loss"]
            torch.save({"model": net.state_dict(), "epoch": epoch + 1, "val": metrics}, out / "best.pt")
        torch.save(
            {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "epoch": epoch + 1,
                "best": best,
            },
            last,
        )
    return out / "best.pt"


def export_refiner(checkpoint: str | Path, spec: RefinerSpec, path: str | Path) -> Path:
    """Export a checkpoint to ONNX (dynamic batch) with its ``RefinerSpec`` JSON beside it.

    The ONNX output is checked against torch on random input (max abs difference < 1e-3).
    """
    import onnxruntime as ort
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = torch.load(checkpoint, weights_only=False)
    net = make_net(len(spec.class_names), spec.size)
    net.load_state_dict(state["model"])
    net.eval()
    x = torch.randn(2, 3, spec.size, spec.size)
    import warnings

    with warnings.catch_warnings():
        # the TorchScript exporter (dynamo=False, as maskops.export.onnx) needs no onnxscript; it warns
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        torch.onnx.export(
            net,
            (x,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = net(x).numpy()
    got = sess.run(None, {"input": x.numpy()})[0]
    diff = float(np.abs(ref - got).max())
    if diff > 1e-3:
        raise RuntimeError(f"{path}: ONNX output differs from torch by {diff:.2e}")
    path.with_suffix(".json").write_text(spec.to_json(), encoding="utf-8")
    return path
