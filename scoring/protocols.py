"""Official scoring protocols on arrays: AVEC 2018/2019 CES and ABAW valence/arousal.

* ``avec2019`` — per dimension (arousal, valence, liking), the recordings of a partition concatenated;
  a prediction longer than its labels is cropped, a shorter one padded by repeating its last value
  (the official ``calc_scores`` behaviour); CCC and PCC in the ``avec`` convention, and RMSE. Reported
  per culture and for all cultures together (key joined with ``+`` in sorted order, e.g. ``DE+HU``).
* ``abaw`` — frames whose label is -5 (any value outside [-1, 1]) are excluded; population CCC over all
  frames concatenated; the challenge's ranking number ``mean_ccc`` is the mean of the V and A CCCs.

File reading lives in ``data/prediction_files.py``; this module only aligns and scores arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from scoring.metrics import score_dimension

AVEC_DIMENSIONS = ("arousal", "valence", "liking")
ABAW_DIMENSIONS = ("valence", "arousal")


def crop_or_pad(pred: np.ndarray, n: int) -> tuple[np.ndarray, str]:
    """Align a prediction track to ``n`` label rows: crop, or pad with its last value.

    Returns the aligned array and what was done ("", "cropped" or "padded").
    """
    pred = np.asarray(pred, dtype=np.float64)
    if len(pred) == 0:
        raise ValueError("empty prediction track")
    if len(pred) == n:
        return pred, ""
    if len(pred) > n:
        return pred[:n], "cropped"
    pad = np.repeat(pred[-1:], n - len(pred), axis=0)
    return np.concatenate([pred, pad]), "padded"


@dataclass
class Recording:
    """Gold and predicted tracks of one recording, (n, D) each after alignment, columns = dimensions."""

    name: str
    group: str           # culture for AVEC ("DE"), "" for ABAW
    gold: np.ndarray
    pred: np.ndarray


def _stack(recordings: Sequence[Recording]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gold and prediction as contiguous (D, N) arrays (one row per dimension) and each column's group,
    as the index of the group name in the sorted group names (integer masks are much cheaper than strings)."""
    gold = np.ascontiguousarray(np.concatenate([r.gold for r in recordings], dtype=np.float64).T)
    pred = np.ascontiguousarray(np.concatenate([r.pred for r in recordings], dtype=np.float64).T)
    names = sorted({r.group for r in recordings})
    codes = np.repeat([names.index(r.group) for r in recordings], [len(r.gold) for r in recordings])
    return gold, pred, codes


def _score_rows(gold: np.ndarray, pred: np.ndarray, dimensions: Sequence[str], convention: str
                ) -> dict[str, dict[str, float]]:
    """Score (D, N) arrays per dimension; rows whose gold is NaN (a dimension a file lacks) are skipped."""
    out = {}
    for d, name in enumerate(dimensions):
        g, p = gold[d], pred[d]
        keep = np.isfinite(g)
        if not keep.all():
            if not keep.any():
                continue
            g, p = g[keep], p[keep]
        out[name] = score_dimension(p, g, convention)
    return out


def score_avec(recordings: Iterable[Recording], dimensions: Sequence[str] = AVEC_DIMENSIONS
               ) -> dict[str, dict[str, dict[str, float]]]:
    """``{"DE+HU": {"arousal": {...}, ...}, "DE": {...}, "HU": {...}}`` in the ``avec`` convention.

    ``dimensions`` names the columns of the recordings' arrays (all three AVEC dimensions by default).
    """
    recordings = list(recordings)
    gold, pred, codes = _stack(recordings)
    groups = sorted({r.group for r in recordings})
    out = {"+".join(groups): _score_rows(gold, pred, dimensions, "avec")}
    if len(groups) > 1:
        for code, group in enumerate(groups):
            rows = codes == code
            out[group] = _score_rows(gold[:, rows], pred[:, rows], dimensions, "avec")
    return out


def score_abaw(recordings: Iterable[Recording]) -> dict:
    """``{"valence": {...}, "arousal": {...}, "mean_ccc": ..}``: -5 frames excluded, population convention."""
    recordings = list(recordings)
    gold = np.concatenate([r.gold for r in recordings])
    pred = np.concatenate([r.pred for r in recordings])
    valid = np.all((gold >= -1.0) & (gold <= 1.0), axis=1)
    if not valid.any():
        raise ValueError("no frame with a valid label to score")
    out = {name: score_dimension(pred[valid, d], gold[valid, d], "population") for d, name in enumerate(ABAW_DIMENSIONS)}
    out["mean_ccc"] = float(np.mean([out[d]["ccc"] for d in ABAW_DIMENSIONS]))
    out["frames"] = int(valid.sum())
    out["excluded_frames"] = int((~valid).sum())
    return out
