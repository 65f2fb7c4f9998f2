"""Per-recording feature sequences with labels, and their batching with padding masks (for sequence models).

The baseline systems (docs/baselines.md) (Pandit's single-filter CNNs, Raju's attention RNNs, Aminbeidokhti's temporal
attention) read a whole recording as a (T, F) sequence of features with (T, D) labels at a fixed hop, instead
of one face at a time. A batch pads recordings to the longest one; ``mask`` marks the real time steps, and a
label is used only where ``valid`` holds (a real step with a valid label: Aff-Wild2's -5 and SEWA's
unlabelled frames are not). Models zero the padded steps before any convolution, and losses and metrics
ignore them, so changing padded values changes no output and no loss (tests/test_sequences.py).

Face maps (``sequence.maps=faces``) are not held in RAM: :func:`cached_face_maps` decodes a recording's crops
once into an on-disk uint8 array (``$ALN_CACHE_DIR/faces``, else ``~/.cache/aln/faces``) and serves them through
:class:`FaceMaps`, a memory-mapped (T, 3, S, S) view whose indexing copies only the frames asked for (a training
chunk, a window being predicted), with exactly the values of :func:`face_maps`. At Aff-Wild2 size (2.8 M frames)
the float16 maps would take 17 GB of RAM; the cache takes 3 KB per frame of disk at 32 px.

Label delay compensation (Pandit et al.: 4.0 s arousal, 2.8 s valence on SEWA) shifts each dimension's labels
earlier by its delay: the label at ``t + delay`` describes the features at ``t``; steps left without a label
at the end become invalid.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import multiprocessing
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from data.datasets.affwild2 import VideoRecord
from data.samples.corruptions import frame_seed
from data.samples.dataset import read_rgb
from fileio.atomic import atomic_open

INVALID = -5.0
# Bump when the cached crops change meaning (decoder, resize, layout): old files are then never served.
FACE_CACHE_VERSION = 1
# uint8 pixel -> the float16 value face_maps gives it (the same float32 operations, then the same cast)
_PIXEL_VALUES = (np.arange(256, dtype=np.float32) / 127.5 - 1.0).astype(np.float16)

log = logging.getLogger(__name__)


@dataclass
class Sequence:
    """One recording: features (T, F), labels (T, D) with INVALID where unknown, and its name."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    maps: np.ndarray | FaceMaps | None = None   # (T, C, H, W) per-frame maps (face crops) for the spatial models

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.labels.ndim != 2 or len(self.features) != len(self.labels):
            raise ValueError(f"{self.name}: features {self.features.shape} and labels {self.labels.shape} must be "
                             "(T, F) and (T, D) of one length")
        if self.maps is not None and (self.maps.ndim != 4 or len(self.maps) != len(self.labels)):
            raise ValueError(f"{self.name}: maps {self.maps.shape} must be (T, C, H, W) with T = {len(self.labels)}")

    def __len__(self) -> int:
        return len(self.features)


def delay_labels(labels: np.ndarray, delays_steps: list[int]) -> np.ndarray:
    """Labels with dimension d taken ``delays_steps[d]`` steps later (annotator delay); the tail becomes INVALID."""
    out = np.full_like(labels, INVALID)
    for d, shift in enumerate(delays_steps):
        if shift < 0:
            raise ValueError(f"label delays are >= 0 steps, got {shift} for dimension {d}")
        n = len(labels) - shift
        if n > 0:
            out[:n, d] = labels[shift:, d]
    return out


def labelled(labels: torch.Tensor) -> torch.Tensor:
    """Where a label is known: not INVALID (Aff-Wild2's -5, SEWA's gaps) and within [-1, 1]."""
    return (labels > INVALID + 0.5) & (labels.abs() <= 1.0)


def collate_sequences(sequences: list[Sequence]) -> dict[str, torch.Tensor | list[str]]:
    """Pad to the longest recording: ``features`` (B, T, F), ``labels`` (B, T, D), ``mask`` (B, T) of real
    steps, ``valid`` (B, T, D) of real steps with a valid label, the ``names``, and ``maps`` (B, T, C, H, W)
    when the sequences carry them (else None)."""
    if not sequences:
        raise ValueError("no sequences to batch")
    length = max(len(s) for s in sequences)
    n_feat, n_dim = sequences[0].features.shape[1], sequences[0].labels.shape[1]
    features = torch.zeros(len(sequences), length, n_feat)
    labels = torch.full((len(sequences), length, n_dim), INVALID)
    mask = torch.zeros(len(sequences), length, dtype=torch.bool)
    for i, s in enumerate(sequences):
        features[i, :len(s)] = torch.from_numpy(np.asarray(s.features, np.float32))
        labels[i, :len(s)] = torch.from_numpy(np.asarray(s.labels, np.float32))
        mask[i, :len(s)] = True
    valid = mask[..., None] & labelled(labels)
    maps = None
    if sequences[0].maps is not None:
        maps = torch.zeros(len(sequences), length, *sequences[0].maps.shape[1:])
        for i, s in enumerate(sequences):   # slicing a FaceMaps copies these frames only, from its memmap
            maps[i, :len(s)] = torch.from_numpy(np.asarray(s.maps[0:len(s)], np.float32))
    return {"features": features, "labels": labels, "mask": mask, "valid": valid, "maps": maps,
            "names": [s.name for s in sequences]}


