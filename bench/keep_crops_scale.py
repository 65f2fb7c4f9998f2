"""Benchmark: what ``python -m data.prepare --keep-crops`` costs per frame, at Aff-Wild2's size.

    python -m bench.keep_crops_scale [--tree /tmp/aln-full] [--frames 3000] [--width 640] [--height 360]

The kept-crops path has two per-frame costs that a full preparation does not have in this form, and it skips
the ones it does have (decoding and face detection). Both are measured side by side in one run:

* listing the crops: :func:`data.preprocess.keep_crops.kept_folders` and ``crop_numbers`` over every video of a
  full-size synthetic ``cropped_aligned/`` (``bench.full_size_tree``: 560 videos, 2.8 M frames, hard links);
* counting the frames: :func:`data.preprocess.video.count_frames` (demuxed packets, nothing decoded) on a
  generated h264 video (``bench.prepare_bench``'s astronaut clip), against decoding the same file to RGB
  (:func:`data.preprocess.video.iter_frames`), which is the floor of every full run before any detection.

The audio (wav and eGeMAPS) is the same work in both paths and is not timed. Everything here runs on the CPU:
preprocessing uses no GPU in the kept-crops path.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.full_size_tree import TreeSpec, build_tree
from bench.prepare_bench import write_bench_video
from data.preprocess.keep_crops import crop_numbers, kept_folders
from data.preprocess.pipeline import CROPS_DIR
from data.preprocess.video import count_frames, iter_frames


def time_listing(tree: Path) -> tuple[int, int, float]:
    """(videos, crop files, seconds) to find and list every video's kept crop folders."""
    videos = sorted(p.name for p in (tree / CROPS_DIR).iterdir() if p.is_dir())
    start = time.perf_counter()
    files = sum(len(crop_numbers(folder)) for video in videos for folder in kept_folders(tree, video))
    return len(videos), files, time.perf_counter() - start


def time_count_and_decode(video: Path) -> tuple[int, float, float]:
    """(frames, seconds to count the packets, seconds to decode every frame) of one file."""
    start = time.perf_counter()
    frames = count_frames(video)
    counted = time.perf_counter() - start
    start = time.perf_counter()
    decoded = sum(1 for _ in iter_frames(video, threads=1))
    decode = time.perf_counter() - start
    if decoded != frames:
        raise SystemExit(f"error: {video}: {frames} packets but {decoded} decoded frames")
    return frames, counted, decode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=Path(tempfile.gettempdir()) / "aln-full",
                   help="full-size synthetic tree (built by bench.full_size_tree if absent)")
    p.add_argument("--frames", type=int, default=3000, help="frames of the generated video")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    args = p.parse_args(argv)

    manifest = build_tree(args.tree, TreeSpec())
    total = int(manifest["frames"])   # every frame of every video: the packets a count demuxes
    videos, files, listing = time_listing(args.tree)
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_bench_video(Path(tmp) / "clip.mp4", args.frames, args.width, args.height)
        frames, counted, decoded = time_count_and_decode(clip)
    per_count, per_decode = counted / frames, decoded / frames
    print(f"listing kept crops: {videos} videos, {files:,} crop files in {listing:.1f} s "
          f"({listing / files * 1e6:.2f} us per file)")
    print(f"counting frames ({args.width}x{args.height} h264, {frames} frames): packets {per_count * 1e6:.1f} us "
          f"per frame, decoding {per_decode * 1e6:.1f} us per frame: decoding is {per_decode / per_count:.0f}x "
          f"the count")
    print(f"projected for {total:,} frames (1 process): listing {listing / files * total:.1f} s, counting "
          f"{per_count * total / 60:.1f} min; decoding alone would take {per_decode * total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
