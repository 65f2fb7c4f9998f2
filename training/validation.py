"""Validation during training: V/A scores, the extra views, restoration scores and the image grid.

It runs the same inference code as ``evaluate.py`` (``gan.evaluation``) on the same scoring dataset
(``data.samples.loaders.scoring_dataset``), so a validation number and an evaluation number of one
checkpoint agree.
"""

from __future__ import annotations

import numpy as np
import torch

from data.samples.loaders import collate, eval_loader, restoration_sets, scoring_dataset
from gan.evaluation import (
    VIEW_TAGS,
    DegradedReference,
    degraded_references,
    flat_restoration_tags,
    predict_batches,
    restoration_grid,
    restoration_scores,
)
from gan.models import ALN
from runconfig import RunConfig
from training.run_folder import RunLog


class Validator:
    """The fixed validation inputs of a run and one pass over them per call."""

    def __init__(self, cfg: RunConfig, val_split, device: torch.device):
        dcfg, size = cfg.data, cfg.model.image_size
        degrade = dcfg.degrade if dcfg.degrade.enabled else None
        self.cfg, self.device = cfg, device
        self.val_set = scoring_dataset(val_split, size, degrade)
        frames = cfg.train.restoration_frames
        self.restoration_sets = restoration_sets(val_split, size, degrade, frames) if degrade and frames else {}
        # the degraded faces are fixed, so their scores are computed by the first validation and then reused
        self.degraded_reference: DegradedReference | None = None
        self.restoration_reference: dict[str, DegradedReference] | None = None
        grid_idx = np.linspace(0, len(self.val_set) - 1, min(cfg.train.grid_size, len(self.val_set))).astype(int)
        self.grid_batch = collate([self.val_set[int(i)] for i in grid_idx])

    def run(self, model: ALN, step: int, stage_index: int, runlog: RunLog, affect: bool = True
            ) -> dict[str, dict[str, float]]:
        """Score ``model``, log everything at ``step`` and return the headline scores per dimension.

        ``affect`` False (a ``denoise`` stage, whose CD is not trained yet): the restoration sets and the
        image grid only, and no scores are returned.
        """
        values: dict[str, float] = {}
        scores: dict[str, dict[str, float]] = {}
        if affect:
            scores = self._affect(model, step, runlog, values)
        if self.restoration_sets:
            batch_size = self.cfg.data.eval_batch_size
            if self.restoration_reference is None:
                self.restoration_reference = degraded_references(self.restoration_sets, self.device, batch_size)
            table = restoration_scores(model, self.restoration_sets, self.device, batch_size,
                                       self.restoration_reference)
            values.update(flat_restoration_tags(table))
        values["stage"] = stage_index
        runlog.scalars(step, values)
        runlog.writer.add_image("val/restoration_clean_degraded_restored_cycle",
                                restoration_grid(model, self.grid_batch, self.device), step)
        return scores

    def _affect(self, model: ALN, step: int, runlog: RunLog, values: dict[str, float]) -> dict[str, dict[str, float]]:
        """The pass over every validation frame: headline V/A, the views, val/psnr_* and the histograms."""
        loader = eval_loader(self.val_set, self.cfg.data.eval_batch_size, self.cfg.data.num_workers)
        preds = predict_batches(model, loader, self.device, self.cfg.train.amp, self.degraded_reference,
                                self.cfg.train.restoration_every, self.cfg.train.views_every)
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
        runlog.writer.add_histogram("val/pred_valence", preds.pred[:, 0], step)
        runlog.writer.add_histogram("val/pred_arousal", preds.pred[:, 1], step)
        return scores
