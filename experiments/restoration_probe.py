"""What limits restoration? Train the AEG alone on the direct denoising L1 and watch unseen faces.

    python -m experiments.restoration_probe [--steps 1800] [--batch 16] [--lr 1e-3] [--beta1 0.9]
        [--norm none|instance] [--residual] [--identity] [--augment] [--train-videos 96 --frames 75 --val-videos 8]
        [--width 16 --res-blocks 2] [--severity-frames 256]

The probe isolates the generator from the GAN: L1(AEG(degraded), clean) with Adam on the demo data
(``--identity``: L1(AEG(clean), clean), the auto-encoder's own fidelity with nothing to remove). Four times
per run it scores 256 validation frames (new identities) degraded by each artefact alone and by the
training mix (``all``): PSNR of the degraded input and of the AEG's output against the clean face, and the
training L1 at that step. ``--residual`` adds the input to the AEG's output (a global skip, not the paper's
design) to show what it does; ``--augment`` flips and colour-jitters clean and degraded faces alike. The
docs/results-demo.md's "Why the generator does not restore more" cites runs of this script. A JSON copy of the printed rows goes
to ``--out`` when given. With ``--severity-frames N`` the final AEG is also scored on N validation frames under
every (artefact, severity) of the robustness protocol (``data/samples/corruptions.py``): degraded and restored
PSNR/SSIM per severity, plus the seconds per training step; docs/results-demo.md's capacity table (AEG widths 16, 32, 64)
comes from these runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from bench.cli import write_report
from data.datasets.demo import DemoSpec
from data.samples.corruptions import conditions
from data.samples.degrade import DegradeConfig
from data.samples.loaders import (
    DataConfig,
    build_dataset,
    corruption_sets,
    load_split,
    restoration_sets,
    train_loader,
)
from gan.inference import restoration_scores
from gan.models import AEG


class Probe(torch.nn.Module):
    """The AEG with the ``clean`` interface of ALN, optionally with a global residual."""

    def __init__(self, aeg: AEG, residual: bool):
        super().__init__()
        self.aeg, self.residual = aeg, residual

    def clean(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, z = self.aeg(x)
        return ((x + out).clamp(-1, 1) if self.residual else out), z


def augment(inp: torch.Tensor, target: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same horizontal flip and per-channel gain (0.8-1.2) for input and target."""
    flip = (torch.rand(len(target), generator=gen) < 0.5)[:, None, None, None]
    gain = 0.8 + 0.4 * torch.rand(len(target), 3, 1, 1, generator=gen)
    out = []
    for x in (inp, target):
        x = torch.where(flip, x.flip(-1), x)
        out.append(((x + 1) * gain - 1).clamp(-1, 1))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1800)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--norm", default="none", choices=("none", "instance"))
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--res-blocks", type=int, default=2)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--residual", action="store_true")
    p.add_argument("--identity", action="store_true")
    p.add_argument("--augment", action="store_true")
    p.add_argument("--train-videos", type=int, default=DemoSpec.num_train)
    p.add_argument("--val-videos", type=int, default=DemoSpec.num_val)
    p.add_argument("--frames", type=int, default=DemoSpec.frames)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--severity-frames", type=int, default=0,
                   help="score the final AEG under the robustness protocol on this many validation frames")
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    spec = DemoSpec(num_train=a.train_videos, num_val=a.val_videos, frames=a.frames)
    cfg = DataConfig(demo=spec, num_workers=1)
    cfg = dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, enabled=False))
    train_split, standardiser = load_split(cfg, "train")
    val_split, _ = load_split(cfg, "val", standardiser)
    dataset = build_dataset(train_split, a.image_size, DegradeConfig())
    sets = restoration_sets(val_split, a.image_size, DegradeConfig(), 256)
    model = Probe(AEG(a.width, a.res_blocks, a.norm), a.residual)
    opt = torch.optim.Adam(model.parameters(), a.lr, betas=(a.beta1, 0.999))
    stream = iter(train_loader(dataset, a.batch, 0, 0, 1))
    gen = torch.Generator().manual_seed(1)
    rows, started = [], time.time()
    for step in range(1, a.steps + 1):
        batch = next(stream)
        inp, target = (batch["face"] if a.identity else batch["face_degraded"]), batch["face"]
        if a.augment:
            inp, target = augment(inp, target, gen)
        loss = (model.clean(inp)[0] - target).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % max(1, a.steps // 4) == 0 or step == a.steps:
            evaluating = time.time()
            table = restoration_scores(model, sets, torch.device("cpu"))
            row = {"step": step, "seconds": round(time.time() - started), "train_l1": round(loss.item(), 4),
                   "eval_seconds": round(time.time() - evaluating, 2),
                   **{name: [round(r["psnr_degraded"], 2), round(r["psnr_restored"], 2)] for name, r in table.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    seconds_per_step = (time.time() - started - sum(r.get("eval_seconds", 0) for r in rows)) / a.steps
    protocol = {}
    if a.severity_frames:
        sets = corruption_sets(val_split, a.image_size, a.severity_frames, conditions())
        table = restoration_scores(model, sets, torch.device("cpu"))
        protocol = {name: {k: round(v, 4) for k, v in row.items()} for name, row in table.items()}
        for name, row in protocol.items():
            print(json.dumps({"condition": name, **row}), flush=True)
    print(json.dumps({"width": a.width, "res_blocks": a.res_blocks, "parameters": sum(
        t.numel() for t in model.parameters()), "seconds_per_step": round(seconds_per_step, 4)}), flush=True)
    if a.out:
        write_report(a.out, {"args": vars(a), "rows": rows, "protocol": protocol,
                             "seconds_per_step": seconds_per_step})
    return 0


if __name__ == "__main__":
    sys.exit(main())
