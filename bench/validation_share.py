"""Validation's share of a preset's training compute, counted in FLOPs: ``python -m bench.validation_share``.

    python -m bench.validation_share [--config configs/affwild2.yaml] [--val-frames 400000]

Counted, not timed: the FLOPs of the preset's iterations (the project's own stepper, every stage, n_critic D
steps and one G step per G period, the penalty's double backward included) and of one validation frame
(headline: 1 AEG + 1 CD pass; the extra views: 1 AEG + 3 CD passes on every ``train.views_every``-th frame),
all on the ``meta`` device, so the paper networks at batch 32 take seconds on any machine. Validations are
those of the preset's schedule: every ``train.eval_every`` steps and at every stage end; a ``denoise`` stage's
validations score the restoration sets only (256 frames per artefact), which are counted too.

The share assumes the GPU runs validation's forward passes at the throughput of training's (both are
convolutions of the same networks in bf16); the loader's cost is not in it (bench/scale.py measures it).
"""

from __future__ import annotations

import argparse
import sys

import torch

from bench.train_step import count_flops
from gan.stages import plan_stages
from runconfig import load_config
from training.stepper import ALNStepper

META = torch.device("meta")
AUDIO_DIM = 50
#: the parent commit's schedule: every 5 000 steps and at stage ends, 6 passes on every frame
BEFORE = {"validations": 40, "passes": "2 AEG + 4 CD on every frame"}


def _batch(cfg) -> dict[str, torch.Tensor]:
    b, s = cfg.train.batch_size, cfg.model.image_size
    return {"face": torch.empty(b, 3, s, s, device=META), "face_degraded": torch.empty(b, 3, s, s, device=META),
            "audio": torch.empty(b, AUDIO_DIM, device=META), "va": torch.empty(b, 2, device=META)}


def validation_steps(cfg) -> list[tuple[int, bool]]:
    """(step, scores V/A) of every validation of a run: eval_every multiples and stage ends."""
    plan = plan_stages(cfg.train.stages, cfg.model.variant, cfg.train.max_steps)
    out = []
    for stage in plan:
        for step in range(stage.start + 1, stage.end + 1):
            if step % cfg.train.eval_every == 0 or step == stage.end:
                out.append((step, stage.trains_critic))
    return out


def preset_share(config: str, val_frames: int) -> dict:
    cfg = load_config(config, ["data.root=/unused"])
    plan = plan_stages(cfg.train.stages, cfg.model.variant, cfg.train.max_steps)
    batch = _batch(cfg)
    train_flops, model = 0.0, None
    for stage in plan:
        stepper = ALNStepper(cfg.train, cfg.model, cfg.loss, cfg.seed, AUDIO_DIM,
                             torch.ones(2, cfg.loss.balance_bins, device=META), META)
        stepper.build_stage(stage)
        period = cfg.train.n_critic if stage.trains_critic else 1
        per_iteration = count_flops(lambda s=stepper, st=stage, n=period: [s.train_step(batch, st.start + k)
                                                                         for k in range(n)]) / period
        train_flops += per_iteration * stage.steps
        model = stepper.model
    model.eval()
    b = cfg.train.batch_size
    with torch.no_grad():
        face, audio = batch["face"], batch["audio"]
        aeg = count_flops(lambda: model.clean(face)) / b
        restored, z = model.clean(face)
        cd = count_flops(lambda: model.critic(restored, z, audio)) / b
    headline, views = aeg + cd, aeg + 3 * cd
    per_frame = headline + views / cfg.train.views_every
    schedule = validation_steps(cfg)
    full = sum(1 for _, affect in schedule if affect)
    restoration_only = len(schedule) - full
    restoration_frames = 5 * cfg.train.restoration_frames   # blur, noise, downscale, colour, all
    val_flops = full * (val_frames * per_frame + restoration_frames * aeg) + restoration_only * restoration_frames * aeg
    before = BEFORE["validations"] * val_frames * (2 * aeg + 4 * cd)
    return {"config": config, "train_tflop": train_flops / 1e12, "aeg_gflop_per_frame": aeg / 1e9,
            "cd_gflop_per_frame": cd / 1e9, "views_every": cfg.train.views_every, "eval_every": cfg.train.eval_every,
            "validations": full, "restoration_only_validations": restoration_only,
            "share_now": val_flops / train_flops, "share_before": before / train_flops,
            "steps": [s for s, _ in schedule]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/affwild2.yaml")
    p.add_argument("--val-frames", type=int, default=400_000, help="validation frames (Aff-Wild2's: about 400 k)")
    a = p.parse_args(argv)
    r = preset_share(a.config, a.val_frames)
    print(f"{r['config']}: training {r['train_tflop']:,.0f} TFLOP; per validation frame: AEG "
          f"{r['aeg_gflop_per_frame']:.2f} GFLOP, CD {r['cd_gflop_per_frame']:.2f} GFLOP")
    print(f"  before: {BEFORE['validations']} validations, {BEFORE['passes']}: "
          f"{100 * r['share_before']:.1f} % of the training FLOPs")
    print(f"  now:    {r['validations']} validations (eval_every {r['eval_every']}, at steps {r['steps']}; "
          f"{r['restoration_only_validations']} of a denoise stage, restoration only), views on every "
          f"{r['views_every']}-th frame: {100 * r['share_now']:.1f} % of the training FLOPs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
