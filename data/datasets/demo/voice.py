"""The demo's voice: a speech-like harmonic sound whose pitch, loudness and brightness follow arousal only."""

from __future__ import annotations

import numpy as np


def synth_audio(arousal_per_frame: np.ndarray, fps: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """float32 mono waveform in [-1,1] of length round(len/fps*sample_rate); voiced speech-like sound.

    Only arousal drives it, as in real speech where arousal is well heard and valence barely is:
    F0 goes from about 100 Hz (calm) to 260 Hz (excited), level rises by ~18 dB, the spectrum gets
    brighter and syllables faster. It is a harmonic source (so openSMILE's eGeMAPS detects voicing)
    shaped by vowel-like formants, amplitude-modulated into 3-5 Hz syllables with short pauses, plus a
    little noise. Per-sample arousal is interpolated linearly from the per-frame values.
    """
    ar = np.asarray(arousal_per_frame, np.float64).reshape(-1)
    n = int(round(len(ar) / fps * sample_rate))
    if n == 0:
        return np.zeros(0, np.float32)
    t = np.arange(n, dtype=np.float64) / sample_rate
    frame_t = (np.arange(len(ar)) + 0.5) / fps
    o = np.clip((np.interp(t, frame_t, ar) + 1.0) / 2.0, 0.0, 1.0)

    # Pitch: arousal sets the register; slow intonation wobbles of a few percent make it speech-like.
    f_int, f_phase = rng.uniform(0.4, 1.2), rng.uniform(0.0, 2.0 * np.pi)
    f0 = (100.0 + 160.0 * o) * (1.0 + 0.035 * np.sin(2.0 * np.pi * f_int * t + f_phase))
    phase = 2.0 * np.pi * np.cumsum(f0) / sample_rate
    syl_rate = rng.uniform(3.0, 4.0) + 1.0 * o  # syllables per second, faster when excited
    syl_phase = np.cumsum(syl_rate) / sample_rate

    # Harmonic amplitudes change slowly, so compute them on a 5 ms control grid and interpolate:
    # a spectral slope that flattens (brighter voice) with arousal, times vowel-like formants F1/F2
    # that move from syllable to syllable. Normalised so the level is set by `level` alone.
    hop = max(1, sample_rate // 200)
    ctl = np.arange(0, n + hop, hop)
    ctl_t = np.minimum(ctl, n - 1)
    n_syl = int(syl_phase[-1]) + 2
    f1 = rng.uniform(300.0, 800.0, n_syl)[syl_phase[ctl_t].astype(np.int64)]
    f2 = rng.uniform(900.0, 2200.0, n_syl)[syl_phase[ctl_t].astype(np.int64)]
    harmonics = np.arange(1, 11, dtype=np.float64)[:, None]
    fh = harmonics * f0[ctl_t][None, :]
    amp = harmonics ** -(1.5 - 0.6 * o[ctl_t])[None, :] * (
        0.35 + np.exp(-(((fh - f1) / 180.0) ** 2)) + 0.6 * np.exp(-(((fh - f2) / 250.0) ** 2)))
    amp = np.where(fh < 0.45 * sample_rate, amp, 0.0)
    amp /= amp.sum(axis=0, keepdims=True) * 0.6
    # sin(h * phase) by the Chebyshev recurrence sin((h+1)x) = 2 cos(x) sin(hx) - sin((h-1)x).
    idx = np.arange(n, dtype=np.float64)
    two_cos, s_prev, s_cur = 2.0 * np.cos(phase), np.zeros(n), np.sin(phase)
    voice = np.zeros(n, np.float64)
    for h in range(amp.shape[0]):
        voice += np.interp(idx, ctl, amp[h]) * s_cur
        s_prev, s_cur = s_cur, two_cos * s_cur - s_prev

    # Syllables: raised-cosine bursts that never fully close (voicing continues through them) ...
    env = 0.3 + 0.7 * (0.5 - 0.5 * np.cos(2.0 * np.pi * syl_phase)) ** 0.8
    # ... and short pauses (0.15-0.35 s every 1.2-3 s) with 20 ms ramps, as between phrases.
    gate = np.ones(n, np.float64)
    pos = rng.uniform(0.6, 2.0)
    while pos < t[-1]:
        length = rng.uniform(0.15, 0.35)
        gate[int(pos * sample_rate):int((pos + length) * sample_rate)] = 0.0
        pos += length + rng.uniform(1.2, 3.0)
    ramp = max(1, int(0.02 * sample_rate))
    gate = np.convolve(gate, np.ones(ramp) / ramp, mode="same")

    level = 10.0 ** ((-24.0 + 18.0 * o) / 20.0)  # about 0.06 (calm) to 0.5 (excited)
    wave = level * env * gate * voice
    wave += 0.004 * rng.standard_normal(n) + 0.01 * level * gate * rng.standard_normal(n)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)
