"""One training iteration of ALN and the per-stage state it updates (model, objective, optimisers).

An iteration is one D step; every ``train.n_critic``-th iteration is also a G step (StarGAN's schedule);
a ``denoise`` stage trains the AEG alone on the denoising L1. Learning rates are a pure function of the
step, so a checkpoint needs no scheduler state; so are the gradient penalty's interpolation weights, drawn
for the global batch from (seed, step), so every process of a data-parallel job and a resumed run draw
the same ones. In data-parallel training each process runs this same code on its shard of the global
batch, and :class:`~training.distributed.GradientAverage` averages the gradients during every backward.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from gan.checkpoint import load_checkpoint, load_weights
from gan.inference import autocast
from gan.losses import term_gradient_norms
from gan.models import ALN, ModelConfig, set_requires_grad
from gan.objective import ALNObjective, LossConfig
from gan.stages import Stage
from runconfig import TrainSection
from training.distributed import Distributed

log = logging.getLogger(__name__)


_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """Chris Wellons' ``lowbias32`` integer hash on 32-bit values held in int64 (products wrap; low bits kept)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def uniform_hash(n: int, key: int, device: torch.device) -> torch.Tensor:
    """``n`` float32 numbers in [0, 1), a pure function of (``key``, position), computed on ``device``.

    No generator state and no host data: the same values on CPU, CUDA and every process.
    """
    x = (torch.arange(n, device=device, dtype=torch.int64) * 0x9E3779B1 + key) & _MASK32
    x = _mix32(_mix32(x) ^ key)
    return (x >> 8).to(torch.float32) * (1.0 / (1 << 24))


def lr_factor(step: int, max_steps: int, decay_from: float) -> float:
    """1 until ``decay_from * max_steps``, then linear to 0 at ``max_steps`` (StarGAN's schedule)."""
    start = int(decay_from * max_steps)
    if step < start or max_steps <= start:
        return 1.0
    return max(0.0, (max_steps - step) / (max_steps - start))


