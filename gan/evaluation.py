"""Inference over batches: validation during training and ``evaluate.py`` run this same code.

Batches are dicts of tensors (the sample contract); predictions follow the test-time path of DESIGN §4
(AEG cleans, CD scores the cleaned image with its z and the audio). Scores come from ``gan/metrics.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.utils import make_grid

from gan.metrics import psnr, score_va
from gan.models import ALN


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed for bf16); a no-op on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class Predictions:
    """Per-frame outputs of one pass over a split, in loader order."""

    pred: np.ndarray                      # (N, 2) valence, arousal
    gold: np.ndarray                      # (N, 2)
    videos: list[str] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    pred_degraded: np.ndarray | None = None   # (N, 2) on degraded inputs, when the batches carry them
    psnr_restored: float | None = None        # PSNR(AEG(degraded), clean)
    psnr_degraded: float | None = None        # PSNR(degraded, clean), the no-restoration reference

    def scores(self, convention: str = "population") -> dict[str, dict[str, float]]:
        return score_va(self.pred, self.gold, convention)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def predict_batches(model: ALN, batches: Iterable[dict], device: torch.device, amp: bool = True) -> Predictions:
    """Run the test-time path over ``batches``; with ``face_degraded`` present also score robustness.

    For batches with degraded faces it records V/A predicted from the degraded input and the PSNR of the
    restored and of the degraded images against the clean ones (per image, averaged over frames).
    """
    was_training = model.training
    model.eval()
    preds, golds, preds_deg, videos, frames = [], [], [], [], []
    psnr_restored_sum = psnr_degraded_sum = 0.0
    n_deg = 0
    try:
        for batch in batches:
            batch = _to(batch, device)
            audio = batch.get("audio")
            with autocast(device, amp):
                preds.append(model.predict(batch["face"], audio).float().cpu())
                if "face_degraded" in batch:
                    degraded = batch["face_degraded"]
                    restored, z = model.restore(degraded)
                    preds_deg.append(model.critic(restored, z, audio)[1].float().cpu())
                    b = degraded.shape[0]
                    clean = batch["face"].float().cpu().numpy()
                    psnr_restored_sum += b * psnr(restored.float().clamp(-1, 1).cpu().numpy(), clean)
                    psnr_degraded_sum += b * psnr(degraded.float().cpu().numpy(), clean)
                    n_deg += b
            golds.append(batch["va"].float().cpu())
            videos.extend(batch.get("video", []))
            frames.extend(int(f) for f in batch.get("frame", []))
    finally:
        model.train(was_training)
    out = Predictions(torch.cat(preds).numpy(), torch.cat(golds).numpy(), videos, frames)
    if n_deg:
        out.pred_degraded = torch.cat(preds_deg).numpy()
        out.psnr_restored = psnr_restored_sum / n_deg
        out.psnr_degraded = psnr_degraded_sum / n_deg
    return out


@torch.no_grad()
def restoration_grid(model: ALN, batch: dict, device: torch.device) -> torch.Tensor:
    """Image grid of a fixed batch, one column per face, rows clean | degraded | restored | cycle.

    Returns a (3, H', W') float tensor in [0, 1] for TensorBoard's ``add_image``. Without an AEG
    (variant ``disc``) the restored and cycle rows repeat the degraded input.
    """
    was_training = model.training
    model.eval()
    try:
        clean = batch["face"].to(device)
        degraded = batch.get("face_degraded", batch["face"]).to(device)
        restored, _ = model.restore(degraded)
        cycled, _ = model.restore(restored)
    finally:
        model.train(was_training)
    rows = torch.cat([clean, degraded, restored, cycled]).float().clamp(-1, 1).cpu()
    return make_grid(rows, nrow=clean.shape[0], normalize=True, value_range=(-1, 1), pad_value=1.0)
