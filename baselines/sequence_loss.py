"""1 − CCC over the valid steps of padded sequence batches: the loss of the sequence baselines.

CCC is computed per dimension over every valid step of the batch pooled (the recordings concatenated), the
way the challenges score; padded steps and invalid labels take no part, so their values cannot change it.
"""

from __future__ import annotations

import torch


def masked_ccc(pred: torch.Tensor, gold: torch.Tensor, valid: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(D,) CCC of (B, T, D) predictions against gold over the steps where ``valid`` (B, T, D) holds."""
    w = valid.to(pred.dtype)
    n = w.sum(dim=(0, 1)).clamp_min(1.0)
    gold = torch.where(valid, gold, torch.zeros_like(gold))   # padded / invalid gold values never enter
    pred_v = torch.where(valid, pred, torch.zeros_like(pred))
    mp, mg = pred_v.sum(dim=(0, 1)) / n, gold.sum(dim=(0, 1)) / n
    dp, dg = (pred_v - mp) * w, (gold - mg) * w
    vp, vg = (dp * dp).sum(dim=(0, 1)) / n, (dg * dg).sum(dim=(0, 1)) / n
    cov = (dp * dg).sum(dim=(0, 1)) / n
    return 2.0 * cov / (vp + vg + (mp - mg) ** 2 + eps)


def masked_ccc_loss(pred: torch.Tensor, gold: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum over dimensions of 1 − CCC (Pandit et al.'s loss; Raju et al. and Aminbeidokhti use the same)."""
    return (1.0 - masked_ccc(pred, gold, valid)).sum()
