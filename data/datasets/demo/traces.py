"""Smooth valence/arousal traces for the demo videos: low-frequency sinusoids, decorrelated, bounded."""

from __future__ import annotations

import numpy as np


def smooth_curves(n: int, rng: np.random.Generator, dims: int, periods: tuple[float, float],
                   components: int = 3) -> np.ndarray:
    """(n, dims) sums of random low-frequency sinusoids, each column rescaled to max |x| = 1.

    Sinusoids with periods of several seconds are smooth by construction (bounded derivative), and
    normalising by the maximum guarantees every trace sweeps a large part of its range instead of
    hovering near zero, which is what makes a short demo learnable.
    """
    t = np.arange(n, dtype=np.float64)
    out = np.zeros((n, dims), np.float64)
    for d in range(dims):
        period = rng.uniform(*periods, size=components)
        phase = rng.uniform(0.0, 2.0 * np.pi, size=components)
        amp = rng.uniform(0.4, 1.0, size=components)
        x = (amp[None, :] * np.sin(2.0 * np.pi * t[:, None] / period[None, :] + phase[None, :])).sum(1)
        x -= x.mean()
        out[:, d] = x / max(float(np.abs(x).max()), 1e-9)
    return out


def va_traces(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(n_frames, 2) float32 smooth valence, arousal traces in [-1, 1] (column 0 valence, 1 arousal).

    Each dimension is drawn independently: three sinusoids with periods of 3-12 s at 30 fps plus a
    faint 1-2 s component for small fluctuations. Arousal is then decorrelated from valence within the
    trace (so a model cannot infer one from the other), each is scaled to a random peak of 0.85-1.0,
    shifted slightly off zero and clipped to [-0.95, 0.95].
    """
    if n_frames <= 0:
        return np.zeros((0, 2), np.float32)
    slow = smooth_curves(n_frames, rng, 2, (90.0, 360.0), components=3)
    fast = smooth_curves(n_frames, rng, 2, (30.0, 60.0), components=1)
    peak = rng.uniform(0.85, 1.0, size=2)
    offset = rng.uniform(-0.1, 0.1, size=2)
    va = 0.92 * slow + 0.08 * fast
    # Two smooth traces over a few seconds are often correlated by chance (|r| ~ 0.7 happens); remove
    # arousal's projection on valence so neither label can be read off the other's cues (the audio
    # carries arousal only, and must not predict valence through such a coincidence).
    centred = va - va.mean(axis=0)
    denom = float(centred[:, 0] @ centred[:, 0])
    if denom > 1e-12:
        va[:, 1] = centred[:, 1] - (float(centred[:, 0] @ centred[:, 1]) / denom) * centred[:, 0]
        va[:, 1] /= max(float(np.abs(va[:, 1]).max()), 1e-9)
    va = va * peak + offset
    return np.clip(va, -0.95, 0.95).astype(np.float32)
