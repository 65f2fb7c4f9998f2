"""Aff-Wild2 (ABAW) valence/arousal reader.

On-disk layout (docs/design.md, "On-disk layouts")::

    ROOT/cropped_aligned/<video>/<frame:05d>.jpg      1-based; frames without a face are absent files
    ROOT/[annotations/]VA_Set/{Training_Set,Validation_Set}/<video>.txt                 (ABAW 2020)
    ROOT/[annotations/]VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt   (later editions)
    ROOT/audio/<video>.wav                            16 kHz mono, from the raw video (optional)

An annotation file starts with the header ``valence,arousal`` and has one ``v,a`` line per video frame;
-5 (or anything outside [-1, 1]) marks an invalid frame, which is dropped, never rescaled. The label
count is the video's frame count. Two-subject videos have ``<video>_left.txt`` / ``<video>_right.txt``,
each with its own crop folder, sharing the video's audio (the suffix is stripped to find it). Frame
rates differ per video; names such as ``<id>-<fps>-<W>x<H>`` carry it, else a configured default is used.
"""

from __future__ import annotations

import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from data.datasets.meta import read_meta
from data.errors import DataError

log = logging.getLogger(__name__)

HEADER = "valence,arousal"
#: annotation-folder edition -> (folder name, {split: subfolder})
EDITIONS: dict[str, tuple[str, dict[str, str]]] = {
    "abaw2020": ("VA_Set", {"train": "Training_Set", "val": "Validation_Set"}),
    "abaw_later": ("VA_Estimation_Challenge", {"train": "Train_Set", "val": "Validation_Set"}),
}
SPLITS = ("train", "val")
_SUBJECT_SUFFIX = re.compile(r"_(left|right)$")
_FPS_IN_NAME = re.compile(r"-(\d+(?:\.\d+)?)-\d+x\d+$")


@dataclass
class VideoRecord:
    """One annotated video (or one subject of a two-subject video)."""

    name: str                     # annotation stem, e.g. "10-60-1280x720_right"
    split: str
    annotation: Path
    image_dir: Path
    audio: Path | None            # None when no wav exists for the video
    fps: float
    labels: np.ndarray            # (n_frames, 2) float32, every row of the file, invalid ones included
    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # usable 1-based frame numbers
    liking: np.ndarray | None = None  # (n_frames,) float32 where the dataset has it (SEWA), else None

    @property
    def n_frames(self) -> int:
        return len(self.labels)

    def image_path(self, frame: int) -> Path:
        return self.image_dir / f"{frame:05d}.jpg"


@dataclass
class IndexReport:
    """Counts of what the index kept and skipped, logged once per split."""

    videos: int = 0
    usable_frames: int = 0            # valid label and an image: what training sees
    valid_labels: int = 0             # label rows in [-1, 1]
    invalid_labels: int = 0           # -5 or otherwise out-of-range rows (dropped, never rescaled)
    labelled_without_image: int = 0   # valid label but no crop file (no face found, or labels longer than video)
    images_without_label: int = 0     # crop files with no label row (labels shorter than the video)
    videos_without_images: int = 0
    audio_missing: int = 0
    audio_drift: int = 0              # videos whose audio lasts other than frames / fps (beyond the tolerance)
    fps_from_audio: int = 0           # of those, videos whose fallback frame rate was replaced by frames / audio s

    def count(self, usable: np.ndarray) -> None:
        """One indexed video with these usable frames."""
        self.videos += 1
        self.usable_frames += int(len(usable))

    def finish(self, split: str, where: Path, require_frames: bool) -> None:
        """Log the split's counts; with ``require_frames``, a split without a usable frame is a DataError."""
        log.info(self.summary(split))
        if require_frames and self.usable_frames == 0:
            raise DataError(f"{where}: no usable frames (valid label and existing image) in split '{split}'")

    def summary(self, split: str) -> str:
        return (f"{split}: {self.videos} videos, {self.usable_frames} usable frames; skipped "
                f"{self.invalid_labels} invalid labels, {self.labelled_without_image} labelled frames "
                f"without an image ({self.videos_without_images} videos without a crop folder) and "
                f"{self.images_without_label} images without a label; {self.audio_missing} videos without audio; "
                f"{self.audio_drift} videos whose audio and frames disagree in length "
                f"({self.fps_from_audio} frame rates taken from the audio)")


