"""Aminbeidokhti's temporal attention and Augmented Ensemble, and ALN-T's temporal convolution: shapes,
attention sums, the diversity penalty against a direct formula, padding, windows, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.aminbeidokhti import (
    AminbeidokhtiConfig,
    AugmentedEnsemble,
    TemporalAttentionNet,
    sliding_windows,
    window_moments,
    window_softmax_pool,
)
from baselines.sequence_loss import masked_ccc_loss
from baselines.temporal_conv import TemporalConvConfig, TemporalConvNet
from data.samples.sequences import INVALID, Sequence, collate_sequences
from tests.test_sequences import fit

F, SIZE = 5, 8


def _batch(lengths=(30, 18, 25), seed=0) -> dict:
    """Features whose first column and maps whose mean brightness carry the labels (learnable by all models)."""
    rng = np.random.default_rng(seed)
    sequences = []
    for i, n in enumerate(lengths):
        x = rng.normal(size=(n, F)).astype(np.float32)
        level = np.tanh(np.convolve(rng.normal(size=n), np.ones(5) / 3, mode="same")).astype(np.float32)
        maps = rng.normal(0, 0.1, size=(n, 3, SIZE, SIZE)).astype(np.float32) + level[:, None, None, None]
        x[:, 0] = level
        y = np.stack([level, 0.7 * level], axis=1).astype(np.float32)
        y[2] = INVALID
        sequences.append(Sequence(f"rec{i}", x, y, maps))
    return collate_sequences(sequences)


def _models():
    torch.manual_seed(0)
    ta = TemporalAttentionNet(AminbeidokhtiConfig(window=5, cnn_channels=[4, 6], heads=3, attention_hidden=4), 3)
    ae = AugmentedEnsemble(AminbeidokhtiConfig(model="augmented_ensemble", window=5, cnn_channels=[4], hidden=6,
                                               layers=3, streams=[2, 3]), F, map_channels=3)
    tc = TemporalConvNet(TemporalConvConfig(channels=6, blocks=2), F)
    return {"temporal_attention": ta, "augmented_ensemble": ae, "temporal_conv": tc}


@pytest.mark.parametrize("name", ["temporal_attention", "augmented_ensemble", "temporal_conv"])
def test_each_model_predicts_every_step_and_ignores_padding(name):
    net = _models()[name].eval()
    batch = _batch()
    pred = net(batch["features"], batch["mask"], maps=batch["maps"])
    assert pred.shape == (3, 30, 2) and torch.isfinite(pred).all() and pred.abs().max() <= 1
    loss = masked_ccc_loss(pred, batch["labels"], batch["valid"])
    features, maps, labels = batch["features"].clone(), batch["maps"].clone(), batch["labels"].clone()
    pad = ~batch["mask"]
    features[pad], maps[pad], labels[pad] = 50.0, -7.0, 0.5
    again = net(features, batch["mask"], maps=maps)
    torch.testing.assert_close(again[batch["mask"]], pred[batch["mask"]], rtol=0, atol=1e-6)
    torch.testing.assert_close(masked_ccc_loss(again, labels, batch["valid"]), loss, rtol=0, atol=1e-6)
    alone = net(batch["features"][1:2, :18], batch["mask"][1:2, :18], maps=batch["maps"][1:2, :18])
    torch.testing.assert_close(alone[0], pred[1, :18], rtol=0, atol=1e-5)   # the batch it is in does not matter


def test_a_real_step_depends_only_on_its_window():
    net = _models()["temporal_attention"].eval()   # window 5: steps t-2 .. t+2
    batch = _batch()
    pred = net(batch["features"], batch["mask"], maps=batch["maps"])
    maps = batch["maps"].clone()
    maps[0, 20] += 3.0
    changed = (net(batch["features"], batch["mask"], maps=maps) - pred)[0].abs().sum(dim=1) > 0
    assert changed.nonzero().flatten().tolist() == [18, 19, 20, 21, 22]


def test_spatial_and_temporal_attention_weights_sum_to_one_and_the_penalty_is_the_direct_formula():
    net = _models()["temporal_attention"].eval()
    batch = _batch()
    net(batch["features"], batch["mask"], maps=batch["maps"])
    a = net.attention.last_weights                       # (B*T, heads, L)
    assert a.shape == (3 * 30, 3, (SIZE // 4) ** 2)
    torch.testing.assert_close(a.sum(dim=-1), torch.ones(a.shape[:2]))
    frame = net.last_frame_weights                       # (B, T, window)
    real = batch["mask"]
    torch.testing.assert_close(frame.sum(dim=-1)[real], torch.ones(int(real.sum())))
    assert frame[1, 0, :2].sum() == 0                     # before the start of the recording
    assert frame[1, 17, 3:].sum() == 0                    # after its end (length 18)
    a_np = a.detach().numpy().astype(np.float64)
    direct = [np.sum((m @ m.T - np.eye(3)) ** 2) for m in a_np]
    real_np = real.flatten().numpy()
    assert net.penalty.item() == pytest.approx(np.mean(np.asarray(direct)[real_np]), rel=1e-5)


def test_ensemble_attention_mixes_two_sources_per_feature():
    net = _models()["augmented_ensemble"].eval()
    batch = _batch()
    net(batch["features"], batch["mask"], maps=batch["maps"])
    assert len(net.last_gates) == 2                       # layers 2 and 3 mix early and gated unimodal features
    for g in net.last_gates:
        assert g.shape == (3, 30, 2, 3 * 6)
        torch.testing.assert_close(g.sum(dim=2), torch.ones(3, 30, 18))


def test_window_moments_and_softmax_pooling_against_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 9, 2)).astype(np.float32)
    mask = np.ones((2, 9), bool)
    mask[1, 6:] = False
    got = window_moments(torch.from_numpy(x), torch.from_numpy(mask), 4).numpy()
    scores = rng.normal(size=(2, 9)).astype(np.float32)
    pooled, _ = window_softmax_pool(torch.from_numpy(x), torch.from_numpy(scores), torch.from_numpy(mask), 4)
    for b in range(2):
        for t in range(int(mask[b].sum())):
            idx = [j for j in range(t - 2, t + 2) if 0 <= j < 9 and mask[b, j]]   # window 4: t-2 .. t+1
            np.testing.assert_allclose(got[b, t, :2], x[b, idx].mean(axis=0), atol=1e-5)
            np.testing.assert_allclose(got[b, t, 2:], np.sqrt(x[b, idx].var(axis=0) + 1e-6), atol=1e-5)
            w = np.exp(scores[b, idx]) / np.exp(scores[b, idx]).sum()
            np.testing.assert_allclose(pooled[b, t].numpy(), w @ x[b, idx], atol=1e-5)
    assert sliding_windows(torch.arange(5.0)[None], 3).tolist() == [[[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4],
                                                                     [3, 4, 0]]]


@pytest.mark.parametrize("name", ["temporal_attention", "augmented_ensemble", "temporal_conv"])
def test_a_few_adam_steps_lower_the_loss_on_a_learnable_task(name):
    net = _models()[name]
    batch = _batch(lengths=(40, 35, 38, 30))

    class WithMaps(torch.nn.Module):   # fit() calls net(features, mask)
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, features, mask):
            return self.net(features, mask, maps=batch["maps"])

    losses = fit(WithMaps(), torch.optim.Adam(net.parameters(), lr=1e-2), batch, steps=30)
    assert losses[-1] < 0.5 * losses[0], losses


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="sequence.maps=faces"):
        AminbeidokhtiConfig().validate(F, has_maps=False)
    with pytest.raises(ValueError, match="streams"):
        AminbeidokhtiConfig(model="augmented_ensemble", streams=[2, 2]).validate(F, has_maps=False)
    with pytest.raises(ValueError, match="kernel odd"):
        TemporalConvConfig(kernel=4).validate()
    assert TemporalConvConfig(kernel=3, blocks=4).receptive_field() == 31
