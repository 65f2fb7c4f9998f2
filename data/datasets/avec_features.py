"""Reader for the AVEC 2018/2019 feature CSVs (eGeMAPS, BoAW/BoVW, DeepSpectrum, ResNet, FAU ...).

The challenge distributes one file per recording and feature set, one row per frame, e.g.::

    name;frameTime;F0semitoneFrom27.5Hz_sma3nz_amean;...        (optional header)
    'Train_DE_01';0.000000;23.85;...

The separator is ``;`` (openSMILE, openXBOW) or ``,``; the header is optional (without one, the first
column is the recording name and the second the time in seconds); names may be quoted. The sequence
baselines align these rows to the 10 Hz label times with :func:`align_to_labels`.

Why strict: a feature file with a NaN, a ragged row or a shuffled time column would otherwise become
silent garbage in a model's input, so every such problem is a :class:`DataError` naming file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.datasets.affwild2 import is_number
from data.datasets.sewa import nearest_index, unquote
from data.errors import DataError

TIME_COLUMNS = ("frametime", "timestamp", "time")
METHODS = ("nearest", "linear")


@dataclass
class FeatureSequence:
    """The rows of one feature file."""

    name: str | None           # recording named in the rows (quotes stripped); None without a name column
    times: np.ndarray          # (n,) float64 seconds, strictly increasing
    values: np.ndarray         # (n, d) float32
    columns: list[str]         # d feature names (header names, or "f0".."f{d-1}" without a header)
    path: Path | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def dim(self) -> int:
        return self.values.shape[1]


def read_feature_file(path: Path | str) -> FeatureSequence:
    """Read one AVEC feature file.

    Accepted shapes: ``name;frameTime;f1;...`` / ``name;timestamp;...`` headers (also without the name
    column: ``frameTime;f1;...``), or no header with the name in the first column and the time in the
    second; ``;`` or ``,`` separators (sniffed from the first line).

    Raises:
        DataError: naming the file (and the 1-based line) for an unreadable or empty file, no feature
            column, a header without a time column, a ragged row, a non-numeric or non-finite value,
            rows of two recordings, or times that do not strictly increase.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read feature file ({exc.__class__.__name__})") from exc
    rows = [(n, ln) for n, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if not rows:
        raise DataError(f"{path}: empty feature file")
    first_no, first = rows[0]
    sep = ";" if ";" in first else "," if "," in first else None
    if sep is None:
        raise DataError(f"{path}:{first_no}: expected ';'- or ','-separated columns, found {first.strip()[:80]!r}")
    head = [unquote(c) for c in first.split(sep)]

    if len(head) > 1 and is_number(head[1]):          # no header: name, time, features
        name_col, time_col, columns = 0, 1, None
    else:
        lowered = [c.lower() for c in head]
        if lowered[0] in TIME_COLUMNS:
            name_col, time_col = None, 0
        elif len(lowered) > 1 and lowered[1] in TIME_COLUMNS:
            name_col, time_col = 0, 1
        else:
            raise DataError(f"{path}:{first_no}: header must start with name;frameTime (or name;timestamp, or "
                            f"frameTime), found {first.strip()[:80]!r}")
        columns = head[time_col + 1:]
        rows = rows[1:]
        if not rows:
            raise DataError(f"{path}: no feature rows after the header")
    width = len(head)
    if width - time_col - 1 < 1:
        raise DataError(f"{path}:{first_no}: no feature columns after the time column")
    if name_col is not None and is_number(head[0]) and columns is None:
        raise DataError(f"{path}:{first_no}: first column should be the recording name, found the number "
                        f"{head[0]!r}")

    split = []
    for lineno, line in rows:
        fields = line.split(sep)
        if len(fields) != width:
            raise DataError(f"{path}:{lineno}: expected {width} {sep!r}-separated fields, found {len(fields)}")
        split.append(fields)
    try:
        numbers = np.array([f[time_col:] for f in split], dtype=np.float64)
    except ValueError:
        numbers = None
    if numbers is None:
        for (lineno, _), fields in zip(rows, split, strict=True):
            for col, raw in enumerate(fields[time_col:], start=time_col):
                if not is_number(raw):
                    label = head[col] if columns is not None else f"column {col + 1}"
                    raise DataError(f"{path}:{lineno}: {label} value {raw.strip()[:40]!r} is not a number")
        raise DataError(f"{path}: feature values are not numbers")  # pragma: no cover - found above
    bad = ~np.isfinite(numbers)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        label = head[time_col + c] if columns is not None else f"column {time_col + c + 1}"
        raise DataError(f"{path}:{rows[r][0]}: {label} value {split[r][time_col + c].strip()!r} is not a "
                        f"finite number")

    name = None
    if name_col is not None:
        name = unquote(split[0][name_col])
        for (lineno, _), fields in zip(rows, split, strict=True):
            if unquote(fields[name_col]) != name:
                raise DataError(f"{path}:{lineno}: row names recording {unquote(fields[name_col])!r}, earlier "
                                f"rows {name!r} (one recording per file)")
    times = numbers[:, 0]
    steps = np.diff(times)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise DataError(f"{path}:{rows[i][0]}: time {times[i]} does not increase (previous row {times[i - 1]})")
    values = numbers[:, 1:].astype(np.float32)
    if columns is None:
        columns = [f"f{i}" for i in range(values.shape[1])]
    return FeatureSequence(name=name, times=times, values=values, columns=list(columns), path=path)


def align_to_labels(features: FeatureSequence, label_times: np.ndarray, method: str = "nearest",
                    max_gap_s: float | None = None) -> np.ndarray:
    """Feature rows at the label times: (n_labels, d) float32.

    ``nearest`` takes the row with the nearest time (halfway: the earlier row); ``linear`` interpolates
    between the two neighbouring rows. Label times outside the feature span take the first / last row:
    feature files are routinely a frame or two shorter or longer than the labels, and repeating the edge
    row is the AVEC convention for padding. ``max_gap_s`` turns a larger gap into an error instead, to
    catch a feature file of the wrong recording or at the wrong rate.

    Example:
        >>> x = align_to_labels(read_feature_file("egemaps/Devel_DE_01.csv"), labels.times)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    query = np.asarray(label_times, dtype=np.float64).reshape(-1)
    times, values = features.times, features.values
    if max_gap_s is not None and len(query):
        gap = np.abs(times[nearest_index(times, query)] - query)
        worst = int(np.argmax(gap))
        if gap[worst] > max_gap_s + 1e-9:
            raise DataError(f"{features.path or features.name}: label time {query[worst]:.3f} s is "
                            f"{gap[worst]:.3f} s from the nearest feature row (max_gap_s={max_gap_s}); features "
                            f"span {times[0]:.3f}..{times[-1]:.3f} s")
    if method == "nearest" or len(times) == 1:
        return values[nearest_index(times, query)].astype(np.float32, copy=True)
    q = np.clip(query, times[0], times[-1])
    left = np.clip(np.searchsorted(times, q, side="right") - 1, 0, len(times) - 2)
    w = ((q - times[left]) / (times[left + 1] - times[left]))[:, None]
    out = values[left].astype(np.float64) * (1.0 - w) + values[left + 1].astype(np.float64) * w
    return out.astype(np.float32)
