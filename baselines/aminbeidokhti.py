"""Aminbeidokhti, "Deep audio and video emotion detection" (MSc thesis, 2020): spatial attention with temporal softmax pooling, and the Augmented Ensemble.

Both are classifiers in the thesis (AFEW clips; RECOLA arousal for the ensemble); here they regress every
dimension at every step over a *sliding window* centred on it (``window`` steps), which is how a clip model
becomes a continuous V/A regressor.

* **Temporal attention** (Ch. 2): a local feature extractor (a small CNN, ``cnn_channels``; the thesis uses
  VGG-Face, whose weights cannot be had offline) turns each frame into L = H'·W' local descriptors R (L × D);
  R multi-head spatial attention units give A = softmax_L(W_s2 tanh(W_s1 Rᵀ)) (Eq. 2.4; rows sum to 1) and the
  frame vector v = flatten(A R); the loss adds ``diversity`` · ‖AAᵀ − I‖²_F (Lin et al.), which keeps the heads
  on different regions. Temporal softmax pooling (Eq. 2.5) weighs frames by a softmax of scores from the same
  final layer that regresses them, with no extra sub-network; for regression the frame weights over the window
  are softmax_f(o_f) of one extra output of W_sm and the window's prediction is the weighted mean of the frames'
  regressions (ours: the thesis marginalises a joint class-and-frame softmax, which needs classes).
* **Augmented Ensemble** (Ch. 3): per-modality networks whose hidden layers are context-gated
  (s = σ(W₂ δ(W₁ x)) ∘ x, Eq. 3.8, reduction ``reduction``), an early-fusion network fed at each layer by an
  attention unit that mixes, per feature, its previous layer with the gated unimodal features (Eqs. 3.3–3.7),
  and the final score the sum of the early-fusion head and the late fusion (mean) of the unimodal heads. The
  inputs of a step are the window's mean and standard deviation of each stream (the functionals of the RECOLA
  features the thesis used). Streams are column groups of the features (``streams``) plus, when the batch has
  maps, the faces pooled by the CNN.

Padded steps take no part: they get weight 0 in every window and never enter a statistic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

MODELS = ("temporal_attention", "augmented_ensemble")
_MASKED = -1e9   # a finite "minus infinity": an all-padding window stays finite in forward and backward


@dataclass
class AminbeidokhtiConfig:
    model: str = "temporal_attention"            # temporal_attention | augmented_ensemble
    window: int = 15                             # steps of the sliding window centred on each output step
    cnn_channels: list[int] = field(default_factory=lambda: [16, 32])   # stride-2 conv layers on the maps
    heads: int = 4                               # R spatial attention units
    attention_hidden: int = 32                   # U of W_s1
    diversity: float = 0.1                       # weight of ‖AAᵀ − I‖²_F in the loss
    hidden: int = 32                             # augmented ensemble: units per modality and layer
    layers: int = 2                              # augmented ensemble: gated layers
    reduction: int = 4                           # context gating's r
    streams: list[int] = field(default_factory=list)   # widths of the feature streams; [] = one stream

    def validate(self, n_features: int, has_maps: bool) -> None:
        if self.model not in MODELS:
            raise ValueError(f"aminbeidokhti model must be one of {MODELS}, got {self.model!r}")
        if self.window < 1 or self.heads < 1 or self.attention_hidden < 1 or self.hidden < 1 or self.layers < 1 \
                or self.reduction < 1 or self.diversity < 0:
            raise ValueError("aminbeidokhti window, heads, attention_hidden, hidden, layers and reduction must be "
                             ">= 1 and diversity >= 0")
        if self.model == "temporal_attention" and not has_maps:
            raise ValueError("temporal_attention attends over per-frame maps: set sequence.maps=faces")
        if self.streams and (sum(self.streams) != n_features or min(self.streams) < 1):
            raise ValueError(f"aminbeidokhti streams {self.streams} must be positive widths summing to the "
                             f"{n_features} features")


def window_context(window: int) -> tuple[int, int]:
    """(left, right) steps of :func:`sliding_windows`' window around its centre."""
    return window // 2, (window - 1) // 2


def sliding_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, T, ...) -> (B, T, window, ...): the steps t - window//2 ... t + (window-1)//2, zero outside."""
    before, after = window_context(window)
    padded = F.pad(x.movedim(1, -1), (before, after))           # (B, ..., T + window - 1)
    return padded.unfold(-1, window, 1).movedim(-2, 1).movedim(-1, 2)


