"""Tests for data/preprocess/audio.py: eGeMAPS LLD extraction, per-frame indexing, caching, silence, z-scoring."""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import opensmile
import pytest
import soundfile as sf

from data.errors import DataError
from data.preprocess import audio
from data.preprocess.audio import (
    LLD_STEP_S,
    N_LLD,
    AudioConfig,
    AudioStandardiser,
    direct_window_features,
    extract_lld,
    frame_window_features,
    lld_names,
    lld_track,
    video_audio_features,
)

SR = 16000


def synth_voice(dur: float = 3.0, f0: float = 150.0, amp: float = 0.3, sr: int = SR) -> np.ndarray:
    """A vowel-like voiced signal: harmonics with vibrato, gliding formants /a/-/i/-/u/-/a/ and
    syllable-rate amplitude modulation, so that every eGeMAPS column group varies over time."""
    t = np.arange(int(sr * dur)) / sr
    f = f0 * (1 + 0.04 * np.sin(2 * np.pi * 5 * t) + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    vowels = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [730, 1090, 2440]], float)
    pos = np.linspace(0, len(vowels) - 1, t.size)
    formants = [np.interp(pos, np.arange(len(vowels)), vowels[:, i])[:, None] for i in range(3)]
    h = np.arange(1, int(4000 / f0) + 1)
    fh = f[:, None] * h[None, :]
    envelope = sum(1 / (1 + ((fh - formants[i]) / (60 + 40 * i)) ** 2) for i in range(3)) + 0.02
    x = (envelope / h * np.sin(phase[:, None] * h)).sum(axis=1)
    x *= 0.55 + 0.45 * np.sin(2 * np.pi * 2.0 * t) ** 2
    x = x / np.abs(x).max() * amp
    return (x + np.random.default_rng(0).normal(0, 0.001, x.size)).astype(np.float32)


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return synth_voice()


@pytest.fixture(scope="module")
def voice_track(voice: np.ndarray) -> np.ndarray:
    return extract_lld(voice, SR)


def col(name_prefix: str) -> int:
    """Column index of the eGeMAPS LLD whose name starts with name_prefix (from openSMILE's own list)."""
    (idx,) = [i for i, n in enumerate(lld_names()) if n.startswith(name_prefix)]
    return idx


def write_wav(path: Path, x: np.ndarray, sr: int = SR) -> Path:
    sf.write(path, x, sr, subtype="PCM_16")
    return path


# --- what openSMILE itself returns (the assumptions audio.py is built on) --------------------------


def test_opensmile_lld_frame_layout(voice: np.ndarray) -> None:
    """LLD rows start at k * 10 ms (MultiIndex start/end) with 25 float32 columns."""
    df = audio._smile().process_signal(voice[: SR], SR)
    assert list(df.index.names) == ["start", "end"]
    assert df.shape[1] == N_LLD
    starts = df.index.get_level_values("start").total_seconds().to_numpy()
    np.testing.assert_allclose(starts, np.arange(len(df)) * LLD_STEP_S, atol=1e-9)


def test_opensmile_short_and_silent_input() -> None:
    """< 60 ms: openSMILE returns one all-NaN row; we return an empty track. Silence is finite."""
    with pytest.warns(UserWarning, match="too short"):
        raw = audio._smile().process_signal(np.zeros(800, np.float32), SR)
    assert raw.shape == (1, N_LLD) and np.isnan(raw.to_numpy()).all()
    assert extract_lld(np.zeros(800, np.float32), SR).shape == (0, N_LLD)
    silent = extract_lld(np.zeros(SR, np.float32), SR)
    assert silent.shape[0] > 0 and np.isfinite(silent).all()
    assert (silent[:, col("F1amplitudeLogRelF0")] == -201).all()  # openSMILE's "undefined" sentinel


# --- extract_lld ------------------------------------------------------------------------------------


def test_extract_lld_shape_and_dtype(voice: np.ndarray, voice_track: np.ndarray) -> None:
    n_expected = len(voice) / SR / LLD_STEP_S
    assert voice_track.dtype == np.float32
    assert voice_track.shape[1] == N_LLD
    assert abs(voice_track.shape[0] - n_expected) <= 6  # the last 60 ms window must fit in the signal
    assert np.isfinite(voice_track).all()


