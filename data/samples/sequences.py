"""Per-recording feature sequences with labels, and their batching with padding masks (for sequence models).

The baselines of ``papers/`` (Pandit's single-filter CNNs, Raju's attention RNNs, Aminbeidokhti's temporal
attention) read a whole recording as a (T, F) sequence of features with (T, D) labels at a fixed hop, instead
of one face at a time. A batch pads recordings to the longest one; ``mask`` marks the real time steps, and a
label is used only where ``valid`` holds (a real step with a valid label: Aff-Wild2's -5 and SEWA's
unlabelled frames are not). Models zero the padded steps before any convolution, and losses and metrics
ignore them, so changing padded values changes no output and no loss (tests/test_sequences.py).

Label delay compensation (Pandit et al.: 4.0 s arousal, 2.8 s valence on SEWA) shifts each dimension's labels
earlier by its delay: the label at ``t + delay`` describes the features at ``t``; steps left without a label
at the end become invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from data.datasets.affwild2 import VideoRecord
from data.samples.dataset import read_rgb

INVALID = -5.0


@dataclass
class Sequence:
    """One recording: features (T, F), labels (T, D) with INVALID where unknown, and its name."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    maps: np.ndarray | None = None     # (T, C, H, W) per-frame maps (face crops) for the spatial-attention models

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.labels.ndim != 2 or len(self.features) != len(self.labels):
            raise ValueError(f"{self.name}: features {self.features.shape} and labels {self.labels.shape} must be "
                             "(T, F) and (T, D) of one length")
        if self.maps is not None and (self.maps.ndim != 4 or len(self.maps) != len(self.labels)):
            raise ValueError(f"{self.name}: maps {self.maps.shape} must be (T, C, H, W) with T = {len(self.labels)}")

    def __len__(self) -> int:
        return len(self.features)


def delay_labels(labels: np.ndarray, delays_steps: list[int]) -> np.ndarray:
    """Labels with dimension d taken ``delays_steps[d]`` steps later (annotator delay); the tail becomes INVALID."""
    out = np.full_like(labels, INVALID)
    for d, shift in enumerate(delays_steps):
        if shift < 0:
            raise ValueError(f"label delays are >= 0 steps, got {shift} for dimension {d}")
        n = len(labels) - shift
        if n > 0:
            out[:n, d] = labels[shift:, d]
    return out


def labelled(labels: torch.Tensor) -> torch.Tensor:
    """Where a label is known: not INVALID (Aff-Wild2's -5, SEWA's gaps) and within [-1, 1]."""
    return (labels > INVALID + 0.5) & (labels.abs() <= 1.0)


def collate_sequences(sequences: list[Sequence]) -> dict[str, torch.Tensor | list[str]]:
    """Pad to the longest recording: ``features`` (B, T, F), ``labels`` (B, T, D), ``mask`` (B, T) of real
    steps, ``valid`` (B, T, D) of real steps with a valid label, the ``names``, and ``maps`` (B, T, C, H, W)
    when the sequences carry them (else None)."""
    if not sequences:
        raise ValueError("no sequences to batch")
    length = max(len(s) for s in sequences)
    n_feat, n_dim = sequences[0].features.shape[1], sequences[0].labels.shape[1]
    features = torch.zeros(len(sequences), length, n_feat)
    labels = torch.full((len(sequences), length, n_dim), INVALID)
    mask = torch.zeros(len(sequences), length, dtype=torch.bool)
    for i, s in enumerate(sequences):
        features[i, :len(s)] = torch.from_numpy(np.asarray(s.features, np.float32))
        labels[i, :len(s)] = torch.from_numpy(np.asarray(s.labels, np.float32))
        mask[i, :len(s)] = True
    valid = mask[..., None] & labelled(labels)
    maps = None
    if sequences[0].maps is not None:
        maps = torch.zeros(len(sequences), length, *sequences[0].maps.shape[1:])
        for i, s in enumerate(sequences):
            maps[i, :len(s)] = torch.from_numpy(np.asarray(s.maps, np.float32))
    return {"features": features, "labels": labels, "mask": mask, "valid": valid, "maps": maps,
            "names": [s.name for s in sequences]}


def face_maps(record: VideoRecord, size: int) -> np.ndarray:
    """(T, 3, size, size) float16 face crops in [-1, 1] of every frame, frame k on row k-1; frames without a crop
    stay 0. Decoded by the sample contract's reader, so a corrupt crop is a DataError naming the file; float16
    keeps a demo split's faces at 32 px in a few MB."""
    out = np.zeros((record.n_frames, 3, size, size), np.float16)
    for k in range(1, record.n_frames + 1):
        path = record.image_path(k)
        if path.is_file():
            image = cv2.resize(read_rgb(path), (size, size), interpolation=cv2.INTER_AREA)
            out[k - 1] = image.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0
    return out
