"""ABAW valence/arousal prediction files, in both layouts the challenge has used.

* ``abaw2020``: one ``<video>.txt`` per video, header ``valence,arousal``, one ``v,a`` line per frame of the
  video (the annotation format), frames in order from 1.
* ``abaw_later`` (2021 on): one file, header ``image_location,valence,arousal``, one line per frame,
  ``<video>/<frame:05d>.jpg,v,a``.

The challenge expects a value for every frame of every video, also frames where no face was found.
Policy: a frame without a prediction takes the prediction of the nearest predicted frame of the same video
(ties go to the earlier frame); a video without any prediction is an error, since zeros would be silent garbage.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv

from data.errors import DataError
from fileio.atomic import atomic_open, write_text

FORMATS = ("abaw2020", "abaw_later")
SINGLE_FILE_HEADER = "image_location,valence,arousal"


def fill_all_frames(frames: np.ndarray, values: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, 2) predictions for frames 1..n_frames from predictions at 1-based ``frames``."""
    frames = np.asarray(frames, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64).reshape(len(frames), -1)
    if len(frames) == 0:
        raise ValueError("no predicted frame to fill from")
    order = np.argsort(frames, kind="stable")
    frames, values = frames[order], values[order]
    targets = np.arange(1, n_frames + 1)
    right = np.clip(np.searchsorted(frames, targets), 0, len(frames) - 1)
    left = np.clip(right - 1, 0, len(frames) - 1)
    take_left = np.abs(targets - frames[left]) <= np.abs(frames[right] - targets)
    return values[np.where(take_left, left, right)]


def write_predictions(out: Path, fmt: str, predictions: dict[str, tuple[np.ndarray, np.ndarray]],
                      n_frames: dict[str, int]) -> list[Path]:
    """Write ``{video: (frames, (n, 2) [valence, arousal])}`` in ``fmt``; returns the files written.

    ``out`` is a folder for ``abaw2020`` and a file path for ``abaw_later``. ``n_frames`` gives each video's
    frame count (its annotation's line count).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown ABAW format {fmt!r}; use one of {FORMATS}")
    missing = sorted(v for v in n_frames if v not in predictions or len(predictions[v][0]) == 0)
    if missing:
        raise DataError(f"{out}: no prediction for {len(missing)} video(s): {', '.join(missing[:5])}")
    filled = {v: fill_all_frames(*predictions[v], n_frames[v]) for v in sorted(n_frames)}
    out = Path(out)
    if fmt == "abaw2020":
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for video, values in filled.items():
            path = out / f"{video}.txt"
            lines = ["valence,arousal"] + [f"{v:.6f},{a:.6f}" for v, a in values]
            write_text(path, "\n".join(lines) + "\n")
            written.append(path)
        return written
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "w", newline="") as fh:
        fh.write(SINGLE_FILE_HEADER + "\n")
        for video, values in filled.items():
            fh.writelines(f"{video}/{k:05d}.jpg,{v:.6f},{a:.6f}\n" for k, (v, a) in enumerate(values, start=1))
    return [out]


def read_single_file(path: Path) -> dict[str, np.ndarray]:
    """``{video: (n_frames, 2)}`` from a later-edition single prediction file, frames ordered by number.

    Parsed with Arrow's CSV reader and vectorised string functions (a test set has millions of rows); any
    malformed line is then located and named by a line-by-line pass.
    """
    path = Path(path)
    with path.open(newline="") as fh:
        header = fh.readline().strip()
    if ",".join(h.strip() for h in header.split(",")) != SINGLE_FILE_HEADER:
        raise DataError(f"{path}: expected header '{SINGLE_FILE_HEADER}', found {header[:60]!r}")
    try:
        table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
            column_types={"image_location": pa.string(), "valence": pa.float64(), "arousal": pa.float64()}))
        parts = pc.extract_regex(table["image_location"], r"^(?P<video>.+)/(?P<frame>\d+)\.jpg$")
        ok = table.num_columns == 3 and parts.null_count == 0
        if ok:
            encoded = pc.dictionary_encode(parts.combine_chunks().field("video"))
            codes = encoded.indices.to_numpy(zero_copy_only=False)
            names = encoded.dictionary.to_pylist()
            frames = pc.cast(parts.combine_chunks().field("frame"), pa.int64()).to_numpy(zero_copy_only=False)
            values = np.stack([table[c].to_numpy() for c in ("valence", "arousal")], axis=1)
            ok = bool(np.isfinite(values).all())
    except (pa.ArrowInvalid, KeyError):
        ok = False
    if not ok:
        _raise_first_bad_line(path)
    order = np.lexsort((frames, codes))
    codes, values = codes[order], values[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    return {str(names[codes[i]]): values[i:j] for i, j in zip(starts, ends, strict=True)}


def _raise_first_bad_line(path: Path) -> None:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                location, v, a = row
                _, image = location.rsplit("/", 1)
                int(Path(image).stem)
                value = (float(v), float(a))
            except ValueError:
                raise DataError(f"{path}:{lineno}: expected '<video>/<frame>.jpg,valence,arousal', "
                                f"found {','.join(row)[:60]!r}") from None
            if not all(np.isfinite(value)):
                raise DataError(f"{path}:{lineno}: prediction is not a finite number")
    raise DataError(f"{path}: malformed prediction file")