def window_softmax_pool(values: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor, window: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per step t, the softmax(scores)-weighted mean of ``values`` (B, T, E) over the real steps of its window.

    Returns the pooled (B, T, E) and the weights (B, T, window), which sum to 1 over the real steps."""
    in_window = sliding_windows(mask.to(scores.dtype), window) > 0.5
    weights = torch.softmax(sliding_windows(scores, window).masked_fill(~in_window, _MASKED), dim=-1)
    weights = weights * in_window
    return torch.einsum("btw,btwe->bte", weights, sliding_windows(values, window)), weights


def window_moments(x: torch.Tensor, mask: torch.Tensor, window: int) -> torch.Tensor:
    """(B, T, F) -> (B, T, 2F): mean and standard deviation of each feature over the real steps of each window."""
    w = sliding_windows(mask.to(x.dtype), window)[..., None]    # (B, T, W, 1)
    xs = sliding_windows(x, window)
    n = w.sum(dim=2).clamp_min(1.0)
    mean = (xs * w).sum(dim=2) / n
    var = (((xs - mean[:, :, None]) * w) ** 2).sum(dim=2) / n
    return torch.cat([mean, torch.sqrt(var + 1e-6)], dim=-1)


class FrameCNN(nn.Module):
    """The local feature extractor: stride-2 3×3 convolutions with ReLU, (N, C, H, W) -> (N, D, H', W')."""

    def __init__(self, in_channels: int, channels: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for c in channels:
            layers += [nn.Conv2d(in_channels, c, 3, stride=2, padding=1), nn.ReLU()]
            in_channels = c
        self.net = nn.Sequential(*layers)
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiHeadSpatialAttention(nn.Module):
    """A = softmax over the L regions of W_s2 tanh(W_s1 Rᵀ); v = flatten(A R) (Eqs. 2.2-2.4)."""

    def __init__(self, channels: int, hidden: int, heads: int):
        super().__init__()
        self.w_s1 = nn.Linear(channels, hidden, bias=False)
        self.w_s2 = nn.Linear(hidden, heads, bias=False)
        self.last_weights: torch.Tensor | None = None

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D, H, W) -> v (N, R·D) and the per-frame penalty ‖AAᵀ − I‖²_F (N,)."""
        regions = maps.flatten(2).transpose(1, 2)                        # R: (N, L, D)
        a = torch.softmax(self.w_s2(torch.tanh(self.w_s1(regions))).transpose(1, 2), dim=-1)   # (N, heads, L)
        self.last_weights = a
        eye = torch.eye(a.shape[1], device=a.device, dtype=a.dtype)
        penalty = ((a @ a.transpose(1, 2) - eye) ** 2).sum(dim=(1, 2))
        return (a @ regions).flatten(1), penalty


class TemporalAttentionNet(nn.Module):
    """Maps (B, T, C, H, W) -> (B, T, D) predictions in [-1, 1]; ``penalty`` holds the last diversity term."""

    def __init__(self, cfg: AminbeidokhtiConfig, map_channels: int, n_outputs: int = 2):
        super().__init__()
        self.cfg = cfg
        self.cnn = FrameCNN(map_channels, cfg.cnn_channels)
        self.attention = MultiHeadSpatialAttention(self.cnn.out_channels, cfg.attention_hidden, cfg.heads)
        self.w_sm = nn.Linear(cfg.heads * self.cnn.out_channels, n_outputs + 1)   # regressions and a frame score
        self.penalty = torch.zeros(())
        self.last_frame_weights: torch.Tensor | None = None

    def temporal_context(self) -> tuple[int, int]:
        """(left, right) steps that output t reads: its window (frames are encoded one by one), so chunked
        prediction with this context is exact."""
        return window_context(self.cfg.window)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None,
                maps: torch.Tensor | None = None) -> torch.Tensor:
        if maps is None:
            raise ValueError("temporal_attention needs per-frame maps (sequence.maps=faces)")
        b, steps = maps.shape[:2]
        mask = mask if mask is not None else torch.ones(b, steps, dtype=torch.bool, device=maps.device)
        v, penalty = self.attention(self.cnn(maps.flatten(0, 1)))
        real = mask.flatten().to(penalty.dtype)
        self.penalty = (penalty * real).sum() / real.sum().clamp_min(1.0)
        out = self.w_sm(v).view(b, steps, -1)
        pooled, self.last_frame_weights = window_softmax_pool(torch.tanh(out[..., :-1]), out[..., -1], mask,
                                                              self.cfg.window)
        return pooled


