"""The error of validation's restoration subset: what ``train.restoration_every=k`` logs against every frame.

    python -m experiments.validation_agreement runs/demo/last.pt [--every 2 4 8 16] [data.KEY=VALUE ...]

Scores the validation split the way ``train.py`` validates (``data.samples.loaders.scoring_dataset``: every frame
degraded with fixed seeds) with ``gan.inference.predict_batches``, once on every frame and once per k on every
k-th frame, and prints the subset's error of the four restoration means (PSNR/SSIM of the restored and the
degraded faces), so docs/scale.md's choice of the default k is measured. (It also compared the former host-side
validation pass with the current one until that migration ended; that part is retired: the torch PSNR/SSIM are
tested against scikit-image in ``tests/test_image_quality.py``.)
"""

from __future__ import annotations

import argparse

import torch

from data.preprocess.audio import AudioStandardiser
from data.samples.loaders import eval_loader, load_split, scoring_dataset
from gan.checkpoint import load_checkpoint, model_from_checkpoint
from gan.inference import predict_batches
from runconfig import build_config

RESTORATION = ("psnr_restored", "psnr_degraded", "ssim_restored", "ssim_degraded")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--every", type=int, nargs="+", default=[2, 4, 8, 16])
    p.add_argument("overrides", nargs="*", help="data.* overrides, e.g. data.root=DIR")
    a = p.parse_args(argv)
    ckpt = load_checkpoint(a.checkpoint)
    cfg = build_config(ckpt["config"], a.overrides)
    split, _ = load_split(cfg.data, "val", AudioStandardiser.from_state_dict(ckpt["audio_stats"]))
    dataset = scoring_dataset(split, cfg.model.image_size, cfg.data.degrade)
    model, cpu, batch = model_from_checkpoint(ckpt), torch.device("cpu"), cfg.data.eval_batch_size
    every_frame = predict_batches(model, eval_loader(dataset, batch), cpu, amp=False)
    print(f"{a.checkpoint}: {len(dataset):,} validation frames, {cfg.model.image_size} px; every frame: "
          + ", ".join(f"{key} {getattr(every_frame, key):.6f}" for key in RESTORATION))
    print("restoration on every k-th frame vs every frame (what train.restoration_every=k logs):")
    print(f"  {'k':>3} {'frames':>7}" + "".join(f"{key:>16}" for key in RESTORATION))
    for k in a.every:
        sub = predict_batches(model, eval_loader(dataset, batch), cpu, amp=False, restoration_every=k)
        errors = "".join(f"{getattr(sub, key) - getattr(every_frame, key):>+16.4f}" for key in RESTORATION)
        print(f"  {k:>3} {len(range(0, len(dataset), k)):>7}{errors}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
