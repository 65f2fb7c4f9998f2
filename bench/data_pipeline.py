"""Benchmark: the training data pipeline against pure JPEG decoding of the same files, in one run.

    python -m bench.data_pipeline [--samples 2000] [--image-size 64] [--workers 0 1 2]

Rows: ``cv2.imdecode`` of the crop files alone (the floor); one training sample built in-process
(decode + degradations + resize + tensors + audio row); and full batches from the training DataLoader with
0..N workers. Uses the demo dataset (generated on first use). Prints samples/s and the ratio to pure decode.
"""

from __future__ import annotations

import argparse
import itertools
import time

import cv2
import numpy as np

from data.samples.loaders import DataConfig, build_dataset, load_split, train_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    cfg = DataConfig()
    split, _ = load_split(cfg, "train")
    dataset = build_dataset(split, args.image_size, cfg.degrade)
    rng = np.random.default_rng(0)
    indices = rng.integers(0, len(dataset), args.samples)
    paths = [dataset.locate(int(i))[0].image_path(dataset.locate(int(i))[1]) for i in indices]
    raw = [np.fromfile(p, dtype=np.uint8) for p in paths]

    start = time.perf_counter()
    for buf in raw:
        cv2.imdecode(buf, cv2.IMREAD_COLOR)
    decode = args.samples / (time.perf_counter() - start)
    rows = [("jpeg decode only (bytes in memory)", decode)]

    start = time.perf_counter()
    for n, i in enumerate(indices):
        dataset[(int(i), n)]
    rows.append(("sample: read+decode+degrade+resize", args.samples / (time.perf_counter() - start)))

    for workers in args.workers:
        loader = train_loader(dataset, args.batch, seed=0, start_step=0, num_workers=workers)
        stream = iter(loader)
        next(stream)  # worker start-up excluded
        batches = max(1, args.samples // args.batch)
        start = time.perf_counter()
        for _ in itertools.islice(stream, batches):
            pass
        rows.append((f"DataLoader batches, {workers} workers", batches * args.batch / (time.perf_counter() - start)))
        del stream

    print(f"demo crops {dataset.records[0].image_dir.parent}, {args.samples} samples, model input {args.image_size} px")
    print(f"{'pipeline':40s}{'samples/s':>12s}{'vs decode':>11s}")
    for name, rate in rows:
        print(f"{name:40s}{rate:12.0f}{rate / decode:10.2f}x")


if __name__ == "__main__":
    main()
