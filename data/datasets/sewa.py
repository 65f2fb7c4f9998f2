"""SEWA in the AVEC 2019 Cross-cultural Emotion Sub-challenge (CES) layout: labels, frame mapping, splits.

On-disk layout (DESIGN §6)::

    ROOT/labels/<Partition>_<Culture>_<NN>.csv      Partition Train|Devel|Test, Culture DE|HU|CN (CN: Test only)
    ROOT/audio/<stem>.wav
    ROOT/video/<stem>.avi
    ROOT/cropped_aligned/<stem>/<frame:05d>.jpg     written by ``python -m data.prepare``; 1-based; absent = no face
    ROOT/meta/<stem>.json                           :class:`data.meta.VideoMeta`: fps and frame count of the video
    ROOT/folds_seed<seed>.json                      fold manifest of the ``folds`` protocol (written on first use)

A label file is ``;``-separated with the header ``name;timestamp;arousal;valence;liking`` and one row
per 0.1 s, e.g. ``'Devel_DE_01';0.000000;0.000000;0.000000;0.000000``. In the public AVEC 2019 devel
files the first timestamp is 0.0, the name is quoted with single quotes, and files hold 974 to 1768 rows
(97.3 to 176.7 s). The official baseline predictions use the same format but are padded to 1768 rows
(176.7 s, the last value repeated) for every recording; the scorer crops them to the labels.

Labels (10 Hz) are mapped to video frames (frame ``t``, 0-based, at ``t / fps`` s) by nearest-label
lookup or linear interpolation, after the usual annotator-delay compensation: an annotator reacts to
what they see with a lag, so the label at ``tau + delay`` describes the frame at ``tau``.
See :func:`labels_to_frames` for the edge policies.

The AVEC file names carry no subject id. Each AVEC recording shows one participant and, as far as the
challenge's documentation goes, nobody appears in two recordings, so by default every recording is its own
subject; a ``recording,subject`` CSV (``SewaConfig.subjects_file``) makes the folds subject-disjoint when
that assumption does not hold (e.g. with the full SEWA DB metadata).

Why a fold manifest: the SEWA five-fold person-independent protocol is only reproducible when every run
uses the same folds, so the folds are drawn once from a seed, written to a JSON file, and from then on
read back and checked against the data, never silently regenerated.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.datasets.affwild2 import IndexReport, VideoRecord
from data.datasets.meta import meta_path, read_meta
from data.errors import DataError

log = logging.getLogger(__name__)

PARTITIONS = ("Train", "Devel", "Test")
CULTURES = ("DE", "HU", "CN")
DIMENSIONS = ("valence", "arousal", "liking")   # column order of labels_to_frames' values
METHODS = ("nearest", "linear")
PROTOCOLS = ("folds", "avec", "cross_cultural")
SPLITS = ("train", "val", "test")
INVALID = -5.0                                   # the project's invalid-label marker (as Aff-Wild2's -5)
_TIME_COLUMNS = ("timestamp", "frametime", "time")
_STEM = re.compile(r"^(Train|Devel|Test)_(DE|HU|CN)_(\d+)$")
_CROP = re.compile(r"^(\d+)\.jpg$")
_TOL = 1e-6                                      # seconds; absorbs float rounding of t / fps vs. "174.100000"
_DURATION_MISMATCH = 0.10                        # warn when labels and video lengths differ by more than 10 %


@dataclass
class SewaConfig:
    """How SEWA recordings become frame labels and splits.

    ``default_fps`` = 50: the AVEC 2018/2019 SEWA visual features are computed over 50-frame (1 s)
    windows with a 5-frame (100 ms) hop (Pandit et al., ``papers/000``), i.e. the challenge's videos run
    at 50 fps. (The raw SEWA DB webcam recordings have an "effective" 20-30 fps, so this value is only a
    fallback: the frame rate that ``python -m data.prepare`` read from the container, in ``meta/<stem>.json``,
    always wins, and using the fallback logs a warning.)

    Delays are in seconds per dimension and are recorded in the run config. Pandit et al. use 4.0 s
    (arousal) and 2.8 s (valence) for AVEC 2019 CES; the default of 0 keeps the raw alignment.
    """

    label_rate_hz: float = 10.0     # rate of the label files (AVEC 2019: one row per 0.1 s)
    interpolation: str = "nearest"  # nearest | linear: how 10 Hz labels reach video frames
    delay_arousal: float = 0.0      # annotator-delay compensation, seconds (>= 0)
    delay_valence: float = 0.0
    delay_liking: float = 0.0
    protocol: str = "folds"         # folds | avec | cross_cultural
    num_folds: int = 5
    fold_manifest: str = ""         # "" = ROOT/folds_seed<fold_seed>.json
    fold_seed: int = 0
    subjects_file: str = ""         # optional CSV "recording,subject"; "" = every recording its own subject
    default_fps: float = 50.0       # frame rate when meta/<stem>.json is missing

    def validate(self) -> None:
        """Raise ValueError naming the offending key."""
        _positive_finite("label_rate_hz", self.label_rate_hz)
        _positive_finite("default_fps", self.default_fps)
        if self.interpolation not in METHODS:
            raise ValueError(f"sewa.interpolation must be one of {METHODS}, got {self.interpolation!r}")
        for key in ("delay_arousal", "delay_valence", "delay_liking"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"sewa.{key} must be a finite number of seconds >= 0 (annotators lag behind "
                                 f"the video, never ahead), got {value!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"sewa.protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not _is_int(self.num_folds) or self.num_folds < 3:
            raise ValueError(f"sewa.num_folds must be an integer >= 3 (test, validation and at least one "
                             f"training fold), got {self.num_folds!r}")
        if not _is_int(self.fold_seed) or self.fold_seed < 0:
            raise ValueError(f"sewa.fold_seed must be a non-negative integer, got {self.fold_seed!r}")
        for key in ("fold_manifest", "subjects_file"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"sewa.{key} must be a path string, got {getattr(self, key)!r}")

    @property
    def delays(self) -> dict[str, float]:
        return {"arousal": float(self.delay_arousal), "valence": float(self.delay_valence),
                "liking": float(self.delay_liking)}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_finite(key: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"sewa.{key} must be a finite number > 0, got {value!r}")


# --------------------------------------------------------------------------------------------- label files


@dataclass
class AvecLabels:
    """One AVEC label file: times in seconds and one float64 track per dimension."""

    path: Path
    name: str | None               # the recording named in the rows (quotes stripped); None without a name column
    times: np.ndarray              # (n,) strictly increasing seconds
    arousal: np.ndarray            # (n,)
    valence: np.ndarray            # (n,)
    liking: np.ndarray | None      # (n,), None when the file has no liking column

    def __len__(self) -> int:
        return len(self.times)

    def track(self, dimension: str) -> np.ndarray | None:
        return getattr(self, dimension)


def unquote(text: str) -> str:
    """Strip surrounding whitespace and one pair of matching single or double quotes (``'Devel_DE_01'``)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _sniff_separator(path: Path, header: str) -> str:
    if ";" in header:
        return ";"
    if "," in header:
        return ","
    raise DataError(f"{path}:1: expected a header of ';'- or ','-separated column names "
                    f"(name;timestamp;arousal;valence;liking), found {header.strip()[:80]!r}")


