"""Progressive training: the stages of one run, their step ranges and what each of them trains.

The paper trains its models progressively (§III-E: "we first train both generator and discriminator
together, and proceed by adding the extracted latent z alongside the audio"; §V: "progressive training on
our generator"), and its degradations come from the authors' denoising auto-encoder work, which pre-trains
the auto-encoder on a direct reconstruction loss. A run is therefore a list of stages::

    train.stages: [{variant: denoise, steps: 300}, {variant: aeg_cd, steps: 500}, {variant: aeg_cd_sz}]
    train.stages: [{variant: denoise, share: 0.6}, {variant: aeg_cd, share: 0.1}, {variant: aeg_cd_sz}]

A stage's length is ``steps`` iterations, or its ``share`` of ``train.max_steps`` (rounded, at least 1), so
a preset written in shares keeps its proportions when ``train.max_steps`` changes (a quick run of 200
steps, or a test of 8).

* ``denoise`` trains the AEG alone on L1(AEG(degraded), clean); no discriminator step.
* ``disc`` | ``disc_aug`` | ``aeg_cd`` | ``aeg_cd_sz`` train the ALN variant of that name (D and G steps).

Each stage starts from the previous stage's weights (``ALN.start_from_stage``: new inputs start as exact
no-ops, so the first outputs of a stage equal the last outputs of the one before). Steps are global: stage
*k* covers iterations ``[start, end)``; the last stage's ``steps`` may be 0, meaning "until
``train.max_steps``", so a longer run only needs a larger ``train.max_steps``. Without stages a run is one
stage of ``model.variant`` from scratch.

Example:
    >>> plan = plan_stages([StageConfig("denoise", 10), StageConfig("aeg_cd_sz")], "aeg_cd_sz", 30)
    >>> [(s.variant, s.start, s.end) for s in plan]
    [('denoise', 0, 10), ('aeg_cd_sz', 10, 30)]
    >>> stage_at(plan, 10).variant
    'aeg_cd_sz'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gan.models import VARIANTS

STAGE_VARIANTS = ("denoise", *VARIANTS)


@dataclass
class StageConfig:
    """One stage as written in the config."""

    variant: str = "aeg_cd_sz"   # denoise | disc | disc_aug | aeg_cd | aeg_cd_sz
    steps: int = 0               # iterations of this stage; 0 (last stage only) = until train.max_steps
    share: float = 0.0           # instead of steps: this share of train.max_steps (rounded, at least 1)
    lr: float = 0.0              # learning rate of this stage's optimisers; 0 = train.lr_g / train.lr_d


@dataclass(frozen=True)
class Stage:
    """One stage of the resolved plan: iterations ``start`` (inclusive) to ``end`` (exclusive)."""

    index: int
    variant: str
    start: int
    end: int
    is_last: bool
    lr: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.index}-{self.variant}"

    @property
    def model_variant(self) -> str:
        """The ALN variant built for this stage (a denoise stage carries an untrained aeg_cd critic)."""
        return "aeg_cd" if self.variant == "denoise" else self.variant

    @property
    def trains_critic(self) -> bool:
        return self.variant != "denoise"

    @property
    def steps(self) -> int:
        return self.end - self.start


def plan_stages(stages: Sequence[StageConfig], model_variant: str, max_steps: int) -> list[Stage]:
    """Resolve the configured stages into step ranges, or raise ValueError naming what is wrong."""
    if not stages:
        return [Stage(0, model_variant, 0, max_steps, True)]
    for k, stage in enumerate(stages):
        if stage.variant not in STAGE_VARIANTS:
            raise ValueError(f"train.stages[{k}].variant must be one of {STAGE_VARIANTS}, got {stage.variant!r}")
        if stage.lr < 0:
            raise ValueError(f"train.stages[{k}].lr must be >= 0 (0 = train.lr_g / train.lr_d), got {stage.lr}")
        if not 0 <= stage.share < 1:
            raise ValueError(f"train.stages[{k}].share must be in [0, 1) (a share of train.max_steps), got {stage.share}")
        if stage.steps and stage.share:
            raise ValueError(f"train.stages[{k}] gives both steps ({stage.steps}) and share ({stage.share}); give one")
        if stage.steps < 0 or (stage.steps == 0 and not stage.share and k < len(stages) - 1):
            raise ValueError(f"train.stages[{k}].steps must be > 0, or share > 0 (only the last stage may leave "
                             f"both 0: until train.max_steps), got {stage.steps}")
    last = stages[-1]
    if last.variant != model_variant:
        raise ValueError(f"the last stage trains {last.variant!r} but model.variant is {model_variant!r}; "
                         "model.variant names the model a run ends with, so they must agree (set "
                         f"train.stages=[] to train {model_variant} alone from scratch, or give stages ending with it)")
    lengths = [s.steps or (max(1, round(s.share * max_steps)) if s.share else 0) for s in stages]
    earlier = sum(lengths[:-1])
    if earlier >= max_steps:
        raise ValueError(f"train.stages before the last take {earlier} steps, leaving none of "
                         f"train.max_steps={max_steps} for the last stage")
    if lengths[-1] and earlier + lengths[-1] != max_steps:
        raise ValueError(f"train.stages add up to {earlier + lengths[-1]} steps but train.max_steps is {max_steps}; "
                         "set the last stage's steps to 0 (until train.max_steps) or make them agree")
    plan, start = [], 0
    for k, stage in enumerate(stages):
        end = start + lengths[k] if k < len(stages) - 1 else max_steps
        plan.append(Stage(k, stage.variant, start, end, k == len(stages) - 1, stage.lr))
        start = end
    return plan


def stage_at(plan: Sequence[Stage], step: int) -> Stage:
    """The stage that trains iteration ``step + 1`` (after ``step`` completed iterations); the last at the end."""
    for stage in plan:
        if step < stage.end:
            return stage
    return plan[-1]
