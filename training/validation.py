"""Validation during training: V/A scores, the extra views, restoration scores and the image grid.

It runs the same inference code as ``evaluate.py`` (``gan.inference``) on the same scoring dataset
(``data.samples.loaders.scoring_dataset``), so a validation number and an evaluation number of one
checkpoint agree.

In a data-parallel job every rank validates: each scores a contiguous share of the validation frames (and
of each restoration set), the predictions are gathered into the whole split in order and the restoration
sums added over ranks, so every rank ends with the scores one process computes (up to summation order) and
none waits inside a collective while another validates alone. Rank 0 writes the logs, the histograms and
the image grid.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Subset

from data.samples.loaders import DataConfig, collate, eval_loader, restoration_sets, scoring_dataset
from gan.inference import (
    VIEW_TAGS,
    DegradedReference,
    Predictions,
    degraded_references,
    flat_restoration_tags,
    predict_batches,
    restoration_grid,
    restoration_scores,
)
from gan.models import ALN
from runconfig import TrainSection
from training.distributed import Distributed
from training.run_folder import RunLog


class Validator:
    """The fixed validation inputs of a run and one pass over them per call."""

    def __init__(self, train: TrainSection, data: DataConfig, image_size: int, val_split, device: torch.device,
                 dist: Distributed | None = None):
        """``train``'s validation settings (restoration frames, views, grid, autocast), ``data``'s loader and
        degradations, the model's ``image_size``."""
        dcfg, size = data, image_size
        degrade = dcfg.degrade if dcfg.degrade.enabled else None
        self.train, self.data, self.device, self.dist = train, data, device, dist or Distributed()
        self.val_set = scoring_dataset(val_split, size, degrade)
        self.scores_degraded = degrade is not None   # batches carry degraded faces: the degraded views exist
        frames = train.restoration_frames
        self.restoration_sets = restoration_sets(val_split, size, degrade, frames) if degrade and frames else {}
        # the degraded faces are fixed, so their scores are computed by the first validation and then reused
        self.degraded_reference: DegradedReference | None = None
        self.restoration_reference: dict[str, DegradedReference] | None = None
        grid_idx = np.linspace(0, len(self.val_set) - 1, min(train.grid_size, len(self.val_set))).astype(int)
        self.grid_batch = collate([self.val_set[int(i)] for i in grid_idx])

    def run(self, model: ALN, step: int, stage_index: int, runlog: RunLog | None, affect: bool = True
            ) -> dict[str, dict[str, float]]:
        """Score ``model``, log everything at ``step`` (``runlog``: rank 0's) and return the headline scores.

        ``affect`` False (a ``denoise`` stage, whose CD is not trained yet): the restoration sets and the
        image grid only, and no scores are returned.
        """
        values: dict[str, float] = {}
        scores: dict[str, dict[str, float]] = {}
        if affect:
            scores = self._affect(model, step, runlog, values)
        if self.restoration_sets:
            batch_size, share, reduce = self.data.eval_batch_size, self.dist.share, self.dist.sum
            if self.restoration_reference is None:
                self.restoration_reference = degraded_references(self.restoration_sets, self.device, batch_size,
                                                                 share, reduce)
            table = restoration_scores(model, self.restoration_sets, self.device, batch_size,
                                       self.restoration_reference, share, reduce, amp=self.train.amp)
            values.update(flat_restoration_tags(table))
        if runlog is not None:
            values["stage"] = stage_index
            runlog.scalars(step, values)
            runlog.writer.add_image("val/restoration_clean_degraded_restored_cycle",
                                    restoration_grid(model, self.grid_batch, self.device), step)
        return scores

    def _affect(self, model: ALN, step: int, runlog: RunLog | None, values: dict[str, float]
                ) -> dict[str, dict[str, float]]:
        """The pass over every validation frame: headline V/A, the views, val/psnr_* and the histograms."""
        t = self.train
        frames = self.dist.share(len(self.val_set))
        part = self.val_set if self.dist.world_size == 1 else Subset(self.val_set, frames)
        loader = eval_loader(part, self.data.eval_batch_size, self.data.num_workers)
        preds = predict_batches(model, loader, self.device, t.amp, self.degraded_reference, t.restoration_every,
                                t.views_every, first_position=frames.start,
                                reduce=self.dist.sum if self.dist.enabled else None)
        preds = self._gathered(preds)
        if preds.psnr_degraded is not None and self.degraded_reference is None:
            self.degraded_reference = DegradedReference(preds.psnr_degraded, preds.ssim_degraded)
        if not np.isfinite(preds.pred).all():
            raise FloatingPointError(f"validation predictions are not finite at step {step}")
        scores = preds.scores("population")
        values.update({f"val/{m}_{dim}": scores[dim][m] for dim in scores for m in ("ccc", "pcc", "rmse")})
        for view, view_scores in preds.view_scores().items():
            values.update({f"{VIEW_TAGS[view]}/ccc_{dim}": s["ccc"] for dim, s in view_scores.items()})
        if preds.psnr_restored is not None:
            values.update({"val/psnr_restored": preds.psnr_restored, "val/psnr_degraded": preds.psnr_degraded,
                           "val/ssim_restored": preds.ssim_restored, "val/ssim_degraded": preds.ssim_degraded})
        if runlog is not None:
            runlog.writer.add_histogram("val/pred_valence", preds.pred[:, 0], step)
            runlog.writer.add_histogram("val/pred_arousal", preds.pred[:, 1], step)
        return scores

    def _gathered(self, preds: Predictions) -> Predictions:
        """This rank's predictions joined with every other rank's, in frame order (one process: as they are)."""
        if not self.dist.enabled:
            return preds
        n, k, d = len(self.val_set), self.train.views_every, self.dist
        shares = [Distributed(r, d.world_size).share(n) for r in range(d.world_size)]
        frame_counts = [len(r) for r in shares]
        view_counts = [len(range(-(-r.start // k) * k, r.stop, k)) for r in shares]

        def joined(array: np.ndarray | None, counts: list[int]) -> np.ndarray | None:
            """Every rank calls this for the same fields (a collective), also with no rows of its own."""
            rows = np.zeros((0, 2), np.float32) if array is None else np.ascontiguousarray(array, dtype=np.float32)
            gathered = d.gather_rows(torch.from_numpy(rows).to(self.device).reshape(-1, 2), counts)
            return gathered.cpu().numpy() if sum(counts) else None

        preds.pred, preds.gold = joined(preds.pred, frame_counts), joined(preds.gold, frame_counts)
        views = view_counts if k > 1 else frame_counts
        fields = ["pred_clean_input"] + (["views_gold"] if k > 1 else [])
        fields += ["pred_degraded", "pred_degraded_no_aeg"] if self.scores_degraded else []
        for field in fields:
            setattr(preds, field, joined(getattr(preds, field), views))
        return preds
