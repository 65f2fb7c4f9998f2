"""Raju et al.'s attention RNNs (EAF, AED, EMAFN): shapes, attention sums to 1, masks, learning."""

from __future__ import annotations

import pytest
import torch

from baselines.raju import RajuConfig, RajuRNN
from baselines.sequence_loss import masked_ccc_loss
from tests.test_sequences import F, _batch, fit


@pytest.mark.parametrize("model", ["EAF", "AED", "EMAFN"])
def test_shapes_attention_and_padding(model):
    torch.manual_seed(0)
    net = RajuRNN(RajuConfig(model=model, hidden=8, streams=[2, 4]), F)
    batch = _batch()
    out = net(batch["features"], batch["mask"])
    assert out.shape == (3, 40, 2) and out.abs().max() <= 1.0
    if net.decoder is not None:   # Bahdanau weights: a distribution over the real steps of each recording
        w = net.decoder.last_weights
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 40))
        assert torch.all(w[1][:, 25:] == 0) and torch.all(w[2][:, 33:] == 0)
    if net.front is not None:
        torch.testing.assert_close(net.front.last_weights["modalities"].sum(-1), torch.ones(3, 40))
        for weights in net.front.last_weights["features"]:
            torch.testing.assert_close(weights.sum(-1), torch.ones(3, 40))
    changed = batch["features"].clone()
    changed[~batch["mask"]] = 50.0
    again = net(changed, batch["mask"])
    torch.testing.assert_close(again[batch["mask"]], out[batch["mask"]])
    assert masked_ccc_loss(again, batch["labels"], batch["valid"]) == masked_ccc_loss(out, batch["labels"],
                                                                                      batch["valid"])


@pytest.mark.parametrize("model", ["EAF", "AED", "EMAFN"])
def test_a_few_steps_lower_the_loss(model):
    torch.manual_seed(0)
    net = RajuRNN(RajuConfig(model=model, hidden=12, streams=[3, 3]), F)
    losses = fit(net, torch.optim.Adam(net.parameters(), lr=1e-2), _batch(lengths=(30, 24, 28)))
    assert losses[-1] < 0.8 * losses[0] and min(losses) == pytest.approx(min(losses[-5:]))


def test_streams_must_cover_the_features():
    with pytest.raises(ValueError, match="summing to the 6 features"):
        RajuRNN(RajuConfig(model="EAF", streams=[2, 2]), F)


@pytest.mark.parametrize("model", ["EAF", "AED", "EMAFN"])
def test_face_maps_are_a_video_stream_and_their_padding_changes_nothing(model):
    torch.manual_seed(0)
    net = RajuRNN(RajuConfig(model=model, hidden=8, cnn_channels=[4]), F, map_channels=3).eval()
    batch = _batch()
    maps = torch.randn(3, 40, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    out = net(batch["features"], batch["mask"], maps=maps)
    assert out.shape == (3, 40, 2)
    if net.front is not None:   # audio features and video: two modalities weighted per step
        assert net.front.last_weights["modalities"].shape == (3, 40, 2)
    faces = maps.clone()
    faces[0, 10] += 1.0   # a real frame's face matters
    assert not torch.allclose(net(batch["features"], batch["mask"], maps=faces)[0], out[0])
    padded = maps.clone()
    padded[~batch["mask"]] = 9.0
    torch.testing.assert_close(net(batch["features"], batch["mask"], maps=padded)[batch["mask"]], out[batch["mask"]])
    with pytest.raises(ValueError, match="needs face maps"):
        net(batch["features"], batch["mask"])
