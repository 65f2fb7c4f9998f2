"""Packed face crops: each video's JPEG files concatenated into one memory-mapped file (``data.store=packed``).

Why. A training sample reads one 112 px JPEG of ~3.5-5 KB out of 2.7 M files in ~560 folders (Aff-Wild2).
``bench/loader_profile.py`` on a full-size synthetic tree (2.7 M crops, 560 folders, 128 px, one worker, a
2-core machine shared with other jobs) measured per sample: a warm sample (crop in the page cache) costs
~0.85-1.07 ms of CPU, of which the file read is 32-38 us (3-4 %), JPEG decode ~126 us, degradation ~440 us
(Gaussian noise alone ~200 us of it), to_tensor x 2 ~146 us, resizes ~120 us. A cold read (caches dropped)
costs 0.47-1.0 ms (a directory lookup, an inode and a data block; on a network file system every open also
waits for a round trip, even with the data cached), so per-file reads bound a worker only when the crops are
cold or remote, e.g. through the first epoch. A cold crop read alone from a pack costs about as much as a file
(0.46-0.70 ms: one device round trip either way on that disk); what the pack adds is that all crops of a batch
can be requested at once (:meth:`PackedCrops.prefetch`, ``MADV_WILLNEED``) without opening anything, so their
reads overlap: 43-46 us per crop. Training DataLoader, one worker, cold: 316-391 -> 471-477 samples/s
(1.2-1.5x); warm: no change (0.96-1.04x), as a warm sample is bound by CPU work this store does not touch.

Why JPEG bytes and not decoded pixels. Decoding is ~126 us of a ~1 ms sample (degradation alone is ~440 us),
so storing pixels would save at most ~14 % of a warm sample while multiplying the store by ~8 (37.6 KB per
112 px RGB frame: ~100 GB for Aff-Wild2 against ~13 GB of JPEGs) and the bytes read per cold sample by the
same factor. The JPEG bytes keep the disk size and make a packed sample trivially bit-identical to the JPEG
path: the same bytes go through the same checks and decoder (:func:`data.samples.dataset.decode_rgb`), so a
truncated or undecodable crop is still refused, naming its file and the pack holding it.

Layout of ``ROOT/cropped_packed/<video>.pack`` (little-endian), one per folder ``ROOT/cropped_aligned/<video>``::

    0           8 bytes        magic b"ALNPACK1"
    8           uint64         n, the number of crops
    16          uint64         size of the whole file in bytes (a truncated copy is refused)
    24          n x int64      frame numbers, ascending (the k of <k:05d>.jpg)
    24 + 8n     (n+1) x int64  byte offset of each crop's JPEG bytes in the file; the last is the file size
    ...                        the JPEG bytes of the crops, as in their files

Complete or absent: ``python -m data.pack ROOT`` writes ``<video>.pack.tmp``, flushes it to disk and renames it
to ``<video>.pack``, so a pack killed at any moment leaves every video either packed whole or not at all, and a
reader only ever opens ``<video>.pack``. A pack that does not match its crop folder (crops added or rewritten
after packing) is refused with one line naming the video and the command to re-run: :class:`PackedCrops`
checks, per video, that every frame the dataset will read is in the pack and that a few of them (first, middle,
last) have the same bytes as their files; ``python -m data.pack ROOT --check`` compares every crop.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.datasets.affwild2 import VideoRecord
from data.errors import DataError
from data.samples.dataset import _JPEG_END, decode_rgb
from fileio.atomic import atomic_path

MAGIC = b"ALNPACK1"
STORE_DIR = "cropped_packed"
SUFFIX = ".pack"
TEMP_SUFFIX = ".pack.tmp"
_HEADER = 24
SPOT_CHECKS = 3   # crops per video whose bytes are compared with their files when a dataset opens the store


def pack_path(image_dir: Path) -> Path:
    """Where the pack of the crop folder ``ROOT/cropped_aligned/<video>`` lives: ``ROOT/cropped_packed/<video>.pack``."""
    image_dir = Path(image_dir)
    return image_dir.parent.parent / STORE_DIR / f"{image_dir.name}{SUFFIX}"


def pack_command(image_dir: Path) -> str:
    """The command that (re)packs the dataset holding ``image_dir``, for error messages."""
    return f"python -m data.pack {Path(image_dir).parent.parent}"


def crop_frames(image_dir: Path) -> np.ndarray:
    """Frame numbers of the crops in ``image_dir``: the files a reader opens as ``<k:05d>.jpg``, ascending.

    Other names (``1.jpg``, ``x.jpg``) are never read by ``VideoRecord.image_path``, so they are not packed.
    """
    frames = []
    for name in os.listdir(image_dir):
        stem = name[:-4]
        if name.endswith(".jpg") and stem.isdigit() and f"{int(stem):05d}" == stem:
            frames.append(int(stem))
    return np.array(sorted(frames), np.int64)


@dataclass
class PackIndex:
    """A complete pack's table of contents: which frames it holds and where their bytes are."""

    path: Path
    frames: np.ndarray    # (n,) int64, ascending
    offsets: np.ndarray   # (n + 1,) int64, offsets[-1] = file size

    def position(self, frame: int) -> int:
        """Index of ``frame`` in the pack, or -1 when the pack does not hold it."""
        pos = int(np.searchsorted(self.frames, frame))
        return pos if pos < len(self.frames) and self.frames[pos] == frame else -1


