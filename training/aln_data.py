"""What an ALN run reads before its first step: the training set, the validator and the class-balance table.

Rank 0 loads first: it generates the demo data and fills the feature caches, fits the audio standardiser
and the balance table; the other ranks then read the caches with rank 0's statistics, so every process of a
data-parallel job normalises and weights alike. A resumed run takes the statistics from its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from data.preprocess.audio import AudioStandardiser
from data.samples.dataset import AffectFrameDataset
from data.samples.loaders import build_dataset, load_split
from gan.losses import class_balance_weights
from gan.stages import Stage
from runconfig import RunConfig
from training.distributed import Distributed
from training.validation import Validator


@dataclass
class TrainingData:
    train_set: AffectFrameDataset
    validator: Validator
    standardiser: AudioStandardiser
    balance: torch.Tensor      # class-balance weights of the training labels (gan.losses.class_balance_weights)


def load_training_data(cfg: RunConfig, plan: list[Stage], device: torch.device, dist: Distributed,
                       ckpt: dict | None) -> TrainingData:
    standardiser = AudioStandardiser.from_state_dict(ckpt["audio_stats"]) if ckpt else None
    if dist.is_main:
        train_split, standardiser = load_split(cfg.data, "training", standardiser)
    standardiser = AudioStandardiser.from_state_dict(dist.broadcast_object(
        standardiser.state_dict() if dist.is_main else None))
    if not dist.is_main:
        train_split, _ = load_split(cfg.data, "training", standardiser)
    # the generator (or disc_aug's CD) always gets a "degraded" input; with degradations off it is the clean face
    degrades = any(stage.model_variant != "disc" for stage in plan)
    # uint8 faces from the loader's workers; the float conversion runs on the training device (Trainer.train_step)
    train_set = build_dataset(train_split, cfg.model.image_size, cfg.data.degrade if degrades else None,
                              faces_as_uint8=True)
    val_split, _ = load_split(cfg.data, "val", standardiser)   # every rank validates its share
    validator = Validator(cfg.train, cfg.data, cfg.model.image_size, val_split, device, dist)
    balance = ckpt["balance_table"] if ckpt else (
        class_balance_weights(torch.from_numpy(train_set.labels), cfg.loss.balance_bins, cfg.loss.balance_clip)
        if dist.is_main else None)
    return TrainingData(train_set, validator, standardiser, dist.broadcast_object(balance))
