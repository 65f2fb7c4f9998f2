"""Benchmark: ALN training iterations and inference, eager vs ``torch.compile``, side by side in one run.

    python bench/train_step.py [--size demo|paper] [--device auto] [--steps 20] [--batch 32]

Measures, on the same random batch and the same architecture:

* a full iteration (D step with WGAN-GP + G step, i.e. n_critic = 1) in eager mode;
* the same with ``train.compile=true`` (the AEG compiled; the CD stays eager because WGAN-GP needs its
  double backward, which compiled graphs do not support);
* inference (AEG -> CD) frames/s, eager and compiled.

Prints a table with seconds per iteration, frames per second and the compiled/eager ratio. Timings only:
nothing here is asserted. First-call compile time is reported separately and excluded.
"""

from __future__ import annotations

import argparse
import time

import torch

from gan.losses import class_balance_weights
from gan.models import ALN, ModelConfig
from gan.objective import ALNObjective, LossConfig

SIZES = {
    "demo": dict(image_size=64, g_conv_dim=16, g_res_blocks=2, d_conv_dim=16),
    "paper": dict(image_size=128, g_conv_dim=64, g_res_blocks=6, d_conv_dim=64),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make(size: str, device: torch.device, compiled: bool) -> tuple[ALN, ALNObjective, list[torch.optim.Optimizer]]:
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd_sz", **SIZES[size]), 50).to(device)
    if compiled:
        model.aeg.compile()
    objective = ALNObjective(model, LossConfig(), class_balance_weights(torch.rand(256, 2) * 2 - 1).to(device))
    opts = [torch.optim.Adam(model.cd.parameters(), 1e-4), torch.optim.Adam(model.aeg.parameters(), 1e-4)]
    return model, objective, opts


def batch(size: str, n: int, device: torch.device) -> dict[str, torch.Tensor]:
    s = SIZES[size]["image_size"]
    g = torch.Generator().manual_seed(1)
    return {"face": (torch.rand(n, 3, s, s, generator=g) * 2 - 1).to(device),
            "face_degraded": (torch.rand(n, 3, s, s, generator=g) * 2 - 1).to(device),
            "audio": torch.randn(n, 50, generator=g).to(device),
            "va": (torch.rand(n, 2, generator=g) * 2 - 1).to(device)}


def iteration(model: ALN, objective: ALNObjective, opts, b, amp: bool, device: torch.device) -> None:
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    with ctx:
        d_loss, _ = objective.discriminator_loss(b)
    opts[0].zero_grad(set_to_none=True)
    d_loss.backward()
    opts[0].step()
    for p in model.cd.parameters():
        p.requires_grad_(False)
    with ctx:
        g_loss, _ = objective.generator_loss(b)
    opts[1].zero_grad(set_to_none=True)
    g_loss.backward()
    opts[1].step()
    for p in model.cd.parameters():
        p.requires_grad_(True)


def timed(fn, steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="demo", choices=sorted(SIZES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    amp = device.type == "cuda"
    rows = {}
    for compiled in (False, True):
        model, objective, opts = make(args.size, device, compiled)
        b = batch(args.size, args.batch, device)
        start = time.perf_counter()
        iteration(model, objective, opts, b, amp, device)  # warm-up (and compilation)
        iteration(model, objective, opts, b, amp, device)
        _sync(device)
        warmup = time.perf_counter() - start
        train_s = timed(lambda: iteration(model, objective, opts, b, amp, device), args.steps, device)  # noqa: B023
        with torch.no_grad():
            model.predict(b["face"], b["audio"])
            infer_s = timed(lambda: model.predict(b["face"], b["audio"]), args.steps, device)  # noqa: B023
        rows["compiled" if compiled else "eager"] = (train_s, infer_s, warmup)
    e_train, e_inf, _ = rows["eager"]
    print(f"ALN {args.size} ({SIZES[args.size]}), batch {args.batch}, device {device}, "
          f"threads {torch.get_num_threads()}, bf16 autocast {amp}")
    print(f"{'mode':10s}{'s/iter':>10s}{'train fr/s':>12s}{'infer fr/s':>12s}{'vs eager (train)':>18s}"
          f"{'vs eager (infer)':>18s}{'warm-up s':>11s}")
    for mode, (train_s, infer_s, warm) in rows.items():
        print(f"{mode:10s}{train_s:10.4f}{args.batch / train_s:12.1f}{args.batch / infer_s:12.1f}"
              f"{e_train / train_s:17.2f}x{e_inf / infer_s:17.2f}x{warm:11.1f}")


if __name__ == "__main__":
    main()
