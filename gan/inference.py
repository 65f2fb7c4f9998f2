"""Inference over batches: validation during training and ``evaluate.py`` run this same code.

Batches are dicts of tensors (the sample contract); predictions follow the test-time path of docs/design.md ("Consistency rules")
(AEG cleans, CD scores the cleaned image with its z and the audio). Scores come from ``scoring/metrics.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.utils import make_grid

from gan.models import ALN
from scoring.image_quality import psnr_per_image, ssim_per_image
from scoring.metrics import score_va

#: TensorBoard / metrics.jsonl section of each extra V/A view of validation (the headline is ``val/``)
VIEW_TAGS = {
    "clean_input": "val_clean_input",        # CD on the clean face with its z: what D is trained on
    "degraded": "val_degraded",              # test path on the degraded face: AEG cleans it, CD scores
    "degraded_no_aeg": "val_degraded_no_aeg",  # CD straight on the degraded face with its z, no cleaning
}


def tune_for_fixed_shapes(device: torch.device) -> None:
    """On CUDA, let cuDNN time its convolution algorithms once per shape and keep the fastest.

    Every shape of training and scoring is fixed (one batch size, one image size; a split's last smaller
    batch adds one more), so the search is paid once; a no-op on CPU.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed for bf16); a no-op on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class Predictions:
    """Per-frame outputs of one pass over a split, in loader order."""

    pred: np.ndarray                      # (N, 2) valence, arousal
    gold: np.ndarray                      # (N, 2)
    videos: list[str] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    pred_degraded: np.ndarray | None = None   # (N, 2) on degraded inputs, when the batches carry them
    psnr_restored: float | None = None        # PSNR(AEG(degraded), clean)
    psnr_degraded: float | None = None        # PSNR(degraded, clean), the no-restoration reference
    ssim_restored: float | None = None
    ssim_degraded: float | None = None
    pred_clean_input: np.ndarray | None = None      # (N, 2) CD on the clean face with its z (no AEG pass)
    pred_degraded_no_aeg: np.ndarray | None = None  # (N, 2) CD on the degraded face with its z (no AEG pass)
    liking: tuple[np.ndarray, np.ndarray] | None = None   # (pred, gold) (N,) each, for models that predict it
    views_gold: np.ndarray | None = None      # (n, 2) gold of the views' frames when they are a subset, else None

    def scores(self, convention: str = "population") -> dict[str, dict[str, float]]:
        return score_va(self.pred, self.gold, convention)

    def view_scores(self, convention: str = "population") -> dict[str, dict[str, dict[str, float]]]:
        """Scores of each extra view against the gold of its frames (all, or the ``views_every`` subset)."""
        gold = self.gold if self.views_gold is None else self.views_gold
        return {view: score_va(pred, gold, convention) for view, pred in self.views().items()}

    def views(self) -> dict[str, np.ndarray]:
        """The extra V/A views that were computed, keyed as in :data:`VIEW_TAGS`."""
        views = {"clean_input": self.pred_clean_input, "degraded": self.pred_degraded,
                 "degraded_no_aeg": self.pred_degraded_no_aeg}
        return {k: v for k, v in views.items() if v is not None}


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@dataclass
class DegradedReference:
    """PSNR/SSIM of a split's fixed degraded faces against the clean ones: the same at every validation.

    The degraded faces of scoring (``data.samples.loaders.scoring_dataset``) are seeded by frame position, so
    these two numbers depend on the data alone. A validator computes them in its first pass and hands them to
    every later one, which then scores only the restored faces.
    """

    psnr: float
    ssim: float


Reduce = Callable[[torch.Tensor], torch.Tensor]


