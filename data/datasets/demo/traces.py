"""Smooth valence/arousal traces for the demo videos: low-frequency sinusoids, decorrelated, bounded."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class SinusoidTrace:
    """A smooth trace defined at every time: ``x(t) = sum_i amps[i] * sin(2 pi t / periods[i] + phases[i]) + bias``.

    Used where labels and images sample the same trace at different times (the SEWA-layout demo: 10 Hz labels
    shifted by annotator delays, video frames at their own rate), so every sample is an exact value of one
    function rather than an interpolation of another sampling.
    """

    amps: np.ndarray      # (k,)
    periods: np.ndarray   # (k,) seconds
    phases: np.ndarray    # (k,) radians
    bias: float = 0.0

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        """float64 values at the times ``t`` (seconds), same shape as ``t``."""
        t = np.asarray(t, np.float64)
        arg = 2.0 * np.pi * t[..., None] / self.periods + self.phases
        return np.sin(arg) @ self.amps + self.bias

    def affine(self, scale: float, shift: float = 0.0) -> SinusoidTrace:
        """``scale * x(t) + shift``."""
        return SinusoidTrace(self.amps * scale, self.periods, self.phases, self.bias * scale + shift)

    def plus(self, other: SinusoidTrace, weight: float = 1.0) -> SinusoidTrace:
        """``x(t) + weight * other(t)``."""
        return SinusoidTrace(np.concatenate([self.amps, weight * other.amps]),
                             np.concatenate([self.periods, other.periods]),
                             np.concatenate([self.phases, other.phases]), self.bias + weight * other.bias)


def _random_trace(rng: np.random.Generator, periods: tuple[float, float], components: int) -> SinusoidTrace:
    period = rng.uniform(*periods, size=components)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=components)
    amp = rng.uniform(0.4, 1.0, size=components)
    return SinusoidTrace(amp, period, phase)


def _centred_unit(trace: SinusoidTrace, grid: np.ndarray) -> SinusoidTrace:
    """``trace`` shifted to mean 0 and scaled to max |x| = 1 over ``grid``."""
    centred = trace.affine(1.0, -float(trace(grid).mean()))
    return centred.affine(1.0 / max(float(np.abs(centred(grid)).max()), 1e-9))


def expression_traces(start_s: float, end_s: float, rng: np.random.Generator) -> dict[str, SinusoidTrace]:
    """Smooth ``valence``, ``arousal`` and ``liking`` traces over ``[start_s, end_s]`` seconds, within +-0.95 there.

    The continuous-time counterpart of :func:`va_traces`: per dimension three sinusoids with periods of
    5-20 s plus a faint 1.5-3 s one, centred and scaled to a peak of 1 over the interval (sampled at 100 Hz).
    Arousal is decorrelated from valence; liking is half valence, half its own slow trace (in SEWA, liking
    goes with valence). Each is then scaled to a random peak of 0.75-0.85 and shifted by at most 0.1, so no
    value needs clipping (between the 100 Hz points the peak may exceed 1 by ~1e-4: still inside [-1, 1]).
    """
    grid = np.linspace(start_s, end_s, max(2, int(round((end_s - start_s) * 100)) + 1))
    raw = {}
    for dim in ("valence", "arousal", "liking"):
        slow = _centred_unit(_random_trace(rng, (5.0, 20.0), 3), grid)
        fast = _centred_unit(_random_trace(rng, (1.5, 3.0), 1), grid)
        raw[dim] = slow.affine(0.92).plus(fast, 0.08)
    v = raw["valence"].affine(1.0, -float(raw["valence"](grid).mean()))
    v_values = v(grid)
    denom = float(v_values @ v_values)
    if denom > 1e-12:  # remove arousal's projection on valence (see va_traces)
        a = raw["arousal"].affine(1.0, -float(raw["arousal"](grid).mean()))
        raw["arousal"] = a.plus(v, -float(v_values @ a(grid)) / denom)
    raw["liking"] = _centred_unit(raw["liking"], grid).plus(_centred_unit(raw["valence"], grid), 1.0)
    out = {}
    for dim, trace in raw.items():
        peak, offset = rng.uniform(0.75, 0.85), rng.uniform(-0.1, 0.1)
        out[dim] = _centred_unit(trace, grid).affine(peak, offset)
    return out
