"""eGeMAPS audio features, one vector per video frame.

Aspandi et al. (2020) cut the audio of video frames t-1..t+1 out of the signal, run openSMILE's
eGeMAPS low-level descriptors (LLDs: 60 ms windows, 10 ms step) on that cut and concatenate the
first two LLD frames. Taking a fixed number of LLD frames keeps the dimensionality (2 x 25 = 50)
independent of the video's frame rate.

Running openSMILE once per video frame is slow (one library instance per call, and every window
re-analyses the same samples three times), so we compute the LLD track of the whole file ONCE,
cache it on disk and index it by time: for frame t we take the first LLD rows that start at or
after the window start. :func:`direct_window_features` keeps the paper's per-window extraction as
a reference so that tests can show how close the two are (they differ only through openSMILE's
smoothing and pitch context at the edges of a short cut).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import opensmile
import soundfile as sf
import torch

from data.errors import DataError
from fileio.atomic import atomic_open

log = logging.getLogger(__name__)

N_LLD = 25
LLD_STEP_S = 0.010

FEATURE_SET = "eGeMAPSv02"
FEATURE_LEVEL = "LowLevelDescriptors"
# Bump when the cached content changes meaning (mono mix, clipping, dtype, ...).
CACHE_FORMAT_VERSION = 1
# Absorbs float error in (t - context) / fps / LLD_STEP_S, e.g. 0.16 / 0.01 = 16.000000000000004.
_INDEX_EPS = 1e-6


@dataclass
class AudioConfig:
    """How audio features are computed.

    Attributes:
        enabled: False gives all-zero features (a face-only model keeps the same input layout).
        context_frames: The window covers video frames t-context .. t+context (paper: 1).
        lld_frames: Number of LLD rows concatenated from the start of the window (paper: 2).
        cache_dir: Where LLD tracks are cached; "" means $ALN_CACHE_DIR (or ~/.cache/aln) / egemaps.
        silence_rms: A file whose whole-signal RMS is below this is treated as having no audio.
    """

    enabled: bool = True
    context_frames: int = 1
    lld_frames: int = 2
    cache_dir: str = ""
    silence_rms: float = 1e-4

    @property
    def dim(self) -> int:
        """Length of one frame's feature vector."""
        return self.lld_frames * N_LLD


@functools.lru_cache(maxsize=1)
def _smile() -> opensmile.Smile:
    """The process-wide openSMILE extractor; constructing one takes ~0.3 s, so build it once."""
    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )


def lld_names() -> list[str]:
    """The 25 eGeMAPSv02 LLD column names, in track column order (e.g. "Loudness_sma3")."""
    return list(_smile().feature_names)