def test_louder_signal_has_higher_loudness(voice: np.ndarray, voice_track: np.ndarray) -> None:
    louder = extract_lld(voice * 3, SR)
    c = col("Loudness")
    assert louder[:, c].mean() > 1.5 * voice_track[:, c].mean()
    assert (louder[:, c] >= voice_track[:, c]).mean() > 0.95


def test_full_scale_signal_does_not_wrap() -> None:
    """openSMILE casts x*32768 to int16 unclipped, so a +1.0 sample would wrap to -32768 and the
    clicks would inflate loudness (~4.2 instead of ~0.74 for this sine); audio.py clips first."""
    t = np.arange(SR) / SR
    full = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    c = col("Loudness")
    loud_full = extract_lld(full, SR)[:, c].mean()
    loud_half = extract_lld(0.5 * full, SR)[:, c].mean()
    assert 1.2 < loud_full / loud_half < 2.0  # +6 dB is ~1.5x in sone-like loudness


def test_higher_pitch_has_higher_f0() -> None:
    c = col("F0semitone")
    low = extract_lld(synth_voice(dur=1.0, f0=120), SR)[:, c]
    high = extract_lld(synth_voice(dur=1.0, f0=240), SR)[:, c]
    low, high = low[low > 0], high[high > 0]  # 0 marks unvoiced frames (the "nz" in sma3nz)
    assert len(low) > 50 and len(high) > 50
    # an octave is 12 semitones
    assert np.median(high) - np.median(low) == pytest.approx(12, abs=1.5)


# --- frame_window_features ----------------------------------------------------------------------------


def expected_k0(t: int, fps: float, context: int, n_rows: int, lld_frames: int) -> int:
    """Independent exact-arithmetic version of the indexing rule."""
    s = (Fraction(t - context) / Fraction(str(fps))) / Fraction(str(LLD_STEP_S))
    return min(max(math.ceil(s), 0), n_rows - lld_frames)


