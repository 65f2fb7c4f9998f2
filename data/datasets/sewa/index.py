"""Index the recordings of a SEWA root as :class:`~data.datasets.affwild2.VideoRecord` s, the type every reader produces."""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import numpy as np

from data.datasets.affwild2 import IndexReport, VideoRecord
from data.datasets.meta import meta_path, read_meta
from data.datasets.sewa.config import SewaConfig
from data.datasets.sewa.labels import (
    DIMENSIONS,
    INVALID,
    label_path,
    labels_to_frames,
    parse_stem,
    read_avec_labels,
)
from data.errors import DataError

log = logging.getLogger(__name__)

_CROP = re.compile(r"^(\d+)\.jpg$")
_DURATION_MISMATCH = 0.10                        # warn when labels and video lengths differ by more than 10 %


def _crop_numbers(image_dir: Path) -> set[int]:
    if not image_dir.is_dir():
        return set()
    return {int(m.group(1)) for m in map(_CROP.match, os.listdir(image_dir)) if m}


def index_sewa(root: Path | str, recordings: list[str], split: str,
               cfg: SewaConfig, require_frames: bool = True) -> tuple[list[VideoRecord], IndexReport]:
    """Index ``recordings`` of a SEWA root as :class:`VideoRecord` s, the type every reader produces.

    Per recording: the labels are mapped to the video's frames (:func:`labels_to_frames` with the
    config's interpolation and delays); frames without a label become ``-5`` in ``labels`` (and
    ``liking``), so :func:`data.datasets.affwild2.valid_label_mask` and the dataset drop them. Labels outside
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
        report.count(usable)
    report.finish(split, root, require_frames)
    return records, report


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
