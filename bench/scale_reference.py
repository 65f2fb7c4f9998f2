"""The validation pass as it was before the real-scale work, kept as the "before" row of ``bench/scale.py``.

Until then every batch's predictions were copied to the host, and PSNR and SSIM of the restored *and* of the
(fixed) degraded faces were computed in NumPy float64 on the host at every validation (SSIM: a separable
Gaussian over sliding windows, about 10 ms per 128 px frame on one core). Same forward passes as
``gan.inference.predict_batches``, so the difference in time is the host-side overhead alone.
"""

from __future__ import annotations

import numpy as np
import torch

from gan.inference import autocast


def _gaussian_filter(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    rows = np.lib.stride_tricks.sliding_window_view(x, 2 * radius + 1, axis=-2) @ k
    return np.lib.stride_tricks.sliding_window_view(rows, 2 * radius + 1, axis=-1) @ k


def numpy_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = _gaussian_filter(a), _gaussian_filter(b)
    var_a, var_b = _gaussian_filter(a * a) - mu_a**2, _gaussian_filter(b * b) - mu_b**2
    cov = _gaussian_filter(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean(axis=(-2, -1)).mean())


def numpy_psnr(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float:
    mse = ((a.astype(np.float64) - b) ** 2).reshape(a.shape[0], -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        values = np.where(mse > 0, 10.0 * np.log10(data_range**2 / np.maximum(mse, 1e-300)), 100.0)
    return float(np.minimum(values, 100.0).mean())


@torch.no_grad()
def legacy_predict_batches(model, batches, device: torch.device) -> dict:
    """The former validation pass; returns the headline predictions and the four restoration means."""
    preds, sums, n = [], dict.fromkeys(("psnr_restored", "psnr_degraded", "ssim_restored", "ssim_degraded"), 0.0), 0
    for batch in batches:
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        face, degraded, audio = batch["face"], batch["face_degraded"], batch["audio"]
        with autocast(device, True):
            restored, z = model.clean(face)
            preds.append(model.critic(restored, z, audio)[1].float().cpu())
            model.critic(face, z, audio)[1].float().cpu()
            restored_deg, z_deg = model.clean(degraded)
            model.critic(restored_deg, z_deg, audio)[1].float().cpu()
            model.critic(degraded, z_deg, audio)[1].float().cpu()
        clean = face.float().cpu().numpy()
        rest = restored_deg.float().clamp(-1, 1).cpu().numpy()
        deg = degraded.float().cpu().numpy()
        b = len(clean)
        sums["psnr_restored"] += b * numpy_psnr(rest, clean)
        sums["psnr_degraded"] += b * numpy_psnr(deg, clean)
        sums["ssim_restored"] += b * numpy_ssim(rest, clean)
        sums["ssim_degraded"] += b * numpy_ssim(deg, clean)
        batch["va"].float().cpu()
        n += b
    return {"pred": torch.cat(preds).numpy(), **{k: v / n for k, v in sums.items()}}
