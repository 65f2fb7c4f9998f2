"""Many videos: :func:`prepare_videos` over worker processes, and the report of a prepare run.

Each worker builds its landmarker once and handles whole videos; OpenCV and torch threads are limited so
that the processes, not the threads, are the parallelism.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import cv2
from tqdm import tqdm

from data.errors import DataError
from data.preprocess.faces import check_face_alignment_weights, make_landmarker
from data.preprocess.pipeline import REPORT_NAME, PrepareOptions, VideoResult, prepare_video

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