def read_va_annotation(path: Path) -> np.ndarray:
    """All label rows of one annotation file as (n, 2) float32 (invalid rows included).

    Raises :class:`DataError` naming the file (and line) on a wrong header, a malformed line or no rows.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read annotation file ({exc.__class__.__name__})") from exc
    lines = text.splitlines()
    if not lines or lines[0].strip().replace(" ", "").lower() != HEADER:
        found = lines[0].strip()[:60] if lines else ""
        raise DataError(f"{path}: expected header '{HEADER}' on line 1, found {found!r}")
    while len(lines) > 1 and not lines[-1].strip():  # trailing blank lines are harmless
        lines.pop()
    rows = lines[1:]
    if not rows:
        raise DataError(f"{path}: no label lines after the header")
    blank = next((i for i, ln in enumerate(rows, start=2) if not ln.strip()), None)
    if blank is not None:  # a blank line would shift every later label by one frame
        raise DataError(f"{path}:{blank}: blank line inside the labels (line k+1 must label frame k)")
    values = _parse_fast("\n".join(rows))
    if values is None:  # something is off: the line-by-line path finds and names it
        try:
            values = np.array([[float(v) for v in ln.split(",")] for ln in rows], dtype=np.float64)
        except ValueError:
            values = None
    if values is None or values.ndim != 2 or values.shape[1] != 2:
        for lineno, ln in enumerate(lines[1:], start=2):
            parts = ln.split(",")
            if ln.strip() and (len(parts) != 2 or not all(is_number(p) for p in parts)):
                raise DataError(f"{path}:{lineno}: expected two comma-separated numbers, found {ln.strip()[:60]!r}")
        raise DataError(f"{path}: label lines are not two comma-separated numbers each")
    if not np.isfinite(values).all():
        bad = int(np.argwhere(~np.isfinite(values))[0, 0]) + 2
        raise DataError(f"{path}:{bad}: label is not a finite number")
    return values.astype(np.float32)


def _parse_fast(body: str) -> np.ndarray | None:
    """(n, 2) float64 from well-formed ``v,a`` lines with pandas' C parser (10x faster than Python on the
    2.8 M labels of Aff-Wild2); None when any line is malformed or missing a value."""
    try:
        values = pd.read_csv(io.StringIO(body), header=None, dtype=np.float64, engine="c").to_numpy()
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if values.ndim != 2 or values.shape[1] != 2 or np.isnan(values).any():
        return None
    return values


def is_number(text: str) -> bool:
    """Whether ``text`` parses as a float (label and feature files mix names, headers and numbers)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def valid_label_mask(labels: np.ndarray) -> np.ndarray:
    """True where both values are in [-1, 1]; Aff-Wild2's -5 and any other out-of-range value are invalid."""
    return np.all((labels >= -1.0) & (labels <= 1.0), axis=1)


def find_annotation_dir(root: Path) -> tuple[str, Path]:
    """Locate the VA annotation folder of either edition under ``root`` (up to two levels down)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root does not exist or is not a directory")
    found: list[tuple[str, Path]] = []
    candidates = [root] + [p for p in sorted(root.iterdir()) if p.is_dir()]
    candidates += [q for p in candidates[1:] for q in sorted(p.iterdir()) if q.is_dir()]
    for base in candidates:
        for edition, (folder, _) in EDITIONS.items():
            if (base / folder).is_dir():
                found.append((edition, base / folder))
    if not found:
        raise DataError(f"{root}: no Aff-Wild2 VA annotations found (expected a folder VA_Set/ or "
                        f"VA_Estimation_Challenge/ here or in annotations/)")
    if len(found) > 1:
        listing = ", ".join(str(p) for _, p in found)
        raise DataError(f"{root}: several VA annotation folders found ({listing}); keep one")
    return found[0]


def audio_stem(video: str) -> str:
    """Name of the audio file of a video: two-subject annotation names share the video's audio."""
    return _SUBJECT_SUFFIX.sub("", video)


def fps_from_name(video: str) -> float | None:
    """Frame rate encoded in names like ``<id>-<fps>-<W>x<H>`` (e.g. ``10-60-1280x720``), else None."""
    match = _FPS_IN_NAME.search(audio_stem(video))
    return float(match.group(1)) if match else None


def fps_and_source(root: Path, video: str, default_fps: float) -> tuple[float, str]:
    """The video's frame rate and where it came from: ``meta`` (prepare's metadata), ``name`` or ``default``."""
    meta = read_meta(root, audio_stem(video)) or read_meta(root, video)
    if meta is not None and meta.fps > 0:
        return float(meta.fps), "meta"
    from_name = fps_from_name(video)
    return (from_name, "name") if from_name else (default_fps, "default")


def audio_seconds(wav: Path) -> float | None:
    """Duration of a wav from its header; None when it cannot be read (the audio reader reports that)."""
    try:
        return float(sf.info(str(wav)).duration)
    except (RuntimeError, OSError, sf.LibsndfileError):
        return None


