"""Affect metrics: RMSE, PCC and CCC per dimension, in the two conventions used in the literature.

Both training-time validation and ``evaluate.py`` call these functions, so a number in TensorBoard and a
number in ``metrics.json`` are computed the same way.

Conventions (docs/design.md, "Metric conventions"):

* ``population`` — 1/N in every mean, variance and covariance (ABAW, audmetric, most papers).
* ``avec`` — covariance with 1/N but variances with 1/(N-1), as in the AVEC 2018/2019 official
  ``calc_scores``; PCC is cov / (sd_x * sd_y) with those variances.

Scores are computed in float64 over all frames given (callers concatenate a partition's recordings).
Degenerate inputs follow one rule: a correlation whose denominator is zero carries no information and is
reported as 0.0 — except CCC of two identical constant sequences, which is perfect agreement (1.0).

Example:
    >>> ccc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from scoring.image_quality import psnr_per_image, ssim_per_image

CONVENTIONS = ("population", "avec")
DIMENSIONS = ("valence", "arousal")


def _pair(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"prediction and gold differ in length: {x.size} vs {y.size}")
    if x.size == 0:
        raise ValueError("cannot score an empty sequence")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("cannot score sequences containing NaN or inf")
    return x, y


def _moments(x: np.ndarray, y: np.ndarray, convention: str) -> tuple[float, float, float, float, float]:
    """Means, variances and covariance of (x, y) under ``convention`` (one pass of dot products)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown CCC convention {convention!r}; use one of {CONVENTIONS}")
    n = x.size
    mx, my = x.mean(), y.mean()
    dx, dy = x - mx, y - my
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    if convention == "population":
        var_denominator = n
    else:
        if n < 2:
            raise ValueError("the 'avec' convention needs at least 2 samples (variances use N-1)")
        var_denominator = n - 1
    return float(mx), float(my), sxx / var_denominator, syy / var_denominator, sxy / n


def _pcc_from(vx: float, vy: float, cov: float) -> float:
    denom = np.sqrt(vx * vy)
    return float(cov / denom) if denom > 0 else 0.0


def _ccc_from(mx: float, my: float, vx: float, vy: float, cov: float) -> float:
    denom = vx + vy + (mx - my) ** 2
    return float(2.0 * cov / denom) if denom > 0 else 1.0  # both constant and equal: perfect agreement


def rmse(pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray) -> float:
    """Root mean squared error (the paper's "MSE" column is this)."""
    x, y = _pair(pred, gold)
    return float(np.sqrt(np.mean((x - y) ** 2)))


def pcc(pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray, convention: str = "population") -> float:
    """Pearson correlation; 0.0 when either sequence is constant."""
    x, y = _pair(pred, gold)
    _, _, vx, vy, cov = _moments(x, y, convention)
    return _pcc_from(vx, vy, cov)


def ccc(pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray, convention: str = "population") -> float:
    """Lin's concordance correlation coefficient 2·cov / (var_x + var_y + (mu_x - mu_y)^2)."""
    x, y = _pair(pred, gold)
    return _ccc_from(*_moments(x, y, convention))


def score_dimension(pred, gold, convention: str = "population") -> dict[str, float]:
    """``{"ccc", "pcc", "rmse"}`` for one affect dimension (moments computed once)."""
    x, y = _pair(pred, gold)
    mx, my, vx, vy, cov = _moments(x, y, convention)
    diff = x - y
    return {"ccc": _ccc_from(mx, my, vx, vy, cov), "pcc": _pcc_from(vx, vy, cov),
            "rmse": float(np.sqrt(diff @ diff / diff.size))}


def score_va(pred: np.ndarray, gold: np.ndarray, convention: str = "population",
             dimensions: Sequence[str] = DIMENSIONS) -> dict[str, dict[str, float]]:
    """Score (N, D) predictions against (N, D) gold, column d named ``dimensions[d]``.

    Returns ``{"valence": {"ccc", "pcc", "rmse"}, "arousal": {...}}``, the shape of ``metrics.json``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    if pred.ndim != 2 or pred.shape != gold.shape or pred.shape[1] != len(dimensions):
        raise ValueError(f"expected two (N, {len(dimensions)}) arrays, got {pred.shape} and {gold.shape}")
    return {name: score_dimension(pred[:, d], gold[:, d], convention) for d, name in enumerate(dimensions)}


def as_columns(a: np.ndarray, n_dim: int, what: str) -> np.ndarray:
    """``a`` as a float64 (N, n_dim) array (a 1-D array counts as one column when n_dim is 1), else ValueError."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1 and n_dim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] != n_dim:
        raise ValueError(f"{what} must be (N, {n_dim}), got shape {a.shape}")
    return a


def _images(x: np.ndarray) -> torch.Tensor:
    """An image batch as a torch tensor, float64 unless it is float32 (the models' outputs)."""
    x = np.asarray(x)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32 if x.dtype == np.float32 else np.float64))


def psnr(restored: np.ndarray, reference: np.ndarray, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB between two image batches (default range: images in [-1, 1]).

    Computed per image and averaged (identical images are capped at 100 dB, so one perfect reconstruction
    cannot make the mean infinite). NumPy front of :func:`scoring.image_quality.psnr_per_image`.
    """
    return float(psnr_per_image(_images(restored), _images(reference), data_range).mean())


def ssim(restored: np.ndarray, reference: np.ndarray, data_range: float = 2.0) -> float:
    """Structural similarity (Wang et al. 2004) of two image batches, averaged over images and channels.

    Gaussian window (sigma 1.5, 11x11), K1 = 0.01, K2 = 0.03, population moments, mean over the valid
    region: the settings of ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    use_sample_covariance=False, data_range=...)``, which the tests compare against. Images are
    (B, C, H, W) or (C, H, W) in a range of width ``data_range`` (default [-1, 1]). NumPy front of
    :func:`scoring.image_quality.ssim_per_image`.
    """
    return float(ssim_per_image(_images(restored), _images(reference), data_range).mean())
