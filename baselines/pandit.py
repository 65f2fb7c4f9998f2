"""Pandit et al., "I see it in your eyes": the shallowest CNNs for continuous affect (two drafts of one paper).

Models A–E, each predicting every dimension with its own filters ("one emotion dimension at a time"):

* **A** — the stacked Conv1D model: kernels 50, 30, 20 and 5 time steps (receptive field 102 steps = 10.2 s
  at the AVEC 100 ms hop), ReLU between layers, one output channel per dimension, then a time-distributed
  dense layer. The paper gives the kernels, not the hidden widths: ``hidden`` (default 32) is ours.
* **B** — one Conv1D layer with *one filter* per dimension (kernel ``kernel``, 100 steps), its activation
  (``linear`` or ``relu``), then a time-distributed dense layer, which for one channel is a scale and an
  offset per dimension.
* **C** — B without the dense layer.
* **D** — C's topology holding B's function: the dense layer folded into the convolution (Eqs. 1–4:
  W_D = W_B · w_dense, b_D = b_B · w_dense + b_dense; exact for the linear activation). :func:`fold_b_into_d`.
* **E** — B on a reduced feature subset (``features``, indices into the input features).

Convolutions are centred ('same' padding: output t sees inputs t − T_F/2 ... t + T_F/2 − 1, the paper's
Eq. 5). Padded time steps of a batch are zeroed before every convolution (model A's hidden layers included:
their bias would otherwise make padding reach real steps), so a recording's outputs do not depend on what it
is batched with, and prediction in chunks is exact (:meth:`PanditCNN.temporal_context`). Trained with
1 − CCC (:func:`masked_ccc_loss`) and RMSprop (lr 1e-3) in the paper, with an optional L1 penalty on the
filter (:meth:`PanditCNN.filter_l1`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fileio.atomic import atomic_open

MODELS = ("A", "B", "C", "D", "E")
STACKED_KERNELS = (50, 30, 20, 5)


@dataclass
class PanditConfig:
    model: str = "B"                     # A | B | C | D | E
    kernel: int = 100                    # T_F of the single filter (B-E), in time steps
    activation: str = "linear"           # linear | relu, of the single-filter layer (B, C, E)
    hidden: int = 32                     # model A: filters of its hidden layers (not given in the paper)
    features: list[int] = field(default_factory=list)   # model E: indices of the features it keeps

    def validate(self, n_features: int) -> None:
        if self.model not in MODELS:
            raise ValueError(f"pandit model must be one of {MODELS}, got {self.model!r}")
        if self.activation not in ("linear", "relu"):
            raise ValueError(f"pandit activation must be linear or relu, got {self.activation!r}")
        if self.kernel < 1 or self.hidden < 1:
            raise ValueError("pandit kernel and hidden must be >= 1")
        if self.model == "E" and (not self.features or not all(0 <= f < n_features for f in self.features)):
            raise ValueError(f"model E needs a non-empty feature subset within 0..{n_features - 1}, "
                             f"got {self.features}")


class SameConv1d(nn.Conv1d):
    """Conv1d whose output has the input's length: (k-1)//2 zeros on the left, k//2 on the right (as Keras and
    PyTorch's 'same'), padded explicitly because PyTorch copies the input for 'same' with even kernels anyway."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1):
        super().__init__(cin, cout, kernel, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        return super().forward(nn.functional.pad(x, ((k - 1) // 2, k // 2)))


class PanditCNN(nn.Module):
    """(B, T, F) features and (B, T) mask -> (B, T, D) predictions."""

    def __init__(self, cfg: PanditConfig, n_features: int, n_outputs: int = 2):
        super().__init__()
        cfg.validate(n_features)
        self.cfg, self.n_outputs = cfg, n_outputs
        self.register_buffer("feature_index", torch.tensor(cfg.features if cfg.model == "E" else
                                                           list(range(n_features)), dtype=torch.long))
        width = len(self.feature_index)
        if cfg.model == "A":
            layers, cin = [], width
            for k, kernel in enumerate(STACKED_KERNELS):
                last = k == len(STACKED_KERNELS) - 1
                layers.append(SameConv1d(cin, n_outputs if last else cfg.hidden, kernel))
                if not last:
                    layers.append(nn.ReLU())
                cin = cfg.hidden
            self.conv = nn.Sequential(*layers)
        else:   # one filter per output dimension
            self.conv = SameConv1d(width, n_outputs, cfg.kernel)
        self.act = nn.ReLU() if cfg.activation == "relu" and cfg.model != "A" else nn.Identity()
        # time-distributed dense on one channel per dimension: a scale and an offset each (A, B, E)
        self.dense = nn.Conv1d(n_outputs, n_outputs, 1, groups=n_outputs) if cfg.model in ("A", "B", "E") else None

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None,
                maps: torch.Tensor | None = None) -> torch.Tensor:
        h = features.index_select(-1, self.feature_index).transpose(1, 2)
        keep = None if mask is None else mask[:, None].to(h.dtype)
        for layer in (self.conv if isinstance(self.conv, nn.Sequential) else [self.conv]):
            if keep is not None and isinstance(layer, SameConv1d):
                h = h * keep   # padded steps are 0 before every convolution, so they never reach a real step
            h = layer(h)
        h = self.act(h)
        if self.dense is not None:
            h = self.dense(h)
        return h.transpose(1, 2)

    def temporal_context(self) -> tuple[int, int]:
        """(left, right): output t reads inputs t − left ... t + right and nothing else (the convolutions' kernels
        summed; the dense layer is per step), so prediction in chunks with this much context on both sides is
        exact (training/sequence_inputs.py)."""
        convs = [m for m in self.modules() if isinstance(m, SameConv1d)]
        return (sum((c.kernel_size[0] - 1) // 2 for c in convs), sum(c.kernel_size[0] // 2 for c in convs))

    def filter_l1(self) -> torch.Tensor:
        """L1 norm of the single filter's weights (the paper's optional sparsity penalty)."""
        weight = self.conv[0].weight if isinstance(self.conv, nn.Sequential) else self.conv.weight
        return weight.abs().sum()


def fold_b_into_d(model_b: PanditCNN) -> PanditCNN:
    """Model D: model B's convolution with its dense layer folded in (Eqs. 3–4); same function for 'linear'."""
    if model_b.cfg.model != "B" or model_b.cfg.activation != "linear":
        raise ValueError("only a model B with the linear activation folds into model D")
    cfg = PanditConfig(model="D", kernel=model_b.cfg.kernel, activation="linear")
    model_d = PanditCNN(cfg, model_b.conv.in_channels, model_b.n_outputs)
    scale = model_b.dense.weight.detach().view(-1)      # (D,) one weight per dimension
    offset = model_b.dense.bias.detach()
    with torch.no_grad():
        model_d.conv.weight.copy_(model_b.conv.weight * scale.view(-1, 1, 1))
        model_d.conv.bias.copy_(model_b.conv.bias * scale + offset)
    return model_d


def feature_attribution(model_d: PanditCNN, features: np.ndarray, dimension: int = 0) -> np.ndarray:
    """Section 5.1's attribution of a single-filter model: x·w + b/(F·T_F) per (feature, filter tap).

    For every output step the filter multiplies its window of the input element-wise; the attribution of
    (feature f, tap t) is that product plus the bias spread evenly over the F·T_F cells, averaged over the
    output steps whose window lies inside the recording. Summed over all cells it is the mean output.
    """
    weight = model_d.conv.weight[dimension].detach().cpu().numpy()     # (F, T_F)
    bias = float(model_d.conv.bias[dimension].detach())
    x = np.asarray(features, np.float64)[:, model_d.feature_index.cpu().numpy()]   # (T, F)
    n_feat, taps = weight.shape
    starts = range(0, len(x) - taps + 1)
    if not len(starts):
        raise ValueError(f"a recording of {len(x)} steps is shorter than the filter ({taps} steps)")
    windows = np.stack([x[s:s + taps].T for s in starts])               # (N, F, T_F)
    return (windows * weight).mean(axis=0) + bias / (n_feat * taps)


def save_attribution_png(attribution: np.ndarray, path, feature_names: list[str] | None = None,
                         title: str = "feature attribution") -> None:
    """Heatmap with a diverging colormap centred at 0 (PiYG, as the paper), features by filter taps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    limit = float(np.abs(attribution).max()) or 1.0
    fig, ax = plt.subplots(figsize=(8, max(2.0, 0.25 * attribution.shape[0])))
    image = ax.imshow(attribution, aspect="auto", cmap="PiYG", norm=TwoSlopeNorm(0.0, -limit, limit))
    ax.set_xlabel("filter tap (time step)")
    ax.set_yticks(range(attribution.shape[0]))
    ax.set_yticklabels(feature_names or [str(i) for i in range(attribution.shape[0])], fontsize=6)
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=80, format="png")
    plt.close(fig)
