"""Post-processing chain for continuous affect predictions (Trigeorgis et al. 2016).

Frame-level regressors produce jittery, biased, shrunk and mistimed traces: annotators smooth and lag,
models do not. The chain of Trigeorgis et al. (2016), used by the augmented-ensemble paper (§3.4.2),
repairs those four defects in order, per dimension independently:

1. **median filtering** — ``median_filter`` with an odd window (1 = off), edges padded by repetition;
2. **bias centring** — ``pred - mean(pred) + train_mean``;
3. **scaling** — ``(pred - mean(pred)) * train_std / std(pred) + mean(pred)`` (centred, population std);
4. **time shift** — ``shift_track``; see the sign convention below.

Fitting (``fit_chain``) uses VALIDATION data only: each step's parameter maximises the CCC of that
dimension over the validation recordings concatenated, and the step is kept only if it raises that CCC
above the chain so far by more than ``PostProcessConfig.min_gain``. The fitted chain is then applied
unchanged to test data (``PostProcessChain.apply``); test gold is never an input.

Conventions fixed here (callers rely on them):

* **Shift sign.** ``shift = s`` moves predictions ``s`` samples LATER in time: ``out[t] = pred[t - s]``.
  A positive shift therefore compensates predictions that run ahead of the gold (the usual case: annotators
  react with a delay); a prediction that lags the gold by ``k`` samples is repaired by ``shift = -k``.
  The vacated samples (the start for ``s > 0``, the end for ``s < 0``) repeat the edge value.
* **Centring** adds ``train_mean - mean(pred)``, where ``mean(pred)`` is taken over ALL recordings passed to
  one ``apply`` call, concatenated (after median filtering). The offset is recomputed from the data it is
  applied to — centring removes the prediction's own bias — so only the target ``train_mean`` is frozen.
  ``DimensionChain.centre_offset`` records the offset that was added on the validation data, for reports.
* **Scaling** likewise recomputes ``mean(pred)`` and ``std(pred)`` (population, ddof 0) over the recordings
  of one ``apply`` call; only ``train_std`` is frozen. A constant prediction (std 0) is left unscaled.
  ``DimensionChain.scale_factor`` records the factor used on the validation data.
* Median filtering and shifting act within each recording, never across recording boundaries.
* Gold rows holding NaN (missing labels) are ignored when scoring; predictions must be finite.

Only numpy and other ``gan`` modules are imported, so this module is safe to use anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from scoring.metrics import CONVENTIONS, as_columns, ccc

STEPS = ("median", "centre", "scale", "shift")


@dataclass
class PostProcessConfig:
    """Search space of ``fit_chain``.

    Attributes:
        median_windows: odd median-filter widths in samples to try (1 = no filtering).
        shifts: time shifts in samples to try; positive moves predictions later (module docstring).
        centre: whether bias centring may be kept.
        scale: whether scaling to the training standard deviation may be kept.
        convention: CCC convention of ``scoring.metrics`` used to pick parameters.
        min_gain: a step is kept only if it raises validation CCC by more than this; guards against
            keeping no-op steps on floating-point noise.
    """

    median_windows: tuple[int, ...] = (1, 3, 5, 7, 9, 11, 15, 21, 31)
    shifts: tuple[int, ...] = tuple(range(-10, 11))
    centre: bool = True
    scale: bool = True
    convention: str = "population"
    min_gain: float = 1e-9

    def __post_init__(self) -> None:
        bad = [w for w in self.median_windows if w < 1 or w % 2 == 0]
        if bad:
            raise ValueError(f"median windows must be odd and >= 1, got {bad}")
        if self.convention not in CONVENTIONS:
            raise ValueError(f"unknown CCC convention {self.convention!r}; use one of {CONVENTIONS}")


@dataclass
class DimensionChain:
    """Fitted chain of one dimension.

    ``transform`` is driven by the parameter values alone: a step is applied when its value is not neutral
    (``median_window > 1``, ``centre_target`` / ``scale_target`` not None, ``shift != 0``); ``fit_chain``
    sets exactly the kept steps' values, and ``steps`` lists them for reports.

    Attributes:
        median_window: median-filter width in samples (1 = off).
        centre_offset: value added by centring on the VALIDATION data (informative; ``apply`` recomputes
            ``centre_target - mean(pred)`` from the data it is given); None when centring was not kept.
        scale_factor: ``train_std / std(pred)`` on the validation data (informative; recomputed at apply);
            None when scaling was not kept.
        shift: samples the predictions are moved later (negative = earlier); 0 = off.
        centre_target: the training labels' mean that centring moves the prediction mean to.
        scale_target: the training labels' standard deviation that scaling stretches the prediction to.
        val_ccc_before: validation CCC of the raw predictions.
        val_ccc_after: validation CCC after the kept steps.
        steps: names of the kept steps, in application order (subset of ``STEPS``).
    """

    median_window: int = 1
    centre_offset: float | None = None
    scale_factor: float | None = None
    shift: int = 0
    centre_target: float | None = None
    scale_target: float | None = None
    val_ccc_before: float = float("nan")
    val_ccc_after: float = float("nan")
    steps: list[str] = field(default_factory=list)

    def transform(self, tracks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Apply the kept steps to one dimension's per-recording 1-D tracks (returns new arrays)."""
        out = [np.asarray(t, dtype=np.float64).copy() for t in tracks]
        if self.median_window > 1:
            out = median_filter_tracks(out, self.median_window)
        if self.centre_target is not None:
            out = centre(out, self.centre_target)
        if self.scale_target is not None:
            out = scale(out, self.scale_target)
        if self.shift != 0:
            out = [shift_track(t, self.shift) for t in out]
        return out


