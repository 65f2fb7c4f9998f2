"""One checkpoint's validation before and after the real-scale work, and the error of the restoration subset.

    python experiments/validation_agreement.py runs/demo/last.pt [--every 2 4 8 16] [data.KEY=VALUE ...]

Scores the validation split the way ``train.py`` validates (``data.samples.loaders.scoring_dataset``: every frame
degraded with fixed seeds) three ways:

* *before*: the former pass (``bench/scale_reference.py``: predictions copied per batch, PSNR/SSIM in NumPy
  float64 on the host, degraded faces rescored every time);
* *now, every frame*: ``gan.inference.predict_batches`` with ``restoration_every=1`` (torch, on the device);
* *now, every k-th frame*: ``restoration_every=k`` — what validation logs with ``train.restoration_every=k``.

Prints the largest differences of V/A CCC and of the four restoration means between *before* and *now*, and, per
k, the subset's error against the whole split, so the README's tolerance and the subset's accuracy are measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.scale_reference import legacy_predict_batches, numpy_psnr, numpy_ssim  # noqa: E402
from data.preprocess.audio import AudioStandardiser  # noqa: E402
from data.samples.loaders import eval_loader, load_split, restoration_sets, scoring_dataset  # noqa: E402
from gan.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from gan.inference import DegradedReference, degraded_references, predict_batches, restoration_scores  # noqa: E402
from runconfig import build_config  # noqa: E402
from scoring.metrics import score_va  # noqa: E402

RESTORATION = ("psnr_restored", "psnr_degraded", "ssim_restored", "ssim_degraded")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--every", type=int, nargs="+", default=[2, 4, 8, 16])
    p.add_argument("overrides", nargs="*", help="data.* overrides, e.g. data.root=DIR")
    a = p.parse_args()
    ckpt = load_checkpoint(a.checkpoint)
    cfg = build_config(ckpt["config"], a.overrides)
    split, _ = load_split(cfg.data, "val", AudioStandardiser.from_state_dict(ckpt["audio_stats"]))
    dataset = scoring_dataset(split, cfg.model.image_size, cfg.data.degrade)
    model, cpu = model_from_checkpoint(ckpt), torch.device("cpu")
    batch = cfg.data.eval_batch_size

    workers, every = cfg.data.num_workers, cfg.train.restoration_every
    seconds = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - start
        return out

    before = timed("before", lambda: legacy_predict_batches(model, eval_loader(dataset, batch), cpu))
    now = predict_batches(model, eval_loader(dataset, batch), cpu, amp=False)
    reference = DegradedReference(now.psnr_degraded, now.ssim_degraded)
    timed("now", lambda: predict_batches(model, eval_loader(dataset, batch, workers), cpu, amp=False,
                                          degraded_reference=reference, restoration_every=every))
    sets = restoration_sets(split, cfg.model.image_size, cfg.data.degrade, cfg.train.restoration_frames)
    timed("sets before", lambda: _legacy_restoration(model, sets))
    references = degraded_references(sets, cpu, batch)
    timed("sets now", lambda: restoration_scores(model, sets, cpu, batch, references))
    ccc_before, ccc_now = score_va(before["pred"], now.gold), now.scores()
    print(f"{a.checkpoint}: {len(dataset):,} validation frames, {cfg.model.image_size} px")
    print("before vs now (every frame):")
    for dim in ccc_now:
        print(f"  CCC {dim}: {ccc_before[dim]['ccc']:.6f} vs {ccc_now[dim]['ccc']:.6f} "
              f"(|d| {abs(ccc_before[dim]['ccc'] - ccc_now[dim]['ccc']):.1e})")
    print(f"  largest |d| of a V/A prediction: {float(np.abs(before['pred'] - now.pred).max()):.1e}")
    for key in RESTORATION:
        value = getattr(now, key)
        print(f"  {key}: {before[key]:.6f} vs {value:.6f} (|d| {abs(before[key] - value):.1e})")
    print(f"seconds of one validation on this machine, before -> now (later validations: degraded scores reused, "
          f"restoration on every {every}th frame, {workers} loader workers): pass {seconds['before']:.1f} -> "
          f"{seconds['now']:.1f}; per-artefact restoration sets {seconds['sets before']:.1f} -> {seconds['sets now']:.1f}")
    print("restoration on every k-th frame vs every frame (what train.restoration_every=k logs):")
    print(f"  {'k':>3} {'frames':>7}" + "".join(f"{key:>16}" for key in RESTORATION))
    for k in a.every:
        sub = predict_batches(model, eval_loader(dataset, batch), cpu, amp=False, restoration_every=k)
        errors = "".join(f"{getattr(sub, key) - getattr(now, key):>+16.4f}" for key in RESTORATION)
        print(f"  {k:>3} {len(range(0, len(dataset), k)):>7}{errors}")


@torch.no_grad()
def _legacy_restoration(model, sets) -> None:
    """The former per-artefact restoration scores: NumPy PSNR/SSIM of restored and degraded faces every time."""
    for clean, degraded in sets.values():
        restored = model.clean(degraded)[0].float().clamp(-1, 1).numpy()
        c, d = clean.numpy(), degraded.numpy()
        numpy_psnr(d, c), numpy_psnr(restored, c), numpy_ssim(d, c), numpy_ssim(restored, c)


if __name__ == "__main__":
    main()
