"""Raw videos -> the Aff-Wild2 on-disk layout: aligned face crops, 16 kHz audio, eGeMAPS cache, metadata.

Usage::

    python -m data.prepare VIDEOS... --out ROOT [--backend mtcnn|face-alignment] [--size 112]
                           [--workers N] [--threads N] [--device cpu] [--every N] [--audio-cache DIR]
                           [--no-progress] [--shard K/N]
    python -m data.prepare VIDEOS... --out ROOT --keep-crops [--workers N] [--audio-cache DIR] [--shard K/N]
    python -m data.prepare --merge-reports --out ROOT

VIDEOS are files or folders (searched recursively for .mp4/.avi/.mkv, any case; hidden files such as
macOS ``._x.mp4`` are ignored). For each video ``<video>`` (the file name without extension) it writes::

    ROOT/cropped_aligned/<video>/<frame:05d>.jpg   1-based frame numbers; frames without a face are absent
    ROOT/audio/<video>.wav                         16 kHz mono PCM_16 (absent when the video has no audio)
    ROOT/meta/<video>.json                         data.datasets.meta.VideoMeta, written last with complete=true
    ROOT/prepare_report.json                       one entry per video of this run
                                                   (ROOT/prepare_report.shard-K-of-N.json with --shard K/N)

and fills the eGeMAPS LLD cache (:func:`data.preprocess.audio.lld_track`) so training never runs openSMILE.
``ROOT`` is meant to be a fresh output folder next to the annotations, not the official Aff-Wild2
``cropped_aligned`` tree: a video's existing crops are replaced when it is (re)processed (unless
``--keep-crops``, below, which is the way to use that tree).

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
* ``--keep-crops`` is for datasets that ship their own crops (Aff-Wild2's ``cropped_aligned/``, with ROOT the
  dataset folder): no face is detected and ``cropped_aligned/`` is left byte-for-byte as it is; audio, the
  eGeMAPS cache and metadata are written as in a full run, the frame rate and count read from the container
  without decoding frames, ``faces`` = the crop files found. It skips videos finished by either kind of run;
  a full run redoes (and re-crops) videos finished with --keep-crops. ``--two-subjects`` is refused with it:
  ``<video>_left/`` and ``<video>_right/`` are kept and counted anyway. See :mod:`data.preprocess.keep_crops`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from data.errors import DataError
from data.preprocess.batch import (
    Shard,
    format_report,
    merge_reports,
    prepare_videos,
    select_shard,
    write_report,
)
from data.preprocess.faces import BACKENDS
from data.preprocess.pipeline import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    PrepareOptions,
    VideoResult,
    find_videos,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data.prepare",
        description="Decode videos, detect and align faces, extract 16 kHz audio and eGeMAPS features "
                    "into the Aff-Wild2 layout (cropped_aligned/, audio/, meta/).")
    p.add_argument("videos", nargs="*", type=Path,
                   help="video files or folders (searched for .mp4/.avi/.mkv); required unless --merge-reports")
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
    p.add_argument("--two-subjects", nargs="*", metavar="VIDEO", default=None,
                   help="videos with two people: crops into <video>_left/ and <video>_right/ (Aff-Wild2's names), "
                        "the two largest faces by horizontal position, tracked over time; without names: every video")
    p.add_argument("--keep-crops", action="store_true",
                   help="keep the face crops already in ROOT/cropped_aligned/ (e.g. Aff-Wild2's own) byte-for-byte: "
                        "no face detection, no crop written or deleted; writes only audio/, the eGeMAPS cache and "
                        "meta/ (frame rate and count from the container, faces = crop files found). --backend, "
                        "--size, --every, --device are unused; not with --two-subjects (_left/_right folders are "
                        "kept anyway). A later run without it redoes these videos, crops included")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="process only shard K (0-based) of N: the videos whose name hashes to K; run K=0..N-1 "
                        "on several machines into one shared ROOT, then --merge-reports")
    p.add_argument("--merge-reports", action="store_true",
                   help="merge ROOT's prepare_report.shard-K-of-N.json (all K of one N) into "
                        "ROOT/prepare_report.json; takes no VIDEOS")
    return p


def _shard(text: str) -> Shard:
    """argparse type of --shard: the error names the flag and the expected form."""
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _merge(root: Path) -> int:
    """--merge-reports: merge the shard reports and print the table; exit code as a run's."""
    try:
        path, results = merge_reports(root)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(format_report(results))
    return _exit_code(results, path)


def _exit_code(results: Sequence[VideoResult], report: Path) -> int:
    """EXIT_FAILED (with a line on stderr) when some video failed, else EXIT_OK."""
    failed = sum(r.status == "failed" for r in results)
    if failed:
        print(f"error: {failed} of {len(results)} videos failed; see {report}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 1 some videos failed, 2 usage error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.merge_reports:
        if args.videos or args.shard is not None:
            parser.error("--merge-reports takes no VIDEOS and no --shard: it only reads ROOT's shard reports")
        return _merge(args.out)
    if not args.videos:
        parser.error("the following arguments are required: videos (or use --merge-reports)")
    if args.keep_crops and args.two_subjects is not None:  # one line, like the other usage errors found here
        print("error: --two-subjects does nothing with --keep-crops: the shipped <video>_left/ and <video>_right/ "
              "crop folders are kept and counted as they are; drop --two-subjects", file=sys.stderr)
        return EXIT_USAGE
    for name, low in (("size", 16), ("workers", 1), ("every", 1), ("threads", 0)):
        if getattr(args, name) < low:
            parser.error(f"--{name} must be at least {low}")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    opts = PrepareOptions(out=args.out, backend=args.backend, size=args.size, device=args.device,
                          every=args.every, audio_cache=args.audio_cache, progress=not args.no_progress,
                          threads=args.threads, keep_crops=args.keep_crops,
                          two_subjects=None if args.two_subjects is None else tuple(args.two_subjects))
    try:
        found = find_videos(args.videos)  # all inputs: duplicate names are refused across shards too
        videos = select_shard(found, args.shard)
        results = prepare_videos(videos, opts, workers=args.workers)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: finished videos are kept; run the same command again to continue",
              file=sys.stderr)
        return 130
    report = write_report(opts.out, results, opts, args.shard, [v.stem for v in found])
    print(format_report(results))
    if args.shard is not None:
        print(f"shard {args.shard}: {len(videos)} of {len(found)} videos, report {report}; when all "
              f"{args.shard.count} shards are done: python -m data.prepare --merge-reports --out {opts.out}")
    return _exit_code(results, report)


if __name__ == "__main__":
    sys.exit(main())
