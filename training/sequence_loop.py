"""The training loop of the sequence models (``system`` other than aln): recordings, 1 − CCC, ALN's run folder.

``train.py`` hands a run here when the preset's ``system`` is a baseline system (pandit, raju,
aminbeidokhti) or ALN-T's head (temporal_conv). The run folder, ``metrics.jsonl``, TensorBoard, checkpoints
(``last.pt``, ``best.pt`` on the mean validation CCC), resume, SIGINT/SIGTERM saving and the one-line errors
are ALN's (``training/run_folder.py``, ``training/run_control.py``); what differs is the sample: a batch is ``sequence.recordings``
recordings (whole, or a random ``sequence.chunk`` of each) of per-frame inputs (``training/sequence_inputs.py``),
padded, with labels shifted by the annotator delays. The recordings of a step are a pure function of
(seed, step), so a resumed run continues the same stream.

Pandit's model D is trained as its linear model B and evaluated folded (Pandit et al., Eqs. 1-4); its checkpoints
hold both (``model``: B, ``folded_d``: D). Aminbeidokhti's temporal attention adds its diversity penalty.
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from baselines.pandit import fold_b_into_d
from baselines.sequence_loss import masked_ccc, masked_ccc_loss
from data.preprocess.audio import AudioStandardiser
from data.samples.loaders import load_split
from data.samples.sequences import Sequence, collate_sequences, labelled
from gan.checkpoint import load_weights, restore_rng_state, rng_state
from runconfig import RunConfig, to_dict
from training.run_control import BestCheckpoint, StopFlag, check_finite, save_on_interrupt
from training.run_folder import RunFolder, RunLog
from training.sequence_inputs import (
    PREDICT_CHUNK,
    PREDICT_CONTEXT,
    aln_features_info,
    build_model,
    dimensions,
    folds_into_d,
    predict_sequences,
    prediction_settings,
    run_model,
    scoring_model,
    sequences_of,
    with_aln_streams,
)

log = logging.getLogger(__name__)


def evaluate_sequences(model: torch.nn.Module, sequences: list[Sequence], batch_size: int,
                       dims: tuple[str, ...] = ("valence", "arousal"), chunk: int = PREDICT_CHUNK,
                       recurrent_context: int = PREDICT_CONTEXT) -> dict[str, float]:
    """``val/ccc_<dim>`` over every valid step of the recordings concatenated (the ABAW way); predicted in windows
    of ``chunk`` steps plus context (:func:`~training.sequence_inputs.predict_sequences`), so no recording's face
    maps or activations are ever needed whole."""
    outputs = predict_sequences(model, sequences, batch_size, chunk, recurrent_context)
    pred = torch.from_numpy(np.concatenate(outputs))[None]
    gold = torch.from_numpy(np.concatenate([s.labels for s in sequences]).astype(np.float32))[None]
    ccc = masked_ccc(pred, gold, labelled(gold))
    return {f"val/ccc_{d}": float(ccc[i]) for i, d in enumerate(dims)}


def training_batch(sequences: list[Sequence], cfg: RunConfig, step: int) -> dict:
    """The recordings of ``step`` (a pure function of seed and step), each cut to a random ``sequence.chunk``;
    a recording's face maps are copied for that chunk only (from the face cache's memmap)."""
    rng = np.random.default_rng([cfg.seed, step])
    picks = rng.choice(len(sequences), min(cfg.sequence.recordings, len(sequences)), replace=False)
    chosen = [sequences[i] for i in picks]
    chunk = cfg.sequence.chunk
    if chunk:
        cut = []
        for s in chosen:
            start = int(rng.integers(0, max(1, len(s) - chunk + 1)))
            window = slice(start, start + chunk)
            cut.append(Sequence(s.name, s.features[window], s.labels[window],
                                None if s.maps is None else s.maps[window]))
        chosen = cut
    return collate_sequences(chosen)


class SequenceTrainer:
    """One sequence-model run: data, model, optimiser, progress; :meth:`fit` is the loop."""

    def __init__(self, cfg: RunConfig, ckpt: dict | None):
        torch.manual_seed(cfg.seed)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.cfg = cfg
        self.folder = RunFolder(cfg, resuming=ckpt is not None)
        standardiser = AudioStandardiser.from_state_dict(ckpt["audio_stats"]) if ckpt else None
        train_split, self.standardiser = load_split(cfg.data, "training", standardiser)
        val_split, _ = load_split(cfg.data, "val", self.standardiser)
        self.train_seqs, self.val_seqs = sequences_of(train_split, cfg), sequences_of(val_split, cfg)
        self.cfg = cfg = with_aln_streams(cfg)   # after sequences_of: the features (and features.json) exist
        # which ALN checkpoint the features came from: evaluate.py refuses features of another one
        self.aln_features = aln_features_info(cfg) if cfg.sequence.features == "aln" else None
        first = self.train_seqs[0]
        self.n_features = first.features.shape[1]
        self.map_channels = None if first.maps is None else int(first.maps.shape[1])
        self.model = build_model(cfg, self.n_features, self.map_channels)
        s = cfg.sequence
        optimiser = torch.optim.RMSprop if s.optimizer == "rmsprop" else torch.optim.Adam
        self.opt = optimiser(self.model.parameters(), lr=s.lr)
        self.step, self.best = 0, BestCheckpoint(selectable="val" not in cfg.data.train_splits)
        if ckpt:
            load_weights(self.model, ckpt["model"], cfg.run.resume)
            self.opt.load_state_dict(ckpt["opt"])
            restore_rng_state(ckpt["rng"])
            self.step, self.best = ckpt["step"], self.best.resumed(ckpt)
        self.runlog = RunLog(self.folder.path, self.step if ckpt else None)
        self.stop = StopFlag()   # set by a signal handler (training/run_control.py)

    def state(self) -> dict:
        folded = {"folded_d": fold_b_into_d(self.model).state_dict()} if folds_into_d(self.cfg) else {}
        return {"step": self.step, "config": to_dict(self.cfg), "system": self.cfg.system,
                "model": self.model.state_dict(), **folded, "opt": self.opt.state_dict(), "rng": rng_state(),
                "audio_stats": self.standardiser.state_dict(), **self.best.state(), "n_features": self.n_features,
                "map_channels": self.map_channels, "aln_features": self.aln_features}

    def train_step(self) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        batch = training_batch(self.train_seqs, cfg, self.step)
        model.train()
        ccc_loss = masked_ccc_loss(run_model(model, batch), batch["labels"], batch["valid"])
        logs, loss = {"loss/ccc": ccc_loss.item()}, ccc_loss
        if cfg.sequence.l1 and cfg.system == "pandit":
            loss = loss + cfg.sequence.l1 * model.filter_l1()
        if cfg.system == "aminbeidokhti" and cfg.sequence.aminbeidokhti.model == "temporal_attention":
            loss = loss + cfg.sequence.aminbeidokhti.diversity * model.penalty
            logs["loss/diversity"] = model.penalty.item()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        logs = {"loss": loss.item(), **logs}
        check_finite(logs, self.step + 1)
        self.opt.step()
        self.step += 1
        return logs

    def validate(self) -> dict[str, float]:
        self.model.eval()
        values = evaluate_sequences(scoring_model(self.cfg, self.model), self.val_seqs, self.cfg.sequence.recordings,
                                    dimensions(self.cfg), *prediction_settings(self.cfg))
        self.runlog.scalars(self.step, values)
        self.folder.save_validated(self.state(), self.best.consider(values, self.step))
        return values

    def fit(self) -> int:
        t = self.cfg.train
        bar = tqdm(total=t.max_steps, initial=self.step, desc=self.cfg.system, file=sys.stderr, mininterval=1.0)
        started = time.time()
        while self.step < t.max_steps and not self.stop.requested:
            logs = self.train_step()
            bar.update(1)
            if self.step % t.log_every == 0:
                self.runlog.scalars(self.step, logs)
            if self.step % t.eval_every == 0 or self.step == t.max_steps:
                values = self.validate()
                bar.set_postfix({"val_ccc": f"V {values['val/ccc_valence']:.3f} A {values['val/ccc_arousal']:.3f}"})
        bar.close()
        if self.stop.requested:
            self.runlog.close()
            return save_on_interrupt(self.folder, self.state(), self.step)
        self.runlog.close()
        print(f"done: {self.step} steps of {self.cfg.system} in {(time.time() - started) / 60:.1f} min; "
              f"{self.best.summary()}; run folder {self.folder.path}", file=sys.stderr)
        return 0
