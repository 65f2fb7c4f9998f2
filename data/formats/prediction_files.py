"""Read label and prediction files of the official protocols into aligned (gold, prediction) arrays.

* AVEC 2019 CES: a labels folder and a predictions folder of ``<Partition>_<Culture>_<NN>.csv`` files
  (``name;timestamp;arousal;valence;liking``). Every label file needs a prediction file of the same name;
  all missing ones are listed in one error. Prediction tracks are cropped or padded to the labels
  (official behaviour) with a warning naming the file.
* ABAW VA: an annotation folder of ``<video>.txt`` files and either a folder of per-video prediction files
  in the same format (2020) or one ``image_location,valence,arousal`` file (later editions). A prediction
  must cover every frame of its video (the challenge rejects anything else): a length mismatch is an
  error naming the file.

Returned arrays have one column per dimension in the order the protocols score them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.datasets.affwild2 import read_va_annotation
from data.datasets.sewa import parse_stem, read_avec_labels
from data.errors import DataError
from data.formats.abaw_submission import read_single_file

log = logging.getLogger(__name__)

AVEC_COLUMNS = ("arousal", "valence", "liking")


@dataclass
class Pair:
    """Gold and prediction of one recording: (n, D) gold, (m, D) prediction (m may differ for AVEC)."""

    name: str
    group: str
    gold: np.ndarray
    pred: np.ndarray
    dims: tuple[str, ...] = ("valence", "arousal")


def _avec_matrix(labels, dims: tuple[str, ...]) -> np.ndarray:
    n = len(labels.times)
    return np.stack([getattr(labels, c) if getattr(labels, c) is not None else np.full(n, np.nan) for c in dims], axis=1)


def load_avec_pairs(labels_dir: Path, predictions_dir: Path, only: set[str] | None = None) -> list[Pair]:
    """Every labelled recording (or those in ``only``) with its prediction, grouped by culture."""
    labels_dir, predictions_dir = Path(labels_dir), Path(predictions_dir)
    for folder, what in ((labels_dir, "labels"), (predictions_dir, "predictions")):
        if not folder.is_dir():
            raise DataError(f"{folder}: {what} folder does not exist")
    label_files = sorted(f for f in labels_dir.glob("*.csv") if only is None or f.stem in only)
    if not label_files:
        raise DataError(f"{labels_dir}: no label files (*.csv)")
    missing = [f.stem for f in label_files if not (predictions_dir / f.name).is_file()]
    if missing:
        raise DataError(f"{predictions_dir}: missing predictions for {len(missing)} recording(s): {', '.join(missing)}")
    pairs = []
    for f in label_files:
        parsed = parse_stem(f.stem)
        if parsed is None:
            raise DataError(f"{f}: not an AVEC recording name (<Partition>_<Culture>_<NN>.csv)")
        labels = read_avec_labels(f)
        predicted = read_avec_labels(predictions_dir / f.name, strict_times=False)
        _warn_on_other_timestamps(predictions_dir / f.name, predicted.times, labels.times)
        # a dimension is scored when both files have it (ALN, for one, predicts no liking)
        dims = tuple(c for c in AVEC_COLUMNS if getattr(labels, c) is not None and getattr(predicted, c) is not None)
        if not dims:
            raise DataError(f"{predictions_dir / f.name}: no dimension in common with {f}")
        pairs.append(Pair(f.stem, parsed[1], _avec_matrix(labels, dims), _avec_matrix(predicted, dims), dims))
    return pairs


def _warn_on_other_timestamps(path: Path, predicted: np.ndarray, gold: np.ndarray) -> None:
    """Warn when a prediction's timestamps disagree with the labels': scored row by row all the same.

    The official AVEC 2019 scorer pairs the i-th prediction row with the i-th label row and never reads
    timestamps, so a file with shifted, repeated or decreasing timestamps gets the official score; the
    warning names the first data row (1-based, header not counted) where the timestamps part.
    """
    n = min(len(predicted), len(gold))
    differs = np.flatnonzero(np.abs(predicted[:n] - gold[:n]) > 1e-6)
    if len(differs):
        row = int(differs[0])
        log.warning("%s: row %d: timestamp %g differs from the label file's %g (first of %d such rows); scored "
                    "row by row as the official AVEC script does, which ignores timestamps", path, row + 1,
                    predicted[row], gold[row], len(differs))


def load_abaw_pairs(annotation_dir: Path, predictions: Path, only: set[str] | None = None) -> list[Pair]:
    """Every annotated video (or those in ``only``) with its prediction (per-video folder or single file)."""
    annotation_dir, predictions = Path(annotation_dir), Path(predictions)
    if not annotation_dir.is_dir():
        raise DataError(f"{annotation_dir}: annotation folder does not exist")
    ann_files = sorted(f for f in annotation_dir.glob("*.txt") if only is None or f.stem in only)
    if not ann_files:
        raise DataError(f"{annotation_dir}: no annotation files (*.txt)")
    if predictions.is_dir():
        missing = [f.stem for f in ann_files if not (predictions / f.name).is_file()]
        if missing:
            raise DataError(f"{predictions}: missing predictions for {len(missing)} video(s): {', '.join(missing)}")
        preds = {f.stem: (read_va_annotation(predictions / f.name), predictions / f.name) for f in ann_files}
    elif predictions.is_file():
        table = read_single_file(predictions)
        missing = [f.stem for f in ann_files if f.stem not in table]
        if missing:
            raise DataError(f"{predictions}: missing predictions for {len(missing)} video(s): {', '.join(missing)}")
        preds = {f.stem: (table[f.stem], predictions) for f in ann_files}
    else:
        raise DataError(f"{predictions}: prediction folder or file does not exist")
    pairs = []
    for f in ann_files:
        gold = read_va_annotation(f).astype(np.float64)
        pred, source = preds[f.stem]
        if len(pred) != len(gold):
            raise DataError(f"{source}: {len(pred)} predictions for {f.stem}, but its annotation has "
                            f"{len(gold)} frames")
        if not np.isfinite(pred).all():
            raise DataError(f"{source}: non-finite prediction for {f.stem}")
        pairs.append(Pair(f.stem, "", gold, np.asarray(pred, dtype=np.float64), ("valence", "arousal")))
    return pairs