@pytest.mark.parametrize("fps", [25, 30, 29.97])
def test_frame_window_indexing(fps: float) -> None:
    n_rows = 300
    track = np.repeat(np.arange(n_rows, dtype=np.float32)[:, None], N_LLD, axis=1)  # track[k] == k
    cfg = AudioConfig()
    n_frames = int(n_rows * LLD_STEP_S * fps) + 10  # run past the end of the audio to test clamping
    feats = frame_window_features(track, n_frames, fps, cfg)
    assert feats.shape == (n_frames, 50) and feats.dtype == np.float32
    for t in [0, 1, 2, 3, 7, 10, 33, n_frames // 2, n_frames - 12, n_frames - 1]:
        k0 = expected_k0(t, fps, cfg.context_frames, n_rows, cfg.lld_frames)
        np.testing.assert_array_equal(feats[t, :N_LLD], k0, err_msg=f"fps={fps} t={t}")
        np.testing.assert_array_equal(feats[t, N_LLD:], k0 + 1, err_msg=f"fps={fps} t={t}")
    assert feats[0, 0] == 0 and feats[1, 0] == 0  # window starts before 0 s / at 0 s
    assert feats[-1, 0] == n_rows - 2  # clamped to the last complete pair


def test_frame_window_hand_values() -> None:
    track = np.repeat(np.arange(300, dtype=np.float32)[:, None], N_LLD, axis=1)
    cfg = AudioConfig()
    # 25 fps: frame 5's window starts at 4/25 = 0.16 s -> row 16 (float 0.16/0.01 = 16.000000000000004)
    assert frame_window_features(track, 10, 25, cfg)[5, 0] == 16
    # 30 fps: frame 4 -> 3/30 = 0.1 s -> row 10; frame 5 -> 0.1333 s -> row 14
    f30 = frame_window_features(track, 10, 30, cfg)
    assert f30[4, 0] == 10 and f30[5, 0] == 14
    # 29.97 fps: frame 10 -> 9/29.97 = 0.3003 s -> row 31
    assert frame_window_features(track, 20, 29.97, cfg)[10, 0] == 31


def test_frame_window_short_tracks() -> None:
    cfg = AudioConfig()
    one = np.arange(N_LLD, dtype=np.float32)[None, :]
    feats = frame_window_features(one, 4, 25, cfg)
    np.testing.assert_array_equal(feats, np.tile(np.concatenate([one[0], one[0]]), (4, 1)))
    empty = frame_window_features(np.zeros((0, N_LLD), np.float32), 4, 25, cfg)
    assert empty.shape == (4, 50) and not empty.any()
    assert frame_window_features(one, 0, 25, cfg).shape == (0, 50)


def test_frame_window_context_and_lld_frames() -> None:
    track = np.repeat(np.arange(300, dtype=np.float32)[:, None], N_LLD, axis=1)
    cfg = AudioConfig(context_frames=0, lld_frames=3)
    feats = frame_window_features(track, 20, 25, cfg)
    assert feats.shape == (20, 75) and cfg.dim == 75
    np.testing.assert_array_equal(feats[10, ::N_LLD], [40, 41, 42])


# --- indexed track vs the paper's per-window extraction ------------------------------------------------

GROUPS = {
    "loudness": [0],
    "spectral": [1, 2, 3, 4, 5],
    "mfcc": [6, 7, 8, 9],
    "voice(F0,jitter,shimmer,HNR,H1)": [10, 11, 12, 13, 14, 15],
    "formants": list(range(16, 25)),
}
# Upper bounds on the mean |indexed - direct| per group, in units of each column's std over the clip.
# Measured on synth_voice: 25 fps {0.04, 0.32, 0.03, 0.54, 0.20}; 30 fps {0.06, 0.35, 0.04, 0.58, 0.45};
# 29.97 fps {0.08, 0.34, 0.06, 0.57, 0.61}. Bounds below keep ~1.5-2x margin.
GROUP_BOUNDS = {"loudness": 0.15, "spectral": 0.6, "mfcc": 0.12,
                "voice(F0,jitter,shimmer,HNR,H1)": 0.9, "formants": 1.0}


@pytest.mark.parametrize("fps", [25, 30, 29.97])
def test_indexed_matches_direct_extraction(fps: float, voice: np.ndarray, voice_track: np.ndarray,
                                           record_property) -> None:
    """The indexed whole-file track approximates the paper's per-window openSMILE runs.

    They cannot be identical: a cut of 3 video frames starts openSMILE from scratch, so its first
    LLD row is smoothed (sma3 = 3-frame moving average) over fewer frames, and the pitch tracker
    (and everything derived from F0: jitter, shimmer, HNR, H1-H2, formant amplitudes relative to
    F0) has no preceding context and occasionally picks a different candidate. The second row
    already matches the whole-file track closely. At 30 / 29.97 fps the window start also falls
    between 10 ms LLD rows, so the indexed row (first one starting at or after the window start)
    is up to 10 ms later than the direct cut's first frame; formants, which move fastest in this
    signal, show that most. Loudness, the most informative affect cue, agrees to about 1 %.
    """
    cfg = AudioConfig()
    n_frames = int(len(voice) / SR * fps)
    frames = list(range(cfg.context_frames + 2, n_frames - cfg.context_frames - 2))  # interior only
    indexed = frame_window_features(voice_track, n_frames, fps, cfg)[frames]
    direct = np.stack([direct_window_features(voice, SR, t, fps, cfg) for t in frames])
    assert np.isfinite(direct).all()

    col_std = voice_track.std(axis=0)
    col_std[col_std == 0] = 1
    abs_diff = np.abs(indexed - direct).reshape(len(frames), cfg.lld_frames, N_LLD)
    z_diff = (abs_diff / col_std).mean(axis=(0, 1))
    raw_diff = abs_diff.mean(axis=(0, 1))
    measured = {g: float(z_diff[c].mean()) for g, c in GROUPS.items()}
    loud = col("Loudness")
    loud_corr = float(np.corrcoef(indexed[:, loud], direct[:, loud])[0, 1])
    loud_rel = float(raw_diff[loud] / np.abs(direct[:, loud]).mean())
    report = (f"fps={fps}: mean|indexed-direct|/std per group "
              + ", ".join(f"{g}={v:.3f}" for g, v in measured.items())
              + f"; loudness: abs={raw_diff[loud]:.4f} rel={loud_rel:.3%} corr={loud_corr:.4f}")
    print(report)
    record_property(f"indexed_vs_direct_{fps}", report)

    assert loud_corr > 0.99, report
    assert loud_rel < 0.03, report
    for group, bound in GROUP_BOUNDS.items():
        assert measured[group] < bound, f"{group} above {bound}: {report}"


# --- lld_track cache ---------------------------------------------------------------------------------


def test_cache_round_trip(tmp_path: Path, voice: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    wav = write_wav(tmp_path / "a.wav", voice[: SR])
    cfg = AudioConfig(cache_dir=str(tmp_path / "cache"))
    first = lld_track(wav, cfg)
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 1 and not list((tmp_path / "cache").glob("*.tmp"))

    def fail(*_args, **_kwargs):
        raise AssertionError("cache miss: openSMILE was called again")

    monkeypatch.setattr(audio, "extract_lld", fail)
    second = lld_track(wav, cfg)
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32

    # same content under another name hits the same entry; different content is a new key
    write_wav(tmp_path / "renamed.wav", voice[: SR])
    np.testing.assert_array_equal(lld_track(tmp_path / "renamed.wav", cfg), first)
    write_wav(wav, voice[: SR] * 0.5)
    with pytest.raises(AssertionError, match="cache miss"):
        lld_track(wav, cfg)


def test_cache_key_depends_on_content() -> None:
    assert audio._cache_key(b"abc") != audio._cache_key(b"abd")
    assert audio._cache_key(b"abc") == audio._cache_key(b"abc")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALN_CACHE_DIR", str(tmp_path))
    assert audio._cache_dir(AudioConfig()) == tmp_path / "egemaps"
    monkeypatch.delenv("ALN_CACHE_DIR")
    assert audio._cache_dir(AudioConfig()) == Path.home() / ".cache" / "aln" / "egemaps"


def test_corrupt_cache_is_recomputed(tmp_path: Path, voice: np.ndarray) -> None:
    wav = write_wav(tmp_path / "a.wav", voice[: SR])
    cfg = AudioConfig(cache_dir=str(tmp_path / "cache"))
    good = lld_track(wav, cfg)
    (entry,) = (tmp_path / "cache").glob("*.npy")
    entry.write_bytes(b"garbage")
    np.testing.assert_array_equal(lld_track(wav, cfg), good)


def test_stereo_is_averaged(tmp_path: Path, voice: np.ndarray) -> None:
    x = voice[: SR]
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([x, 0.5 * x], axis=1))
    mono = write_wav(tmp_path / "mono.wav", 0.75 * x)
    cfg = AudioConfig(cache_dir=str(tmp_path / "cache"))
    a, b = lld_track(stereo, cfg), lld_track(mono, cfg)
    assert a.shape == b.shape
    np.testing.assert_allclose(a[:, col("Loudness")], b[:, col("Loudness")], rtol=0.02, atol=1e-3)


# --- video_audio_features -----------------------------------------------------------------------------


def test_video_features_voiced(tmp_path: Path, voice: np.ndarray) -> None:
    wav = write_wav(tmp_path / "v.wav", voice)
    cfg = AudioConfig(cache_dir=str(tmp_path / "cache"))
    feats = video_audio_features(wav, 75, 25.0, cfg)
    assert feats.shape == (75, 50) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and feats.any()


def test_silent_file_gives_zeros_and_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wav = write_wav(tmp_path / "silent.wav", np.zeros(2 * SR, np.float32))
    cfg = AudioConfig(cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="data.preprocess.audio"):
        feats = video_audio_features(wav, 50, 25.0, cfg)
    assert feats.shape == (50, 50) and not feats.any() and np.isfinite(feats).all()
    assert "silent.wav" in caplog.text and "silent" in caplog.text


@pytest.mark.parametrize("path", [None, "missing.wav"])
def test_missing_file_gives_zeros_and_warning(tmp_path: Path, path: str | None,
                                              caplog: pytest.LogCaptureFixture) -> None:
    wav = None if path is None else tmp_path / path
    with caplog.at_level(logging.WARNING, logger="data.preprocess.audio"):
        feats = video_audio_features(wav, 10, 30.0, AudioConfig(cache_dir=str(tmp_path)))
    assert feats.shape == (10, 50) and not feats.any()
    assert "no audio file" in caplog.text and str(path) in caplog.text


def test_disabled_gives_zeros(tmp_path: Path, voice: np.ndarray) -> None:
    wav = write_wav(tmp_path / "v.wav", voice[: SR])
    feats = video_audio_features(wav, 10, 25.0, AudioConfig(enabled=False, cache_dir=str(tmp_path)))
    assert feats.shape == (10, 50) and not feats.any()


def test_too_short_file_gives_zeros(tmp_path: Path, voice: np.ndarray,
                                    caplog: pytest.LogCaptureFixture) -> None:
    wav = write_wav(tmp_path / "short.wav", voice[:400])  # 25 ms < one 60 ms eGeMAPS window
    with caplog.at_level(logging.WARNING, logger="data.preprocess.audio"):
        feats = video_audio_features(wav, 3, 25.0, AudioConfig(cache_dir=str(tmp_path / "c")))
    assert not feats.any() and "too short" in caplog.text


def test_non_finite_values_are_zeroed(tmp_path: Path, voice: np.ndarray, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    wav = write_wav(tmp_path / "v.wav", voice[: SR])
    bad = np.ones((96, N_LLD), np.float32)
    bad[3, 4], bad[10, 0], bad[20, 7] = np.nan, np.inf, -np.inf
    monkeypatch.setattr(audio, "extract_lld", lambda *_: bad)
    with caplog.at_level(logging.WARNING, logger="data.preprocess.audio"):
        feats = video_audio_features(wav, 25, 25.0, AudioConfig(cache_dir=str(tmp_path / "c")))
    assert np.isfinite(feats).all()
    assert "replaced 3 non-finite" in caplog.text


def test_corrupt_wav_raises_data_error(tmp_path: Path) -> None:
    wav = tmp_path / "corrupt.wav"
    wav.write_bytes(np.random.default_rng(0).bytes(4096))
    cfg = AudioConfig(cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="corrupt.wav") as err:
        video_audio_features(wav, 10, 25.0, cfg)
    assert "\n" not in str(err.value) and "BytesIO" not in str(err.value)
    with pytest.raises(DataError, match="corrupt.wav"):
        lld_track(wav, cfg)


# --- AudioStandardiser ------------------------------------------------------------------------------


def test_standardiser_fit_and_apply() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -5.0, 300.0], [2.0, 0.1, 50.0], size=(1000, 3)).astype(np.float32)
    x = np.concatenate([x, np.full((1000, 1), 7.0, np.float32)], axis=1)  # a constant column
    std = AudioStandardiser.fit(x)
    z = std(x)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_allclose(z[:, :3].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z[:, :3].std(0), 1, atol=1e-3)
    np.testing.assert_array_equal(z[:, 3], 0)
    assert std.std[3] == 1


def test_standardiser_state_dict_round_trip() -> None:
    x = np.random.default_rng(1).normal(size=(50, 50)).astype(np.float32)
    std = AudioStandardiser.fit(x)
    state = std.state_dict()
    assert set(state) == {"mean", "std"} and all(v.dtype.is_floating_point for v in state.values())
    back = AudioStandardiser.from_state_dict(state)
    np.testing.assert_array_equal(back(x), std(x))


def test_opensmile_version_is_pinned() -> None:
    """The cache key embeds the opensmile version; a different one would silently start a new cache."""
    assert opensmile.__version__ == "2.6.0"
