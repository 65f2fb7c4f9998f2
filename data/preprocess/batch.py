"""Many videos: :func:`prepare_videos` over worker processes, shards of a batch across machines, and the
report of a prepare run (per shard, and merged).

Each worker builds its landmarker once and handles whole videos; OpenCV and torch threads are limited so
that the processes, not the threads, are the parallelism.

Sharding (``--shard K/N``, see :mod:`data.prepare`) assigns a video to shard ``crc32(name) % N``, where the
name is the file name without extension (the crop folder's name). Why a hash of the name rather than
round-robin over the sorted names:

* A video's shard depends on nothing but its own name and N: not on the machine, the order the inputs were
  listed, or which other files a shard's machine found. With round-robin one extra (or missing) file on one
  machine shifts every later video to another shard, so two machines could process the same video into the
  same folders at once, and adding videos to a finished batch would reshuffle them.
* Round-robin would balance video *counts* exactly, the hash only statistically (560 videos over 16
  shards: 35 +- 6). Counts are not work anyway: Aff-Wild2 videos range from seconds to a quarter of an hour.

``zlib.crc32`` rather than :func:`hash`, which is salted per process for strings.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import re
import sys
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from data.errors import DataError
from data.preprocess.faces import check_face_alignment_weights, make_landmarker
from data.preprocess.keep_crops import prepare_kept
from data.preprocess.pipeline import REPORT_NAME, PrepareOptions, VideoResult, prepare_video
from fileio.atomic import write_json

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
    if opts.keep_crops:
        return prepare_kept(source, opts)
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
    With ``opts.keep_crops`` no landmarker is built (:mod:`data.preprocess.keep_crops`).

    Raises:
        DataError: The backend cannot be set up (e.g. face-alignment weights missing); checked before
            any video is touched.
    """
    if opts.backend == "face-alignment" and not opts.keep_crops:
        check_face_alignment_weights()
    try:
        Path(opts.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{opts.out}: cannot create the output folder ({exc.strerror or exc})") from exc
    if not videos:  # an empty shard: nothing to load a landmarker for
        return []
    results: dict[Path, VideoResult] = {}
    with tqdm(total=len(videos), desc="videos", unit="video", position=0, disable=not opts.progress,
              dynamic_ncols=True) as overall:
        if workers <= 1 or len(videos) <= 1:
            with _thread_limits(opts.threads):
                landmarker = None if opts.keep_crops else make_landmarker(opts.backend, opts.device)
                for source in videos:
                    results[source] = prepare_kept(source, opts) if landmarker is None else \
                        prepare_video(source, landmarker, opts, position=1)
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


# ---------------------------------------------------------------------------------------------- shards

_SHARD_REPORT = re.compile(r"prepare_report\.shard-(\d+)-of-(\d+)\.json")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): the videos whose name hashes to ``index`` modulo ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` -> Shard(K, N).

        Raises:
            ValueError: Not two integers with 0 <= K < N (the message says what was expected).
        """
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ValueError(f"expected K/N (e.g. 0/4), got {text!r}")
        index, count = int(match[1]), int(match[2])
        if count < 1 or index >= count:
            raise ValueError(f"expected K/N with 0 <= K < N (shards are numbered 0..N-1), got {text!r}")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def report_name(self) -> str:
        """This shard's report file: shards write into one ROOT, so each needs its own."""
        return f"prepare_report.shard-{self.index}-of-{self.count}.json"

    def owns(self, video: str) -> bool:
        """Whether ``video`` (a video name: file name without extension) belongs to this shard."""
        return shard_of(video, self.count) == self.index


def shard_of(video: str, count: int) -> int:
    """The shard (0..count-1) of a video name: stable across machines, processes and Python versions."""
    return zlib.crc32(video.encode("utf-8")) % count


def select_shard(videos: Sequence[Path], shard: Shard | None) -> list[Path]:
    """The videos of ``shard`` (all of them for None), in their input order.

    Call it on the whole discovered list, after :func:`data.preprocess.pipeline.find_videos` has refused
    duplicate names among *all* inputs (two same-named videos in different shards would still collide).
    """
    return list(videos) if shard is None else [v for v in videos if shard.owns(v.stem)]


# ---------------------------------------------------------------------------------------------- report

def format_report(results: Sequence[VideoResult]) -> str:
    """The per-video table printed at the end, followed by one line per warning or error."""
    header = ("video", "frames", "faces", "fps", "audio s", "status")
    rows = []
    for r in results:
        status = r.status.upper() if r.status == "failed" else r.status
        if r.crops_kept and r.status != "failed":
            status += ", crops kept"
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


def _write_json(path: Path, obj: dict) -> Path:
    """Write ``obj`` as JSON atomically (:mod:`fileio.atomic`): a killed run never leaves half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, obj)


def _counts(rows: Sequence[dict]) -> dict[str, int]:
    return {s: sum(r["status"] == s for r in rows) for s in ("done", "skipped", "failed")}


def write_report(root: Path, results: Sequence[VideoResult], opts: PrepareOptions, shard: Shard | None = None,
                 all_videos: Sequence[str] = ()) -> Path:
    """Write the run's report (atomically): the options and one object per video; returns its path.

    Unsharded: ``ROOT/prepare_report.json``. A shard writes ``ROOT/prepare_report.shard-K-of-N.json``
    instead, with a ``shard`` object holding K, N and ``all_videos`` (every video name the run found,
    before sharding, in input order), which :func:`merge_reports` uses to check that the shards saw the
    same inputs and to order the merged rows like an unsharded run's.
    """
    rows = [asdict(r) for r in results]
    # --keep-crops runs no landmarker: its options are recorded as unused (null), so shards agree on them
    keep = opts.keep_crops
    report: dict = {
        "options": {"backend": None if keep else opts.backend, "size": None if keep else opts.size,
                    "device": opts.device, "every": None if keep else opts.every, "keep_crops": keep},
        "counts": _counts(rows),
        "videos": rows,
    }
    if shard is not None:
        report["shard"] = {"index": shard.index, "count": shard.count, "all_videos": list(all_videos)}
    return _write_json(Path(root) / (shard.report_name if shard else REPORT_NAME), report)


# ------------------------------------------------------------------------------------------ merging

# Options that must agree between shards; "device" may differ (cpu on one machine, cuda on another) and,
# like in the metadata, does not change what is written.
_SHARED_OPTIONS = ("backend", "size", "every")


def _find_shard_reports(root: Path) -> dict[int, dict[int, Path]]:
    """Shard report files in ``root`` by N, then by K (from their names)."""
    found: dict[int, dict[int, Path]] = {}
    for path in sorted(Path(root).glob("prepare_report.shard-*-of-*.json")):
        match = _SHARD_REPORT.fullmatch(path.name)
        if match:
            found.setdefault(int(match[2]), {})[int(match[1])] = path
    return found


def _shard_files(root: Path) -> dict[int, Path]:
    """The report files of shards 0..N-1 of one sharded run.

    Raises:
        DataError: None found, reports of several N (stale files of an earlier split), or shards missing.
    """
    found = _find_shard_reports(root)
    if not found:
        raise DataError(f"{root}: no shard reports (prepare_report.shard-K-of-N.json) to merge; "
                        "run python -m data.prepare with --shard K/N first")
    if len(found) > 1:
        runs = ", ".join(f"N={n}: {len(files)} report{'s' if len(files) > 1 else ''}" for n, files in sorted(found.items()))
        raise DataError(f"{root}: shard reports of different splits ({runs}); delete the stale ones")
    ((count, files),) = found.items()
    missing = [k for k in range(count) if k not in files]
    if missing:
        raise DataError(f"{root}: missing shard report{'s' if len(missing) > 1 else ''} of --shard "
                        f"{', '.join(f'{k}/{count}' for k in missing)} ({len(files)} of {count} found); "
                        "run the missing shards first")
    extra = sorted(set(files) - set(range(count)))
    if extra:
        raise DataError(f"{files[extra[0]]}: shard {extra[0]} does not exist in a split into {count}; delete it")
    return dict(sorted(files.items()))


def _read_shard_report(path: Path, index: int, count: int) -> dict:
    """One shard report, checked to be the one its name says (so a renamed file is not merged)."""
    try:
        report = json.loads(path.read_text())
        shard, rows = report["shard"], report["videos"]
        ok = (shard["index"], shard["count"]) == (index, count) and isinstance(shard["all_videos"], list) \
            and all(o in report["options"] for o in _SHARED_OPTIONS) \
            and all(isinstance(r, dict) and {"video", "status"} <= r.keys() for r in rows)
    except OSError as exc:
        raise DataError(f"{path}: cannot read shard report ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a shard report of python -m data.prepare "
                        f"({exc.__class__.__name__}: {exc})") from exc
    if not ok:
        raise DataError(f"{path}: its contents are not those of shard {index}/{count} (renamed file?)")
    return report


def _check_same_run(files: dict[int, Path], reports: dict[int, dict]) -> None:
    """Shards of one batch: the same --keep-crops, backend, crop size and --every, and the same discovered videos.

    Raises:
        DataError: The first disagreement, naming both files.
    """
    first = reports[0]
    for k, report in reports.items():
        kept = [bool(r["options"].get("keep_crops")) for r in (report, first)]  # absent: a report before it
        if kept[0] != kept[1]:
            raise DataError(f"{files[k].name} was run {'with' if kept[0] else 'without'} --keep-crops but "
                            f"{files[0].name} {'with' if kept[1] else 'without'}; re-run one of them")
        for option in _SHARED_OPTIONS:
            if report["options"][option] != first["options"][option]:
                raise DataError(f"{files[k].name} was run with {option}={report['options'][option]!r} but "
                                f"{files[0].name} with {first['options'][option]!r}; re-run one of them")
        mine, theirs = set(report["shard"]["all_videos"]), set(first["shard"]["all_videos"])
        if mine != theirs:
            odd = sorted(mine ^ theirs)
            raise DataError(f"{files[k].name} and {files[0].name} found different videos ({len(odd)} differ, "
                            f"e.g. {odd[0]!r}); re-run the shards with the same inputs (finished videos are "
                            "skipped)")


def merge_reports(root: Path) -> tuple[Path, list[VideoResult]]:
    """Merge the reports of shards 0..N-1 in ``root`` into ``root/prepare_report.json``.

    The merged report is what an unsharded run with shard 0's inputs would have written: rows in shard
    0's discovery order, counts over all rows, the shared options. Only per-run fields differ: each row's
    ``seconds`` (wall time in the run that processed it), ``source`` (the path on that shard's machine)
    and ``options.device`` (shard 0's; comma-joined when the shards used different devices).
    The shard reports are left in place.

    Returns:
        The merged report's path and its rows.

    Raises:
        DataError: No shard reports, a shard missing, reports of different splits, options or inputs,
            a video reported by no shard or by two, or an unreadable report (one line, naming the file).
    """
    files = _shard_files(root)
    count = len(files)
    reports = {k: _read_shard_report(path, k, count) for k, path in files.items()}
    _check_same_run(files, reports)
    rows: dict[str, dict] = {}
    for k, report in reports.items():
        for row in report["videos"]:
            if row["video"] in rows:
                raise DataError(f"{files[k].name}: video {row['video']!r} is also in another shard's report")
            rows[row["video"]] = row
    order = reports[0]["shard"]["all_videos"]
    unreported = [v for v in order if v not in rows]
    if unreported:
        shard = Shard(shard_of(unreported[0], count), count)
        raise DataError(f"{files[shard.index].name}: video {unreported[0]!r} of shard {shard} is not in its "
                        "report; re-run that shard")
    unknown = sorted(set(rows) - set(order))
    if unknown:
        raise DataError(f"{root}: a shard report holds video {unknown[0]!r}, which is not among the inputs")
    merged = [rows[v] for v in order]
    devices = list(dict.fromkeys(str(r["options"].get("device", "")) for r in reports.values()))
    options = {**reports[0]["options"], "device": ", ".join(devices)}
    path = _write_json(Path(root) / REPORT_NAME, {"options": options, "counts": _counts(merged), "videos": merged})
    return path, [_result(row) for row in merged]


def _result(row: dict) -> VideoResult:
    """A report row back as a VideoResult (unknown keys of another version are ignored)."""
    known = VideoResult.__dataclass_fields__
    return VideoResult(**{k: v for k, v in row.items() if k in known})
