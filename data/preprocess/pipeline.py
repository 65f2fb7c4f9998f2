"""One raw video -> aligned face crops, 16 kHz audio, eGeMAPS cache and metadata in the Aff-Wild2 layout.

The rules (resumable through the metadata completion marker, crops renamed into place, bad input reported
rather than raised, ``--every N`` landmark interpolation) are described with the command in
:mod:`data.prepare`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data.datasets.meta import VideoMeta, meta_path, read_meta, write_meta
from data.errors import DataError
from data.preprocess.audio import AudioConfig, lld_track
from data.preprocess.faces import Landmarker, align_face
from data.preprocess.subjects import SIDES, SideTracker
from data.preprocess.video import VIDEO_SUFFIXES, VideoFrame, extract_audio, iter_frames, probe
from fileio.atomic import move_into_place

CROPS_DIR = "cropped_aligned"
AUDIO_DIR = "audio"
REPORT_NAME = "prepare_report.json"
JPEG_QUALITY = 95
_PARTIAL_SUFFIX = ".partial"

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class PrepareOptions:
    """How videos are preprocessed (the command-line options).

    Attributes:
        out: Output root (the dataset root the readers are pointed at).
        backend: Landmark backend, one of :data:`data.preprocess.faces.BACKENDS`.
        size: Crop side in pixels.
        device: Torch device for the landmarker.
        every: Run the landmarker on every ``every``-th frame and interpolate in between.
        audio_cache: eGeMAPS cache folder; "" is data.preprocess.audio's default, which training also uses.
        progress: Show tqdm progress bars.
        threads: Torch intra-op threads per process; 0 keeps torch's default (all cores) for a single
            process and means 1 per worker when several run in parallel.
        two_subjects: Videos with two people, cropped into ``<video>_left/`` and ``<video>_right/`` (as
            Aff-Wild2 names them): None = none, an empty tuple = every video, else the listed names.
        keep_crops: Leave ``cropped_aligned/`` as it is (crops shipped with the dataset) and write only the
            audio, the eGeMAPS cache and the metadata (:mod:`data.preprocess.keep_crops`); the landmarker
            options are then unused.
    """

    out: Path
    backend: str = "mtcnn"
    size: int = 112
    device: str = "cpu"
    every: int = 1
    audio_cache: str = ""
    progress: bool = True
    threads: int = 0
    two_subjects: tuple[str, ...] | None = None
    keep_crops: bool = False

    def crop_folders(self, video: str) -> tuple[str, ...]:
        """The crop folder names of ``video``: itself, or its ``_left`` and ``_right`` subjects."""
        two = self.two_subjects is not None and (not self.two_subjects or video in self.two_subjects)
        return tuple(f"{video}_{side}" for side in SIDES) if two else (video,)


@dataclass
class VideoResult:
    """The outcome for one video: a row of the report."""

    video: str
    source: str
    status: str = "done"  # done | skipped | failed
    frames: int = 0
    faces: int = 0
    fps: float | None = None
    audio_seconds: float | None = None
    seconds: float = 0.0  # wall time spent on this video in this run
    crops_kept: bool = False  # its crops were kept as found (--keep-crops), not detected and written
    warnings: list[str] = field(default_factory=list)
    error: str = ""


# ---------------------------------------------------------------------------------------------- inputs

def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def find_videos(inputs: Iterable[Path]) -> list[Path]:
    """The videos named by ``inputs`` (files, or folders searched recursively), in a stable order.

    A file named explicitly is taken whatever its extension (the user asked for it); the same file
    reached twice counts once.

    Raises:
        DataError: An input does not exist, a folder holds no video, or two different videos share a
            name (file name without extension): they would overwrite each other's crops and audio.
    """
    found: dict[Path, Path] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            videos = sorted(p for p in item.rglob("*") if p.is_file() and _is_video(p))
            if not videos:
                raise DataError(f"{item}: no videos found (looked for {', '.join(VIDEO_SUFFIXES)} files)")
        elif item.is_file():
            videos = [item]
        else:
            raise DataError(f"{item}: no such file or folder")
        for video in videos:
            found.setdefault(video.resolve(), video)
    by_stem: dict[str, Path] = {}
    for video in found.values():
        if video.stem in by_stem:
            raise DataError(f"two videos are both named {video.stem!r}: {by_stem[video.stem]} and {video}; "
                            "outputs are named by the file name without extension, so rename one")
        by_stem[video.stem] = video
    return list(found.values())


# ------------------------------------------------------------------------------------------ one video

def write_audio(source: Path, wav: Path, opts: PrepareOptions, warnings: list[str]) -> float | None:
    """The video's audio as a 16 kHz mono wav plus its eGeMAPS cache entry; its length in seconds.

    A video without an audio track gets no wav (a stale one of an earlier file with this name is removed) and a
    warning in ``warnings``: training then uses zero audio features for it. Both preparation paths (detected
    crops and kept crops) write audio this one way."""
    seconds = extract_audio(source, wav)
    if seconds is None:
        wav.unlink(missing_ok=True)
        warnings.append("no audio track: no wav written, training uses zero audio features")
    else:
        lld_track(wav, AudioConfig(cache_dir=opts.audio_cache))
    return seconds


def _crop_name(index: int) -> str:
    return f"{index + 1:05d}.jpg"


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DataError(f"{path}: JPEG encoding failed")
    try:
        path.write_bytes(buf.tobytes())
    except OSError as exc:
        raise DataError(f"{path}: cannot write crop ({exc.strerror or exc})") from exc


def is_finished(root: Path, video: str, opts: PrepareOptions) -> VideoMeta | None:
    """The metadata of ``video`` if it was completely prepared with the same backend and crop size.

    Also requires its outputs to still be there (the crops folder when faces were found, the wav when
    it had audio), so deleting a video's crops is another way to have it redone. A video finished with
    --keep-crops (no backend, no size) is never finished for a run that detects faces: it is redone, crops included.
    """
    try:
        meta = read_meta(root, video)
    except DataError:
        return None  # unreadable metadata: redo the video, which rewrites it
    folders = opts.crop_folders(video)
    if meta is None or not meta.complete or meta.backend != opts.backend or meta.size != opts.size \
            or meta.subjects != len(folders):
        return None
    if meta.faces > 0 and not all((root / CROPS_DIR / folder).is_dir() for folder in folders):
        return None
    if meta.audio_seconds is not None and not (root / AUDIO_DIR / f"{video}.wav").is_file():
        return None
    return meta


class _CropWriter:
    """Turns frames + (possibly sparse) landmarks into crop files, interpolating between key frames."""

    def __init__(self, folder: Path, size: int) -> None:
        self.folder = folder
        self.size = size
        self.faces = 0

    def write(self, frame: VideoFrame, points: np.ndarray | None) -> None:
        if points is not None:
            _write_jpeg(self.folder / _crop_name(frame.index), align_face(frame.rgb, points, self.size))
            self.faces += 1

    def between(self, frames: list[VideoFrame], key0: tuple[int, np.ndarray | None],
                key1: tuple[int, np.ndarray | None]) -> None:
        """Crops for the frames strictly between two key frames, from interpolated landmarks."""
        (i0, p0), (i1, p1) = key0, key1
        for frame in frames:
            if p0 is None or p1 is None:
                continue
            w = (frame.index - i0) / (i1 - i0)
            self.write(frame, (1 - w) * p0 + w * p1)


def _detect_and_crop(source: Path, folders: list[Path], landmarker: Landmarker, opts: PrepareOptions,
                     bar: tqdm, threads: int) -> tuple[int, int]:
    """Decode ``source`` and write its crops into ``folders`` (one, or the left and right subject's);
    returns (decoded frames, crops written)."""
    writers = [_CropWriter(folder, opts.size) for folder in folders]
    tracker: SideTracker | None = None

    def detect(frame: VideoFrame) -> list[np.ndarray | None]:
        nonlocal tracker
        if len(writers) == 1:
            return [landmarker(frame.rgb)]
        tracker = tracker or SideTracker(frame.rgb.shape[1])
        sides = tracker.assign(landmarker.faces(frame.rgb))
        return [sides[side] for side in SIDES]

    pending: list[VideoFrame] = []
    key: tuple[int, list[np.ndarray | None]] | None = None
    frames = 0

    def close_interval(frame: VideoFrame, points: list[np.ndarray | None]) -> None:
        for k, writer in enumerate(writers):
            if key is not None:
                writer.between(pending, (key[0], key[1][k]), (frame.index, points[k]))
            writer.write(frame, points[k])

    for frame in iter_frames(source, threads=threads):
        frames += 1
        if frame.index % opts.every == 0:
            points = detect(frame)
            close_interval(frame, points)
            key, pending = (frame.index, points), []
        else:
            pending.append(frame)
        bar.update(1)
    if pending:  # close the last interval with a detection on the final frame
        last = pending.pop()
        close_interval(last, detect(last))
    return frames, sum(writer.faces for writer in writers)


def _were_kept(root: Path, video: str) -> bool:
    """Whether ``video``'s metadata says its crops were kept by a --keep-crops run (not written by this command)."""
    try:
        meta = read_meta(root, video)
    except DataError:
        return False
    return meta is not None and meta.crops_kept


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def prepare_video(source: Path, landmarker: Landmarker, opts: PrepareOptions, position: int = 0,
                  threads: int = 0) -> VideoResult:
    """Prepare one video completely (crops, audio, eGeMAPS cache, metadata), or skip it if finished.

    Args:
        source: The video file.
        landmarker: Built once per process by the caller (construction loads networks).
        opts: The run's options.
        position: tqdm line of this video's progress bar (one per parallel worker).
        threads: FFmpeg decoding threads (0: automatic).

    Returns:
        The report row. Problems with the video itself are reported in it (status "failed" with the
        DataError's message), never raised, so a batch goes on.
    """
    root, video = Path(opts.out), source.stem
    result = VideoResult(video=video, source=str(source))
    start = time.perf_counter()
    finished = is_finished(root, video, opts)
    if finished is not None:
        result.status, result.frames, result.faces = "skipped", finished.frames, finished.faces
        result.fps, result.audio_seconds = finished.fps, finished.audio_seconds
        result.warnings = list(finished.warnings)
        return result
    names = opts.crop_folders(video)
    crops = [root / CROPS_DIR / name for name in names]
    partial = [root / CROPS_DIR / f".{name}{_PARTIAL_SUFFIX}" for name in names]
    # the other layout's folders (one subject vs two), left from an earlier run of this video
    stale = [root / CROPS_DIR / name for name in {video, f"{video}_left", f"{video}_right"} - set(names)]
    wav = root / AUDIO_DIR / f"{video}.wav"
    foreign = any(c.exists() for c in crops) and (not meta_path(root, video).exists() or _were_kept(root, video))
    try:
        meta_path(root, video).unlink(missing_ok=True)  # from now on the video counts as unfinished
        for folder in partial:
            _clear(folder)
            folder.mkdir(parents=True)
        info = probe(source)
        result.fps = info.fps
        with tqdm(total=info.frames or None, desc=video[:28], unit="frame", leave=False, position=position,
                  disable=not opts.progress, dynamic_ncols=True) as bar:
            result.frames, result.faces = _detect_and_crop(source, partial, landmarker, opts, bar, threads)
        if result.frames == 0:
            raise DataError(f"{source}: contains no decodable video frames")
        if info.frames and result.frames != info.frames:
            result.warnings.append(f"decoded {result.frames} frames but the container header says "
                                   f"{info.frames} (truncated or damaged file?)")
        if result.faces == 0:
            result.warnings.append(f"no face found in any of the {result.frames} frames")
        if opts.every > 1:
            result.warnings.append(f"landmarks detected on every {opts.every}th frame and interpolated "
                                   "between")
        result.audio_seconds = write_audio(source, wav, opts, result.warnings)
        if foreign:
            result.warnings.append(f"replaced crops in {', '.join(map(str, crops))} that this command had not "
                                   "written (an interrupted run, crops from elsewhere, or kept by --keep-crops)")
        for done, final in zip(partial, crops, strict=True):
            _clear(final)
            move_into_place(done, final)
        for folder in stale:
            _clear(folder)
        write_meta(root, VideoMeta(video=video, fps=result.fps, frames=result.frames, faces=result.faces,
                                   audio_seconds=result.audio_seconds, source=str(source.resolve()),
                                   backend=opts.backend, size=opts.size, complete=True,
                                   warnings=list(result.warnings), subjects=len(names)))
    except DataError as exc:
        result.status, result.error = "failed", str(exc)
        for folder in partial:
            _clear(folder)
    result.seconds = time.perf_counter() - start
    return result
