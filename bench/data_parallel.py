"""Benchmark: training throughput of the data-parallel step with 1 and with N processes, side by side.

    python -m bench.data_parallel [--size demo|paper] [--image 64] [--batch 32] [--steps 6] [--processes 1 2]

Each configuration runs the project's iteration (``training.stepper.ALNStepper``: D step with WGAN-GP,
G step every iteration, gradients averaged over processes after each backward) on one fixed global
batch, each process taking its shard, exactly as under ``torchrun``. On CPU the processes share the
machine's cores (``threads`` = cores / processes each, gloo); with CUDA each process takes one GPU
(NCCL) when there are enough of them. Prints seconds per iteration and images/s of the global batch, and
the speed-up over one process. Timings only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.cli import chosen_device, device_option
from bench.train_step import (  # bench/train_step.py, beside this file
    AUDIO_DIM,
    SIZES,
    fixed_batch,
    project_stepper,
)
from training.distributed import Distributed


def _worker(rank: int, world: int, args: argparse.Namespace, store: str, threads: int, results) -> None:
    torch.set_num_threads(threads)
    cuda = args.device == "cuda"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if world > 1:
        if cuda:
            torch.cuda.set_device(rank)
        dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{store}", rank=rank,
                                world_size=world)
    d = Distributed(rank, world)
    stepper = project_stepper(args, device, channels_last=True, gp_every=1, compiled=False, dist=d)
    batch = {k: v[d.shard(args.batch)] for k, v in fixed_batch(args.batch, args.image, device).items()}
    stepper.train_step(batch, 0)   # warm-up
    d.barrier()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        stepper.train_step(batch, step)
    if cuda:
        torch.cuda.synchronize()
    d.barrier()
    if rank == 0:
        results.put((time.perf_counter() - start) / args.steps)
    d.close()


def run(world: int, args: argparse.Namespace) -> tuple[int, float]:
    cores = os.cpu_count() or 1
    threads = max(1, cores // world) if args.device == "cpu" else 1
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "store")
        mp.start_processes(_worker, args=(world, args, store, threads, results), nprocs=world, join=True,
                           start_method="spawn")
    return threads, results.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="demo", choices=sorted(SIZES))
    parser.add_argument("--image", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="the global batch")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    device_option(parser)
    args = parser.parse_args()
    args.device = chosen_device(args.device).type   # each process takes its own GPU (cuda:rank)
    if args.device == "cuda":
        args.processes = [n for n in args.processes if n <= torch.cuda.device_count()]
    args.gp_every, args.cycles = 1, 1
    rows = [(n, *run(n, args)) for n in args.processes]
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {os.cpu_count()} cores, gloo"
    print(f"ALN '{args.size}' networks {SIZES[args.size]}, {args.image} px, global batch {args.batch}, audio "
          f"{AUDIO_DIM}; {name}; one iteration = D step (WGAN-GP) + G step")
    print(f"{'processes':>10s}{'threads each':>14s}{'s/iter':>9s}{'images/s':>10s}{'vs 1 process':>14s}")
    base = rows[0][2]
    for n, threads, seconds in rows:
        print(f"{n:10d}{threads:14d}{seconds:9.3f}{args.batch / seconds:10.1f}{base / seconds:13.2f}x")


if __name__ == "__main__":
    main()