def read_index(path: Path) -> PackIndex:
    """The table of contents of the pack at ``path``, refusing a file that is not a complete pack.

    A pack is only ever created whole by a rename, but a copy can be cut short or a file put there by hand;
    the header's recorded size and the offsets' consistency catch both.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEADER)
            if len(head) < _HEADER or head[:8] != MAGIC:
                raise DataError(f"{path}: not a complete pack (bad header)")
            n, recorded = (int(v) for v in np.frombuffer(head, "<u8", 2, 8))
            if recorded != size or size < _HEADER + 16 * n + 8:
                raise DataError(f"{path}: incomplete pack ({size} bytes, its header says {recorded})")
            table = np.frombuffer(f.read(16 * n + 8), "<i8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read pack ({exc.strerror or exc.__class__.__name__})") from exc
    frames, offsets = table[:n].astype(np.int64), table[n:].astype(np.int64)
    if len(offsets) != n + 1 or offsets[0] != _HEADER + 16 * n + 8 or offsets[-1] != size \
            or np.any(np.diff(offsets) < 0) or np.any(np.diff(frames) <= 0):
        raise DataError(f"{path}: corrupt pack (inconsistent table of contents)")
    return PackIndex(Path(path), frames, offsets)


def write_pack(image_dir: Path, frames: np.ndarray | None = None) -> tuple[int, int, list[str]]:
    """Pack the crops of ``image_dir`` atomically; returns (crops, bytes, crops lacking an end-of-image marker).

    The bytes are streamed into ``<video>.pack.tmp`` behind a zeroed header, the header is written last, the
    file is flushed to disk and only then renamed to ``<video>.pack``: a kill at any point leaves no ``.pack``
    for a reader to trust. Truncated crops are packed as they are (the reader refuses them, as the JPEG path
    does, when they are drawn) and reported.
    """
    image_dir = Path(image_dir)
    frames = crop_frames(image_dir) if frames is None else frames
    path = pack_path(image_dir)
    tmp = path.with_name(path.name[:-len(SUFFIX)] + TEMP_SUFFIX)
    n = len(frames)
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = _HEADER + 16 * n + 8
    truncated = []
    with atomic_path(path, temporary=tmp) as written, open(written, "wb") as out:
        out.write(b"\0" * int(offsets[0]))
        for k, frame in enumerate(frames):
            data = read_crop_bytes(image_dir / f"{frame:05d}.jpg")
            if data[-2:] != _JPEG_END and data.rstrip(b"\0")[-2:] != _JPEG_END:
                truncated.append(f"{frame:05d}.jpg")
            out.write(data)
            offsets[k + 1] = offsets[k] + len(data)
        out.seek(0)
        out.write(MAGIC + np.array([n, offsets[-1]], "<u8").tobytes())
        out.write(frames.astype("<i8").tobytes() + offsets.astype("<i8").tobytes())
    return n, int(offsets[-1]), truncated


def read_crop_bytes(path: Path) -> bytes:
    """A crop file's bytes; an unreadable file is a one-line error naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file ({exc.strerror or exc.__class__.__name__})") from exc




def pack_bytes(index: PackIndex, pos: int) -> bytes:
    """The stored bytes of the ``pos``-th crop of a pack (plain reads: for checks, not the training path)."""
    start, end = int(index.offsets[pos]), int(index.offsets[pos + 1])
    with open(index.path, "rb") as f:
        f.seek(start)
        return f.read(end - start)


def mismatch(index: PackIndex, image_dir: Path, needed: np.ndarray, compare: np.ndarray) -> str | None:
    """Why the pack does not match the crop folder, or None when it does.

    ``needed``: frames a reader will ask for (each must be in the pack); ``compare``: frames whose packed bytes
    must equal their files' (a few spot checks when a dataset opens the store, all of them for ``--check``).
    """
    missing = needed[~np.isin(needed, index.frames)]
    if len(missing):
        return (f"{len(missing)} crop(s) not in the pack, e.g. {missing[0]:05d}.jpg: crops added after packing")
    for frame in compare:
        pos = index.position(int(frame))
        if pos < 0:
            return f"{frame:05d}.jpg is not in the pack"
        path = Path(image_dir) / f"{frame:05d}.jpg"
        if not path.is_file():
            return f"{frame:05d}.jpg is packed but its file is gone: crops removed after packing"
        if read_crop_bytes(path) != pack_bytes(index, pos):
            return f"{frame:05d}.jpg differs from its packed copy: crops changed after packing"
    return None