def read_avec_labels(path: Path | str) -> AvecLabels:
    """Read an AVEC 2018/2019 CES label file strictly.

    The separator is sniffed from the header (``;`` as in the official files, or ``,``). The header must
    name ``timestamp`` (or ``frameTime``), ``arousal`` and ``valence``; ``name`` and ``liking`` are
    optional; the column order is taken from the header. Names may be quoted (``'Devel_DE_01'``) or not.

    Raises:
        DataError: naming the file (and the 1-based line) on an unreadable or empty file, a wrong header,
            a row with the wrong number of fields, a non-numeric or non-finite value, a second recording
            name in the same file, or timestamps that do not strictly increase.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read label file ({exc.__class__.__name__})") from exc
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(f"{path}:1: empty label file (expected the header name;timestamp;arousal;valence;liking)")
    sep = _sniff_separator(path, lines[0])
    columns = [unquote(c).lower() for c in lines[0].split(sep)]
    time_col = next((c for c in _TIME_COLUMNS if c in columns), None)
    if time_col is None or "arousal" not in columns or "valence" not in columns or len(set(columns)) != len(columns):
        raise DataError(f"{path}:1: header must name the columns timestamp, arousal and valence once each "
                        f"(name and liking optional), found {lines[0].strip()[:80]!r}")
    numeric = {"time": columns.index(time_col), "arousal": columns.index("arousal"),
               "valence": columns.index("valence")}
    if "liking" in columns:
        numeric["liking"] = columns.index("liking")
    name_col = columns.index("name") if "name" in columns else None

    tracks: dict[str, list[float]] = {key: [] for key in numeric}
    name: str | None = None
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != len(columns):
            raise DataError(f"{path}:{lineno}: expected {len(columns)} {sep!r}-separated fields as in the "
                            f"header, found {len(fields)}: {line.strip()[:80]!r}")
        if name_col is not None:
            row_name = unquote(fields[name_col])
            if name is None:
                name = row_name
            elif row_name != name:
                raise DataError(f"{path}:{lineno}: row names recording {row_name!r}, earlier rows {name!r} "
                                f"(one recording per file)")
        for key, col in numeric.items():
            raw = fields[col].strip()
            try:
                value = float(raw)
            except ValueError:
                raise DataError(f"{path}:{lineno}: {columns[col]} value {raw!r} is not a number") from None
            if not math.isfinite(value):
                raise DataError(f"{path}:{lineno}: {columns[col]} value {raw!r} is not a finite number")
            tracks[key].append(value)
    if not tracks["time"]:
        raise DataError(f"{path}: no label rows after the header")
    times = np.asarray(tracks["time"], dtype=np.float64)
    if times[0] < 0:
        raise DataError(f"{path}:2: negative timestamp {times[0]}")
    steps = np.diff(times)
    if (steps <= 0).any():
        bad = int(np.argmax(steps <= 0))
        lineno = _data_line(lines, bad + 1)
        raise DataError(f"{path}:{lineno}: timestamp {times[bad + 1]} does not increase "
                        f"(previous row {times[bad]})")
    return AvecLabels(
        path=path, name=name, times=times,
        arousal=np.asarray(tracks["arousal"], dtype=np.float64),
        valence=np.asarray(tracks["valence"], dtype=np.float64),
        liking=np.asarray(tracks["liking"], dtype=np.float64) if "liking" in tracks else None,
    )


def _data_line(lines: list[str], row: int) -> int:
    """1-based line number of the ``row``-th (0-based) non-blank data row."""
    seen = -1
    for lineno, line in enumerate(lines[1:], start=2):
        if line.strip():
            seen += 1
            if seen == row:
                return lineno
    return len(lines)


# ------------------------------------------------------------------------------------ labels -> frames


def labels_to_frames(labels: AvecLabels, n_frames: int, fps: float, method: str = "nearest",
                     delay_s: Mapping[str, float] | None = None,
                     label_hop_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Map a 10 Hz label track onto the frames of a video.

    Frame ``t`` (0-based) is at ``t / fps`` seconds. With a delay ``d`` for a dimension, the frame at
    ``tau`` takes that dimension's label at ``tau + d`` (the track moves *earlier* by ``d``), because the
    annotators' ratings lag behind what they saw.

    Edge policy (all per dimension, on the shifted time ``s = t / fps + d``):

    * ``s`` inside ``[first, last]`` label time: mapped (``nearest``: the nearest label time, a frame exactly
      halfway takes the earlier label; ``linear``: ``np.interp`` between the two neighbours).
    * ``s`` before the first label: only when the file starts within one label hop of 0 (e.g. at 0.1 s,
      a convention in which a row summarises the hop that ends at its timestamp) do frames with
      ``0 <= s < first`` take the first label; otherwise they are invalid. The public AVEC 2019 files start
      at 0.0, so for them this never applies.
    * ``s`` after the last label: invalid. Labels are never extrapolated, so frames beyond the label track
      (a label file shorter than the video, or the last ``d`` seconds after a delay shift) are dropped;
      labels beyond the video (a longer label file) are simply never looked up.

    Args:
        labels: the label file, see :func:`read_avec_labels`.
        n_frames: number of video frames.
        fps: video frame rate.
        method: ``"nearest"`` or ``"linear"``.
        delay_s: seconds per dimension (``arousal``, ``valence``, ``liking``); missing keys are 0. Negative
            delays are accepted here (the track moves later) for analysis; the config refuses them.
        label_hop_s: the label period for the start-of-file allowance; default the median step of the file.

    Returns:
        ``values`` (n_frames, 3) float64 in the order ``[valence, arousal, liking]``, NaN where a dimension
        has no label (and the whole liking column when the file has none); ``valid`` (n_frames,) bool, True
        where every dimension present in the file has a label, so a sample never carries a partial label set.

    Example:
        >>> values, valid = labels_to_frames(labels, n_frames=8750, fps=50.0, delay_s={"arousal": 2.0})
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    delays = dict(delay_s or {})
    unknown = set(delays) - set(DIMENSIONS)
    if unknown:
        raise ValueError(f"delay_s has unknown dimensions {sorted(unknown)}; use {DIMENSIONS}")
    times = labels.times
    if label_hop_s is None:
        label_hop_s = float(np.median(np.diff(times))) if len(times) > 1 else float(times[0])
    # The start-of-file allowance: a file that begins within one hop of 0 covers the time from 0.
    lower = 0.0 if 0.0 < times[0] <= label_hop_s + _TOL else times[0]
    frame_times = np.arange(n_frames, dtype=np.float64) / fps

    values = np.full((n_frames, len(DIMENSIONS)), np.nan)
    present = []
    for col, dim in enumerate(DIMENSIONS):
        track = labels.track(dim)
        if track is None:
            continue
        present.append(col)
        shifted = frame_times + float(delays.get(dim, 0.0))
        inside = (shifted >= lower - _TOL) & (shifted <= times[-1] + _TOL)
        query = np.clip(shifted[inside], times[0], times[-1])
        if method == "linear":
            values[inside, col] = np.interp(query, times, track)
        else:
            values[inside, col] = track[nearest_index(times, query)]
    valid = np.isfinite(values[:, present]).all(axis=1)
    return values, valid


def nearest_index(times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of sorted ``times`` for each query; exact halfway goes to the earlier one.

    The halfway rule carries a 1e-9 s tolerance so that the choice does not depend on float rounding.
    """
    right = np.clip(np.searchsorted(times, query, side="left"), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    take_right = (times[right] - query) < (query - times[left]) - 1e-9
    return np.where(take_right, right, left)


# --------------------------------------------------------------------------------------------- indexing


def parse_stem(stem: str) -> tuple[str, str, int] | None:
    """``"Devel_HU_07"`` -> ``("Devel", "HU", 7)``; None for names outside the AVEC scheme."""
    match = _STEM.match(stem)
    return (match.group(1), match.group(2), int(match.group(3))) if match else None


def label_path(root: Path | str, recording: str) -> Path:
    return Path(root) / "labels" / f"{recording}.csv"


def _crop_numbers(image_dir: Path) -> set[int]:
    if not image_dir.is_dir():
        return set()
    return {int(m.group(1)) for m in map(_CROP.match, os.listdir(image_dir)) if m}


def index_sewa(root: Path | str, recordings: list[str], split: str,
               cfg: SewaConfig, require_frames: bool = True) -> tuple[list[VideoRecord], IndexReport]:
    """Index ``recordings`` of a SEWA root as :class:`VideoRecord` s, the type every reader produces.

    Per recording: the labels are mapped to the video's frames (:func:`labels_to_frames` with the
    config's interpolation and delays); frames without a label become ``-5`` in ``labels`` (and
    ``liking``), so :func:`data.affwild2.valid_label_mask` and the dataset drop them. Labels outside
    [-1, 1] are treated the same way. ``frames`` lists the usable 1-based frame numbers: a valid label
    and an existing crop.

    The frame count and rate come from ``meta/<stem>.json``; without it the count is the largest crop
    number (frames after the last detected face have no crop anyway, so no usable frame is lost; only
    the report's counts shrink) and the rate ``cfg.default_fps``, with a warning. Recordings without a crop
    folder are skipped with a warning. Frames without a label are counted in ``IndexReport.invalid_labels``.

    Raises:
        DataError: a missing root or label file, a label file naming another recording, no way to count
            a recording's frames, or no usable frame at all.
    """
    cfg.validate()
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: SEWA data root does not exist or is not a directory")
    if not recordings:
        raise DataError(f"{root}: no recordings for split '{split}'")
    if len(set(recordings)) != len(recordings):
        dup = sorted({r for r in recordings if recordings.count(r) > 1})
        raise DataError(f"{root}: recordings listed twice in split '{split}': {dup[:5]}")
    image_root = root / "cropped_aligned"
    if not image_root.is_dir():
        raise DataError(f"{image_root}: folder of face crops is missing (run python -m data.prepare)")
    hop = 1.0 / cfg.label_rate_hz

    report, records = IndexReport(), []
    for stem in recordings:
        path = label_path(root, stem)
        if not path.is_file():
            raise DataError(f"{path}: label file of recording {stem!r} is missing")
        labels = read_avec_labels(path)
        if labels.name is not None and labels.name != stem:
            raise DataError(f"{path}: rows name recording {labels.name!r}, expected {stem!r}")
        if len(labels) > 1:
            step = float(np.median(np.diff(labels.times)))
            if abs(step - hop) > 0.01 * hop:
                log.warning("%s: label step %.4f s differs from sewa.label_rate_hz=%g", path, step,
                            cfg.label_rate_hz)
        image_dir = image_root / stem
        crops = _crop_numbers(image_dir)
        meta = read_meta(root, stem)
        if meta is not None:
            if meta.frames <= 0 or not (math.isfinite(meta.fps) and meta.fps > 0):
                raise DataError(f"{meta_path(root, stem)}: invalid frames={meta.frames} / fps={meta.fps}")
            n_frames, fps = int(meta.frames), float(meta.fps)
        else:
            if not crops:
                raise DataError(f"{meta_path(root, stem)}: no video metadata and no crops in {image_dir} to "
                                f"count the frames of {stem}; run python -m data.prepare")
            n_frames, fps = max(crops), cfg.default_fps
            log.warning("%s: no video metadata; assuming %d frames (last crop) at sewa.default_fps=%g",
                        meta_path(root, stem), n_frames, fps)
        video_s, label_s = n_frames / fps, float(labels.times[-1])
        if abs(video_s - label_s) > _DURATION_MISMATCH * video_s:
            log.warning("%s: labels cover %.1f s but the video lasts %.1f s (%d frames at %g fps); check the "
                        "frame rate", path, label_s, video_s, n_frames, fps)

        values, valid = labels_to_frames(labels, n_frames, fps, cfg.interpolation, cfg.delays, label_hop_s=hop)
        present = [c for c, d in enumerate(DIMENSIONS) if labels.track(d) is not None]
        in_range = np.all(np.abs(np.nan_to_num(values[:, present])) <= 1.0, axis=1)
        if (valid & ~in_range).any():
            log.warning("%s: %d frames with a label outside [-1, 1] are dropped", path, int((valid & ~in_range).sum()))
        valid &= in_range
        va = np.where(valid[:, None], values[:, :2], INVALID).astype(np.float32)
        liking = None if labels.liking is None else np.where(valid, values[:, 2], INVALID).astype(np.float32)
        report.invalid_labels += int((~valid).sum())
        report.valid_labels += int(valid.sum())
        wav = root / "audio" / f"{stem}.wav"
        if not wav.is_file():
            report.audio_missing += 1

        if not image_dir.is_dir():
            log.warning("%s: no crop folder %s; skipping its %d labelled frames", path, image_dir, int(valid.sum()))
            report.videos_without_images += 1
            report.labelled_without_image += int(valid.sum())
            continue
        numbers = np.arange(1, n_frames + 1)
        has_image = np.fromiter((k in crops for k in numbers), dtype=bool, count=n_frames)
        report.labelled_without_image += int((valid & ~has_image).sum())
        usable = numbers[valid & has_image].astype(np.int64)
        report.images_without_label += sum(1 for c in crops if c > n_frames)
        records.append(VideoRecord(
            name=stem, split=split, annotation=path, image_dir=image_dir,
            audio=wav if wav.is_file() else None, fps=fps, labels=va, frames=usable, liking=liking,
        ))
        report.videos += 1
        report.usable_frames += int(len(usable))
    log.info(report.summary(split))
    if require_frames and report.usable_frames == 0:
        raise DataError(f"{root}: no usable frames (valid label and existing crop) in split '{split}'")
    return records, report


# ------------------------------------------------------------------------------------------------ splits


def labelled_recordings(root: Path | str) -> list[str]:
    """Stems of ``ROOT/labels/*.csv`` in the AVEC naming scheme, sorted; other CSV names are ignored with a warning.

    The AVEC test labels are not public, so Test_* recordings normally have no label file and do not appear.
    """
    label_dir = Path(root) / "labels"
    if not label_dir.is_dir():
        raise DataError(f"{label_dir}: SEWA label folder is missing (expected labels/<Partition>_<Culture>_<NN>.csv)")
    stems, other = [], []
    for path in sorted(label_dir.glob("*.csv")):
        (stems if parse_stem(path.stem) else other).append(path.stem)
    if other:
        log.warning("%s: ignoring %d label files outside the <Partition>_<Culture>_<NN> scheme (e.g. %s)",
                    label_dir, len(other), other[0])
    return stems


def read_subjects(path: Path | str) -> dict[str, str]:
    """Read a ``recording,subject`` CSV (header required; ``,`` or ``;``) into {recording: subject}."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read subjects file ({exc.__class__.__name__})") from exc
    sep = ";" if lines and ";" in lines[0] else ","
    header = [unquote(c).lower() for c in lines[0].split(sep)] if lines else []
    if header != ["recording", "subject"]:
        raise DataError(f"{path}:1: expected the header 'recording,subject', found {(lines or [''])[0][:80]!r}")
    subjects: dict[str, str] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [unquote(f) for f in line.split(sep)]
        if len(fields) != 2 or not fields[0] or not fields[1]:
            raise DataError(f"{path}:{lineno}: expected 'recording{sep}subject', found {line.strip()[:80]!r}")
        if fields[0] in subjects:
            raise DataError(f"{path}:{lineno}: recording {fields[0]!r} listed twice")
        subjects[fields[0]] = fields[1]
    return subjects


def make_fold_manifest(recordings: Iterable[str], subjects: Mapping[str, str] | None, k: int,
                       seed: int) -> dict:
    """Draw ``k`` subject-disjoint folds, deterministically from ``seed``.

    Subjects (sorted, then shuffled with ``np.random.default_rng(seed)``) are placed largest first (a
    stable sort, so the shuffle orders subjects of equal size) into the fold with the fewest recordings so
    far (lowest index on ties): with one recording per subject this is a round robin, and the fold sizes
    differ by at most one whenever that is possible.

    Args:
        recordings: recording stems.
        subjects: {recording: subject}; None = every recording is its own subject.
        k: number of folds.
        seed: shuffling seed.

    Returns:
        ``{"seed", "num_folds", "subjects": {recording: subject}, "folds": [[recording, ...], ...]}``.
    """
    recordings = sorted(set(recordings))
    mapping = {r: (subjects[r] if subjects is not None else r) for r in recordings}
    groups: dict[str, list[str]] = {}
    for rec in recordings:
        groups.setdefault(mapping[rec], []).append(rec)
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    if len(groups) < k:
        raise DataError(f"{len(groups)} subjects cannot fill {k} subject-disjoint folds")
    names = sorted(groups)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    order.sort(key=lambda s: -len(groups[s]))
    folds: list[list[str]] = [[] for _ in range(k)]
    for subject in order:
        target = min(range(k), key=lambda f: (len(folds[f]), f))
        folds[target].extend(groups[subject])
    return {"seed": int(seed), "num_folds": int(k), "subjects": mapping, "folds": [sorted(f) for f in folds]}


def write_fold_manifest(path: Path | str, manifest: dict) -> Path:
    """Write ``manifest`` as JSON atomically (temp file + ``os.replace``): a killed run leaves no half file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DataError(f"{path}: cannot write the fold manifest ({exc.strerror or exc.__class__.__name__}); "
                        f"set sewa.fold_manifest to a writable path") from exc
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(manifest, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_fold_manifest(path: Path | str) -> dict:
    """Read a fold manifest and check its shape (not yet against the data: see :func:`check_manifest`)."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable fold manifest ({exc.__class__.__name__})") from exc
    ok = (isinstance(manifest, dict) and _is_int(manifest.get("seed")) and _is_int(manifest.get("num_folds"))
          and isinstance(manifest.get("subjects"), dict)
          and all(isinstance(k, str) and isinstance(v, str) for k, v in manifest["subjects"].items())
          and isinstance(manifest.get("folds"), list)
          and all(isinstance(f, list) and all(isinstance(r, str) for r in f) for f in manifest["folds"]))
    if not ok:
        raise DataError(f"{path}: not a fold manifest (expected {{\"seed\": int, \"num_folds\": int, "
                        f"\"subjects\": {{recording: subject}}, \"folds\": [[recording, ...], ...]}})")
    return manifest


def check_manifest(manifest: dict, recordings: Iterable[str], *, num_folds: int | None = None,
                   subjects: Mapping[str, str] | None = None, source: Path | str = "fold manifest") -> None:
    """Check that ``manifest`` describes exactly ``recordings``.

    Args:
        manifest: as returned by :func:`make_fold_manifest` / :func:`read_fold_manifest`.
        recordings: the labelled recordings found in the data.
        num_folds: the configured number of folds, if it must match.
        subjects: the configured {recording: subject} mapping, if it must match the manifest's.
        source: the manifest's path, named in every error.

    Raises:
        DataError: naming ``source``: a fold-count mismatch, a recording in two folds, a data recording
            missing from the manifest or a manifest recording missing from the data, a recording without a
            subject, a subject split across folds, or subjects that differ from ``subjects``.
    """
    folds = manifest["folds"]
    if manifest["num_folds"] != len(folds):
        raise DataError(f"{source}: num_folds is {manifest['num_folds']} but {len(folds)} folds are listed")
    if num_folds is not None and num_folds != len(folds):
        raise DataError(f"{source}: has {len(folds)} folds but sewa.num_folds={num_folds}; set sewa.num_folds or "
                        f"point sewa.fold_manifest to another file")
    fold_of: dict[str, int] = {}
    for i, fold in enumerate(folds):
        for rec in fold:
            if rec in fold_of:
                raise DataError(f"{source}: recording {rec!r} is in folds {fold_of[rec]} and {i}")
            fold_of[rec] = i
    data = set(recordings)
    missing, extra = sorted(data - set(fold_of)), sorted(set(fold_of) - data)
    if missing:
        raise DataError(f"{source}: {len(missing)} labelled recordings are in no fold (e.g. {missing[:3]}); the "
                        f"data changed since the manifest was written - delete it to draw new folds")
    if extra:
        raise DataError(f"{source}: {len(extra)} recordings of the manifest have no label file (e.g. {extra[:3]})")
    subject_fold: dict[str, int] = {}
    for rec, i in sorted(fold_of.items()):
        subject = manifest["subjects"].get(rec)
        if subject is None:
            raise DataError(f"{source}: recording {rec!r} has no subject")
        if subjects is not None and subjects.get(rec, rec) != subject:
            raise DataError(f"{source}: recording {rec!r} has subject {subject!r} here but "
                            f"{subjects.get(rec, rec)!r} in the configured subjects")
        if subject_fold.setdefault(subject, i) != i:
            raise DataError(f"{source}: subject {subject!r} is split across folds {subject_fold[subject]} and {i}")


def manifest_path(root: Path | str, cfg: SewaConfig) -> Path:
    return Path(cfg.fold_manifest).expanduser() if cfg.fold_manifest else \
        Path(root) / f"folds_seed{cfg.fold_seed}.json"


def _by_prefix(recordings: list[str], *prefixes: str) -> list[str]:
    return sorted(r for r in recordings if any(r.startswith(p + "_") for p in prefixes))


def split_recordings(root: Path | str, cfg: SewaConfig, split: str, fold: int = 0) -> list[str]:
    """The recordings of ``split`` (train | val | test) under ``cfg.protocol``.

    * ``folds`` (the SEWA person-independent K-fold protocol): subject-disjoint folds over every
      recording with a label file; test = fold ``fold`` (``data.fold``), val = fold ``(fold + 1) % K``,
      train = the rest. The folds come from the manifest (created at the first call, then only read
      and checked; see the module docstring).
    * ``avec``: train = Train_DE + Train_HU, val = Devel_DE + Devel_HU, test = the same Devel recordings,
      because the AVEC 2019 test labels are not public (test scores equal validation scores).
    * ``cross_cultural``: train = Train_DE, val = Devel_DE, test = Devel_HU + Train_HU (train on German,
      test on Hungarian, as in the cross-cultural papers).

    Raises:
        DataError: a missing label folder, a manifest that does not match the data, or an empty split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cfg.validate()
    if not _is_int(fold) or not 0 <= fold < cfg.num_folds:
        raise ValueError(f"data.fold must be an integer in [0, {cfg.num_folds - 1}], got {fold!r}")
    recordings = labelled_recordings(root)
    if cfg.protocol == "folds":
        chosen = _fold_split(root, cfg, recordings, split, fold)
    elif cfg.protocol == "avec":
        chosen = {"train": _by_prefix(recordings, "Train_DE", "Train_HU"),
                  "val": _by_prefix(recordings, "Devel_DE", "Devel_HU"),
                  "test": _by_prefix(recordings, "Devel_DE", "Devel_HU")}[split]
    else:
        chosen = {"train": _by_prefix(recordings, "Train_DE"),
                  "val": _by_prefix(recordings, "Devel_DE"),
                  "test": _by_prefix(recordings, "Devel_HU", "Train_HU")}[split]
    if not chosen:
        raise DataError(f"{Path(root) / 'labels'}: no labelled recordings for split '{split}' of protocol "
                        f"'{cfg.protocol}'")
    return chosen


def _fold_split(root: Path | str, cfg: SewaConfig, recordings: list[str], split: str, fold: int) -> list[str]:
    subjects = read_subjects(cfg.subjects_file) if cfg.subjects_file else None
    if subjects is not None:
        unmapped = [r for r in recordings if r not in subjects]
        if unmapped:
            raise DataError(f"{cfg.subjects_file}: no subject for {len(unmapped)} labelled recordings "
                            f"(e.g. {unmapped[:3]})")
    path = manifest_path(root, cfg)
    if path.is_file():
        manifest = read_fold_manifest(path)
        if manifest["seed"] != cfg.fold_seed:
            raise DataError(f"{path}: folds were drawn with seed {manifest['seed']} but sewa.fold_seed="
                            f"{cfg.fold_seed}; use the matching seed or another sewa.fold_manifest")
    else:
        manifest = make_fold_manifest(recordings, subjects, cfg.num_folds, cfg.fold_seed)
        write_fold_manifest(path, manifest)
        log.info("%s: wrote %d-fold manifest (seed %d) over %d recordings", path, cfg.num_folds,
                 cfg.fold_seed, len(recordings))
    effective = subjects if subjects is not None else {r: r for r in recordings}
    check_manifest(manifest, recordings, num_folds=cfg.num_folds, subjects=effective, source=path)
    folds = manifest["folds"]
    test, val = fold, (fold + 1) % cfg.num_folds
    if split == "test":
        return sorted(folds[test])
    if split == "val":
        return sorted(folds[val])
    return sorted(r for i, f in enumerate(folds) if i not in (test, val) for r in f)
