"""The training loop of the sequence baselines (``system: pandit | raju``): whole recordings, 1 − CCC, same run folder.

Model D is trained as its linear model B and evaluated folded (papers/000 Eqs. 1-4); its checkpoints hold
both (``model``: B, ``folded_d``: D).

``train.py`` hands a run here when the preset's ``system`` is not ``aln``. The run folder, ``metrics.jsonl``,
TensorBoard, checkpoints (``last.pt``, ``best.pt`` on the mean validation CCC), resume and the one-line
errors are ALN's (``training/run_folder.py``); what differs is the sample: a batch is ``sequence.recordings``
whole recordings of per-frame features (the standardised eGeMAPS descriptors of the ALN data pipeline),
padded, with labels shifted by the annotator delays. The recordings of a step are a pure function of
(seed, step), so a resumed run continues the same stream.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from baselines.pandit import PanditCNN, fold_b_into_d
from baselines.raju import RajuRNN
from baselines.sequence_loss import masked_ccc, masked_ccc_loss
from data.errors import DataError
from data.preprocess.audio import AudioStandardiser
from data.samples.loaders import SplitData, load_split
from data.samples.sequences import Sequence, collate_sequences, delay_labels
from gan.checkpoint import load_weights, restore_rng_state, rng_state
from runconfig import ConfigError, RunConfig, to_dict
from training.run_folder import RunFolder, RunLog

log = logging.getLogger(__name__)
DIMENSIONS = ("valence", "arousal")


def sequences_of(split: SplitData, cfg: RunConfig) -> list[Sequence]:
    """One sequence per recording: its per-frame features and its labels delayed per dimension."""
    out = []
    for record in split.records:
        delays = [round(cfg.sequence.delay_valence * record.fps), round(cfg.sequence.delay_arousal * record.fps)]
        labels = delay_labels(np.asarray(record.labels, np.float32), delays)
        out.append(Sequence(record.name, _features(split, record.name, record.n_frames, cfg), labels))
    return out


def _features(split: SplitData, name: str, n_frames: int, cfg: RunConfig) -> np.ndarray:
    if cfg.sequence.features == "egemaps":
        return split.audio[name].astype(np.float32)
    path = Path(cfg.sequence.features_dir) / f"{name}.npy"
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: no exported ALN features for {name} ({exc.__class__.__name__}); run "
                        "python -m training.export_features --checkpoint CKPT --out DIR first") from exc
    if table.ndim != 2 or len(table) != n_frames:
        raise DataError(f"{path}: expected ({n_frames}, F) features, found {table.shape}")
    return table.astype(np.float32)


def build_model(cfg: RunConfig, n_features: int) -> torch.nn.Module:
    """The network of ``cfg.system``; Pandit's model D is trained as a linear model B and folded."""
    try:
        if cfg.system == "raju":
            return RajuRNN(cfg.raju, n_features)
        pandit = cfg.pandit
        if pandit.model == "D":
            pandit = dataclasses.replace(pandit, model="B", activation="linear")
        return PanditCNN(pandit, n_features)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _folds_into_d(cfg: RunConfig) -> bool:
    return cfg.system == "pandit" and cfg.pandit.model == "D"


def evaluate_sequences(model: torch.nn.Module, sequences: list[Sequence]) -> dict[str, float]:
    """``val/ccc_<dim>`` over every valid step of the recordings concatenated (the ABAW way)."""
    batch = collate_sequences(sequences)
    with torch.no_grad():
        pred = model(batch["features"], batch["mask"])
    ccc = masked_ccc(pred, batch["labels"], batch["valid"])
    return {f"val/ccc_{d}": float(ccc[i]) for i, d in enumerate(DIMENSIONS)}


def train_sequences(cfg: RunConfig, ckpt: dict | None) -> int:
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    folder = RunFolder(cfg, resuming=ckpt is not None)
    standardiser = AudioStandardiser.from_state_dict(ckpt["audio_stats"]) if ckpt else None
    train_split, standardiser = load_split(cfg.data, "training", standardiser)
    val_split, _ = load_split(cfg.data, "val", standardiser)
    train_seqs, val_seqs = sequences_of(train_split, cfg), sequences_of(val_split, cfg)
    model = build_model(cfg, train_seqs[0].features.shape[1])
    s = cfg.sequence
    opt = (torch.optim.RMSprop if s.optimizer == "rmsprop" else torch.optim.Adam)(model.parameters(), lr=s.lr)
    step, best_score, best_step = 0, -float("inf"), -1
    if ckpt:
        load_weights(model, ckpt["model"], cfg.run.resume)
        opt.load_state_dict(ckpt["opt"])
        restore_rng_state(ckpt["rng"])
        step, best_score, best_step = ckpt["step"], ckpt["best_score"], ckpt["best_step"]
    runlog = RunLog(folder.path, step if ckpt else None)

    def state() -> dict:
        folded = {"folded_d": fold_b_into_d(model).state_dict()} if _folds_into_d(cfg) else {}
        return {"step": step, "config": to_dict(cfg), "system": cfg.system, "model": model.state_dict(), **folded,
                "opt": opt.state_dict(), "rng": rng_state(), "audio_stats": standardiser.state_dict(),
                "best_score": best_score, "best_step": best_step, "n_features": train_seqs[0].features.shape[1]}

    t = cfg.train
    bar = tqdm(total=t.max_steps, initial=step, desc=cfg.system, file=sys.stderr, mininterval=1.0)
    started = time.time()
    while step < t.max_steps:
        picks = np.random.default_rng([cfg.seed, step]).choice(len(train_seqs), min(s.recordings, len(train_seqs)),
                                                                replace=False)
        batch = collate_sequences([train_seqs[i] for i in picks])
        model.train()
        loss = masked_ccc_loss(model(batch["features"], batch["mask"]), batch["labels"], batch["valid"])
        if s.l1 and cfg.system == "pandit":
            loss = loss + s.l1 * model.filter_l1()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if not np.isfinite(loss.item()):
            raise FloatingPointError(f"loss is not finite at step {step}")
        if step % t.log_every == 0:
            runlog.scalars(step, {"loss": loss.item()})
        if step % t.eval_every == 0 or step == t.max_steps:
            model.eval()
            values = evaluate_sequences(fold_b_into_d(model) if _folds_into_d(cfg) else model, val_seqs)
            runlog.scalars(step, values)
            score = float(np.mean(list(values.values())))
            if score > best_score and "val" not in cfg.data.train_splits:
                best_score, best_step = score, step
                folder.save("best.pt", {**state(), "selected_on": "val"})
            folder.save("last.pt", state())
            bar.set_postfix({"val_ccc": f"V {values['val/ccc_valence']:.3f} A {values['val/ccc_arousal']:.3f}"})
    bar.close()
    runlog.close()
    print(f"done: {step} steps of {cfg.system} in {(time.time() - started) / 60:.1f} min; best mean val CCC "
          f"{best_score:.3f} at step {best_step}; run folder {folder.path}", file=sys.stderr)
    return 0
