"""``python -m data.prepare --keep-crops``: audio, eGeMAPS cache and metadata of a video whose face crops
come with the dataset (Aff-Wild2's own ``cropped_aligned/<video>/``), without detecting a face.

The crop folders are neither written, deleted nor renamed (so they stay byte-for-byte as shipped, hidden
``.partial`` folders included); they are only listed, to count their ``<frame:05d>.jpg`` files. The frame
rate and the frame count come from the container without decoding a frame: the rate from the stream
header (:func:`data.preprocess.video.frame_rate`), the count from the demuxed packets
(:func:`data.preprocess.video.count_frames`, one packet per frame), checked against the header's count.
Only the audio stream is decoded.

The rules, and why:

* ``faces`` in the metadata is the number of crop files found for the video: in ``<video>/``, or in
  ``<video>_left/`` and ``<video>_right/`` (Aff-Wild2's two-subject videos, ``subjects`` 2) summed, like a
  two-subject full run sums both sides. An integer rather than null, so every reader of the metadata
  keeps working; ``crops_kept`` true (and no backend, size 0) says what the number means. A video with no
  crop folder is still finished, with a warning (the readers skip it).
* Completion: the metadata file written last with ``complete`` true is the marker, as in a full run. A
  --keep-crops run skips a video with complete metadata of *any* kind (its own, or a full run's, which
  has written everything --keep-crops would: redoing it would change nothing but the metadata's claim);
  a full run never skips a --keep-crops video (no backend): it detects faces and replaces the crops,
  with a warning.
* ``--two-subjects`` is refused with --keep-crops (:mod:`data.prepare`): the shipped ``_left``/``_right``
  folders are kept and counted whatever the option says, so it would only look as if it did something.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from data.datasets.meta import VideoMeta, meta_path, read_meta, write_meta
from data.errors import DataError
from data.preprocess.pipeline import AUDIO_DIR, CROPS_DIR, PrepareOptions, VideoResult, write_audio
from data.preprocess.subjects import SIDES
from data.preprocess.video import count_frames, probe


def kept_folders(root: Path, video: str) -> list[Path]:
    """The crop folders of ``video`` that exist: ``<video>/``, ``<video>_left/``, ``<video>_right/``."""
    names = [video, *(f"{video}_{side}" for side in SIDES)]
    return [root / CROPS_DIR / name for name in names if (root / CROPS_DIR / name).is_dir()]


def crop_numbers(folder: Path) -> list[int]:
    """The 1-based frame numbers of the ``<digits>.jpg`` files in ``folder`` (listed, not opened)."""
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the crops ({exc.strerror or exc})") from exc
    return [int(name[:-4]) for name in names if name.endswith(".jpg") and name[:-4].isdigit()]


def is_finished_kept(root: Path, video: str) -> VideoMeta | None:
    """The metadata of ``video`` if a run of either kind finished it (and its wav, if any, is still there)."""
    try:
        meta = read_meta(root, video)
    except DataError:
        return None  # unreadable metadata: redo the video, which rewrites it
    if meta is None or not meta.complete:
        return None
    if meta.audio_seconds is not None and not (root / AUDIO_DIR / f"{video}.wav").is_file():
        return None
    return meta


def _crop_warnings(root: Path, video: str, folders: list[Path], numbers: list[int], frames: int) -> list[str]:
    if not folders:
        return [f"no crop folder {root / CROPS_DIR / video} (nor _left/_right) to keep: the readers find no "
                "frame of this video"]
    if not numbers:
        return [f"no crop files in {', '.join(map(str, folders))}"]
    if max(numbers) > frames:
        return [f"crop files numbered up to {max(numbers)} but the video has {frames} frames: "
                "crops of another video?"]
    return []


def prepare_kept(source: Path, opts: PrepareOptions) -> VideoResult:
    """Audio, eGeMAPS cache and metadata of one video next to its kept crops, or skip it if finished.

    Returns:
        The report row (``crops_kept`` set); problems with the video are reported in it, never raised.
    """
    root, video = Path(opts.out), source.stem
    result = VideoResult(video=video, source=str(source), crops_kept=True)
    start = time.perf_counter()
    finished = is_finished_kept(root, video)
    if finished is not None:
        result.status, result.frames, result.faces = "skipped", finished.frames, finished.faces
        result.fps, result.audio_seconds = finished.fps, finished.audio_seconds
        result.warnings, result.crops_kept = list(finished.warnings), finished.crops_kept
        return result
    wav = root / AUDIO_DIR / f"{video}.wav"
    try:
        meta_path(root, video).unlink(missing_ok=True)  # from now on the video counts as unfinished
        info = probe(source)
        result.fps, result.frames = info.fps, count_frames(source)
        if result.frames == 0:
            raise DataError(f"{source}: contains no video frames")
        if info.frames and result.frames != info.frames:
            result.warnings.append(f"counted {result.frames} frames but the container header says "
                                   f"{info.frames} (truncated or damaged file?)")
        folders = kept_folders(root, video)
        numbers = [n for folder in folders for n in crop_numbers(folder)]
        result.faces = len(numbers)
        result.warnings += _crop_warnings(root, video, folders, numbers, result.frames)
        result.audio_seconds = write_audio(source, wav, opts, result.warnings)
        two = any(folder.name != video for folder in folders)
        write_meta(root, VideoMeta(video=video, fps=result.fps, frames=result.frames, faces=result.faces,
                                   audio_seconds=result.audio_seconds, source=str(source.resolve()),
                                   backend="", size=0, complete=True, warnings=list(result.warnings),
                                   subjects=2 if two else 1, crops_kept=True))
    except DataError as exc:
        result.status, result.error = "failed", str(exc)
    result.seconds = time.perf_counter() - start
    return result
