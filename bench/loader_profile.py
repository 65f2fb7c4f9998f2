"""Benchmark: where one training sample's time goes, per worker, and DataLoader samples/s per store, in one run.

    python -m bench.loader_profile TREE [--samples 2000] [--image-size 128] [--batch 32] [--workers 0 1 2]
                                        [--cold] [--stores jpeg packed] [--seed 0]

TREE is an Aff-Wild2-layout root, e.g. the full-size synthetic one of ``python -m bench.full_size_tree TREE``
(2.7 M crops in 560 folders; audio is off, as it is a per-video cost cached at preprocessing, not a per-sample
one). The samples are the first ``--samples`` keys (index, seed) of the training stream (``seed``), i.e. random
frames over all training videos, at the paper's image size (128 by default).

Part 1, one process with one torch and one OpenCV thread (what a DataLoader worker runs): microseconds per
sample of reading the crop (JPEG file, or the packed store of ``python -m data.pack TREE`` when it exists: one
crop at a time, and a batch's crops requested together first, as the DataLoader does), the end-of-image check, JPEG decode, resizes, the degradation mix and each artefact alone, ``to_tensor``, and
``collate``; then whole ``dataset[key]`` calls per store, whose sum the stages should explain.
Part 2: samples/s of the training DataLoader with 0, 1, 2 workers per store, and the CPU time per sample of
the main process and its workers together (a worker also pays for moving its batch to shared memory).

Page cache: "warm" rows run after the same crops were read once (in the page cache); with ``--cold`` (root
only) "cold" rows first drop the page, dentry and inode caches (``sync; echo 3 > /proc/sys/vm/drop_caches``).
Dropping the caches slows every other job on the machine for a while. Timings go to the console only; nothing
here is a test.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from data.samples.dataset import _JPEG_END, AffectFrameDataset, decode_rgb, to_tensor
from data.samples.degrade import ARTEFACTS
from data.samples.loaders import (
    DataConfig,
    ResumableShuffleSampler,
    SplitData,
    build_dataset,
    collate,
    load_split,
    train_loader,
)
from data.samples.packed import STORE_DIR, PackedCrops

REPO = Path(__file__).resolve().parents[1]


def drop_caches() -> bool:
    """Evict the page, dentry and inode caches (root only); False when that is not allowed here."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


REPEATS = 3   # warm stages: best of this many passes, as the 2 cores are shared with other jobs


class Timed:
    """Wall and CPU microseconds per item of one pass; CPU time is what the stage costs a worker's core,
    wall time adds waiting (for the disk, or for a core another job holds)."""

    def __init__(self, items: int):
        self.items, self.wall, self.cpu = max(1, items), time.perf_counter(), time.thread_time()

    def stop(self) -> tuple[float, float]:
        return ((time.perf_counter() - self.wall) / self.items * 1e6,
                (time.thread_time() - self.cpu) / self.items * 1e6)


def per_item(fn: Callable, items: list, repeats: int = REPEATS) -> tuple[tuple[float, float], list]:
    """(wall, CPU) microseconds per item of ``fn`` over ``items``, each the best of ``repeats`` passes (another
    job's burst on a shared machine only ever slows a pass down), and the results (the next stage's inputs)."""
    best, out = (float("inf"), float("inf")), []
    for _ in range(repeats):
        timer = Timed(len(items))
        out = [fn(x) for x in items]
        wall, cpu = timer.stop()
        best = (min(best[0], wall), min(best[1], cpu))
    return best, out