def size_mismatch(index: PackIndex, image_dir: Path) -> str | None:
    """The first crop whose file size differs from its packed copy's, or None: every crop checked for the price
    of a stat each (the pack's offsets give the sizes), which is how a re-run of the pack command notices a
    crop rewritten in place that the spot checks missed."""
    sizes = np.diff(index.offsets)
    for frame, size in zip(index.frames, sizes, strict=True):
        try:
            actual = (Path(image_dir) / f"{frame:05d}.jpg").stat().st_size
        except OSError:
            return f"{frame:05d}.jpg is packed but its file is gone: crops removed after packing"
        if actual != size:
            return f"{frame:05d}.jpg differs from its packed copy ({actual} bytes, packed {size}): crops changed"
    return None


def spot_frames(frames: np.ndarray, k: int = SPOT_CHECKS) -> np.ndarray:
    """``k`` frames spread over ``frames`` (first, middle, last for k=3): cheap evidence that a folder was not
    re-cropped, one small read each per video when a dataset opens the store."""
    if len(frames) == 0:
        return frames
    return np.unique(frames[np.linspace(0, len(frames) - 1, min(k, len(frames))).astype(int)])


class _Pack:
    """One video's pack: its table of contents, memory-mapped on first use in each process."""

    def __init__(self, index: PackIndex):
        self.index = index
        self._map: mmap.mmap | None = None

    def __getstate__(self) -> dict:
        return {"index": self.index, "_map": None}   # a worker started by pickling maps the file itself

    def span(self, frame: int) -> tuple[int, int]:
        """Byte range [start, end) of ``frame``'s JPEG in the pack (mapping the file on first use)."""
        pos = self.index.position(frame)
        if pos < 0:
            raise DataError(f"{self.index.path}: frame {frame:05d}.jpg is not in the pack; "
                            f"re-run `{pack_command(self.index.path)}`")
        if self._map is None:
            self._map = map_random(self.index.path)
        return int(self.index.offsets[pos]), int(self.index.offsets[pos + 1])

    def crop(self, frame: int) -> np.ndarray:
        """The stored JPEG bytes of ``frame`` as a uint8 view of the mapping (no copy)."""
        start, end = self.span(frame)
        return np.frombuffer(self._map, np.uint8, end - start, start)

    def prefetch(self, frame: int) -> None:
        """Start reading ``frame``'s pages from disk without waiting for them (MADV_WILLNEED)."""
        start, end = self.span(frame)
        aligned = start - start % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_WILLNEED, aligned, end - aligned)


def map_random(path: Path) -> mmap.mmap:
    """Map a pack read-only, for random access.

    Without the hint a page fault reads ahead up to the device's read_ahead_kb around the crop (8 MB on the
    disk this was measured on: 7.4 ms per cold crop instead of 0.5 ms), which random sampling never uses.
    """
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mapped, "madvise"):
        mapped.madvise(mmap.MADV_RANDOM)
    return mapped


class PackedCrops:
    """``(record, frame) -> (H, W, 3) uint8 RGB`` from the packed store: the JPEG path's pixels, read by mapping.

    Opening checks every video once (a missing, incomplete or stale pack is a one-line :class:`DataError`
    naming the video and the command to re-run); afterwards a crop costs a table look-up and a page fault at
    most, with no file opened.
    """

    def __init__(self, records: Sequence[VideoRecord]):
        self._packs: dict[Path, _Pack] = {}
        for record in records:
            if record.image_dir not in self._packs:
                self._packs[record.image_dir] = _Pack(open_checked(record))

    def __call__(self, record: VideoRecord, frame: int) -> np.ndarray:
        pack = self._packs[record.image_dir]
        return decode_rgb(pack.crop(frame), f"{record.image_path(frame)} (packed in {pack.index.path})")

    def prefetch(self, crops: Sequence[tuple[VideoRecord, int]]) -> None:
        """Ask the kernel for all of a batch's crops at once, before the first is decoded.

        Read one at a time, a cold crop costs a full device (or network) round trip each; requested together,
        the reads overlap. Only the packed store can do this cheaply: for JPEG files, the open that would have
        to come first is itself the synchronous round trip.
        """
        if not hasattr(mmap, "MADV_WILLNEED"):
            return
        for record, frame in crops:
            self._packs[record.image_dir].prefetch(frame)


def open_checked(record: VideoRecord) -> PackIndex:
    """The pack of ``record``'s crop folder, after checking it is there, complete and matches the crops."""
    path = pack_path(record.image_dir)
    again = f"re-run `{pack_command(record.image_dir)}`"
    if not path.is_file():
        tmp = path.with_name(path.name[:-len(SUFFIX)] + TEMP_SUFFIX)
        why = f"only the unfinished {tmp.name} of an interrupted pack" if tmp.exists() else "none"
        raise DataError(f"{record.name}: no packed crops at {path} ({why}; data.store=packed): run "
                        f"`{pack_command(record.image_dir)}` or set data.store=jpeg")
    try:
        index = read_index(path)
    except DataError as exc:
        raise DataError(f"{record.name}: {exc}; {again}") from None
    needed = np.asarray(record.frames, np.int64)
    why = mismatch(index, record.image_dir, needed, spot_frames(needed))
    if why is not None:
        raise DataError(f"{record.name}: packed crops {path} do not match {record.image_dir} ({why}); {again}")
    return index
