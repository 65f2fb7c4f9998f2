"""Parts of ``bench/gpu_check.sh`` that measure the training iteration itself: ``python -m bench.gpu_parts PART``.

Each part prints its figures and a last line ``PASS <part>: ...`` or ``FAIL <part>: ...``, and exits 0 or 1;
the shell script runs every part whatever the others did. The iteration is the project's own stepper on the
paper preset (configs/affwild2.yaml: StarGAN-sized networks, 128 px, batch 32, aeg_cd_sz with WGAN-GP, z and
audio) on a fixed random batch already on the device, so the figures are the GPU's, not the loader's.

* ``syncs``: 20 iterations under ``torch.cuda.set_sync_debug_mode("warn")``; every synchronising call warns.
  Counted per iteration; PASS when no iteration between log steps synchronises.
* ``precision``: the D loss (penalty included), the penalty and the G loss on one batch with the same weights,
  under bf16 autocast and in fp32, and their relative differences. PASS under ``--tolerance``.
* ``timing``: seconds per iteration from CUDA events over ``--iterations`` (>= 50) after a warm-up, bf16 and fp32
  side by side, and the peak memory. PASS when both ran.

On a CPU every part runs too (``--device cpu``, for checking the script; sync counting needs CUDA).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch

from bench.cli import chosen_device, device_option
from gan.inference import autocast, tune_for_fixed_shapes
from gan.stages import plan_stages
from runconfig import load_config
from training.stepper import ALNStepper

AUDIO_DIM = 50


def preset_stepper(device: torch.device, amp: bool, overrides: tuple[str, ...] = ()) -> ALNStepper:
    """The aeg_cd_sz stage of configs/affwild2.yaml, fresh weights from seed 0."""
    cfg = load_config("configs/affwild2.yaml", ["data.root=/unused", f"train.amp={amp}", *overrides])
    plan = plan_stages(cfg.train.stages, cfg.model.variant, cfg.train.max_steps)
    torch.manual_seed(0)
    balance = torch.ones(2, cfg.loss.balance_bins) / cfg.loss.balance_bins
    stepper = ALNStepper(cfg.train, cfg.model, cfg.loss, cfg.seed, AUDIO_DIM, balance, device)
    stepper.build_stage(plan[-1])
    return stepper


def fixed_batch(stepper: ALNStepper, device: torch.device) -> dict[str, torch.Tensor]:
    b, s = stepper.train.batch_size, stepper.model_config.image_size
    g = torch.Generator().manual_seed(1)
    return {"face": (torch.rand(b, 3, s, s, generator=g) * 2 - 1).to(device),
            "face_degraded": (torch.rand(b, 3, s, s, generator=g) * 2 - 1).to(device),
            "audio": torch.randn(b, AUDIO_DIM, generator=g).to(device),
            "va": (torch.rand(b, 2, generator=g) * 2 - 1).to(device)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def syncs(device: torch.device, args) -> tuple[bool, str]:
    stepper = preset_stepper(device, amp=True, overrides=args.set)
    batch = fixed_batch(stepper, device)
    start = stepper.stage.start
    log_every = stepper.train.log_every
    stepper.train_step(batch, start)   # warm-up: first calls allocate, autotune and may synchronise
    _sync(device)
    if device.type != "cuda":
        return True, "sync counting needs CUDA (set_sync_debug_mode); the iterations ran"
    per_step = []
    torch.cuda.set_sync_debug_mode("warn")
    try:
        for step in range(start + 1, start + 21):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                stepper.train_step(batch, step)
            per_step.append((step, len(caught), sorted({str(w.message).splitlines()[0][:120] for w in caught})))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for step, n, messages in per_step:
        log_step = (step + 1) % log_every == 0
        print(f"  iteration {step + 1}: {n} synchronisation(s){' (log step)' if log_step else ''} {messages[:3]}")
    bad = [(s, n) for s, n, _ in per_step if n and (s + 1) % log_every]
    total = sum(n for _, n, _ in per_step)
    return not bad, f"{total} synchronisations in 20 iterations; {len(bad)} iterations between log steps synchronised"


def precision(device: torch.device, args) -> tuple[bool, str]:
    """D and G losses of one batch with the same weights, bf16 autocast against fp32."""
    results = {}
    for amp in (False, True):
        stepper = preset_stepper(device, amp=amp, overrides=args.set)
        m, obj = stepper.model, stepper.objective
        batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                 for k, v in fixed_batch(stepper, device).items()}
        alpha = stepper.gp_alpha(0)
        with autocast(device, amp):
            restored = obj.generate(batch)
            d_loss, d_logs = obj.discriminator_loss(batch, restored, alpha, gp_scale=1)
            terms, _ = obj.generator_terms(batch, restored)
        # the penalty's gradient on the CD: what its double backward through (bf16) convolutions gives
        grads = torch.autograd.grad(d_loss, list(m.cd.parameters()), allow_unused=True)
        gnorm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None))
        results[amp] = {"D/loss": float(d_loss.detach()), "D/gp": float(d_logs["D/gp"]),
                       "G/loss": float(sum(terms.values()).detach()),
                       "D/wasserstein": float(d_logs["D/wasserstein"]), "D grad norm": float(gnorm)}
    worst = 0.0
    for key in results[False]:
        fp32, bf16 = results[False][key], results[True][key]
        rel = abs(bf16 - fp32) / max(abs(fp32), 1e-6)
        worst = max(worst, rel) if key != "D/wasserstein" else worst   # a difference of means near 0: absolute
        print(f"  {key:14s} fp32 {fp32:12.6f}  bf16 {bf16:12.6f}  relative difference {rel:.2e}")
    if device.type != "cuda":
        return True, "bf16 autocast is CUDA-only: both runs were fp32 here"
    return worst < args.tolerance, f"largest relative difference {worst:.2e} (tolerance {args.tolerance:g})"


def timing(device: torch.device, args) -> tuple[bool, str]:
    lines = []
    for amp in (False, True):
        stepper = preset_stepper(device, amp=amp, overrides=args.set)
        batch = fixed_batch(stepper, device)
        start = stepper.stage.start
        for step in range(start, start + args.warmup):
            stepper.train_step(batch, step)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
        else:
            t0 = time.perf_counter()
        first = start + args.warmup
        for step in range(first, first + args.iterations):
            stepper.train_step(batch, step)
        if device.type == "cuda":
            end.record()
            end.synchronize()
            seconds = begin.elapsed_time(end) / 1e3 / args.iterations
            peak = torch.cuda.max_memory_allocated(device) / 2**30
        else:
            seconds, peak = (time.perf_counter() - t0) / args.iterations, float("nan")
        label = "bf16" if amp and device.type == "cuda" else "fp32"
        lines.append(f"{label}: {seconds:.4f} s/iter ({stepper.train.batch_size / seconds:.0f} samples/s), "
                     f"peak {peak:.2f} GiB")
        print(f"  {lines[-1]}  ({args.iterations} iterations, n_critic {stepper.train.n_critic})")
    return True, "; ".join(lines)


PARTS = {"syncs": syncs, "precision": precision, "timing": timing}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=sorted(PARTS))
    device_option(p, default="cuda")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of the preset (e.g. model.g_conv_dim=8 to check the script on a CPU)")
    p.add_argument("--tolerance", type=float, default=0.05, help="largest relative bf16-vs-fp32 difference")
    args = p.parse_args(argv)
    device = chosen_device(args.device)
    tune_for_fixed_shapes(device)
    try:
        ok, summary = PARTS[args.part](device, args)
    except Exception as exc:   # the script goes on to its next part; say what broke
        ok, summary = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    print(f"{'PASS' if ok else 'FAIL'} {args.part}: {summary}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
