"""AVEC 2019 label files: reading them (``;`` or ``,``, quoted names) and mapping 10 Hz labels to video frames.

A label file is ``;``-separated with the header ``name;timestamp;arousal;valence;liking`` and one row
per 0.1 s, e.g. ``'Devel_DE_01';0.000000;0.000000;0.000000;0.000000``. Labels are mapped to video frames
(frame ``t``, 0-based, at ``t / fps`` s) by nearest-label lookup or linear interpolation, after the usual
annotator-delay compensation: the label at ``tau + delay`` describes the frame at ``tau``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.errors import DataError

PARTITIONS = ("Train", "Devel", "Test")
CULTURES = ("DE", "HU", "CN")
DIMENSIONS = ("valence", "arousal", "liking")   # column order of labels_to_frames' values
METHODS = ("nearest", "linear")
INVALID = -5.0                                   # the project's invalid-label marker (as Aff-Wild2's -5)
_TIME_COLUMNS = ("timestamp", "frametime", "time")
_STEM = re.compile(r"^(Train|Devel|Test)_(DE|HU|CN)_(\d+)$")
_TOL = 1e-6                                      # seconds; absorbs float rounding of t / fps vs. "174.100000"


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


def read_avec_labels(path: Path | str, strict_times: bool = True) -> AvecLabels:
    """Read an AVEC 2018/2019 CES label file strictly.

    The separator is sniffed from the header (``;`` as in the official files, or ``,``). The header must
    name ``timestamp`` (or ``frameTime``), ``arousal`` and ``valence``; ``name`` and ``liking`` are
    optional; the column order is taken from the header. Names may be quoted (``'Devel_DE_01'``) or not.

    Raises:
        DataError: naming the file (and the 1-based line) on an unreadable or empty file, a wrong header,
            a row with the wrong number of fields, a non-numeric or non-finite value, a second recording
            name in the same file, or timestamps that do not strictly increase (``strict_times``; a
            prediction file is read with it off, as the official AVEC scorer, which never reads timestamps).
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
    if strict_times and times[0] < 0:
        raise DataError(f"{path}:2: negative timestamp {times[0]}")
    steps = np.diff(times)
    if strict_times and (steps <= 0).any():
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


def parse_stem(stem: str) -> tuple[str, str, int] | None:
    """``"Devel_HU_07"`` -> ``("Devel", "HU", 7)``; None for names outside the AVEC scheme."""
    match = _STEM.match(stem)
    return (match.group(1), match.group(2), int(match.group(3))) if match else None


def label_path(root: Path | str, recording: str) -> Path:
    return Path(root) / "labels" / f"{recording}.csv"