def check_drift(name: str, n_frames: int, fps: float, source: str, wav: Path | None, tolerance: float,
                fps_from_audio: bool, report: IndexReport) -> float:
    """The frame rate to use, after comparing the audio's duration with ``n_frames / fps``.

    A video read at the wrong rate puts its audio out of step with its frames (a 25 fps video read as 30 fps
    drifts by 10 s after a minute). When the two durations differ by more than ``tolerance`` (relative), warn
    naming the video; when the rate was only the configured fallback and ``fps_from_audio`` is set, take
    ``n_frames / audio seconds`` instead (metadata and names are trusted over the audio).
    """
    seconds = audio_seconds(wav) if wav is not None and n_frames > 0 else None
    if not seconds:
        return fps
    video_s = n_frames / fps
    if abs(seconds - video_s) <= tolerance * max(seconds, video_s):
        return fps
    report.audio_drift += 1
    if source == "default" and fps_from_audio:
        report.fps_from_audio += 1
        log.warning("%s: %d frames at the default %g fps last %.1f s but its audio %.1f s; using %.3f fps "
                    "(frames / audio duration)", name, n_frames, fps, video_s, seconds, n_frames / seconds)
        return n_frames / seconds
    log.warning("%s: %d frames at %g fps (from %s) last %.1f s but its audio %.1f s: audio and frames will "
                "drift apart; check the frame rate", name, n_frames, fps, source, video_s, seconds)
    return fps


def count_images(image_dir: Path, n_labels: int) -> tuple[np.ndarray, int]:
    """(has_image per label row, number of crop files beyond the labels).

    Policy for label files whose length differs from the video (the label count is authoritative):
    label rows past the last crop are "labelled without image"; crops past the last label row are
    "images without label". Both are dropped and counted, neither is an error.
    """
    present = {int(name[:-4]) for name in os.listdir(image_dir) if name.endswith(".jpg") and name[:-4].isdigit()}
    frame_numbers = np.arange(1, n_labels + 1)
    has_image = np.fromiter((k in present for k in frame_numbers), dtype=bool, count=n_labels)
    return has_image, sum(1 for k in present if k > n_labels or k < 1)


def index_split(root: Path, split: str, default_fps: float = 30.0, require_frames: bool = True,
                drift_tolerance: float = 0.05, fps_from_audio: bool = True) -> tuple[list[VideoRecord], IndexReport]:
    """Read every annotation file of ``split`` and match it to its crops and audio.

    Frames are usable when their label is valid and their image file exists. Videos with no crop folder
    are skipped with a warning; all skips are counted in the returned report. Each video's audio duration
    is checked against its frames (:func:`check_drift`).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {SPLITS}")
    root = Path(root)
    edition, ann_dir = find_annotation_dir(root)
    split_dir = ann_dir / EDITIONS[edition][1][split]
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: annotation folder for split '{split}' is missing")
    image_root = root / "cropped_aligned"
    if not image_root.is_dir():
        raise DataError(f"{image_root}: folder of face crops is missing")
    audio_root = root / "audio"
    files = sorted(split_dir.glob("*.txt"))
    if not files:
        raise DataError(f"{split_dir}: no annotation files (*.txt)")

    report, records = IndexReport(), []
    for ann in files:
        labels = read_va_annotation(ann)
        valid = valid_label_mask(labels)
        report.invalid_labels += int((~valid).sum())
        report.valid_labels += int(valid.sum())
        wav = audio_root / f"{audio_stem(ann.stem)}.wav"
        if not wav.is_file():
            report.audio_missing += 1
        image_dir = image_root / ann.stem
        if not image_dir.is_dir():
            log.warning("%s: no crop folder %s; skipping its %d labelled frames", ann, image_dir, int(valid.sum()))
            report.videos_without_images += 1
            report.labelled_without_image += int(valid.sum())
            continue
        has_image, extra_images = count_images(image_dir, len(labels))
        report.labelled_without_image += int((valid & ~has_image).sum())
        report.images_without_label += extra_images
        usable = np.flatnonzero(valid & has_image) + 1
        fps, source = fps_and_source(root, ann.stem, default_fps)
        fps = check_drift(ann.stem, len(labels), fps, source, wav if wav.is_file() else None, drift_tolerance,
                          fps_from_audio, report)
        records.append(VideoRecord(
            name=ann.stem, split=split, annotation=ann, image_dir=image_dir,
            audio=wav if wav.is_file() else None, fps=fps, labels=labels, frames=usable.astype(np.int64),
        ))
        report.count(usable)
    report.finish(split, split_dir, require_frames)
    return records, report
