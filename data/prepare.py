"""Raw videos -> the Aff-Wild2 on-disk layout: aligned face crops, 16 kHz audio, eGeMAPS cache, metadata.

Usage::

    python -m data.prepare VIDEOS... --out ROOT [--backend mtcnn|face-alignment] [--size 112]
                           [--workers N] [--threads N] [--device cpu] [--every N] [--audio-cache DIR]
                           [--no-progress]

VIDEOS are files or folders (searched recursively for .mp4/.avi/.mkv, any case; hidden files such as
macOS ``._x.mp4`` are ignored). For each video ``<video>`` (the file name without extension) it writes::

    ROOT/cropped_aligned/<video>/<frame:05d>.jpg   1-based frame numbers; frames without a face are absent
    ROOT/audio/<video>.wav                         16 kHz mono PCM_16 (absent when the video has no audio)
    ROOT/meta/<video>.json                         data.meta.VideoMeta, written last with complete=true
    ROOT/prepare_report.json                       one entry per video of this run

and fills the eGeMAPS LLD cache (:func:`data.audio.lld_track`) so training never runs openSMILE.
``ROOT`` is meant to be a fresh output folder next to the annotations, not the official Aff-Wild2
``cropped_aligned`` tree: a video's existing crops are replaced when it is (re)processed.

Why these rules:

* Resumable: the metadata file is the completion marker. A video whose metadata says complete with
  the same backend and crop size is skipped; anything else is redone from scratch. Crops are written
  into ``cropped_aligned/.<video>.partial/`` and renamed into place at the end, so a run killed at any
  moment leaves either the old state or the new one, never a mix.
* Bad input never stops a batch: an unreadable video is reported (stderr and the report), skipped,
  and makes the exit code 1; a video without audio or without any detectable face is still finished,
  with a warning. Exit code 2 means a usage error found before any work (e.g. two inputs with the same
  name, which would write into the same folders).
* ``--every N`` runs the (slow) landmarker on every N-th frame and on the last one, and linearly
  interpolates the 5 points in between when both neighbouring detections found a face (otherwise those
  frames get no crop). Landmarks move smoothly at video rates, so N=2..4 saves most of the detection
  time at a small cost in alignment jitter. It is recorded as a warning in the metadata but, like the
  device, does not invalidate finished videos.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data.datasets.meta import VideoMeta, meta_path, read_meta, write_meta
from data.errors import DataError
from data.preprocess.audio import AudioConfig, lld_track
from data.preprocess.faces import (
    BACKENDS,
    Landmarker,
    align_face,
    check_face_alignment_weights,
    make_landmarker,
)
from data.preprocess.video import VIDEO_SUFFIXES, VideoFrame, extract_audio, iter_frames, probe

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
        backend: Landmark backend, one of :data:`data.faces.BACKENDS`.
        size: Crop side in pixels.
        device: Torch device for the landmarker.
        every: Run the landmarker on every ``every``-th frame and interpolate in between.
        audio_cache: eGeMAPS cache folder; "" is data.preprocess.audio's default, which training also uses.
        progress: Show tqdm progress bars.
        threads: Torch intra-op threads per process; 0 keeps torch's default (all cores) for a single
            process and means 1 per worker when several run in parallel.
    """

    out: Path
    backend: str = "mtcnn"
    size: int = 112
    device: str = "cpu"
    every: int = 1
    audio_cache: str = ""
    progress: bool = True
    threads: int = 0


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
    it had audio), so deleting a video's crops is another way to have it redone.
    """
    try:
        meta = read_meta(root, video)
    except DataError:
        return None  # unreadable metadata: redo the video, which rewrites it
    if meta is None or not meta.complete or meta.backend != opts.backend or meta.size != opts.size:
        return None
    if meta.faces > 0 and not (root / CROPS_DIR / video).is_dir():
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


def _detect_and_crop(source: Path, folder: Path, landmarker: Landmarker, opts: PrepareOptions,
                     bar: tqdm, threads: int) -> tuple[int, int]:
    """Decode ``source`` and write its crops into ``folder``; returns (decoded frames, crops written)."""
    writer = _CropWriter(folder, opts.size)
    pending: list[VideoFrame] = []
    key: tuple[int, np.ndarray | None] | None = None
    frames = 0
    for frame in iter_frames(source, threads=threads):
        frames += 1
        if frame.index % opts.every == 0:
            points = landmarker(frame.rgb)
            if key is not None:
                writer.between(pending, key, (frame.index, points))
            writer.write(frame, points)
            key, pending = (frame.index, points), []
        else:
            pending.append(frame)
        bar.update(1)
    if pending:  # close the last interval with a detection on the final frame
        last = pending.pop()
        points = landmarker(last.rgb)
        writer.between(pending, key, (last.index, points))
        writer.write(last, points)
    return frames, writer.faces


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
    crops = root / CROPS_DIR / video
    partial = root / CROPS_DIR / f".{video}{_PARTIAL_SUFFIX}"
    wav = root / AUDIO_DIR / f"{video}.wav"
    foreign = crops.exists() and not meta_path(root, video).exists()
    try:
        meta_path(root, video).unlink(missing_ok=True)  # from now on the video counts as unfinished
        _clear(partial)
        partial.mkdir(parents=True)
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
        result.audio_seconds = extract_audio(source, wav)
        if result.audio_seconds is None:
            wav.unlink(missing_ok=True)  # a stale wav of an earlier file with this name
            result.warnings.append("no audio track: no wav written, training uses zero audio features")
        else:
            lld_track(wav, AudioConfig(cache_dir=opts.audio_cache))
        if foreign:
            result.warnings.append(f"replaced crops in {crops} that had no preprocessing metadata "
                                   "(an interrupted run, or crops from elsewhere)")
        _clear(crops)
        os.replace(partial, crops)
        write_meta(root, VideoMeta(video=video, fps=result.fps, frames=result.frames, faces=result.faces,
                                   audio_seconds=result.audio_seconds, source=str(source.resolve()),
                                   backend=opts.backend, size=opts.size, complete=True,
                                   warnings=list(result.warnings)))
    except DataError as exc:
        result.status, result.error = "failed", str(exc)
        _clear(partial)
    result.seconds = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------------ many videos

_worker: dict = {}


def _init_worker(opts: PrepareOptions, slots: mp.Queue, lock) -> None:
    """Per-process setup: few threads per library (the processes are the parallelism) and a bar line."""
    import torch

    torch.set_num_threads(opts.threads or 1)
    cv2.setNumThreads(1)
    tqdm.set_lock(lock)
    _worker["position"] = slots.get()
    _worker["opts"] = opts


def _work(source: Path) -> VideoResult:
    opts: PrepareOptions = _worker["opts"]
    if "landmarker" not in _worker:
        try:
            _worker["landmarker"] = make_landmarker(opts.backend, opts.device)
        except DataError as exc:
            return VideoResult(video=source.stem, source=str(source), status="failed", error=str(exc))
    return prepare_video(source, _worker["landmarker"], opts, position=_worker["position"], threads=1)


@contextmanager
def _thread_limits(torch_threads: int) -> Iterator[None]:
    """Set torch's intra-op threads (0: unchanged) and OpenCV's to 1 for a block, then restore them.

    OpenCV's thread pool and torch's OpenMP threads contend badly when both are active in one process:
    on a 2-core machine MTCNN + alignment ran 10x slower with OpenCV's default threading than with
    OpenCV single-threaded; the crops are far too small to gain from threads anyway.
    """
    import torch

    old_torch, old_cv2 = torch.get_num_threads(), cv2.getNumThreads()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        cv2.setNumThreads(old_cv2)


def _note(result: VideoResult) -> None:
    if result.status == "failed":
        tqdm.write(f"failed: {result.error}", file=sys.stderr)


def prepare_videos(videos: Sequence[Path], opts: PrepareOptions, workers: int = 1) -> list[VideoResult]:
    """Prepare ``videos`` with ``workers`` processes; returns the report rows in input order.

    Each worker builds its landmarker once and handles whole videos (frames of one video stay in one
    process, in order). ``spawn`` is used so that workers never inherit a parent's torch/OpenMP state.

    Raises:
        DataError: The backend cannot be set up (e.g. face-alignment weights missing); checked before
            any video is touched.
    """
    if opts.backend == "face-alignment":
        check_face_alignment_weights()
    try:
        Path(opts.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{opts.out}: cannot create the output folder ({exc.strerror or exc})") from exc
    results: dict[Path, VideoResult] = {}
    with tqdm(total=len(videos), desc="videos", unit="video", position=0, disable=not opts.progress,
              dynamic_ncols=True) as overall:
        if workers <= 1 or len(videos) <= 1:
            with _thread_limits(opts.threads):
                landmarker = make_landmarker(opts.backend, opts.device)
                for source in videos:
                    results[source] = prepare_video(source, landmarker, opts, position=1)
                    _note(results[source])
                    overall.update(1)
        else:
            ctx = mp.get_context("spawn")
            slots = ctx.Queue()
            for slot in range(1, workers + 1):
                slots.put(slot)
            lock = ctx.RLock()
            tqdm.set_lock(lock)
            with ctx.Pool(workers, initializer=_init_worker, initargs=(opts, slots, lock)) as pool:
                for result in pool.imap_unordered(_work, videos):
                    results[Path(result.source)] = result
                    _note(result)
                    overall.update(1)
    return [results[source] for source in videos]


# ---------------------------------------------------------------------------------------------- report

def format_report(results: Sequence[VideoResult]) -> str:
    """The per-video table printed at the end, followed by one line per warning or error."""
    header = ("video", "frames", "faces", "fps", "audio s", "status")
    rows = []
    for r in results:
        status = r.status.upper() if r.status == "failed" else r.status
        if r.warnings and r.status != "failed":
            status += f" ({len(r.warnings)} warning{'s' if len(r.warnings) > 1 else ''})"
        rows.append((r.video, str(r.frames) if r.status != "failed" else "-",
                     str(r.faces) if r.status != "failed" else "-",
                     f"{r.fps:.3f}" if r.fps else "-",
                     f"{r.audio_seconds:.2f}" if r.audio_seconds is not None else "-", status))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    right = {1, 2, 3, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(header), line(["-" * w for w in widths])] + [line(row) for row in rows]
    for r in results:
        out += [f"warning: {r.video}: {w}" for w in r.warnings if r.status != "skipped"]
        if r.error:
            out.append(f"error: {r.error}")
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    out.append(f"{len(results)} videos: {counts['done']} done, {counts['skipped']} skipped, "
               f"{counts['failed']} failed")
    return "\n".join(out)


def write_report(root: Path, results: Sequence[VideoResult], opts: PrepareOptions) -> Path:
    """Write ``ROOT/prepare_report.json`` (atomically): the options and one object per video."""
    path = Path(root) / REPORT_NAME
    report = {
        "options": {"backend": opts.backend, "size": opts.size, "device": opts.device, "every": opts.every},
        "counts": {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")},
        "videos": [asdict(r) for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(report, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ------------------------------------------------------------------------------------------------ CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data.prepare",
        description="Decode videos, detect and align faces, extract 16 kHz audio and eGeMAPS features "
                    "into the Aff-Wild2 layout (cropped_aligned/, audio/, meta/).")
    p.add_argument("videos", nargs="+", type=Path,
                   help="video files or folders (searched for .mp4/.avi/.mkv)")
    p.add_argument("--out", required=True, type=Path, help="output dataset root")
    p.add_argument("--backend", choices=BACKENDS, default="mtcnn",
                   help="landmarker: mtcnn (offline, fast) or face-alignment (S3FD + 2D-FAN; needs weights)")
    p.add_argument("--size", type=int, default=112, help="crop side in pixels (112 or 128 usually)")
    p.add_argument("--workers", type=int, default=1, help="videos processed in parallel")
    p.add_argument("--device", default="cpu", help="torch device of the landmarker: cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per process (default: all cores with one worker, 1 per worker "
                        "otherwise); 1 avoids OpenMP stalls on a machine busy with other jobs")
    p.add_argument("--every", type=int, default=1,
                   help="detect landmarks on every N-th frame and interpolate in between (default 1: all)")
    p.add_argument("--audio-cache", default="",
                   help="eGeMAPS cache folder (default: the one training uses, "
                        "$ALN_CACHE_DIR or ~/.cache/aln, then egemaps/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 1 some videos failed, 2 usage error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name, low in (("size", 16), ("workers", 1), ("every", 1), ("threads", 0)):
        if getattr(args, name) < low:
            parser.error(f"--{name} must be at least {low}")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    opts = PrepareOptions(out=args.out, backend=args.backend, size=args.size, device=args.device,
                          every=args.every, audio_cache=args.audio_cache, progress=not args.no_progress,
                          threads=args.threads)
    try:
        videos = find_videos(args.videos)
        results = prepare_videos(videos, opts, workers=args.workers)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: finished videos are kept; run the same command again to continue",
              file=sys.stderr)
        return 130
    write_report(opts.out, results, opts)
    print(format_report(results))
    failed = sum(r.status == "failed" for r in results)
    if failed:
        print(f"error: {failed} of {len(results)} videos failed; see {opts.out / REPORT_NAME}",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
