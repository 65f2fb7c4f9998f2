"""Loss functions of ALN: adversarial (WGAN-GP or the paper's log loss), cycle reconstruction, affect.

Each function takes tensors and returns a scalar tensor; the training objective (``gan/objective.py``)
combines them. The affect loss uses the *same* statistics as the metrics in ``scoring/metrics.py``
(population convention, 1/N), weighted per sample by class-balance weights, so that minimising
``1 - CCC`` here maximises the CCC reported at validation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

AFFECT_TERMS = ("rmse", "pcc", "ccc")
ADVERSARIAL_MODES = ("wgan-gp", "log")


# --------------------------------------------------------------------------- adversarial


def critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, mode: str) -> torch.Tensor:
    """Discriminator's adversarial loss (to minimise).

    ``wgan-gp``: E[D(fake)] - E[D(real)] (the gradient penalty is added separately).
    ``log``: the paper's Eq. 1 as a minimisation, -log D(real) - log(1 - D(fake)), on logits.
    """
    if mode == "wgan-gp":   # means in fp32: under bf16 autocast the logits are bf16 (3 significant digits)
        return fake_logits.float().mean() - real_logits.float().mean()
    if mode == "log":
        return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    raise ValueError(f"unknown adversarial loss {mode!r}; use one of {ADVERSARIAL_MODES}")


def generator_adversarial_loss(fake_logits: torch.Tensor, mode: str) -> torch.Tensor:
    """Generator's adversarial loss: -E[D(fake)] (WGAN) or the non-saturating -log D(fake) (log loss)."""
    if mode == "wgan-gp":
        return -fake_logits.float().mean()
    if mode == "log":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    raise ValueError(f"unknown adversarial loss {mode!r}; use one of {ADVERSARIAL_MODES}")


def gradient_penalty(critic: Callable[..., torch.Tensor], real: Sequence[torch.Tensor],
                     fake: Sequence[torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad D(x_hat)||_2 - 1)^2] at random interpolates of real and fake inputs.

    The critic takes several inputs that differ between real and fake (the image and, in ``aeg_cd_sz``,
    the latent z); all are interpolated with the same per-sample ``alpha`` (shape (B,)) and the norm is
    taken over their joint gradient, which is the penalty of a critic on the concatenated input.
    Inputs that are identical for real and fake (the audio) are conditioning and passed via ``critic``.
    """
    mixed = interpolates(real, fake, alpha)
    return ((_input_gradient_norms(critic, mixed, create_graph=True)) - 1.0).pow(2).mean()


def interpolates(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor], alpha: torch.Tensor
                 ) -> list[torch.Tensor]:
    """``alpha * real + (1 - alpha) * fake`` per input, detached, in fp32 whatever the inputs' dtypes (under bf16
    autocast z is bf16, the image fp32), in the real input's memory layout."""
    mixed = []
    for r, f in zip(real, fake, strict=True):
        a = alpha.view(-1, *([1] * (r.dim() - 1))).float()
        x = a * r.detach().float() + (1 - a) * f.detach().float()
        if r.dim() == 4 and r.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        mixed.append(x)
    return mixed


def _input_gradient_norms(critic: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor],
                          create_graph: bool) -> torch.Tensor:
    """Per sample, the L2 norm of the critic's gradient with respect to all its (leaf) inputs jointly."""
    leaves = [x.requires_grad_(True) for x in inputs]
    out = critic(*leaves)
    grads = torch.autograd.grad(outputs=out.float().sum(), inputs=leaves, create_graph=create_graph)
    sq = sum(g.float().pow(2).flatten(1).sum(dim=1) for g in grads)
    return (sq + 1e-12).sqrt()


def critic_gradient_norms(critic: Callable[..., torch.Tensor], real: Sequence[torch.Tensor],
                          fake: Sequence[torch.Tensor], alpha: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean ||grad_x D(x)||_2 at the real inputs, the fake ones and their interpolates: how far the critic is from
    the 1-Lipschitz slope the penalty asks for at each. A diagnostic on detached copies: no graph is kept and no
    parameter gradient is touched, so measuring it leaves training unchanged."""
    points = {"real": [r.detach().float() for r in real], "fake": [f.detach().float() for f in fake],
              "interp": interpolates(real, fake, alpha)}
    with torch.enable_grad():
        return {name: _input_gradient_norms(critic, inputs, create_graph=False).detach().mean()
                for name, inputs in points.items()}


# --------------------------------------------------------------------------- reconstruction


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference: the cycle loss ||x - AEG(AEG(x~))||_1 (Eq. 2) and the direct denoising term."""
    return (a - b).abs().mean()


def term_gradient_norms(terms: dict[str, torch.Tensor], params: Sequence[torch.Tensor],
                        prefix: str = "G/gradnorm_",
                        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """L2 norm of each (weighted) loss term's gradient on ``params``, e.g. the AEG's weights.

    Shows which term steers the generator (a user reads ``G/gradnorm_adv`` against ``G/gradnorm_denoise``).
    The graph is retained, so the caller still backpropagates the sum afterwards. ``reduce`` maps the
    flattened gradient to the one whose norm is logged (data-parallel training: the average over processes,
    i.e. the gradient of the global batch).
    """
    params = [p for p in params if p.requires_grad]
    out = {}
    for name, term in terms.items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).detach().float().flatten()
                          for g, p in zip(grads, params, strict=True)])
        out[f"{prefix}{name}"] = (reduce(flat) if reduce else flat).norm()
    return out


