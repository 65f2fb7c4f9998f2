"""Raju, Gaus and Breckon: RNN variants with explicit attention for continuous emotion.

Three architectures over per-step features made of ``streams`` (modalities: column groups of the input, e.g.
the ALN features' z, audio and CD parts), predicting every dimension at every step:

* **EAF** (early attention fusion): per stream a fully connected layer and a softmax give attention weights
  over that stream's features (x' = softmax(W x + b) ⊙ x); a softmax over the streams' scores weights the
  modalities; the fused vector feeds a two-layer bidirectional LSTM and a per-step linear head.
* **AED** (attention-based encoder-decoder, Bahdanau et al.): a bidirectional LSTM encodes the sequence; an
  LSTM decoder emits step t from its state and a context vector, the encoder states weighted by additive
  attention (scores v·tanh(W_s s + W_h h_j), softmax over the real steps only).
* **EMAFN** (extended multi-attention fusion): EAF's feature and modality attention in front of AED's attentive
  encoder-decoder (attention at the feature and at the model level).

Padded steps never reach a real step: the LSTMs run on packed sequences, and attention gives them weight 0.
The paper fixes neither widths nor the fusion details beyond the figures; ``hidden`` (64) is ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from baselines.aminbeidokhti import FrameCNN

ARCHITECTURES = ("EAF", "AED", "EMAFN")


@dataclass
class RajuConfig:
    model: str = "AED"                                   # EAF | AED | EMAFN
    hidden: int = 64                                     # LSTM width per direction (ours; not in the paper)
    streams: list[int] = field(default_factory=list)     # widths of the modalities, summing to the features; [] = one
    cnn_channels: list[int] = field(default_factory=lambda: [16, 32])   # video stream from face maps (when given)

    def validate(self, n_features: int) -> None:
        if self.model not in ARCHITECTURES:
            raise ValueError(f"raju model must be one of {ARCHITECTURES}, got {self.model!r}")
        if self.hidden < 1:
            raise ValueError("raju hidden must be >= 1")
        if self.streams and (sum(self.streams) != n_features or min(self.streams) < 1):
            raise ValueError(f"raju streams {self.streams} must be positive widths summing to the {n_features} features")


def _lengths(mask: torch.Tensor | None, batch: int, steps: int) -> torch.Tensor:
    return mask.sum(dim=1).cpu() if mask is not None else torch.full((batch,), steps)


def _run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths.clamp_min(1), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class FeatureModalityAttention(nn.Module):
    """EAF's front: softmax attention over each stream's features, then over the streams."""

    def __init__(self, streams: list[int]):
        super().__init__()
        self.streams = streams
        self.feature_scores = nn.ModuleList(nn.Linear(w, w) for w in streams)
        self.modality_scores = nn.ModuleList(nn.Linear(w, 1) for w in streams)
        self.last_weights: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.streams, dim=-1)
        feature_weights = [torch.softmax(score(p), dim=-1) for score, p in zip(self.feature_scores, parts, strict=True)]
        attended = [w * p for w, p in zip(feature_weights, parts, strict=True)]
        modality = torch.softmax(torch.cat([s(a) for s, a in zip(self.modality_scores, attended, strict=True)], -1), -1)
        self.last_weights = {"features": feature_weights, "modalities": modality}
        return torch.cat([a * modality[..., i:i + 1] for i, a in enumerate(attended)], dim=-1)


class AttentiveDecoder(nn.Module):
    """Bahdanau attention over bidirectional encoder states, an LSTM cell emitting one output per step."""

    def __init__(self, encoder_width: int, hidden: int, n_outputs: int):
        super().__init__()
        self.w_state, self.w_enc = nn.Linear(hidden, hidden, bias=False), nn.Linear(encoder_width, hidden)
        self.v = nn.Linear(hidden, 1, bias=False)
        self.cell = nn.LSTMCell(encoder_width, hidden)
        self.head = nn.Linear(hidden + encoder_width, n_outputs)
        self.last_weights: torch.Tensor | None = None

    def forward(self, encoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, steps, _ = encoded.shape
        state = encoded.new_zeros(b, self.cell.hidden_size)
        memory = encoded.new_zeros(b, self.cell.hidden_size)
        keys = self.w_enc(encoded)
        # the (B, T, T) weights are kept for inspection only with gradients on (autograd holds them then anyway):
        # predicting a 47 k-step recording under no_grad would otherwise hold 8.8 GB of them
        keep = torch.is_grad_enabled()
        outputs, weights = [], []
        for _ in range(steps):
            scores = self.v(torch.tanh(keys + self.w_state(state)[:, None])).squeeze(-1)
            alpha = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            context = (alpha[..., None] * encoded).sum(dim=1)
            state, memory = self.cell(context, (state, memory))
            outputs.append(self.head(torch.cat([state, context], dim=-1)))
            if keep:
                weights.append(alpha)
        self.last_weights = torch.stack(weights, dim=1) if keep else None   # (B, T_out, T_in), rows sum to 1
        return torch.stack(outputs, dim=1)


class RajuRNN(nn.Module):
    """(B, T, F) features, (B, T) mask [and (B, T, C, H, W) face maps] -> (B, T, D) predictions in [-1, 1].

    With ``map_channels`` the faces become one more stream (the video modality): a small CNN
    (:class:`~baselines.aminbeidokhti.FrameCNN`, ``cnn_channels``) averaged over space, trained with the rest."""

    def __init__(self, cfg: RajuConfig, n_features: int, n_outputs: int = 2, map_channels: int | None = None):
        super().__init__()
        cfg.validate(n_features)
        self.cfg = cfg
        self.cnn = FrameCNN(map_channels, cfg.cnn_channels) if map_channels else None
        streams = (cfg.streams or [n_features]) + ([self.cnn.out_channels] if self.cnn else [])
        self.front = FeatureModalityAttention(streams) if cfg.model in ("EAF", "EMAFN") else None
        layers = 2 if cfg.model == "EAF" else 1
        width = sum(streams)
        self.encoder = nn.LSTM(width, cfg.hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.decoder = AttentiveDecoder(2 * cfg.hidden, cfg.hidden, n_outputs) if cfg.model != "EAF" else None
        self.head = nn.Linear(2 * cfg.hidden, n_outputs) if cfg.model == "EAF" else None

    def temporal_context(self) -> None:
        """None: every output reads the whole recording (bidirectional LSTMs; AED's and EMAFN's attention over
        all encoder states). Prediction therefore computes :meth:`step_inputs` in chunks and runs
        :meth:`recurrent` over whole recordings (training/sequence_inputs.py)."""
        return None

    def step_inputs(self, features: torch.Tensor, mask: torch.Tensor | None = None,
                    maps: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, W) inputs of the LSTMs: the features, the faces' video stream and EAF's attention front. Each
        row depends on its own step only, so a long recording's rows can be computed a chunk at a time (its
        face maps and CNN activations never whole) and only these W numbers per step kept."""
        b, steps, _ = features.shape
        mask = mask if mask is not None else torch.ones(b, steps, dtype=torch.bool, device=features.device)
        if self.cnn is not None:
            if maps is None:
                raise ValueError("this model was built with a video stream: the batch needs face maps")
            video = self.cnn(maps.flatten(0, 1)).mean(dim=(2, 3)).view(b, steps, -1)
            features = torch.cat([features, video], dim=-1)
        x = features * mask[..., None].to(features.dtype)
        return self.front(x) if self.front is not None else x

    def recurrent(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, W) step inputs -> (B, T, D) predictions in [-1, 1]: the encoder and the head or decoder."""
        b, steps, _ = x.shape
        mask = mask if mask is not None else torch.ones(b, steps, dtype=torch.bool, device=x.device)
        encoded = _run_lstm(self.encoder, x, _lengths(mask, b, steps))
        out = self.head(encoded) if self.head is not None else self.decoder(encoded, mask)
        return torch.tanh(out)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None,
                maps: torch.Tensor | None = None) -> torch.Tensor:
        return self.recurrent(self.step_inputs(features, mask, maps), mask)
