"""What ``evaluate.py --robustness`` costs at Aff-Wild2 size: measured host side, projected GPU side.

    python -m bench.robustness_scale --tree /tmp/aln-full [--frames 512] [--workers 0 1] [--gpu-tflops 150]

On the synthetic full-size tree of ``bench/full_size_tree.py`` (392,683 validation frames, real layout):
* the validation split's index (what a robustness run does once per group of checkpoints);
* the loader of the protocol (``condition_loader``: read the crop, corrupt it, resize both faces) in frames/s for
  a clean and two corrupted conditions, with k worker processes;
* the test-time path's forward (AEG + CD, 2 passes per frame and condition) on this CPU at 128 px, and its counted
  FLOPs for the demo and the paper networks.
The GPU figure is a projection from the counted FLOPs at an assumed throughput (marked PROJECTED); the host side
(loader) is measured and bounds a GPU run from below whatever the GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from bench.scale import AUDIO_DIM, IMAGE_SIZE, _model
from bench.train_step import count_flops
from data.samples.corruptions import Corruption, conditions
from data.samples.loaders import DataConfig, condition_loader, load_split

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", required=True)
    p.add_argument("--frames", type=int, default=512)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    p.add_argument("--gpu-tflops", type=float, default=150.0)
    p.add_argument("--gpu-workers", type=int, default=8, help="loader workers assumed on the GPU machine")
    a = p.parse_args(argv)
    cfg = DataConfig(dataset="affwild2", root=a.tree)
    cfg.audio.enabled = False
    started = time.perf_counter()
    split, _ = load_split(cfg, "val")
    n_val = sum(len(r.frames) for r in split.records)
    print(f"tree {a.tree}: {n_val:,} validation frames; index {time.perf_counter() - started:.1f} s")
    n_conditions = len(conditions())
    batch = 64
    rates = {}
    for name, severity in (("clean", 0), ("noise", 3), ("jpeg", 3)):
        corruption = Corruption(name, severity) if severity else None
        for k in a.workers:
            loader = iter(condition_loader(split, IMAGE_SIZE, [corruption], batch, k))
            next(loader)
            t = time.perf_counter()
            for _ in range(a.frames // batch):
                next(loader)
            rates[(name, k)] = (a.frames // batch) * batch / (time.perf_counter() - t)
            del loader
            print(f"loader {name}-{severity}, {k} workers: {rates[(name, k)]:.0f} frames/s")
    x = torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    audio = torch.randn(batch, AUDIO_DIM)
    for networks in ("demo", "paper"):
        model = _model(networks).to(memory_format=torch.channels_last)

        def path(model=model):
            with torch.no_grad():
                restored, z = model.clean(x)
                model.critic(restored, z, audio)
        flops = count_flops(path) / batch
        line = f"{networks} networks: {flops / 1e9:.1f} GFLOP per frame and condition"
        if networks == "demo":
            path()
            t = time.perf_counter()
            path()
            line += f"; CPU {(time.perf_counter() - t) / batch * 1e3:.1f} ms per frame and condition"
        gpu_s = n_conditions * n_val * flops / (a.gpu_tflops * 1e12)
        line += (f"; PROJECTED GPU at {a.gpu_tflops:.0f} TFLOP/s: {gpu_s / 60:.0f} min per checkpoint for "
                 f"{n_conditions} conditions x {n_val:,} frames")
        print(line)
    one = 1 if 1 in a.workers else a.workers[0]    # one worker process: the rate one more worker adds
    corrupt_rate = min(rates[(n, one)] for n in ("noise", "jpeg"))
    host_s = n_conditions * n_val / (corrupt_rate * a.gpu_workers)
    print(f"host side: {n_conditions} x {n_val:,} = {n_conditions * n_val / 1e6:.1f} M corrupted faces; at the "
          f"measured {corrupt_rate:.0f} frames/s per worker x {a.gpu_workers} workers (assumed) = "
          f"{host_s / 60:.0f} min, shared by every checkpoint of a group")
    return 0


if __name__ == "__main__":
    sys.exit(main())
