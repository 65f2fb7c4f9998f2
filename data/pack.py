"""Pack a dataset's face crops into per-video files read by memory mapping (``data.store=packed``).

    python -m data.pack ROOT [--workers 4] [--check]

Writes ``ROOT/cropped_packed/<video>.pack`` for every folder ``ROOT/cropped_aligned/<video>`` (the JPEG bytes
of its ``<frame:05d>.jpg`` crops and a table of contents; layout and the reasons for it in
:mod:`data.samples.packed`). Each video is written to a temporary file and renamed when complete, so the command
can be killed at any time and re-run: it skips videos whose pack is complete and matches their folder (same
crop names and file sizes, and the same bytes for the first, middle and last crop) and repacks the others. ``--check`` writes
nothing: it compares every packed crop with its file and exits with 1 when a video is missing or stale.
Then train or evaluate with ``data.store=packed``.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import multiprocessing
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.samples.packed import (
    STORE_DIR,
    TEMP_SUFFIX,
    crop_frames,
    mismatch,
    pack_path,
    read_index,
    size_mismatch,
    spot_frames,
    write_pack,
)

log = logging.getLogger("data.pack")


@dataclass
class VideoResult:
    """What happened to one video folder."""

    video: str
    action: str            # packed | skipped (complete) | ok (--check) | stale (--check) | missing (--check)
    crops: int = 0
    nbytes: int = 0
    why: str = ""          # why it was (re)packed or is stale
    truncated: list[str] = field(default_factory=list)


def pack_video(image_dir: Path, check: bool = False) -> VideoResult:
    """Pack one crop folder unless its pack is complete and matches; with ``check``, only compare every crop."""
    frames = crop_frames(image_dir)
    path = pack_path(image_dir)
    why = "not packed yet"
    if path.is_file():
        try:
            index = read_index(path)
            if not np.array_equal(index.frames, frames):
                why = "its crop names changed"
            else:
                why = mismatch(index, image_dir, frames, frames) if check else \
                    size_mismatch(index, image_dir) or mismatch(index, image_dir, frames, spot_frames(frames))
        except DataError as exc:
            why = str(exc)
        if why is None:
            return VideoResult(image_dir.name, "ok" if check else "skipped", len(frames), path.stat().st_size)
    if check:
        return VideoResult(image_dir.name, "missing" if not path.is_file() else "stale", len(frames), why=why)
    crops, nbytes, truncated = write_pack(image_dir, frames)
    return VideoResult(image_dir.name, "packed", crops, nbytes, why, truncated)


def _pack_one(job: tuple[str, bool]) -> VideoResult | str:
    """Pool worker: a result, or the one-line error of a crop that could not be read."""
    try:
        return pack_video(Path(job[0]), job[1])
    except DataError as exc:
        return str(exc)


@contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """Hold ``store/.lock`` for the run: two packs of one root would rename over each other's files."""
    store.mkdir(parents=True, exist_ok=True)
    with open(store / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataError(f"{store}: another `python -m data.pack` is running on this root") from None
        yield


def remove_leftovers(store: Path) -> int:
    """Delete the temporary files of an interrupted pack (safe: the lock says no other pack is writing)."""
    left = list(store.glob(f"*{TEMP_SUFFIX}"))
    for tmp in left:
        tmp.unlink()
    return len(left)


def run(root: Path, workers: int, check: bool) -> int:
    """Pack (or check) every video folder of ``root``; returns the exit code."""
    crops_dir = root / "cropped_aligned"
    if not crops_dir.is_dir():
        raise DataError(f"{crops_dir}: folder of face crops is missing (expected ROOT/cropped_aligned/<video>/)")
    videos = sorted(p for p in crops_dir.iterdir() if p.is_dir())
    if not videos:
        raise DataError(f"{crops_dir}: no video folders to pack")
    store = root / STORE_DIR
    start = time.perf_counter()
    with store_lock(store):
        if not check and (left := remove_leftovers(store)):
            log.info("removed %d unfinished file(s) of an interrupted pack", left)
        totals = {"packed": 0, "skipped": 0, "ok": 0, "stale": 0, "missing": 0}
        crops = nbytes = 0
        jobs = [(str(v), check) for v in videos]
        # one worker packs in this process; several are spawned, not forked: a fork of a process whose torch,
        # OpenCV or logging threads hold a lock can hang forever (it did inside the test suite)
        pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
        results = pool.imap_unordered(_pack_one, jobs) if pool else map(_pack_one, jobs)
        with pool or nullcontext():
            for done, result in enumerate(results, start=1):
                if isinstance(result, str):
                    if pool:
                        pool.terminate()
                    raise DataError(result)
                totals[result.action] += 1
                crops, nbytes = crops + result.crops, nbytes + result.nbytes
                _report(result)
                if done % 50 == 0 or done == len(jobs):
                    log.info("%d/%d videos, %s crops, %.2f GB, %.0f s", done, len(jobs), f"{crops:,}",
                             nbytes / 1e9, time.perf_counter() - start)
    summary = ", ".join(f"{k} {v}" for k, v in totals.items() if v)
    log.info("%s: %s (%s crops, %.2f GB) in %.0f s", store, summary, f"{crops:,}", nbytes / 1e9,
             time.perf_counter() - start)
    if check and (totals["stale"] or totals["missing"]):
        log.error("%d video(s) missing or stale: re-run `python -m data.pack %s`", totals["stale"] + totals["missing"],
                  root)
        return 1
    if not check:
        log.info("train or evaluate with data.store=packed")
    return 0


def _report(result: VideoResult) -> None:
    """One line per video that needed work or attention; complete videos stay quiet."""
    if result.action == "packed" and result.why != "not packed yet":
        log.info("%s: repacked (%s)", result.video, result.why)
    elif result.action in ("stale", "missing"):
        log.warning("%s: %s (%s)", result.video, result.action, result.why)
    if result.truncated:
        log.warning("%s: %d crop(s) without an end-of-image marker, e.g. %s (packed as they are; training "
                    "refuses them when drawn, as with data.store=jpeg)", result.video, len(result.truncated),
                    result.truncated[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.pack", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="dataset root holding cropped_aligned/")
    parser.add_argument("--workers", type=int, default=4, help="videos packed in parallel (I/O bound)")
    parser.add_argument("--check", action="store_true", help="compare every packed crop with its file; write nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return run(args.root.expanduser(), args.workers, args.check)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
