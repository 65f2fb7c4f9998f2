"""What a wider AEG costs on this machine: denoise training step and inference, widths 16 / 32 / 64 side by side.

    python -m bench.aeg_capacity [--rounds 3] [--steps 4] [--batch 16] [--image-size 64] [--threads 0]

The demo AEG (width 16, 2 residual blocks), a middle one (32, 4) and the paper's StarGAN size (64, 6) are timed in
interleaved rounds (every width once per round), so a machine shared with other jobs slows them alike and the
ratios stay meaningful. A training step is the denoise stage's: L1(AEG(x), y), backward, Adam. Inference is the
AEG forward at batch 128 under no_grad, channels_last, as evaluation runs it. Nothing is asserted; docs/results-demo.md's
capacity table quotes the printed ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from gan.models import AEG

SIZES = ((16, 2), (32, 4), (64, 6))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    s = a.image_size
    nets = {w: AEG(w, r, "none").to(memory_format=torch.channels_last) for w, r in SIZES}
    opts = {w: torch.optim.Adam(n.parameters(), 1e-3) for w, n in nets.items()}
    x = (torch.rand(a.batch, 3, s, s) * 2 - 1).contiguous(memory_format=torch.channels_last)
    big = (torch.rand(128, 3, s, s) * 2 - 1).contiguous(memory_format=torch.channels_last)
    train, infer = {w: [] for w in nets}, {w: [] for w in nets}
    for round_ in range(a.rounds + 1):          # round 0 warms up (allocations, oneDNN primitives)
        for w, net in nets.items():
            started = time.perf_counter()
            for _ in range(a.steps):
                loss = (net(x)[0] - x).abs().mean()
                opts[w].zero_grad(set_to_none=True)
                loss.backward()
                opts[w].step()
            step = (time.perf_counter() - started) / a.steps
            with torch.no_grad():
                started = time.perf_counter()
                net(big)
                frame = (time.perf_counter() - started) / len(big)
            if round_:
                train[w].append(step)
                infer[w].append(frame)
    print(f"AEG at {s} px, {torch.get_num_threads()} threads, torch {torch.__version__}; median of {a.rounds} rounds")
    print(f"{'width/res':>10s} {'params':>10s} {'train s/step':>13s} {'x w16':>6s} {'infer ms/frame':>15s} {'x w16':>6s}")
    base_t, base_i = statistics.median(train[16]), statistics.median(infer[16])
    for w, r in SIZES:
        t, i = statistics.median(train[w]), statistics.median(infer[w])
        params = sum(q.numel() for q in nets[w].parameters())
        print(f"{w:>6d}/{r:<3d} {params:>10,d} {t:>13.3f} {t / base_t:>6.1f} {i * 1e3:>15.2f} {i / base_i:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