def face_maps(record: VideoRecord, size: int,
              corruption: Callable[[np.ndarray, int], np.ndarray] | None = None) -> np.ndarray:
    """(T, 3, size, size) float16 face crops in [-1, 1] of every frame, frame k on row k-1; frames without a crop
    stay 0. Decoded by the sample contract's reader, so a corrupt crop is a DataError naming the file; float16
    keeps a demo split's faces at 32 px in a few MB.

    ``corruption(image, seed)`` (the robustness protocol, ``data.samples.corruptions``) is applied to each
    full-resolution crop before it is resized, seeded by the frame's identity as the per-frame datasets seed it.
    """
    out = np.zeros((record.n_frames, 3, size, size), np.float16)
    for k in range(1, record.n_frames + 1):
        path = record.image_path(k)
        if path.is_file():
            image = read_rgb(path)
            if corruption is not None:
                image = corruption(image, frame_seed(record.name, k))
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
            out[k - 1] = image.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0
    return out


class FaceMaps:
    """(T, 3, S, S) float16 face maps served from a uint8 array (a read-only memmap of the face cache).

    Indexing with a slice or an integer copies those frames only, as :func:`face_maps` would have given them
    (bit for bit: ``_PIXEL_VALUES`` is its arithmetic per pixel value; frames without a crop are 0). The pages
    read are then dropped from this process's mapping, so a pass over a whole split does not leave the split's
    crops counted in the process's resident memory (they stay in the kernel's page cache, shared and evictable).
    """

    def __init__(self, crops: np.ndarray, present: np.ndarray, source: str = ""):
        if crops.ndim != 4 or crops.dtype != np.uint8 or present.shape != crops.shape[:1]:
            raise ValueError(f"{source}: face crops {crops.dtype} {crops.shape} with {present.shape} presence flags "
                             "must be uint8 (T, C, H, W) and (T,)")
        self.crops, self.present, self.source = crops, np.asarray(present, bool), source

    @property
    def shape(self) -> tuple[int, ...]:
        return self.crops.shape

    @property
    def ndim(self) -> int:
        return 4

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float16)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: slice | int) -> np.ndarray:
        if not isinstance(index, slice | int | np.integer):
            raise TypeError(f"{self.source}: face maps are read by a slice or a frame index, not {type(index)}")
        out = _PIXEL_VALUES[self.crops[index]]
        out[~self.present[index]] = 0.0
        self._release(index)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole recording in RAM (tests, small recordings); batches slice instead."""
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    def _release(self, index: slice | int) -> None:
        """Drop the mapped pages of these frames from this process (MADV_DONTNEED on a read-only file mapping:
        they are read again from the page cache when needed); a no-op where numpy or the OS offers no handle."""
        handle = getattr(self.crops, "_mmap", None)
        if handle is None or not hasattr(handle, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return
        if isinstance(index, slice):
            start, stop, _ = index.indices(len(self))
        else:
            start = range(len(self))[index]
            stop = start + 1
        row = int(np.prod(self.crops.shape[1:]))
        base = self.crops.offset % mmap.ALLOCATIONGRANULARITY      # where the array starts in the mapping
        first = (base + start * row) // mmap.PAGESIZE * mmap.PAGESIZE
        end = min(base + stop * row, len(handle))
        if end > first:
            handle.madvise(mmap.MADV_DONTNEED, first, end - first)


def face_cache_dir() -> Path:
    """Where face crops are cached: ``$ALN_CACHE_DIR/faces``, else ``~/.cache/aln/faces`` (as the eGeMAPS cache)."""
    return Path(os.environ.get("ALN_CACHE_DIR") or Path.home() / ".cache" / "aln") / "faces"


def crop_listing(record: VideoRecord) -> tuple[np.ndarray, str]:
    """Which frames have a crop (T,) and a fingerprint of the crop set: every crop's frame, size and mtime.

    Why these: a crop added, removed, renamed or rewritten (any copy or re-export changes the mtime) changes the
    fingerprint, and a stat per crop costs about what ``face_maps``' own ``is_file`` per frame did; hashing the
    pixels would cost a decode. An edit that keeps a file's size and sets its mtime back is not seen (as make's)."""
    present = np.zeros(record.n_frames, bool)
    rows = []
    try:
        entries = list(os.scandir(record.image_dir))
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    for entry in entries:
        stem = entry.name[:-4]
        if not (entry.name.endswith(".jpg") and stem.isdigit()) or not 1 <= int(stem) <= record.n_frames:
            continue
        frame = int(stem)
        if entry.name != record.image_path(frame).name or not entry.is_file():
            continue
        info = entry.stat()
        present[frame - 1] = True
        rows.append((frame, info.st_size, info.st_mtime_ns))
    table = np.array(sorted(rows), np.int64).reshape(-1, 3)
    return present, hashlib.sha1(table.tobytes()).hexdigest()[:16]


def face_cache_path(record: VideoRecord, size: int, fingerprint: str) -> Path:
    """``<recording>-<size>px-<where>-<fingerprint>.npy``: ``where`` hashes the crop folder's absolute path, the
    frame count, the face size, the cache version and OpenCV's version (its resize makes the values), so two
    trees never share a file and a file is never served to another decoder."""
    where = hashlib.sha1(f"{Path(record.image_dir).resolve()}|{record.n_frames}|{size}|{FACE_CACHE_VERSION}|"
                         f"{cv2.__version__}".encode()).hexdigest()[:12]
    return face_cache_dir() / f"{_safe(record.name)}-{size}px-{where}-{fingerprint}.npy"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def write_face_cache(record: VideoRecord, size: int, present: np.ndarray, path: Path) -> None:
    """Decode the recording's crops into ``path`` (uint8 (T, 3, size, size)), one frame at a time into a temporary
    file renamed into place: a killed build leaves no partial cache, and RAM holds one crop, not the recording.
    Older caches of the same recording and size (another crop set) are removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blank = bytes(3 * size * size)
    with atomic_open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(np.uint8).str, "fortran_order": False,
                                                 "shape": (record.n_frames, 3, size, size)})
        for k in range(record.n_frames):
            f.write(_decode_crop(record.image_path(k + 1), size).tobytes() if present[k] else blank)
    for old in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.npy"):
        if old != path:
            old.unlink(missing_ok=True)


