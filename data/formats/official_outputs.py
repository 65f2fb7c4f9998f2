"""Turn per-frame model predictions into the official rows of a protocol, and write them as official files.

Models predict valence/arousal per *video frame* (frames with a face). The challenges score other rows:

* SEWA / AVEC 2019: one row per label time (10 Hz). The label at time t describes the frame at
  t - delay (the annotator delay of that dimension, as configured for training), so the row takes the
  prediction of that frame. Written as ``<recording>.csv`` with ``name;timestamp;arousal;valence``.
* Aff-Wild2 / ABAW: one row per video frame, every frame of the video (the label count), also frames
  without a face. Written as the 2020 per-video ``<video>.txt`` files (or the later single file).

Frames without a prediction take the nearest predicted frame (``data.formats.abaw_submission.fill_all_frames``).
Scoring the written files with ``evaluate.py --protocol ...`` gives the same numbers as scoring the rows
in memory: the files are the source of truth for reported results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.datasets.affwild2 import VideoRecord
from data.datasets.sewa import SewaConfig, parse_stem, read_avec_labels
from data.formats.abaw_submission import fill_all_frames, write_predictions
from fileio.atomic import write_text

AVEC_PREDICTED = ("arousal", "valence")   # ALN predicts these two of the three AVEC dimensions
ABAW_DIMENSIONS = ("valence", "arousal")


@dataclass
class Track:
    """Official rows of one recording: times (n,), gold (n, D) and prediction (n, D), columns = ``dims``."""

    name: str
    group: str
    times: np.ndarray
    gold: np.ndarray
    pred: np.ndarray
    dims: tuple[str, ...]


def sewa_tracks(records: list[VideoRecord], predictions: dict[str, tuple[np.ndarray, np.ndarray]],
                cfg: SewaConfig) -> list[Track]:
    """AVEC rows (label times) for each recording: gold from its label file, prediction from its frames."""
    tracks = []
    for record in records:
        if record.name not in predictions:
            continue
        labels = read_avec_labels(record.annotation)
        per_frame = fill_all_frames(*predictions[record.name], record.n_frames)
        pred = np.empty((len(labels.times), 2))
        for c, dim in enumerate(AVEC_PREDICTED):
            delay = cfg.delays[dim]
            frame = np.floor((labels.times - delay) * record.fps + 1e-6).astype(np.int64)
            frame = np.clip(frame, 0, record.n_frames - 1)
            pred[:, c] = per_frame[frame, 1 if dim == "arousal" else 0]
        gold = np.stack([labels.arousal, labels.valence], axis=1)
        parsed = parse_stem(record.name)
        tracks.append(Track(record.name, parsed[1] if parsed else "", labels.times, gold, pred, AVEC_PREDICTED))
    return tracks


def abaw_tracks(records: list[VideoRecord], predictions: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[Track]:
    """ABAW rows (every frame of each video): gold with its -5 rows, prediction filled to every frame."""
    tracks = []
    for record in records:
        if record.name not in predictions:
            continue
        pred = fill_all_frames(*predictions[record.name], record.n_frames)
        times = np.arange(record.n_frames) / record.fps
        tracks.append(Track(record.name, "", times, record.labels.astype(np.float64), pred, ABAW_DIMENSIONS))
    return tracks


def write_avec_tracks(out: Path, tracks: list[Track]) -> Path:
    """``out/<recording>.csv`` in the AVEC label format (``name;timestamp;<dims>``)."""
    out.mkdir(parents=True, exist_ok=True)
    for t in tracks:
        lines = ["name;timestamp;" + ";".join(t.dims)]
        lines += [f"'{t.name}';{time:.6f};" + ";".join(f"{v:.6f}" for v in row) for time, row in zip(t.times, t.pred, strict=True)]
        write_text(out / f"{t.name}.csv", "\n".join(lines) + "\n")
    return out


def write_abaw_tracks(out: Path, tracks: list[Track], fmt: str = "abaw2020") -> Path:
    """The tracks as ABAW prediction files (every frame is present, so nothing is filled here)."""
    preds = {t.name: (np.arange(1, len(t.pred) + 1), t.pred) for t in tracks}
    written = write_predictions(out, fmt, preds, {t.name: len(t.pred) for t in tracks})
    return out if fmt == "abaw2020" else written[0]