# --------------------------------------------------------------------------- affect


def class_balance_weights(labels: torch.Tensor, bins: int = 21, clip: float = 10.0) -> torch.Tensor:
    """Per-dimension inverse-frequency weights over ``bins`` equal bins of [-1, 1] (Eq. 5's n_i/N term).

    ``labels`` is (N, D) training labels. For each dimension, bin b with n_b > 0 samples gets
    N / (K * n_b), K the number of non-empty bins, so every occupied bin carries the same total weight and
    the weight averaged over the training samples is 1. Weights above ``clip`` (0 disables) are clipped and
    the table renormalised to that mean of 1 again, so one label in a rare bin cannot dominate a batch.
    Empty bins get weight 0 (no training sample falls in them). Returns a (D, bins) float32 tensor.
    """
    labels = torch.as_tensor(labels, dtype=torch.float64)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"need a non-empty (N, D) label matrix, got shape {tuple(labels.shape)}")
    idx = label_bins(labels, bins)
    table = torch.zeros(labels.shape[1], bins, dtype=torch.float64)
    for d in range(labels.shape[1]):
        counts = torch.bincount(idx[:, d], minlength=bins).to(torch.float64)
        occupied = counts > 0
        w = torch.zeros(bins, dtype=torch.float64)
        w[occupied] = labels.shape[0] / (occupied.sum() * counts[occupied])
        if clip > 0:
            for _ in range(10):  # clipping then renormalising can push others over the clip: iterate
                w = torch.clamp(w, max=clip)
                w = w * labels.shape[0] / (w * counts).sum()
                if w.max() <= clip * (1 + 1e-6):
                    break
        table[d] = w
    return table.to(torch.float32)


def label_bins(labels: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin index in [0, bins) of every label value in [-1, 1] (1 falls in the last bin)."""
    scaled = ((labels.to(torch.float64) + 1.0) / 2.0 * bins).floor().long()
    return scaled.clamp_(0, bins - 1)


def weighted_affect_terms(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                          eps: float = 1e-8) -> dict[str, torch.Tensor]:
    """Weighted RMSE, PCC and CCC per column of (B, D) tensors, with per-sample weights (B, D).

    With all weights equal these are exactly the ``population`` metrics of ``scoring/metrics.py``.
    Returns a dict of (D,) tensors.
    """
    w = weight.to(pred.dtype)
    wsum = w.sum(dim=0).clamp_min(eps)
    mean_p = (w * pred).sum(dim=0) / wsum
    mean_t = (w * target).sum(dim=0) / wsum
    dp, dt = pred - mean_p, target - mean_t
    var_p = (w * dp * dp).sum(dim=0) / wsum
    var_t = (w * dt * dt).sum(dim=0) / wsum
    cov = (w * dp * dt).sum(dim=0) / wsum
    mse = (w * (pred - target) ** 2).sum(dim=0) / wsum
    return {
        "rmse": (mse + eps).sqrt(),
        "pcc": cov / (var_p * var_t + eps).sqrt(),
        "ccc": 2.0 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + eps),
    }


@dataclass
class AffectLoss:
    """Eq. 5: sum over dimensions of the class-balanced RMSE + (1 - PCC) + (1 - CCC).

    ``table`` is the (D, bins) output of :func:`class_balance_weights` (or None for uniform weights);
    each dimension's samples are weighted by *its own* table row. ``terms`` selects which of the three
    terms enter (all three by default; ("rmse",) alone is the plain regression loss).
    """

    table: torch.Tensor | None = None
    terms: tuple[str, ...] = AFFECT_TERMS
    _bins: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        unknown = set(self.terms) - set(AFFECT_TERMS)
        if unknown or not self.terms:
            raise ValueError(f"affect terms must be a non-empty subset of {AFFECT_TERMS}, got {self.terms}")
        self._bins = 0 if self.table is None else self.table.shape[1]

    def sample_weights(self, target: torch.Tensor) -> torch.Tensor:
        """(B, D) weight of each sample in each dimension."""
        if self.table is None:
            return torch.ones_like(target)
        table = self.table.to(target.device)
        idx = label_bins(target.detach(), self._bins)
        return torch.stack([table[d][idx[:, d]] for d in range(target.shape[1])], dim=1).to(target.dtype)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the total loss and its parts (each a (D,) tensor, detached) for logging."""
        stats = weighted_affect_terms(pred.float(), target.float(), self.sample_weights(target.float()))
        per_term = {"rmse": stats["rmse"], "pcc": 1.0 - stats["pcc"], "ccc": 1.0 - stats["ccc"]}
        total = sum(per_term[t].sum() for t in self.terms)
        return total, {k: v.detach() for k, v in stats.items()}