def _decode_crop(path: Path, size: int) -> np.ndarray:
    """(3, size, size) uint8: the crop as face_maps reads and resizes it, before its float conversion."""
    return np.ascontiguousarray(cv2.resize(read_rgb(path), (size, size), interpolation=cv2.INTER_AREA)
                                .transpose(2, 0, 1))


def open_face_cache(path: Path, record: VideoRecord, size: int, present: np.ndarray) -> FaceMaps | None:
    """The cached crops of ``record`` as :class:`FaceMaps`, or None when the file is missing or unreadable or
    holds another shape (then it is rebuilt)."""
    shape = (record.n_frames, 3, size, size)
    if record.n_frames == 0:   # an empty file cannot be mapped
        return FaceMaps(np.zeros(shape, np.uint8), present, str(path))
    try:
        crops = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable face cache (%s), decoding the crops again", path, exc)
        return None
    if crops.shape != shape or crops.dtype != np.uint8:
        log.warning("%s: face cache holds %s %s, not uint8 %s; decoding the crops again", path, crops.dtype,
                    crops.shape, shape)
        return None
    return FaceMaps(crops, present, str(path))


def cached_face_maps(records: list[VideoRecord], size: int, workers: int = 0) -> list[FaceMaps | np.ndarray]:
    """Each recording's face maps from the face cache, decoding the missing or stale ones (another crop set)
    first, in ``workers`` processes (0: in this one): :func:`face_maps`' values without its RAM. A cache that
    cannot be written (read-only, full disk) costs RAM, never the run: those maps are decoded into memory, with
    a warning."""
    listings = [crop_listing(r) for r in records]
    paths = [face_cache_path(r, size, fingerprint) for r, (_, fingerprint) in zip(records, listings, strict=True)]
    maps = [open_face_cache(path, r, size, present)
            for r, path, (present, _) in zip(records, paths, listings, strict=True)]
    todo = [i for i, m in enumerate(maps) if m is None]
    if todo:
        _write_face_caches([(records[i], size, listings[i][0], paths[i]) for i in todo], workers)
    for i in todo:
        maps[i] = open_face_cache(paths[i], records[i], size, listings[i][0])
        if maps[i] is None:
            log.warning("%s: no face cache; decoding %s's crops into RAM", paths[i], records[i].name)
            maps[i] = face_maps(records[i], size)
    return maps


def _write_face_caches(jobs: list[tuple[VideoRecord, int, np.ndarray, Path]], workers: int) -> None:
    """Decode the crops of these recordings into their cache files, logging the one-off cost."""
    crops = sum(int(present.sum()) for _, _, present, _ in jobs)
    log.info("face cache: decoding %d crops of %d recording(s) into %s (once)", crops, len(jobs),
             jobs[0][3].parent)
    started = time.perf_counter()
    if workers > 0 and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")   # no fork of a process that may hold torch threads
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
            list(pool.map(_write_face_cache_or_warn, jobs, chunksize=1))
    else:
        for job in jobs:
            _write_face_cache_or_warn(job)
    log.info("face cache: %d crops decoded in %.0f s", crops, time.perf_counter() - started)


def _write_face_cache_or_warn(job: tuple[VideoRecord, int, np.ndarray, Path]) -> None:
    """One recording's cache; an unwritable cache is a warning (the caller falls back to RAM), a corrupt crop
    the DataError of its reader."""
    record, size, present, path = job
    try:
        write_face_cache(record, size, present, path)
    except OSError as exc:
        log.warning("%s: cannot write the face cache (%s)", path, exc)