@dataclass
class PostProcessChain:
    """Per-dimension fitted chains, applied unchanged to any partition."""

    dimensions: dict[str, DimensionChain]
    convention: str = "population"

    def apply(self, tracks: list[np.ndarray], dims: Sequence[str]) -> list[np.ndarray]:
        """Post-process per-recording ``(n, D)`` predictions, column ``d`` named ``dims[d]``.

        Centring and scaling statistics come from all of ``tracks`` together (module docstring), so pass a
        whole partition in one call. The chain itself is never modified.

        Raises:
            ValueError: on a dimension the chain was not fitted for, a shape mismatch or non-finite input.
        """
        dims = list(dims)
        missing = [d for d in dims if d not in self.dimensions]
        if missing:
            raise ValueError(f"no fitted chain for dimensions {missing}; fitted: {sorted(self.dimensions)}")
        arrays = [as_columns(t, len(dims), "prediction") for t in tracks]
        for a in arrays:
            if not np.isfinite(a).all():
                raise ValueError("predictions contain NaN or inf")
        out = [a.copy() for a in arrays]
        for d, name in enumerate(dims):
            columns = self.dimensions[name].transform([a[:, d] for a in arrays])
            for o, c in zip(out, columns, strict=True):
                o[:, d] = c
        return out

    def to_dict(self) -> dict:
        """JSON-ready dict (plain floats, ints, strings and lists)."""
        return {"convention": self.convention,
                "dimensions": {name: asdict(ch) for name, ch in self.dimensions.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> PostProcessChain:
        """Inverse of ``to_dict``."""
        dims = {}
        for name, ch in d["dimensions"].items():
            ch = dict(ch)
            ch["steps"] = list(ch.get("steps", []))
            ch["median_window"] = int(ch.get("median_window", 1))
            ch["shift"] = int(ch.get("shift", 0))
            dims[name] = DimensionChain(**ch)
        return cls(dimensions=dims, convention=d.get("convention", "population"))


# --------------------------------------------------------------------------------------------- steps


def median_filter(track: np.ndarray, window: int) -> np.ndarray:
    """Running median of a 1-D track, edges padded by repeating the end values (output has same length).

    Args:
        track: one recording's 1-D predictions.
        window: odd width in samples; 1 returns a copy.
    """
    return median_filter_tracks([track], window)[0]


def median_filter_tracks(tracks: Sequence[np.ndarray], window: int) -> list[np.ndarray]:
    """``median_filter`` of every track, in one vectorised pass (no window crosses a recording boundary).

    Each track is edge-padded on its own, the padded tracks are concatenated, and only windows that start
    inside a recording's padded span are kept, so recordings never see each other's samples.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"median window must be odd and >= 1, got {window}")
    arrays = [np.asarray(t, dtype=np.float64).reshape(-1) for t in tracks]
    if window == 1:
        return [a.copy() for a in arrays]
    lengths = [a.size for a in arrays]
    if sum(lengths) == 0:
        return [a.copy() for a in arrays]
    half = window // 2
    padded = np.concatenate([np.pad(a, half, mode="edge") if a.size else a for a in arrays])
    starts = np.cumsum([0] + [n + 2 * half if n else 0 for n in lengths])[:-1]
    rows = np.concatenate([s + np.arange(n) for s, n in zip(starts, lengths, strict=True)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    medians = np.partition(windows, half, axis=1)[rows, half]  # a few junk straddling rows, one copy
    return np.split(medians, np.cumsum(lengths)[:-1])


def shift_track(track: np.ndarray, shift: int) -> np.ndarray:
    """Move a 1-D track ``shift`` samples later (``out[t] = x[t - shift]``), vacated samples repeat the edge.

    A negative ``shift`` moves it earlier. Shifts beyond the length fill the track with the edge value.
    """
    x = np.asarray(track, dtype=np.float64)
    n = x.size
    if shift == 0 or n == 0:
        return x.copy()
    idx = np.clip(np.arange(n) - shift, 0, n - 1)
    return x[idx]


def centre(tracks: Sequence[np.ndarray], target_mean: float) -> list[np.ndarray]:
    """Add ``target_mean - mean(all tracks concatenated)`` to every track."""
    offset = float(target_mean) - _pooled_mean(tracks)
    return [np.asarray(t, dtype=np.float64) + offset for t in tracks]


def scale(tracks: Sequence[np.ndarray], target_std: float) -> list[np.ndarray]:
    """Stretch tracks about their pooled mean so their pooled population std is ``target_std``.

    A constant input (std 0) is returned unchanged: there is no spread to stretch.
    """
    mean, std = _pooled_mean(tracks), _pooled_std(tracks)
    if not std > 0:
        return [np.asarray(t, dtype=np.float64).copy() for t in tracks]
    factor = float(target_std) / std
    return [(np.asarray(t, dtype=np.float64) - mean) * factor + mean for t in tracks]


# ------------------------------------------------------------------------------------------- fitting


def fit_chain(val_pred: list[np.ndarray], val_gold: list[np.ndarray], dims: Sequence[str],
              train_mean: Sequence[float], train_std: Sequence[float],
              cfg: PostProcessConfig | None = None) -> PostProcessChain:
    """Fit the chain per dimension on validation recordings.

    Steps are tried in order median → centre → scale → shift; each picks the parameter with the highest
    validation CCC (ties: the first candidate, i.e. the smallest window / the shift nearest 0) and is kept
    only if that beats the chain so far by more than ``cfg.min_gain``.

    Args:
        val_pred: per-recording ``(n_i, D)`` validation predictions (finite).
        val_gold: per-recording ``(n_i, D)`` validation gold; NaN rows (per dimension) are ignored.
        dims: the D dimension names, in column order.
        train_mean: training labels' mean per dimension (centring target).
        train_std: training labels' standard deviation per dimension (scaling target).
        cfg: search space; defaults to ``PostProcessConfig()``.

    Raises:
        ValueError: on shape mismatches, non-finite predictions or a dimension without any gold.
    """
    cfg = cfg or PostProcessConfig()
    dims = list(dims)
    n_dim = len(dims)
    if len(train_mean) != n_dim or len(train_std) != n_dim:
        raise ValueError(f"train_mean/train_std need {n_dim} values, got {len(train_mean)}/{len(train_std)}")
    if len(val_pred) != len(val_gold) or not val_pred:
        raise ValueError(f"need matching, non-empty recording lists, got {len(val_pred)} and {len(val_gold)}")
    preds = [as_columns(p, n_dim, "prediction") for p in val_pred]
    golds = [as_columns(g, n_dim, "gold") for g in val_gold]
    for p, g in zip(preds, golds, strict=True):
        if p.shape != g.shape:
            raise ValueError(f"prediction and gold of a recording differ in shape: {p.shape} vs {g.shape}")
        if not np.isfinite(p).all():
            raise ValueError("validation predictions contain NaN or inf")
    chains = {}
    for d, name in enumerate(dims):
        chains[name] = _fit_dimension([p[:, d] for p in preds], [g[:, d] for g in golds],
                                      float(train_mean[d]), float(train_std[d]), cfg, name)
    return PostProcessChain(dimensions=chains, convention=cfg.convention)


def _fit_dimension(preds: list[np.ndarray], golds: list[np.ndarray], train_mean: float, train_std: float,
                   cfg: PostProcessConfig, name: str) -> DimensionChain:
    if not (np.isfinite(train_mean) and np.isfinite(train_std)):
        raise ValueError(f"{name}: training mean/std must be finite, got {train_mean}/{train_std}")
    gold = np.concatenate(golds)
    mask = np.isfinite(gold)
    if not mask.any():
        raise ValueError(f"{name}: validation gold has no labelled frames")
    gold = gold[mask]

    def score(tracks: list[np.ndarray]) -> float:
        return ccc(np.concatenate(tracks)[mask], gold, cfg.convention)

    chain = DimensionChain()
    current = preds
    best = chain.val_ccc_before = score(current)

    # 1. median filtering: first (smallest) window wins ties, so 1 beats any window that does not help.
    window, win_score, win_tracks = 1, best, current
    for w in cfg.median_windows:
        if w == 1:
            continue
        tracks = median_filter_tracks(current, w)
        s = score(tracks)
        if s > win_score:
            window, win_score, win_tracks = w, s, tracks
    if window > 1 and win_score > best + cfg.min_gain:
        chain.median_window, chain.steps = window, chain.steps + ["median"]
        current, best = win_tracks, win_score

    # 2. bias centring.
    if cfg.centre:
        tracks = centre(current, train_mean)
        s = score(tracks)
        if s > best + cfg.min_gain:
            chain.centre_offset = train_mean - _pooled_mean(current)
            chain.centre_target = train_mean
            chain.steps = chain.steps + ["centre"]
            current, best = tracks, s

    # 3. scaling to the training std (skipped for a constant prediction).
    if cfg.scale and train_std > 0:
        std = _pooled_std(current)
        if std > 0:
            tracks = scale(current, train_std)
            s = score(tracks)
            if s > best + cfg.min_gain:
                chain.scale_factor = train_std / std
                chain.scale_target = train_std
                chain.steps = chain.steps + ["scale"]
                current, best = tracks, s

    # 4. time shift: candidates ordered by |shift| so the one nearest 0 wins ties.
    shift, shift_score, shift_tracks = 0, best, current
    for k in sorted(cfg.shifts, key=lambda v: (abs(v), v)):
        if k == 0:
            continue
        tracks = [shift_track(t, k) for t in current]
        s = score(tracks)
        if s > shift_score:
            shift, shift_score, shift_tracks = k, s, tracks
    if shift != 0 and shift_score > best + cfg.min_gain:
        chain.shift, chain.steps = shift, chain.steps + ["shift"]
        current, best = shift_tracks, shift_score

    chain.val_ccc_after = best
    return chain


# ------------------------------------------------------------------------------------------- helpers


def _pooled_mean(tracks: Sequence[np.ndarray]) -> float:
    x = np.concatenate([np.asarray(t, dtype=np.float64).reshape(-1) for t in tracks])
    if x.size == 0:
        raise ValueError("cannot post-process empty predictions")
    return float(x.mean())


def _pooled_std(tracks: Sequence[np.ndarray]) -> float:
    x = np.concatenate([np.asarray(t, dtype=np.float64).reshape(-1) for t in tracks])
    if x.size == 0:
        raise ValueError("cannot post-process empty predictions")
    return float(x.std())
