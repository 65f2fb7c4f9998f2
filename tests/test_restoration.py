"""Restoration scores: the fixed per-artefact validation sets and the PSNR/SSIM table built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data.datasets.demo import DemoSpec
from data.samples.degrade import DegradeConfig
from data.samples.loaders import DataConfig, load_split, restoration_sets
from gan.inference import flat_restoration_tags, restoration_scores
from scoring.metrics import psnr, ssim


@pytest.fixture(scope="module")
def val_split(tmp_path_factory):
    cfg = DataConfig(root=str(tmp_path_factory.mktemp("demo") / "data"), num_workers=0,
                     demo=DemoSpec(num_train=2, num_val=2, frames=20, size=32))
    split, _ = load_split(cfg, "val")
    return split


def test_sets_degrade_each_artefact_alone_and_are_fixed(val_split):
    sets = restoration_sets(val_split, 32, DegradeConfig(), frames=12)
    assert set(sets) == {"blur", "noise", "downscale", "colour", "all", "clean"}
    assert torch.equal(sets["clean"][1], sets["clean"][0])
    clean = sets["blur"][0]
    assert clean.shape == (12, 3, 32, 32) and all(torch.equal(c, clean) for c, _ in sets.values())
    for name, (c, degraded) in sets.items():
        if name == "clean":
            continue
        # every frame is degraded (no clean share), and each artefact leaves its own trace
        per_image = (degraded - c).abs().flatten(1).mean(1)
        assert (per_image > 0).all(), name
    colour_shift = (sets["colour"][1].mean((2, 3)) - clean.mean((2, 3))).abs().mean()
    blur_shift = (sets["blur"][1].mean((2, 3)) - clean.mean((2, 3))).abs().mean()
    assert colour_shift > 5 * blur_shift   # colour scaling moves channel means, blur does not
    again = restoration_sets(val_split, 32, DegradeConfig(), frames=12)
    assert all(torch.equal(again[k][1], sets[k][1]) for k in sets)
    # the clean share and the enabled switch of the training config do not empty the sets
    off = restoration_sets(val_split, 32, DegradeConfig(enabled=False, clean_share=1.0), frames=12)
    assert torch.equal(off["noise"][1], sets["noise"][1])


class _Restorer(torch.nn.Module):
    """Stand-in with the ALN interface: restores every face to a flat grey, or not at all."""

    def __init__(self, flat: bool):
        super().__init__()
        self.flat = flat

    def clean(self, x):
        return (torch.zeros_like(x) if self.flat else x), None


def test_scores_compare_restored_and_degraded_against_clean(val_split):
    sets = restoration_sets(val_split, 32, DegradeConfig(), frames=8)
    table = restoration_scores(_Restorer(flat=True), sets, torch.device("cpu"), batch_size=3)
    for name, (clean, degraded) in sets.items():
        row = table[name]
        assert row["psnr_degraded"] == pytest.approx(psnr(degraded.numpy(), clean.numpy()))
        assert row["ssim_degraded"] == pytest.approx(ssim(degraded.numpy(), clean.numpy()))
        assert row["psnr_restored"] == pytest.approx(psnr(np.zeros_like(clean.numpy()), clean.numpy()))
        assert row["psnr_restored"] < row["psnr_degraded"]
    same = restoration_scores(_Restorer(flat=False), sets, torch.device("cpu"))
    assert all(r["psnr_restored"] == r["psnr_degraded"] and r["ssim_restored"] == r["ssim_degraded"]
               for r in same.values())
    tags = flat_restoration_tags(table)
    assert tags["restoration/psnr_restored_colour"] == table["colour"]["psnr_restored"] and len(tags) == 24