class ContextGating(nn.Module):
    """s = σ(W₂ δ(W₁ x)) ∘ x (Eq. 3.8), with the squeeze-and-excitation reduction r."""

    def __init__(self, width: int, reduction: int):
        super().__init__()
        inner = max(1, width // reduction)
        self.gate = nn.Sequential(nn.Linear(width, inner), nn.ReLU(), nn.Linear(inner, width), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x) * x


class AugmentedEnsemble(nn.Module):
    """Streams (B, T, F) [+ maps] -> (B, T, D): early + late fusion with context gating, over sliding windows."""

    def __init__(self, cfg: AminbeidokhtiConfig, n_features: int, map_channels: int | None = None,
                 n_outputs: int = 2):
        super().__init__()
        self.cfg = cfg
        self.streams = cfg.streams or [n_features]
        self.cnn = FrameCNN(map_channels, cfg.cnn_channels) if map_channels else None
        widths = [2 * w for w in self.streams] + ([2 * self.cnn.out_channels] if self.cnn else [])
        h, m = cfg.hidden, len(widths)
        self.unimodal = nn.ModuleList(
            nn.ModuleList(nn.Linear(w if i == 0 else h, h) for i in range(cfg.layers)) for w in widths)
        self.gates = nn.ModuleList(
            nn.ModuleList(ContextGating(h, cfg.reduction) for _ in range(cfg.layers)) for _ in widths)
        self.early = nn.ModuleList(nn.Linear(m * h, m * h) for _ in range(cfg.layers - 1))
        # Att (Eq. 3.6): per feature, a softmax over {previous early layer, gated unimodal features}
        self.attention = nn.ModuleList(nn.Linear(2 * m * h, 2 * m * h) for _ in range(cfg.layers - 1))
        self.unimodal_heads = nn.ModuleList(nn.Linear(h, n_outputs) for _ in widths)
        self.early_head = nn.Linear(m * h, n_outputs)
        self.last_gates: list[torch.Tensor] = []

    def _inputs(self, features: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None) -> list[torch.Tensor]:
        parts = list(torch.split(features, self.streams, dim=-1))
        if self.cnn is not None:
            if maps is None:
                raise ValueError("this augmented ensemble was built with a map stream: the batch needs maps")
            pooled = self.cnn(maps.flatten(0, 1)).mean(dim=(2, 3))
            parts.append(pooled.view(*maps.shape[:2], -1) * mask[..., None].to(pooled.dtype))
        return [window_moments(p, mask, self.cfg.window) for p in parts]

    def temporal_context(self) -> tuple[int, int]:
        """(left, right) steps that output t reads: its window (frames are encoded one by one), so chunked
        prediction with this context is exact."""
        return window_context(self.cfg.window)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None,
                maps: torch.Tensor | None = None) -> torch.Tensor:
        b, steps = features.shape[:2]
        mask = mask if mask is not None else torch.ones(b, steps, dtype=torch.bool, device=features.device)
        features = features * mask[..., None].to(features.dtype)
        xs = self._inputs(features, mask, maps)
        self.last_gates = []
        early = None
        for i in range(self.cfg.layers):
            xs = [gate[i](torch.relu(layers[i](x))) for layers, gate, x in zip(self.unimodal, self.gates, xs,
                                                                               strict=True)]
            joint = torch.cat(xs, dim=-1)                                              # s_{1,2}^i
            if early is None:
                early = joint                                                          # the early net's input
                continue
            v_e = torch.relu(self.early[i - 1](early))
            g = torch.softmax(self.attention[i - 1](torch.cat([joint, v_e], -1)).unflatten(-1, (2, -1)), dim=-2)
            self.last_gates.append(g)
            early = g[..., 0, :] * v_e + g[..., 1, :] * joint                          # s_e^i (Eq. 3.7)
        late = torch.stack([head(x) for head, x in zip(self.unimodal_heads, xs, strict=True)]).mean(dim=0)
        return torch.tanh(self.early_head(early) + late)