class ALNStepper:
    """The model, objective and optimisers of the current stage, and the iteration that updates them."""

    def __init__(self, train: TrainSection, model: ModelConfig, loss: LossConfig, seed: int, audio_dim: int,
                 balance: torch.Tensor, device: torch.device, dist: Distributed | None = None):
        """The sections it uses (``train``, ``model``, ``loss``, and the run's ``seed`` for the penalty's draws),
        the audio vector's width, the class-balance table of the training labels, the device, the job."""
        self.train, self.model_config, self.loss, self.seed = train, model, loss, seed
        self.audio_dim, self.balance, self.device = audio_dim, balance, device
        self.dist = dist or Distributed()
        self.shard = self.dist.shard(train.batch_size)

    def build_stage(self, stage: Stage, previous: ALN | None = None) -> None:
        """The model, objective and optimisers of ``stage``; from ``previous``'s weights when given."""
        self.stage = stage
        mcfg = dataclasses.replace(self.model_config, variant=stage.model_variant)
        self.model = ALN(mcfg, self.audio_dim).to(self.device)
        if self.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if previous is not None:
            copied, fresh = self.model.start_from_stage(previous.state_dict())
            log.info("stage %s: %d tensors from the previous stage, %d new (%s)", stage.name, copied, len(fresh),
                     ", ".join(fresh[:4]) + (" ..." if len(fresh) > 4 else ""))
        self.dist.broadcast_module(self.model)   # every process starts the stage from rank 0's weights
        self.objective = ALNObjective(self.model, self.loss, self.balance.to(self.device), self.dist.gather)
        t = self.train
        betas = (t.beta1, t.beta2)
        self.opt_d = (torch.optim.Adam(self.model.cd.parameters(), lr=t.lr_d, betas=betas)
                      if stage.trains_critic else None)
        self.opt_g = (torch.optim.Adam(self.model.aeg.parameters(), lr=t.lr_g, betas=betas)
                      if self.model.aeg else None)
        self.averages = {id(net): self.dist.gradient_average(net.parameters())
                         for net in (self.model.cd if stage.trains_critic else None, self.model.aeg) if net}
        # values of the latest G step (G/...) and penalty step (D/gp), repeated at log steps until the next one
        self.sparse_logs: dict[str, torch.Tensor] = {}
        if t.compile:
            self._compile()

    def next_stage(self, stage: Stage) -> None:
        """Stage boundary: build ``stage``'s model from this one's weights, with fresh optimisers."""
        self.build_stage(stage, self.model)

    def _compile(self) -> None:
        """Compile the AEG; the CD too unless WGAN-GP needs its double backward, which compile lacks."""
        self.model.aeg.compile() if self.model.aeg else None
        if self.loss.adversarial != "wgan-gp" or not self.model.aeg:
            self.model.cd.compile()

    def state_dict(self) -> dict:
        """What a checkpoint needs of the stage: its index and variant, weights, optimisers, latest G logs."""
        return {
            "stage": self.stage.index,
            "variant": self.stage.model_variant,   # the weights' variant (config's model.variant is the run's last)
            "audio_dim": self.audio_dim,
            "model": self.model.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else {},
            "opt_g": self.opt_g.state_dict() if self.opt_g else {},
            "sparse_logs": {k: float(v) for k, v in self.sparse_logs.items()},
        }

    def load_state_dict(self, ckpt: dict, source: str) -> None:
        load_weights(self.model, ckpt["model"], source)
        if self.opt_d:
            self.opt_d.load_state_dict(ckpt["opt_d"])
        if self.opt_g:
            self.opt_g.load_state_dict(ckpt["opt_g"])
        self.sparse_logs = {k: torch.tensor(v, device=self.device) for k, v in ckpt.get("sparse_logs", {}).items()}

    def start_from(self, path: str) -> None:
        """``run.init_from``: this stage's model from an earlier stage's checkpoint (progressive training by hand)."""
        copied, fresh = self.model.start_from_stage(load_checkpoint(path)["model"])
        self.dist.broadcast_module(self.model)
        log.info("initialised %d tensors from %s; %d new (%s)", copied, path, len(fresh),
                 ", ".join(fresh[:4]) + (" ..." if len(fresh) > 4 else ""))

    def learning_rate(self) -> float:
        """The current LR of the stage's main optimiser (D's; G's in a denoise stage), for the logs."""
        return (self.opt_d or self.opt_g).param_groups[0]["lr"]

    def set_learning_rates(self, step: int) -> None:
        """Per-stage schedule, a pure function of the step (stored in every checkpoint): no scheduler state."""
        t, stage = self.train, self.stage
        factor = lr_factor(step - stage.start, stage.steps, t.lr_decay_from)
        for opt, base in ((self.opt_d, stage.lr or t.lr_d), (self.opt_g, stage.lr or t.lr_g)):
            for group in opt.param_groups if opt else ():
                group["lr"] = base * factor

    def gp_alpha(self, step: int) -> torch.Tensor:
        """This process's share of the penalty's (B,) interpolation weights at ``step``: a function of (seed, step).

        Drawn on the training device by a counter-based hash (:func:`uniform_hash`) rather than a CPU
        generator, whose numbers would have to be copied to the GPU in the middle of every penalised step;
        the same numbers on every device and every rank, so a resumed or a data-parallel run draws the same.
        """
        key = (self.seed * 1_000_003 + step) & 0xFFFFFFFF
        return uniform_hash(self.train.batch_size, key, self.device)[self.shard]

    def train_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """Iteration ``step + 1``: a D step, and a G step every n_critic iterations (denoise stage: an AEG step)."""
        m, obj, t, k = self.model, self.objective, self.train, self.loss.gp_every
        self.set_learning_rates(step)
        if t.channels_last:
            batch = {key: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4 else v
                     for key, v in batch.items()}
        if not self.stage.trains_critic:
            with autocast(self.device, t.amp):
                loss, logs = obj.denoise_loss(batch)
            self._step(self.opt_g, loss, m.aeg)
            return logs
        g_step = m.aeg is not None and (step + 1) % t.n_critic == 0
        with autocast(self.device, t.amp):
            # G's weights do not change during the D step: its forward pass serves both steps
            restored = obj.generate(batch) if g_step else None
            penalty = step % k == 0
            d_loss, logs = obj.discriminator_loss(batch, restored, self.gp_alpha(step) if penalty else None,
                                                  gp_scale=k if penalty else 0)
        self._step(self.opt_d, d_loss, m.cd)
        logs["D/loss"] = d_loss.detach()
        if (step + 1) % t.log_every == 0 or step + 1 == self.stage.end:   # a log step: where the critic's slope is
            with autocast(self.device, t.amp):
                logs.update(obj.critic_gradient_norms(batch, restored, self.gp_alpha(step)))
        if "D/gp" in logs:
            self.sparse_logs["D/gp"] = logs.pop("D/gp")
        if g_step:
            set_requires_grad(m.cd, False)
            with autocast(self.device, t.amp):
                terms, g_logs = obj.generator_terms(batch, restored)
            g_loss = sum(terms.values())
            if self._last_g_step_before_log(step):
                g_logs.update(term_gradient_norms(terms, list(m.aeg.parameters()), reduce=self.dist.vector_mean))
            self._step(self.opt_g, g_loss, m.aeg)
            set_requires_grad(m.cd, True)
            g_logs["G/loss"] = g_loss.detach()
            self.sparse_logs.update(g_logs)
        logs.update(self.sparse_logs)   # the latest G step's and penalty's values, so every log step shows them
        return logs

    def _step(self, optimiser: torch.optim.Optimizer, loss: torch.Tensor, network: torch.nn.Module) -> None:
        """Backward with the gradients averaged over processes as it goes, optimiser step."""
        optimiser.zero_grad(set_to_none=True)
        with self.averages[id(network)].during_backward():
            loss.backward()
        optimiser.step()

    def _last_g_step_before_log(self, step: int) -> bool:
        """True for the G step after which no other G step comes before the next log step."""
        t = self.train
        done = step + 1
        next_log = min(-(-done // t.log_every) * t.log_every, self.stage.end)
        return next_log - done < t.n_critic
