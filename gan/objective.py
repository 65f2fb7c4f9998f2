"""The ALN training objective: what the discriminator and the generator minimise (Eqs. 1-10).

Kept apart from the loop (StyleGAN2-ADA style): the loop owns optimisers, schedules and logging; this
module owns the maths and the consistency rules of docs/design.md:

* D sees z for real *and* fake inputs. For a real image z is the AEG's encoding of that clean image,
  computed without gradient in the D step; for a fake, the z of the degraded input that produced it.
  Otherwise D could tell real from fake by whether z is present.
* The affect loss (class-balanced RMSE + 1-PCC + 1-CCC) is paid by D on real images (Eq. 9) and by G on
  its restored images (Eq. 10), both through the same :class:`~gan.losses.AffectLoss`.
* ``disc`` has no generator: D regresses V/A on clean images with the affect loss alone; ``disc_aug`` does the
  same on the degraded images (the plain augmentation baseline).
* The G objective keeps the paper's three terms (adversarial, cycle Eq. 2, affect Eq. 10) and adds a direct
  denoising L1, L1(AEG(degraded), clean), on by default: a documented deviation. Without it nothing pulls
  the first pass of the AEG towards the clean face (measured: restored faces fell to 11 dB, the cycle
  gradient was orthogonal to the restoration direction). :meth:`ALNObjective.generator_terms` returns the
  weighted terms one by one, so the loop can log each term's gradient norm on the AEG.
* The ``denoise`` stage of progressive training (the authors' denoising auto-encoder pre-training)
  trains the AEG alone on the direct L1: :meth:`ALNObjective.denoise_loss`.

A batch is a dict with ``face`` (B,3,H,W), ``face_degraded`` (B,3,H,W), ``audio`` (B,D_a), ``va`` (B,2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gan.losses import (
    ADVERSARIAL_MODES,
    AFFECT_TERMS,
    AffectLoss,
    critic_gradient_norms,
    critic_loss,
    generator_adversarial_loss,
    gradient_penalty,
    l1,
)
from gan.models import ALN


@dataclass
class LossConfig:
    """Loss weights and choices (paper Eqs. 9-10; StarGAN defaults where the paper is silent)."""

    adversarial: str = "wgan-gp"   # wgan-gp | log (the paper's Eq. 1)
    lambda_gp: float = 10.0        # gradient-penalty weight (WGAN-GP)
    gp_every: int = 1              # lazy regularisation: the penalty on every k-th D step, weighted by k
    lambda_afc: float = 1.0        # affect loss weight of D on real faces, lambda_afc of Eq. 9
    lambda_afc_g: float = 1.0      # affect loss weight of G on its restored faces (Eq. 10; the paper uses lambda_afc)
    lambda_adv: float = 1.0        # weight of G's adversarial term (the paper's is 1)
    lambda_rec: float = 10.0       # cycle reconstruction weight, lambda_rec (StarGAN's lambda_rec)
    lambda_denoise: float = 100.0  # direct L1(AEG(degraded), clean): a documented deviation; 0 = the paper's G
    affect_terms: list[str] = field(default_factory=lambda: list(AFFECT_TERMS))
    class_balance: bool = True     # weight samples by inverse V/A bin frequency of the training labels
    balance_bins: int = 21         # bins over [-1, 1] per dimension
    balance_clip: float = 10.0     # cap on a bin's weight before renormalising (0 = no cap)

    def validate(self) -> None:
        if self.adversarial not in ADVERSARIAL_MODES:
            raise ValueError(f"loss.adversarial must be one of {ADVERSARIAL_MODES}, got {self.adversarial!r}")
        bad = [t for t in self.affect_terms if t not in AFFECT_TERMS]
        if bad or not self.affect_terms:
            raise ValueError(f"loss.affect_terms must be a non-empty subset of {list(AFFECT_TERMS)}, got {self.affect_terms}")
        for key in ("lambda_gp", "lambda_afc", "lambda_afc_g", "lambda_adv", "lambda_rec", "lambda_denoise", "balance_clip"):
            if getattr(self, key) < 0:
                raise ValueError(f"loss.{key} must be >= 0, got {getattr(self, key)}")
        if not isinstance(self.gp_every, int) or isinstance(self.gp_every, bool) or self.gp_every < 1:
            raise ValueError(f"loss.gp_every must be an integer >= 1, got {self.gp_every!r}")
        if self.balance_bins < 2:
            raise ValueError(f"loss.balance_bins must be >= 2, got {self.balance_bins}")


class ALNObjective:
    """Computes the D and G losses of one batch for an :class:`~gan.models.ALN`."""

    def __init__(self, model: ALN, cfg: LossConfig, balance_table: torch.Tensor | None,
                 gather: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """``gather`` turns a per-process shard into the global batch (data-parallel training); the affect
        loss, whose PCC/CCC are batch statistics, is computed on the global batch. Default: the identity."""
        self.model = model
        self.cfg = cfg
        self.affect_loss = AffectLoss(balance_table if cfg.class_balance else None, tuple(cfg.affect_terms))
        self.gather = gather or (lambda x: x)

    def affect(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The affect loss of Eq. 5 over the global batch."""
        return self.affect_loss(self.gather(pred), self.gather(target))

    @property
    def adversarial(self) -> bool:
        return self.model.aeg is not None

    def generate(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(restored face, its z) of the batch's degraded face: G's forward pass, shared by D and G steps."""
        return self.model.aeg(batch["face_degraded"])

    def discriminator_loss(self, batch: dict[str, torch.Tensor], restored: tuple[torch.Tensor, torch.Tensor] | None = None,
                           gp_alpha: torch.Tensor | None = None, gp_scale: float = 1.0
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 9: -L_adv + lambda_afc * L_afc(real) (+ gp_scale * lambda_gp * GP for WGAN-GP).

        ``restored``: the output of :meth:`generate` when the loop already has it (a G step follows in the same
        iteration, and G's weights do not change during the D step), used detached; else it is computed
        without gradient. ``gp_alpha``: the (B,) interpolation weights of the penalty (drawn here when None).
        ``gp_scale``: 0 skips the penalty (lazy regularisation), k weights it by k on every k-th D step.
        """
        m, cfg = self.model, self.cfg
        real, audio, va = batch["face"], batch.get("audio"), batch["va"]
        if not self.adversarial:   # disc on the clean face; disc_aug on the degraded one (plain augmentation)
            seen = batch["face_degraded"] if m.cfg.critic_sees_degraded else real
            afc, stats = self.affect(m.critic(seen, None, None)[1], va)
            return cfg.lambda_afc * afc, _logs("D", afc=afc, **_affect_logs(stats))

        with torch.no_grad():
            fake, z_fake = self.generate(batch) if restored is None else (t.detach() for t in restored)
            z_real = m.aeg.encode(real) if m.conditions_on_latent else None
        real_logits, va_real = m.critic(real, z_real, audio)
        fake_logits, _ = m.critic(fake, z_fake, audio)
        adv = critic_loss(real_logits, fake_logits, cfg.adversarial)
        afc, stats = self.affect(va_real, va)
        loss = adv + cfg.lambda_afc * afc
        logs = {"adv": adv, "afc": afc, **_affect_logs(stats)}
        if cfg.adversarial == "wgan-gp" and cfg.lambda_gp > 0 and gp_scale > 0:
            alpha = torch.rand(real.shape[0], device=real.device) if gp_alpha is None else gp_alpha.to(real.device)
            if m.conditions_on_latent:
                gp = gradient_penalty(lambda x, z: m.critic(x, z, audio)[0], [real, z_real], [fake, z_fake], alpha)
            else:
                gp = gradient_penalty(lambda x: m.critic(x, None, None)[0], [real], [fake], alpha)
            loss = loss + gp_scale * cfg.lambda_gp * gp
            logs["gp"] = gp
        if cfg.adversarial == "wgan-gp":
            logs["wasserstein"] = -adv
        return loss, _logs("D", **logs)

    def critic_gradient_norms(self, batch: dict[str, torch.Tensor], restored: tuple[torch.Tensor, torch.Tensor] | None,
                              alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        """``D/gradnorm_{real,fake,interp}``: the critic's input-gradient norm where the penalty looks (WGAN-GP with
        an AEG; else {}), on the D step's own inputs and interpolation weights. Logged at log steps only."""
        m = self.model
        if self.cfg.adversarial != "wgan-gp" or not self.adversarial:
            return {}
        real, audio = batch["face"], batch.get("audio")
        with torch.no_grad():
            fake, z_fake = self.generate(batch) if restored is None else (t.detach() for t in restored)
            z_real = m.aeg.encode(real) if m.conditions_on_latent else None
        if m.conditions_on_latent:
            norms = critic_gradient_norms(lambda x, z: m.critic(x, z, audio)[0], [real, z_real], [fake, z_fake], alpha)
        else:
            norms = critic_gradient_norms(lambda x: m.critic(x, None, None)[0], [real], [fake], alpha)
        return {f"D/gradnorm_{name}": value for name, value in norms.items()}

    def generator_terms(self, batch: dict[str, torch.Tensor], restored: tuple[torch.Tensor, torch.Tensor] | None = None
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Eq. 10 plus the direct denoising L1, as separately weighted terms whose sum is G's loss.

        ``restored``: :meth:`generate`'s output with its graph, when the loop computed it before the D step.
        Returns (terms, logs): ``terms`` maps adv | afc | rec | denoise to its weighted scalar (a term with
        weight 0 is left out), ``logs`` holds the unweighted values tagged ``G/...``.
        """
        if not self.adversarial:
            raise RuntimeError("the disc variant has no generator to train")
        m, cfg = self.model, self.cfg
        clean, audio, va = batch["face"], batch.get("audio"), batch["va"]
        fake, z_fake = self.generate(batch) if restored is None else restored
        fake_logits, va_fake = m.critic(fake, z_fake, audio)
        adv = generator_adversarial_loss(fake_logits, cfg.adversarial)
        afc, stats = self.affect(va_fake, va)
        # fp32 like the first pass's input (under bf16 autocast ``fake`` is bf16; the AEG's first conv casts
        # it back to bf16, so the values are the same): one compiled graph serves both passes
        cycled, _ = m.aeg(fake.float())
        rec = l1(clean, cycled)
        den = l1(clean, fake)
        weighted = {"adv": (cfg.lambda_adv, adv), "afc": (cfg.lambda_afc_g, afc), "rec": (cfg.lambda_rec, rec),
                    "denoise": (cfg.lambda_denoise, den)}
        terms = {name: w * value for name, (w, value) in weighted.items() if w > 0}
        logs = {"adv": adv, "afc": afc, "rec": rec, "denoise": den, **_affect_logs(stats)}
        return terms, _logs("G", **logs)

    def denoise_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Pre-training stage ``denoise``: L1(AEG(degraded), clean), the AEG alone, no discriminator."""
        if not self.adversarial:
            raise RuntimeError("the disc variant has no generator to pre-train")
        restored, _ = self.generate(batch)
        den = l1(batch["face"], restored)
        return den, _logs("G", denoise=den)


def _affect_logs(stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{name}_{dim}": stats[name][i] for name in ("ccc",) for i, dim in enumerate(("valence", "arousal"))}


def _logs(prefix: str, **values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Detached scalars tagged ``D/...`` or ``G/...``; turned into numbers only when they are logged."""
    return {f"{prefix}/{k}": v.detach() for k, v in values.items()}
