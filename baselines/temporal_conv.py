"""A small temporal convolution: the head of ALN-T (frozen per-frame ALN features -> V/A over time).

The ALN paper leaves temporal modelling as future work (§V). This head is the smallest thing that adds
context: a 1×1 projection, ``blocks`` residual blocks of centred dilated convolutions (kernel ``kernel``,
dilation 1, 2, 4, ...: a receptive field of 1 + (kernel − 1)(2^blocks − 1) steps) and a per-step linear output.
Padded steps are zeroed before every convolution, so they never reach a real step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TemporalConvConfig:
    channels: int = 32
    kernel: int = 3
    blocks: int = 4
    dropout: float = 0.1

    def validate(self) -> None:
        if self.channels < 1 or self.kernel < 1 or self.kernel % 2 == 0 or self.blocks < 1:
            raise ValueError("temporal_conv channels and blocks must be >= 1 and kernel odd")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("temporal_conv dropout must be in [0, 1)")

    def receptive_field(self) -> int:
        return 1 + (self.kernel - 1) * (2 ** self.blocks - 1)


class TemporalConvNet(nn.Module):
    """(B, T, F) features and (B, T) mask -> (B, T, D) predictions in [-1, 1]."""

    def __init__(self, cfg: TemporalConvConfig, n_features: int, n_outputs: int = 2):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.project = nn.Conv1d(n_features, cfg.channels, 1)
        self.blocks = nn.ModuleList(
            nn.Conv1d(cfg.channels, cfg.channels, cfg.kernel, dilation=2 ** i, padding=(cfg.kernel // 2) * 2 ** i)
            for i in range(cfg.blocks))
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Conv1d(cfg.channels, n_outputs, 1)

    def temporal_context(self) -> tuple[int, int]:
        """(left, right) steps that output t reads: (kernel // 2)(2^blocks − 1) on each side (the 1×1 layers add
        none), so chunked prediction with this context is exact."""
        side = (self.cfg.kernel // 2) * (2 ** self.cfg.blocks - 1)
        return side, side

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None,
                maps: torch.Tensor | None = None) -> torch.Tensor:
        keep = (mask if mask is not None else torch.ones(features.shape[:2], dtype=torch.bool,
                                                          device=features.device))[:, None].to(features.dtype)
        h = self.project(features.transpose(1, 2) * keep) * keep
        for conv in self.blocks:
            h = (h + self.dropout(torch.relu(conv(h)))) * keep
        return torch.tanh(self.out(h)).transpose(1, 2)
