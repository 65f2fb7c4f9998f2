"""Benchmark: the project's ALN training iteration against a straightforward eager one, side by side.

    python -m bench.train_step [--size paper|demo] [--image 112] [--batch 32] [--cycles 1] [--gp-every 4]
    python -m bench.train_step --phases      # where one iteration's time goes

The *reference* is the step as a researcher writes it from the paper, on the same networks
(``gan.models``) and the same losses, written out directly: the D step runs the generator with autograd
on and detaches, encodes the real face, takes the WGAN-GP penalty on every D step; the G step runs the
generator again; NCHW tensors; no compilation. Before timing, both implementations' D and G losses are
compared on one fixed batch (same weights, same penalty interpolation weights).

The project's step (``training.stepper.ALNStepper``, what ``train.py`` runs) is timed in these modes:
eager with the penalty on every D step; + channels_last (``train.channels_last``); + lazy penalty
(``loss.gp_every``); + ``train.compile`` (the AEG compiled; the CD stays eager for WGAN-GP's double backward).

An iteration here is one D step and one G step (``n_critic`` = 1), so every mode does the same work
per iteration except the lazy penalty; a measurement covers whole cycles of ``gp_every`` iterations.
Prints seconds per iteration, images/s, achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode on
one cycle of the same mode, eager) and the ratio to the reference. On CUDA every row, the reference's too,
runs under the same bf16 autocast (``train.amp``), so "vs ref" compares implementations at equal precision,
and the default measures at least 50 iterations per mode. Timings only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from bench.cli import chosen_device, device_option
from gan.inference import autocast
from gan.losses import class_balance_weights
from gan.models import ALN, set_requires_grad
from gan.stages import Stage
from runconfig import load_config
from training.distributed import Distributed
from training.stepper import ALNStepper

SIZES = {
    "paper": dict(g_conv_dim=64, g_res_blocks=6, d_conv_dim=64),   # configs/affwild2.yaml's networks
    "demo": dict(g_conv_dim=16, g_res_blocks=2, d_conv_dim=16),    # configs/demo.yaml's networks
}
AUDIO_DIM = 50


def fixed_batch(n: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"face": (torch.rand(n, 3, size, size, generator=g) * 2 - 1).to(device),
            "face_degraded": (torch.rand(n, 3, size, size, generator=g) * 2 - 1).to(device),
            "audio": torch.randn(n, AUDIO_DIM, generator=g).to(device),
            "va": (torch.rand(n, 2, generator=g) * 2 - 1).to(device)}


# --------------------------------------------------------------------------------------- the reference


class ResearcherStep:
    """The ALN iteration written straight from the paper (Eqs. 1-10), WGAN-GP, with the project's G terms."""

    def __init__(self, model: ALN, balance: torch.Tensor, lambdas: dict[str, float], lr: float = 1e-4):
        self.m, self.balance, self.lam = model, balance, lambdas
        self.opt_d = torch.optim.Adam(model.cd.parameters(), lr, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam(model.aeg.parameters(), lr, betas=(0.5, 0.999))

    def affect(self, pred: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """Class-balanced RMSE + (1 - PCC) + (1 - CCC), summed over valence and arousal (Eq. 5)."""
        bins = self.balance.shape[1]
        total = 0.0
        for d in range(2):
            idx = ((gold[:, d] + 1) / 2 * bins).floor().long().clamp(0, bins - 1)
            w = self.balance[d][idx]
            p, g = pred[:, d], gold[:, d]
            mp, mg = (w * p).sum() / w.sum(), (w * g).sum() / w.sum()
            vp, vg = (w * (p - mp) ** 2).sum() / w.sum(), (w * (g - mg) ** 2).sum() / w.sum()
            cov = (w * (p - mp) * (g - mg)).sum() / w.sum()
            rmse = ((w * (p - g) ** 2).sum() / w.sum() + 1e-8).sqrt()
            pcc = cov / (vp * vg + 1e-8).sqrt()
            ccc = 2 * cov / (vp + vg + (mp - mg) ** 2 + 1e-8)
            total = total + rmse + (1 - pcc) + (1 - ccc)
        return total

    def d_loss(self, b: dict, alpha: torch.Tensor) -> torch.Tensor:
        m = self.m
        fake, z_fake = m.aeg(b["face_degraded"])
        fake, z_fake = fake.detach(), z_fake.detach()
        z_real = m.aeg.encode(b["face"]).detach()
        real_logits, va_real = m.cd(b["face"], z_real, b["audio"])
        fake_logits, _ = m.cd(fake, z_fake, b["audio"])
        loss = fake_logits.mean() - real_logits.mean() + self.lam["afc"] * self.affect(va_real, b["va"])
        a = alpha.view(-1, 1, 1, 1)
        x_hat = (a * b["face"] + (1 - a) * fake).requires_grad_(True)
        z_hat = (a * z_real + (1 - a) * z_fake).requires_grad_(True)
        out, _ = m.cd(x_hat, z_hat, b["audio"])
        gx, gz = torch.autograd.grad(out.sum(), [x_hat, z_hat], create_graph=True)
        norm = (gx.pow(2).flatten(1).sum(1) + gz.pow(2).flatten(1).sum(1) + 1e-12).sqrt()
        return loss + self.lam["gp"] * ((norm - 1) ** 2).mean()

    def g_loss(self, b: dict) -> torch.Tensor:
        m = self.m
        fake, z = m.aeg(b["face_degraded"])
        logits, va_fake = m.cd(fake, z, b["audio"])
        cycled, _ = m.aeg(fake)
        return (self.lam["adv"] * -logits.mean() + self.lam["afc_g"] * self.affect(va_fake, b["va"])
                + self.lam["rec"] * (b["face"] - cycled).abs().mean()
                + self.lam["denoise"] * (b["face"] - fake).abs().mean())

    def step(self, b: dict, alpha: torch.Tensor) -> None:
        self.opt_d.zero_grad()
        self.d_loss(b, alpha).backward()
        self.opt_d.step()
        set_requires_grad(self.m.cd, False)
        self.opt_g.zero_grad()
        self.g_loss(b).backward()
        self.opt_g.step()
        set_requires_grad(self.m.cd, True)


# ------------------------------------------------------------------------------------ the project


def project_stepper(args, device: torch.device, *, channels_last: bool, gp_every: int, compiled: bool,
                    dist: Distributed | None = None) -> ALNStepper:
    s = SIZES[args.size]
    cfg = load_config(None, [
        "model.variant=aeg_cd_sz", f"model.image_size={args.image}", f"model.g_conv_dim={s['g_conv_dim']}",
        f"model.g_res_blocks={s['g_res_blocks']}", f"model.d_conv_dim={s['d_conv_dim']}", "model.g_norm=none",
        f"train.batch_size={args.batch}", "train.n_critic=1", "train.stages=[]", f"train.compile={compiled}",
        f"train.channels_last={channels_last}", f"loss.gp_every={gp_every}", "train.lr_decay_from=1.0",
        f"train.amp={device.type == 'cuda'}"])
    torch.manual_seed(0)
    stepper = ALNStepper(cfg.train, cfg.model, cfg.loss, cfg.seed, AUDIO_DIM,
                         class_balance_weights(torch.rand(256, 2) * 2 - 1), device, dist)
    stepper.build_stage(Stage(0, "aeg_cd_sz", 0, 10**9, True))
    return stepper


def reference_on(stepper: ALNStepper) -> ResearcherStep:
    """The reference step on the stepper's model, with its loss weights and class-balance table."""
    loss = stepper.loss
    lambdas = {"afc": loss.lambda_afc, "gp": loss.lambda_gp, "adv": loss.lambda_adv, "afc_g": loss.lambda_afc_g,
               "rec": loss.lambda_rec, "denoise": loss.lambda_denoise}
    return ResearcherStep(stepper.model, stepper.objective.affect_loss.table.to(stepper.device), lambdas)


def check_losses_agree(args, device: torch.device, batch: dict) -> tuple[float, float]:
    """Relative differences of the reference's D and G losses from the project's, same weights and alpha."""
    stepper = project_stepper(args, device, channels_last=False, gp_every=1, compiled=False)
    ref = reference_on(stepper)
    alpha = torch.rand(args.batch, generator=torch.Generator().manual_seed(3)).to(device)
    ours_d = stepper.objective.discriminator_loss(batch, gp_alpha=alpha)[0].item()
    ours_g = sum(stepper.objective.generator_terms(batch)[0].values()).item()
    theirs_d, theirs_g = ref.d_loss(batch, alpha).item(), ref.g_loss(batch).item()
    return abs(ours_d - theirs_d) / abs(theirs_d), abs(ours_g - theirs_g) / abs(theirs_g)


# --------------------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(run_cycle, flops_of_cycle: float, iterations: int, device: torch.device, cycles: int
            ) -> tuple[float, float, float]:
    """(seconds per iteration, warm-up seconds, GFLOP/s) of ``run_cycle`` (``iterations`` per cycle)."""
    _sync(device)
    start = time.perf_counter()
    run_cycle()   # warm-up: compilation, allocator, oneDNN primitive caches
    _sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(cycles):
        run_cycle()
    _sync(device)
    per_iteration = (time.perf_counter() - start) / (cycles * iterations)
    return per_iteration, warm, flops_of_cycle / iterations / per_iteration / 1e9


class _FlopCount(TorchDispatchMode):
    """Sums torch's per-op FLOP formulas (flop_registry) over every op dispatched in the block.

    FlopCounterMode itself cannot be used: its module hooks break the penalty's ``autograd.grad``.
    """

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(run_cycle) -> float:
    with _FlopCount() as counter:
        run_cycle()
    return float(counter.total)


def phase_times(args, device: torch.device, batch: dict, repeats: int = 2) -> dict[str, float]:
    """Seconds of each phase of the project's iteration (channels_last, eager): where the time goes."""
    stepper = project_stepper(args, device, channels_last=True, gp_every=1, compiled=False)
    m, obj = stepper.model, stepper.objective
    batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in batch.items()}
    alpha = torch.rand(args.batch, generator=torch.Generator().manual_seed(3)).to(device)

    def d_step(scale: float) -> None:
        loss, _ = obj.discriminator_loss(batch, gp_alpha=alpha, gp_scale=scale)
        m.cd.zero_grad(set_to_none=True)
        loss.backward()

    def g_step() -> None:
        set_requires_grad(m.cd, False)
        loss = sum(obj.generator_terms(batch)[0].values())
        m.aeg.zero_grad(set_to_none=True)
        loss.backward()
        set_requires_grad(m.cd, True)

    phases = {"D step with the penalty": lambda: d_step(1.0), "D step without it": lambda: d_step(0.0),
              "G step": g_step}
    out = {}
    for name, fn in phases.items():
        fn()   # warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        _sync(device)
        out[name] = (time.perf_counter() - start) / repeats
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="paper", choices=sorted(SIZES))
    parser.add_argument("--image", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--gp-every", type=int, default=4, help="the lazy penalty's interval in the lazy modes")
    parser.add_argument("--cycles", type=int, default=0,
                        help="timed cycles of gp-every iterations per mode (default: 1 on the CPU, >= 50 iterations "
                             "on CUDA)")
    device_option(parser)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled mode (its warm-up is long)")
    parser.add_argument("--phases", action="store_true",
                        help="only time the phases of one iteration (D step with / without the penalty, G step)")
    args = parser.parse_args()
    device = chosen_device(args.device)
    batch = fixed_batch(args.batch, args.image, device)
    k = args.gp_every
    args.cycles = args.cycles or (-(-50 // k) if device.type == "cuda" else 1)
    amp = device.type == "cuda"   # the project's train.amp: bf16 autocast on CUDA; the reference gets the same
    if args.phases:
        times = phase_times(args, device, batch)
        with_gp, without, g = times.values()
        print(f"ALN '{args.size}' networks, {args.image} px, batch {args.batch}, {device}, {torch.get_num_threads()} "
              "threads; seconds per phase (channels_last, eager):")
        for name, seconds in times.items():
            print(f"  {name:26s}{seconds:8.3f}")
        for every in (1, 4, 8, 16):
            per_iteration = g + without + (with_gp - without) / every
            print(f"  iteration with gp_every={every:<3d}{per_iteration:8.3f} s (D + G, n_critic = 1)")
        return

    d_rel, g_rel = check_losses_agree(args, device, batch)
    print(f"losses on one fixed batch, reference vs project: D differs by {d_rel:.1e}, G by {g_rel:.1e} (relative)")

    rows = []
    ref = reference_on(project_stepper(args, device, channels_last=False, gp_every=1, compiled=False))
    alphas = [torch.rand(args.batch, generator=torch.Generator().manual_seed(i)).to(device) for i in range(k)]

    def reference_cycle():
        for i in range(k):
            with autocast(device, amp):   # equal precision: "vs ref" measures the implementation alone
                ref.step(batch, alphas[i])

    rows.append(("reference (eager, from the paper)", *measure(reference_cycle, count_flops(reference_cycle), k,
                                                                 device, args.cycles)))
    modes = [("project eager", False, 1, False), ("project + channels_last", True, 1, False),
             (f"project + channels_last + gp_every={k}", True, k, False)]
    if not args.no_compile:
        modes.append((f"project + channels_last + gp_every={k} + compile", True, k, True))
    for name, channels_last, gp_every, compiled in modes:
        stepper = project_stepper(args, device, channels_last=channels_last, gp_every=gp_every, compiled=compiled)

        def cycle(stepper=stepper):
            for i in range(k):
                stepper.train_step(batch, i)

        eager_twin = stepper if not compiled else project_stepper(args, device, channels_last=channels_last,
                                                                  gp_every=gp_every, compiled=False)
        flops = count_flops(lambda twin=eager_twin: [twin.train_step(batch, i) for i in range(k)])
        rows.append((name, *measure(cycle, flops, k, device, args.cycles)))

    print(f"ALN '{args.size}' networks {SIZES[args.size]}, {args.image} px, batch {args.batch}, device {device}, "
          f"{torch.get_num_threads()} threads, {'bf16 autocast for every row' if amp else 'fp32'}; one iteration = "
          f"D step + G step; {args.cycles} cycle(s) of {k}")
    print(f"{'mode':46s}{'s/iter':>8s}{'images/s':>10s}{'GFLOP/s':>9s}{'vs ref':>8s}{'warm-up s':>11s}")
    ref_s = rows[0][1]
    for name, s, warm, gflops in rows:
        print(f"{name:46s}{s:8.3f}{args.batch / s:10.1f}{gflops:9.1f}{ref_s / s:7.2f}x{warm:11.1f}")


if __name__ == "__main__":
    main()