class _RestorationSums:
    """Per-image PSNR/SSIM summed on the model's device; one host copy at the end, none per batch.

    With ``every`` k > 1 only the frames at positions 0, k, 2k, ... of the whole pass are scored: a fixed
    subset whatever the batch size, so every validation scores the same frames. ``first`` is the position of
    this pass's first frame in the whole pass (a data-parallel rank scores one share of it).
    """

    def __init__(self, device: torch.device, with_degraded: bool, every: int = 1, first: int = 0):
        self.with_degraded, self.every = with_degraded, every
        self.sums = torch.zeros(5, dtype=torch.float64, device=device)   # 4 sums and the frame count
        self.frames, self.seen = 0, first

    def add(self, clean: torch.Tensor, degraded: torch.Tensor, restored: torch.Tensor | None) -> None:
        """One batch; ``restored`` None scores the degraded faces only (a reference)."""
        first = -self.seen % self.every   # the batch's first position on the subset
        self.seen += clean.shape[0]
        if self.every > 1:
            picks = slice(first, None, self.every)
            clean, degraded = clean[picks], degraded[picks]
            restored = restored[picks] if restored is not None else None
        if not clean.shape[0]:
            return
        self.sums[4] += clean.shape[0]
        if restored is not None:
            restored = restored.float().clamp(-1, 1)
            self.sums[0] += psnr_per_image(restored, clean).sum()
            self.sums[1] += ssim_per_image(restored, clean).sum()
        if self.with_degraded:
            self.sums[2] += psnr_per_image(degraded, clean).sum()
            self.sums[3] += ssim_per_image(degraded, clean).sum()
        self.frames += clean.shape[0]

    def means(self, reference: DegradedReference | None, reduce: Reduce | None = None) -> dict[str, float] | None:
        """Means over the scored frames (of every rank: ``reduce`` sums over ranks); None when there were none."""
        totals = reduce(self.sums) if reduce is not None else self.sums
        values = totals.tolist()
        if not values[4]:
            return None
        psnr_r, ssim_r, psnr_d, ssim_d = (v / values[4] for v in values[:4])
        if reference is not None:
            psnr_d, ssim_d = reference.psnr, reference.ssim
        return {"psnr_restored": psnr_r, "ssim_restored": ssim_r, "psnr_degraded": psnr_d, "ssim_degraded": ssim_d}


