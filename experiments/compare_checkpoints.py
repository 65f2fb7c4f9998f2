"""How far apart two checkpoints' weights are: largest difference and how many weights differ more than a tolerance.

    python -m experiments.compare_checkpoints RUN_A/last.pt RUN_B/last.pt [--tolerance 1e-5]

Used for docs/training.md's comparison of a torchrun run with a single-process run of the same arguments.
"""

from __future__ import annotations

import argparse

from gan.checkpoint import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    a, b = load_checkpoint(args.a)["model"], load_checkpoint(args.b)["model"]
    if a.keys() != b.keys():
        raise SystemExit("the checkpoints hold different weights")
    total = over = 0
    largest, where = 0.0, ""
    for name in a:
        diff = (a[name].float() - b[name].float()).abs()
        total += diff.numel()
        over += int((diff > args.tolerance).sum())
        if diff.numel() and float(diff.max()) > largest:
            largest, where = float(diff.max()), name
    print(f"{total} weights: {total - over} agree to {args.tolerance:g}, {over} differ more; "
          f"largest difference {largest:.3g} ({where})")


if __name__ == "__main__":
    main()