class Table:
    """Rows of (stage, (wall, CPU) us per sample, note), printed with each stage's share of a whole warm sample's
    CPU time."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, tuple[float, float], str]] = []

    def add(self, name: str, us: tuple[float, float], note: str = "") -> None:
        self.rows.append((name, us, note))

    def print(self, whole: tuple[float, float]) -> None:
        print(f"{'stage (one worker, per sample)':46s}{'wall us':>9s}{'cpu us':>8s}{'share':>7s}  note")
        for name, (wall, cpu), note in self.rows:
            print(f"{name:46s}{wall:9.0f}{cpu:8.0f}{max(wall if 'cold' in name else cpu, 0) / whole[1]:7.0%}  {note}")


def profile_stages(ds: AffectFrameDataset, keys: list[tuple[int, int]], packed: PackedCrops | None,
                   cold: bool, batch: int) -> tuple[Table, dict[str, float]]:
    """Part 1: the per-sample stages, each timed over all ``keys``, fed with the previous stage's outputs."""
    table = Table()
    located = [ds.locate(i) for i, _ in keys]
    paths = [r.image_path(f) for r, f in located]
    whole: dict[str, tuple[float, float]] = {}
    if cold and drop_caches():
        us, _ = per_item(lambda p: np.fromfile(p, np.uint8), paths, repeats=1)
        table.add("read JPEG file, cold (caches dropped)", us, "np.fromfile: lookup + open + read")
    us, raws = per_item(lambda p: np.fromfile(p, np.uint8), paths)   # the first pass warms the cache
    table.add("read JPEG file, warm (page cache)", us, "np.fromfile")
    if packed is not None:
        fresh = None   # a reader opened after a drop; its mappings go with it
        if cold and drop_caches():
            fresh = PackedCrops(ds.records)   # maps its files anew, after the drop
            us, _ = per_item(lambda rf: np.array(fresh._packs[rf[0].image_dir].crop(rf[1])), located, repeats=1)
            table.add("read packed crop, cold (caches dropped)", us, "mmap page fault + copy, one at a time")
        if cold and drop_caches():
            fresh = PackedCrops(ds.records)
            timer = Timed(len(located))
            for k in range(0, len(located), batch):   # what AffectFrameDataset.__getitems__ does per batch
                fresh.prefetch(located[k:k + batch])
                for record, frame in located[k:k + batch]:
                    np.array(fresh._packs[record.image_dir].crop(frame))
            table.add("read packed crop, cold, batch prefetched", timer.stop(),
                      f"MADV_WILLNEED on the {batch} crops of a batch first")
        del fresh
        gc.collect()
        us, _ = per_item(lambda rf: np.array(packed._packs[rf[0].image_dir].crop(rf[1])), located)
        table.add("read packed crop, warm", us, "mmap (file already mapped) + copy")
    us, _ = per_item(lambda raw: raw[-2:].tobytes() != _JPEG_END, raws)
    table.add("end-of-image marker check", us)
    us, images = per_item(lambda raw: decode_rgb(raw, "bench"), raws)
    table.add("JPEG decode + BGR->RGB", us, f"{images[0].shape[1]}x{images[0].shape[0]} crops")
    us, clean = per_item(ds.resize, images)
    table.add(f"resize clean -> {ds.image_size}", us, "INTER_AREA")
    us, degraded = per_item(lambda pair: ds.degrader(*pair), [(im, s) for im, (_, s) in zip(images, keys, strict=True)])
    table.add("degrade (training mix, albumentations)", us, "clean share 0.2, each artefact p=0.5")
    cfg = ds.degrader.cfg
    share = (1 - cfg.clean_share) * (cfg.p_each + (1 - cfg.p_each) ** len(ARTEFACTS) / len(ARTEFACTS))
    some = images[: max(1, len(images) // 4)]
    for name in ARTEFACTS:
        one = ds.degrader.single(name)
        us, _ = per_item(lambda pair, one=one: one(*pair), [(im, k) for k, im in enumerate(some)])
        table.add(f"  {name} alone (always applied)", us, f"x {share:.2f} in the mix = {us[1] * share:.0f} us cpu")
    us, degraded = per_item(ds.resize, degraded)
    table.add(f"resize degraded -> {ds.image_size}", us, "INTER_AREA")
    (wall, cpu), _ = per_item(to_tensor, clean + degraded)
    table.add("to_tensor x 2 (face, face_degraded)", (2 * wall, 2 * cpu), "uint8 HWC -> float CHW in [-1, 1]")
    original = ds.read_image
    for store, reader in (("jpeg", original), ("packed", packed)):
        if reader is not None:
            ds.read_image = reader
            whole[store], samples = per_item(lambda key: ds[key], keys)
    ds.read_image = original
    timer = Timed(len(samples))
    for k in range(0, len(samples), batch):
        collate(samples[k:k + batch])
    table.add(f"collate (batch {batch})", timer.stop(), "per sample")
    for store, us in whole.items():
        table.add(f"whole sample, data.store={store}, warm", us, f"{1e6 / us[1]:.0f} samples per CPU second")
    return table, whole


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of this process and of ``pids`` (DataLoader workers) so far."""
    total = time.process_time()
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def loader_rate(ds: AffectFrameDataset, batch: int, workers: int, samples: int, seed: int) -> tuple[float, float]:
    """(samples/s, CPU us per sample of the main process and the workers together) of the training DataLoader
    over ``samples`` samples, after its first batch (worker start-up)."""
    stream = iter(train_loader(ds, batch, seed=seed, start_step=0, num_workers=workers))
    next(stream)
    pids = [w.pid for w in getattr(stream, "_workers", [])]
    batches = max(1, samples // batch)
    start, cpu = time.perf_counter(), cpu_seconds(pids)
    for _ in itertools.islice(stream, batches):
        pass
    wall, cpu = time.perf_counter() - start, cpu_seconds(pids) - cpu
    del stream
    return batches * batch / wall, cpu / (batches * batch) * 1e6


def profile_loaders(split: SplitData, args: argparse.Namespace, cfg: DataConfig, stores: list[str]) -> None:
    """Part 2: DataLoader samples/s per store, worker count and page-cache state, with ratios to one worker/jpeg."""
    print(f"\n{'DataLoader (training stream, batch ' + str(args.batch) + ')':46s}{'samples/s':>10s}"
          f"{'per worker':>11s}{'vs jpeg':>9s}{'cpu us':>8s}")
    base: dict[tuple[str, int], float] = {}
    for cache in (["cold", "warm"] if args.cold else ["warm"]):
        for workers in args.workers:
            for store in stores:
                split.store, split.packed, ds = store, None, None   # unmaps the last reader's files
                gc.collect()   # pages mapped by a live process survive drop_caches: no earlier mapping may remain
                ds = build_dataset(split, args.image_size, cfg.degrade)
                if cache == "cold":
                    drop_caches()
                    rate, cpu = loader_rate(ds, args.batch, workers, args.samples, args.seed)
                else:   # part 1 read these samples already; best of two runs
                    rate, cpu = max(loader_rate(ds, args.batch, workers, args.samples, args.seed) for _ in range(2))
                base.setdefault((cache, workers), rate)
                ratio = rate / base[(cache, workers)]
                print(f"{f'{store}, {workers} workers, {cache}':46s}{rate:10.0f}{rate / max(1, workers):11.0f}"
                      f"{ratio:8.2f}x{cpu:8.0f}")


def describe(root: Path, ds: AffectFrameDataset, keys: list[tuple[int, int]]) -> None:
    """What the measurement ran on: tree size, folders touched, whether the crops are hard links."""
    folders = {ds.locate(i)[0].name for i, _ in keys}
    first = ds.locate(keys[0][0])
    links = first[0].image_path(first[1]).stat().st_nlink
    print(f"tree {root}: {len(ds.records)} training videos, {len(ds):,} training frames; "
          f"{len(keys)} samples from {len(folders)} folders")
    if links > 1:
        print(f"  crops are hard links ({links} names for the first one): every path is a separate directory "
              f"lookup, but a cold data read happens once per distinct file")
    print(f"  torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--stores", nargs="+", default=["jpeg", "packed"], choices=["jpeg", "packed"])
    parser.add_argument("--cold", action="store_true", help="also measure after dropping the caches (root)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)   # as in a DataLoader worker
    if args.cold and not drop_caches():
        print("--cold: cannot drop the caches here (needs root); measuring warm only")
        args.cold = False
    cfg = DataConfig(dataset="affwild2", root=str(args.tree))
    cfg.audio.enabled = False
    split, _ = load_split(cfg, "train")
    stores = [s for s in args.stores if s == "jpeg" or (args.tree / STORE_DIR).is_dir()]
    if "packed" in args.stores and "packed" not in stores:
        print(f"no packed store in {args.tree / STORE_DIR} (python -m data.pack {args.tree}): jpeg only")
    ds = build_dataset(split, args.image_size, cfg.degrade)
    split.store = "packed"
    packed = split.read_image() if "packed" in stores else None
    sampler = ResumableShuffleSampler(len(ds), args.seed, args.batch)
    keys = [sampler.key(p) for p in range(args.samples)]
    describe(args.tree, ds, keys)
    table, whole = profile_stages(ds, keys, packed, args.cold, args.batch)
    del packed, ds
    table.print(whole["jpeg"])
    print("wall: elapsed (best of 3 passes; cold: one pass); cpu: this thread's CPU time; share: of a whole warm "
          "jpeg sample's CPU time (cold reads: their wall time)")
    profile_loaders(split, args, cfg, stores)


if __name__ == "__main__":
    main()