@torch.no_grad()
def predict_batches(model: ALN, batches: Iterable[dict], device: torch.device, amp: bool = True,
                    degraded_reference: DegradedReference | None = None, restoration_every: int = 1,
                    views_every: int = 1, first_position: int = 0, reduce: Reduce | None = None) -> Predictions:
    """Run the test-time path over ``batches``; also the other V/A views and, on degraded input, restoration.

    Views (see :data:`VIEW_TAGS`): the CD on the clean face with its own z (its training input), and, for
    batches with degraded faces, the test path on the degraded face and the CD on the degraded face without
    the AEG's cleaning. Restoration: PSNR and SSIM of the restored and of the degraded images against the
    clean ones (per image, averaged over frames), computed on ``device``; with ``degraded_reference`` (the
    same degraded faces scored before) the degraded ones are taken from it instead of being recomputed.
    ``views_every`` k > 1 computes the views, and restoration, on the frames at positions 0, k, 2k, ... of the
    pass only (``train.views_every``: a fixed subset whatever the batch size; they cost 1 AEG and 3 CD passes
    per frame, the headline 1 and 1). ``restoration_every`` r > 1 scores restoration on every r-th of those.
    The headline V/A predictions always cover every frame (the official protocol).
    Data-parallel validation: ``batches`` are one rank's contiguous share of the pass, starting at frame
    ``first_position`` (which keeps both subsets those of the whole pass), and ``reduce`` sums the restoration
    scores over ranks (a collective: every rank calls it, also with no frame of its own).
    Everything stays on ``device`` until the pass ends. Without an AEG the views coincide with the headline.
    """
    was_training = model.training
    model.eval()
    out: dict[str, list] = {k: [] for k in ("pred", "gold", "clean_input", "degraded", "degraded_no_aeg", "views_gold")}
    first_view = first_position if views_every == 1 else -(-first_position // views_every)
    restoration = _RestorationSums(device, with_degraded=degraded_reference is None, every=restoration_every,
                                   first=first_view)
    videos, frames = [], []
    seen = first_position
    try:
        for batch in batches:
            videos.extend(batch.get("video", []))
            frames.extend(int(f) for f in batch.get("frame", []))
            batch = _to(batch, device)
            face, audio, va = batch["face"], batch.get("audio"), batch["va"]
            picks = slice(-seen % views_every, None, views_every)   # this batch's frames of the views' subset
            seen += face.shape[0]
            with autocast(device, amp):
                restored, z = model.clean(face)
                out["pred"].append(model.critic(restored, z, audio)[1].float())
                if views_every > 1:
                    face, z, va = face[picks], z[picks] if z is not None else None, va[picks]
                    audio = audio[picks] if audio is not None else None
                    out["views_gold"].append(va.float())
                if face.shape[0]:
                    # the z of the clean face is the one its AEG pass just computed
                    out["clean_input"].append(model.critic(face, z, audio)[1].float())
                if "face_degraded" in batch and face.shape[0]:
                    degraded = batch["face_degraded"][picks] if views_every > 1 else batch["face_degraded"]
                    restored_deg, z_deg = model.clean(degraded)
                    out["degraded"].append(model.critic(restored_deg, z_deg, audio)[1].float())
                    out["degraded_no_aeg"].append(model.critic(degraded, z_deg, audio)[1].float())
                    restoration.add(face.float(), degraded.float(), restored_deg)
            out["gold"].append(batch["va"].float())
    finally:
        model.train(was_training)
    cat = {k: torch.cat(v).cpu().numpy() if v else None for k, v in out.items()}
    result = Predictions(cat["pred"], cat["gold"], videos, frames, pred_clean_input=cat["clean_input"],
                         views_gold=cat["views_gold"])
    result.pred_degraded, result.pred_degraded_no_aeg = cat["degraded"], cat["degraded_no_aeg"]
    means = restoration.means(degraded_reference, reduce) if reduce is not None or restoration.frames else None
    for key, value in (means or {}).items():
        setattr(result, key, value)
    return result


@torch.no_grad()
def predict_corrupted(models: list[ALN], batches: Iterable[dict], device: torch.device, amp: bool = True,
                      restoration_every: int = 1, cleans: Sequence[bool] | None = None
                      ) -> tuple[list[Predictions], DegradedReference | None]:
    """The test-time path of several models on the same faces: one pass of the data for all of them.

    The robustness protocol reads and corrupts each frame once and hands the batch to every model. A model's
    input is ``face_degraded`` when the batches carry it (a corruption), else ``face`` (the clean condition,
    whose predictions are then exactly :func:`predict_batches`' headline ones). Per model: V/A on every frame and,
    for models with an AEG, PSNR/SSIM of its output against the clean face (every ``restoration_every``-th
    frame, as validation does); the returned reference is the input's own PSNR/SSIM (None when clean).

    ``cleans[k]`` False scores model ``k`` without its cleaning pass: the CD on the input itself, with the ``z`` of
    that input (the no-AEG path; validation's ``degraded_no_aeg`` view). A model may be listed twice, once each
    way; its AEG then runs once per batch.
    """
    cleans = [True] * len(models) if cleans is None else list(cleans)
    states = [m.training for m in models]
    for m in models:
        m.eval()
    preds: list[list[torch.Tensor]] = [[] for _ in models]
    sums = [_RestorationSums(device, with_degraded=False, every=restoration_every) for _ in models]
    reference = _RestorationSums(device, with_degraded=True, every=restoration_every)
    gold, videos, frames = [], [], []
    corrupted = False
    try:
        for batch in batches:
            videos.extend(batch.get("video", []))
            frames.extend(int(f) for f in batch.get("frame", []))
            batch = _to(batch, device)
            face, audio = batch["face"], batch.get("audio")
            corrupted = "face_degraded" in batch
            inp = batch["face_degraded"] if corrupted else face
            with autocast(device, amp):
                cleaned: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
                for k, model in enumerate(models):
                    if id(model) not in cleaned:
                        cleaned[id(model)] = model.clean(inp)
                    restored, z = cleaned[id(model)]
                    preds[k].append(model.critic(restored if cleans[k] else inp, z, audio)[1].float())
                    if model.aeg is not None and cleans[k]:
                        sums[k].add(face.float(), inp.float(), restored)
            if corrupted:
                reference.add(face.float(), inp.float(), None)
            gold.append(batch["va"].float())
    finally:
        for m, state in zip(models, states, strict=True):
            m.train(state)
    gold_np = torch.cat(gold).cpu().numpy()
    results = []
    for pred, restoration in zip(preds, sums, strict=True):
        result = Predictions(torch.cat(pred).cpu().numpy(), gold_np, list(videos), list(frames))
        if restoration.frames:
            means = restoration.means(None)
            result.psnr_restored, result.ssim_restored = means["psnr_restored"], means["ssim_restored"]
        results.append(result)
    if not corrupted or not reference.frames:
        return results, None
    means = reference.means(None)
    return results, DegradedReference(means["psnr_degraded"], means["ssim_degraded"])


@torch.no_grad()
def restoration_scores(model: ALN, sets: dict[str, tuple[torch.Tensor, torch.Tensor]], device: torch.device,
                       batch_size: int = 128, degraded_reference: dict[str, DegradedReference] | None = None,
                       share: Callable[[int], range] | None = None, reduce: Reduce | None = None,
                       amp: bool = False) -> dict[str, dict[str, float]]:
    """PSNR and SSIM of degraded and restored faces against the clean ones, per artefact set.

    ``sets`` maps an artefact name (blur, noise, downscale, colour, all) to (clean, degraded) batches in
    [-1, 1] (see ``data.samples.loaders.restoration_sets``). Returns ``{artefact: {"psnr_degraded", "psnr_restored",
    "ssim_degraded", "ssim_restored"}}``; without an AEG the restored face is the degraded one. The degraded
    scores come from ``degraded_reference`` (:func:`degraded_references` of the same sets) when given.
    Data-parallel: ``share(n)`` is this rank's range of a set's n frames and ``reduce`` sums over ranks.
    ``amp``: the AEG under the same autocast as validation's pass (on CUDA one compiled graph serves both).
    """
    degraded_reference = degraded_reference or {}
    was_training = model.training
    model.eval()
    table = {}
    try:
        for name, (clean, degraded) in sets.items():
            reference = degraded_reference.get(name)
            sums = _RestorationSums(device, with_degraded=reference is None)
            for c, d in _set_batches(clean, degraded, device, batch_size, share):
                with autocast(device, amp):
                    restored = model.clean(d)[0]
                sums.add(c, d, restored)
            table[name] = sums.means(reference, reduce)
    finally:
        model.train(was_training)
    return table


def _set_batches(clean: torch.Tensor, degraded: torch.Tensor, device: torch.device, batch_size: int,
                 share: Callable[[int], range] | None):
    rows = share(len(degraded)) if share is not None else range(len(degraded))
    for i in range(rows.start, rows.stop, batch_size):
        j = min(i + batch_size, rows.stop)
        yield clean[i:j].to(device), degraded[i:j].to(device)


def degraded_references(sets: dict[str, tuple[torch.Tensor, torch.Tensor]], device: torch.device,
                        batch_size: int = 128, share: Callable[[int], range] | None = None,
                        reduce: Reduce | None = None) -> dict[str, DegradedReference]:
    """Degraded-vs-clean PSNR/SSIM of each restoration set: they need no model, so a validator computes them once."""
    table = {}
    for name, (clean, degraded) in sets.items():
        sums = _RestorationSums(device, with_degraded=True)
        for c, d in _set_batches(clean, degraded, device, batch_size, share):
            sums.add(c, d, None)
        row = sums.means(None, reduce)
        table[name] = DegradedReference(row["psnr_degraded"], row["ssim_degraded"])
    return table


def flat_restoration_tags(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """``restoration/psnr_restored_blur``-style scalar tags of a :func:`restoration_scores` table."""
    return {f"restoration/{metric}_{name}": value for name, row in table.items() for metric, value in row.items()}


@torch.no_grad()
def restoration_grid(model: ALN, batch: dict, device: torch.device) -> torch.Tensor:
    """Image grid of a fixed batch, one column per face, rows clean | degraded | restored | cycle.

    Returns a (3, H', W') float tensor in [0, 1] for TensorBoard's ``add_image``. Without an AEG
    (variant ``disc``) the restored and cycle rows repeat the degraded input.
    """
    was_training = model.training
    model.eval()
    try:
        clean = batch["face"].to(device)
        degraded = batch.get("face_degraded", batch["face"]).to(device)
        restored, _ = model.clean(degraded)
        cycled, _ = model.clean(restored)
    finally:
        model.train(was_training)
    rows = torch.cat([clean, degraded, restored, cycled]).float().clamp(-1, 1).cpu()
    return make_grid(rows, nrow=clean.shape[0], normalize=True, value_range=(-1, 1), pad_value=1.0)
