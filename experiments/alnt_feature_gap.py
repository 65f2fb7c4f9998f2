"""Does ALN-T lose valence because it is fitted on training-video features that ALN itself was trained on?

    python -m experiments.alnt_feature_gap            # needs ALN's runs/demo/last.pt (python train.py)

ALN-T (configs/baselines/aln_t.yaml) is trained on the ALN features of the training videos, where ALN's own
valence is nearly perfect (G/ccc_valence 0.966-0.982 on its last logged training batches) — features far more reliable than on unseen
videos. This measures the effect directly: the validation videos are cut into two halves, and the same ALN-T
head (same preset, steps and seed) is trained on the training videos, on as many training videos as a half holds,
or on one validation half, and is scored on the other half (both ways round). Per-frame ALN (the V/A columns of the features) is the reference on
the same frames. Prints one markdown table of CCC per dimension.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from baselines.sequence_loss import masked_ccc, masked_ccc_loss
from data.samples.loaders import load_split
from data.samples.sequences import Sequence, collate_sequences
from scoring.plots import markdown_table
from train import load_config
from training.sequence_inputs import build_model, run_model, sequences_of, with_aln_streams
from training.sequence_loop import training_batch

REPO = Path(__file__).resolve().parents[1]


def fit(cfg, sequences: list[Sequence]) -> torch.nn.Module:
    """The preset's head trained on ``sequences`` for ``train.max_steps`` steps (the loop's batches and loss)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, sequences[0].features.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.sequence.lr)
    for step in range(cfg.train.max_steps):
        batch = training_batch(sequences, cfg, step)
        model.train()
        loss = masked_ccc_loss(run_model(model, batch), batch["labels"], batch["valid"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def score(pred: torch.Tensor, batch: dict) -> list[float]:
    return [float(c) for c in masked_ccc(pred, batch["labels"], batch["valid"])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE for configs/baselines/aln_t.yaml")
    args = parser.parse_args(argv)
    cfg = load_config(str(REPO / "configs" / "baselines" / "aln_t.yaml"), args.overrides)
    train_split, standardiser = load_split(cfg.data, "training")
    val_split, _ = load_split(cfg.data, "val", standardiser)
    train_seqs, val_seqs = sequences_of(train_split, cfg), sequences_of(val_split, cfg)
    cfg = with_aln_streams(cfg)
    halves = [val_seqs[0::2], val_seqs[1::2]]
    rows = []
    for k, (fit_half, test_half) in enumerate([(halves[0], halves[1]), (halves[1], halves[0])]):
        batch = collate_sequences(test_half)
        heads = {"ALN-T fitted on the training videos": fit(cfg, train_seqs),
                 # the same number of videos as a validation half: separates "which features" from "how many"
                 f"ALN-T fitted on {len(fit_half)} training videos": fit(cfg, train_seqs[k::len(train_seqs) // len(fit_half)][:len(fit_half)]),
                 "ALN-T fitted on the other validation half": fit(cfg, fit_half)}
        with torch.no_grad():
            results = {"per-frame ALN (its V/A columns)": score(batch["features"][..., -2:].clamp(-1, 1), batch)}
            results.update({name: score(run_model(head, batch), batch) for name, head in heads.items()})
        for name, (v, a) in results.items():
            rows.append({"scored on": f"val half {1 - k}", "model": name, "CCC V": v, "CCC A": a})
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        rows.append({"scored on": "mean of both", "model": name, "CCC V": np.mean([r["CCC V"] for r in mine]),
                     "CCC A": np.mean([r["CCC A"] for r in mine])})
    print(markdown_table(rows, ["scored on", "model", "CCC V", "CCC A"]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