def extract_lld(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """(T, 25) float32 eGeMAPSv02 LLD track of a mono signal, row k starting at k*LLD_STEP_S seconds.

    openSMILE needs at least one 60 ms analysis window; for shorter input it returns a single
    all-NaN placeholder row (with a UserWarning). That row is not a measurement, so we return an
    empty (0, 25) track instead. Digital silence yields finite constants (e.g. -201 for the
    formant amplitudes), not NaN. Other non-finite values are passed through; callers sanitise.

    Args:
        signal: Mono samples, float, nominally in [-1, 1].
        sample_rate: Samples per second; openSMILE analyses at this rate (no resampling).
    """
    x = np.asarray(signal, dtype=np.float32).reshape(-1)
    if x.size < math.ceil(0.060 * sample_rate):
        return np.zeros((0, N_LLD), np.float32)
    # openSMILE converts to int16 by x * 32768 without clipping, so a full-scale sample would wrap.
    x = np.clip(x, -1.0, 32767 / 32768)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Segment too short")
        frame = _smile().process_signal(x, sample_rate)
    if frame.shape[0] == 1 and np.isnan(frame.to_numpy()).all():
        return np.zeros((0, N_LLD), np.float32)
    return frame.to_numpy(dtype=np.float32)


def _cache_dir(cfg: AudioConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    root = os.environ.get("ALN_CACHE_DIR") or Path.home() / ".cache" / "aln"
    return Path(root) / "egemaps"


def _read_bytes(wav_path: Path) -> bytes:
    try:
        return Path(wav_path).read_bytes()
    except OSError as e:
        raise DataError(f"{wav_path}: cannot read audio file ({e.strerror or e})") from e


def _decode_mono(data: bytes, wav_path: Path) -> tuple[np.ndarray, int]:
    """Decode audio bytes to a float32 mono signal; stereo is averaged because eGeMAPS is mono."""
    try:
        samples, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        # LibsndfileError's str() names the BytesIO object; error_string is just the reason.
        reason = " ".join(str(getattr(e, "error_string", None) or e).split())
        raise DataError(f"{wav_path}: not a readable audio file ({reason})") from e
    return samples.mean(axis=1), int(sample_rate)


def _cache_key(data: bytes) -> str:
    """Content-addressed key: renaming or moving a file keeps its cache, editing it does not."""
    h = hashlib.sha1(data)
    h.update(f"|{FEATURE_SET}|{FEATURE_LEVEL}|opensmile={opensmile.__version__}".encode())
    h.update(f"|format={CACHE_FORMAT_VERSION}".encode())
    return h.hexdigest()


def _save_atomic(path: Path, track: np.ndarray) -> None:
    """Write atomically (:mod:`fileio.atomic`) so concurrent workers never read a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        np.save(f, track)


def _track_from_bytes(data: bytes, wav_path: Path, cfg: AudioConfig, signal: np.ndarray | None = None,
                      sample_rate: int = 0) -> np.ndarray:
    """Cached LLD track of already-read file bytes; pass the decoded signal if the caller has it,
    so the file is read once. A broken or unwritable cache costs a recomputation, never a failure."""
    cache_file = _cache_dir(cfg) / f"{_cache_key(data)}.npy"
    if cache_file.exists():
        try:
            track = np.load(cache_file, allow_pickle=False)
            if track.ndim == 2 and track.shape[1] == N_LLD:
                return track.astype(np.float32, copy=False)
        except (OSError, ValueError) as e:
            log.warning("%s: ignoring unreadable audio cache %s (%s)", wav_path, cache_file, e)
    if signal is None:
        signal, sample_rate = _decode_mono(data, wav_path)
    track = extract_lld(signal, sample_rate)
    try:
        _save_atomic(cache_file, track)
    except OSError as e:
        log.warning("%s: could not write audio cache %s (%s)", wav_path, cache_file, e)
    return track


def lld_track(wav_path: Path, cfg: AudioConfig) -> np.ndarray:
    """The whole file's LLD track, read from / written to the disk cache.

    The cache key is the sha1 of the file's bytes plus the feature-set name, the opensmile version
    and a cache-format version, so a changed file or library never serves stale features. Stereo
    files are averaged to mono.

    Raises:
        DataError: The file cannot be read or decoded (the message names the file).
    """
    return _track_from_bytes(_read_bytes(wav_path), Path(wav_path), cfg)


def _pad_rows(track: np.ndarray, n: int) -> np.ndarray:
    """At least n rows: repeat the last row (or zeros for an empty track) so short audio still indexes."""
    if track.shape[0] >= n:
        return track
    last = track[-1:] if track.shape[0] else np.zeros((1, track.shape[1]), track.dtype)
    return np.concatenate([track, np.repeat(last, n - track.shape[0], axis=0)])


def frame_window_features(track: np.ndarray, n_frames: int, fps: float, cfg: AudioConfig) -> np.ndarray:
    """(n_frames, cfg.dim) float32 features indexed from a whole-file LLD track.

    For 0-based video frame t (spanning [t/fps, (t+1)/fps)) the paper's window starts at
    s = (t - context) / fps. The LLD row that a per-window extraction would produce first is the
    first row starting at or after s: k0 = ceil(s / LLD_STEP_S), clamped into [0, T - lld_frames]
    so frames at the start and end of the video reuse the nearest complete rows.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    track = _pad_rows(np.asarray(track, dtype=np.float32), cfg.lld_frames)
    t = np.arange(n_frames, dtype=np.float64)
    k0 = np.ceil((t - cfg.context_frames) / (fps * LLD_STEP_S) - _INDEX_EPS).astype(np.int64)
    k0 = np.clip(k0, 0, track.shape[0] - cfg.lld_frames)
    rows = k0[:, None] + np.arange(cfg.lld_frames)[None, :]
    return track[rows].reshape(n_frames, cfg.dim)


def pool_to_hop(track: np.ndarray, n_steps: int, hop_s: float) -> np.ndarray:
    """(n_steps, N_LLD) mean of the LLD rows starting within each step [t·hop, (t+1)·hop); a step that holds
    no row start (hop under 10 ms, or past the end of the audio) takes the row nearest its start.

    The sequence models' third input ("eGeMAPS LLDs pooled to the hop"): one vector per label step
    whatever the step's length, where the per-frame features above take a fixed number of LLD rows."""
    if hop_s <= 0:
        raise ValueError(f"hop must be positive, got {hop_s}")
    track = np.asarray(track, dtype=np.float64)
    out = np.zeros((n_steps, track.shape[1] if track.ndim == 2 else N_LLD), np.float64)
    if not len(track) or not n_steps:
        return out.astype(np.float32)
    step_of_row = np.floor(np.arange(len(track)) * LLD_STEP_S / hop_s + _INDEX_EPS).astype(np.int64)
    inside = step_of_row < n_steps
    counts = np.bincount(step_of_row[inside], minlength=n_steps)
    np.add.at(out, step_of_row[inside], track[inside])
    filled = counts > 0
    out[filled] /= counts[filled, None]
    empty = np.flatnonzero(~filled)
    out[empty] = track[np.clip(np.round(empty * hop_s / LLD_STEP_S).astype(np.int64), 0, len(track) - 1)]
    return out.astype(np.float32)


def direct_window_features(signal: np.ndarray, sample_rate: int, t: int, fps: float,
                           cfg: AudioConfig) -> np.ndarray:
    """Reference: the paper's per-window extraction for video frame t, shape (cfg.dim,).

    Runs openSMILE on the samples of frames t-context .. t+context only and takes its first
    lld_frames rows. Slow (one openSMILE run per frame); tests use it to measure how far the
    indexed track (:func:`frame_window_features`) is from what the paper computed.
    """
    start = max(0, round((t - cfg.context_frames) / fps * sample_rate))
    stop = min(len(signal), round((t + cfg.context_frames + 1) / fps * sample_rate))
    window = extract_lld(np.asarray(signal)[start:max(start, stop)], sample_rate)
    return _pad_rows(window, cfg.lld_frames)[: cfg.lld_frames].reshape(cfg.dim)


def video_audio_features(wav_path: Path | None, n_frames: int, fps: float, cfg: AudioConfig) -> np.ndarray:
    """(n_frames, cfg.dim) float32 audio features for one video; never NaN or inf.

    Videos without usable audio get zeros rather than an error, so that a dataset with a few
    silent or audio-less clips still trains; each such case is logged with the file name.
    Non-finite values from openSMILE are replaced by 0 (and counted in a warning).

    Raises:
        DataError: The file exists but cannot be decoded as audio.
    """
    zeros = np.zeros((n_frames, cfg.dim), np.float32)
    if not cfg.enabled:
        log.debug("%s: audio features disabled, using zeros", wav_path)
        return zeros
    if wav_path is None or not Path(wav_path).is_file():
        log.warning("%s: no audio file, using zero audio features", wav_path)
        return zeros
    wav_path = Path(wav_path)
    data = _read_bytes(wav_path)
    signal, sample_rate = _decode_mono(data, wav_path)
    finite = np.isfinite(signal)
    if not finite.all():   # a float wav can hold NaN/inf: openSMILE would turn them into garbage descriptors
        log.warning("%s: %d non-finite audio samples (NaN or inf), using zero audio features", wav_path,
                    int((~finite).sum()))
        return zeros
    clipped = float(np.mean(np.abs(signal) >= 0.999)) if signal.size else 0.0
    if clipped > 0.01:
        log.warning("%s: %.1f%% of the audio samples are clipped at full scale; its loudness descriptors "
                    "saturate", wav_path, 100 * clipped)
    rms = float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) if signal.size else 0.0
    if rms < cfg.silence_rms:
        log.warning("%s: audio is silent (RMS %.2g < %.2g), using zero audio features",
                    wav_path, rms, cfg.silence_rms)
        return zeros
    track = _track_from_bytes(data, wav_path, cfg, signal, sample_rate)
    if track.shape[0] == 0:
        log.warning("%s: audio too short for eGeMAPS (< 60 ms), using zero audio features", wav_path)
        return zeros
    bad = ~np.isfinite(track)
    if bad.any():
        log.warning("%s: replaced %d non-finite eGeMAPS values by 0", wav_path, int(bad.sum()))
        track = np.where(bad, np.float32(0), track)
    return frame_window_features(track, n_frames, fps, cfg)


@dataclass
class AudioStandardiser:
    """Per-column z-scoring of audio features, fitted on training frames only.

    eGeMAPS columns live on very different scales (loudness ~1, formant frequencies ~1000 Hz,
    sentinel -201 for unvoiced formant amplitudes), so the network sees standardised inputs. The
    statistics travel in the checkpoint so evaluation uses exactly the training normalisation.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> AudioStandardiser:
        """Fit on (N, dim) TRAINING features; constant columns get std 1 so they map to 0, not NaN."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"expected a non-empty (N, dim) array, got shape {x.shape}")
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std[std < 1e-8] = 1.0
        return cls(mean=mean.astype(np.float32), std=std.astype(np.float32))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(x - mean) / std as float32."""
        return ((np.asarray(features, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors for a checkpoint."""
        return {"mean": torch.as_tensor(self.mean, dtype=torch.float32).clone(),
                "std": torch.as_tensor(self.std, dtype=torch.float32).clone()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> AudioStandardiser:
        """Inverse of :meth:`state_dict`."""
        return cls(mean=np.asarray(state["mean"].detach().cpu(), dtype=np.float32),
                   std=np.asarray(state["std"].detach().cpu(), dtype=np.float32))
