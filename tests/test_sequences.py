"""Sequence data and Pandit et al.'s single-filter CNNs (models A–E): shapes, folding, masks, learning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import train
from baselines.pandit import (
    PanditCNN,
    PanditConfig,
    feature_attribution,
    fold_b_into_d,
    save_attribution_png,
)
from baselines.sequence_loss import masked_ccc, masked_ccc_loss
from data.samples.sequences import INVALID, Sequence, collate_sequences, delay_labels
from scoring.metrics import ccc
from tests.train_helpers import TINY, _run

F = 6


def _batch(lengths=(40, 25, 33), seed=0) -> dict:
    rng = np.random.default_rng(seed)
    sequences = []
    for i, n in enumerate(lengths):
        x = rng.normal(size=(n, F)).astype(np.float32)
        y = np.tanh(np.stack([x[:, 0] - 0.5 * x[:, 1], 0.8 * x[:, 2]], axis=1)).astype(np.float32)
        y[3] = INVALID   # an unlabelled step
        sequences.append(Sequence(f"rec{i}", x, y))
    return collate_sequences(sequences)


@pytest.mark.parametrize("model,extra", [("A", {}), ("B", {}), ("B", {"activation": "relu"}), ("C", {}),
                                         ("D", {}), ("E", {"features": [0, 2]})])
def test_every_model_maps_a_padded_batch_to_one_prediction_per_step_and_dimension(model, extra):
    torch.manual_seed(0)
    net = PanditCNN(PanditConfig(model=model, kernel=10, hidden=4, **extra), F)
    batch = _batch()
    out = net(batch["features"], batch["mask"])
    assert out.shape == (3, 40, 2) and torch.isfinite(out).all()
    assert (net.dense is None) == (model in ("C", "D"))
    if model == "E":   # the dropped features do not matter
        changed = batch["features"].clone()
        changed[..., [1, 3, 4, 5]] += 5.0
        assert torch.equal(net(changed, batch["mask"]), out)


def test_model_b_folds_into_model_d_with_the_same_outputs():
    torch.manual_seed(0)
    b = PanditCNN(PanditConfig(model="B", kernel=9), F)
    with torch.no_grad():
        b.dense.weight.copy_(torch.tensor([1.7, -0.6]).view(2, 1, 1))
        b.dense.bias.copy_(torch.tensor([0.3, -0.2]))
    d = fold_b_into_d(b)
    batch = _batch()
    assert d.dense is None and d.cfg.model == "D"
    torch.testing.assert_close(d(batch["features"], batch["mask"]), b(batch["features"], batch["mask"]),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="linear activation"):
        fold_b_into_d(PanditCNN(PanditConfig(model="B", activation="relu"), F))


def test_padded_steps_change_no_output_and_no_loss():
    torch.manual_seed(0)
    net = PanditCNN(PanditConfig(model="A", hidden=3), F)
    batch = _batch()
    pred = net(batch["features"], batch["mask"])
    loss = masked_ccc_loss(pred, batch["labels"], batch["valid"])
    features, labels = batch["features"].clone(), batch["labels"].clone()
    pad = ~batch["mask"]
    features[pad] = 100.0
    labels[pad] = 0.9
    pred_again = net(features, batch["mask"])
    assert torch.equal(pred_again[batch["mask"]], pred[batch["mask"]])
    assert torch.equal(masked_ccc_loss(pred_again, labels, batch["valid"]), loss)


def test_masked_ccc_is_the_ccc_of_the_valid_steps_concatenated():
    batch = _batch()
    pred = torch.randn(3, 40, 2, generator=torch.Generator().manual_seed(1))
    expected = [ccc(pred[..., d][batch["valid"][..., d]].numpy(), batch["labels"][..., d][batch["valid"][..., d]].numpy())
                for d in range(2)]
    assert masked_ccc(pred, batch["labels"], batch["valid"]).tolist() == pytest.approx(expected, abs=1e-5)
    assert int(batch["valid"].sum()) == 2 * (40 + 25 + 33 - 3)


def fit(net: torch.nn.Module, opt: torch.optim.Optimizer, batch: dict, steps: int = 40) -> list[float]:
    """``steps`` optimiser steps on one batch with the masked 1 - CCC loss; the loss before each step."""
    losses = []
    for _ in range(steps):
        loss = masked_ccc_loss(net(batch["features"], batch["mask"]), batch["labels"], batch["valid"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_a_few_rmsprop_steps_lower_the_loss_on_a_learnable_task():
    torch.manual_seed(0)
    net = PanditCNN(PanditConfig(model="B", kernel=3), F)
    losses = fit(net, torch.optim.RMSprop(net.parameters(), lr=1e-2), _batch(lengths=(80, 60, 70, 75)))
    assert losses[-1] < 0.5 * losses[0] and losses[-1] < 0.6


def test_label_delay_takes_later_labels_and_invalidates_the_tail():
    labels = np.arange(10, dtype=np.float32).reshape(5, 2) / 10
    shifted = delay_labels(labels, [2, 0])
    assert shifted[:, 0].tolist() == pytest.approx([0.4, 0.6, 0.8, INVALID, INVALID])
    assert shifted[:, 1].tolist() == pytest.approx(labels[:, 1].tolist())


def test_feature_attribution_sums_to_the_mean_output_and_renders(tmp_path):
    torch.manual_seed(0)
    d = fold_b_into_d(PanditCNN(PanditConfig(model="B", kernel=5), F))
    x = np.random.default_rng(2).normal(size=(30, F)).astype(np.float32)
    attribution = feature_attribution(d, x, dimension=1)
    out = d(torch.from_numpy(x)[None])[0, :, 1].detach().numpy()
    inside = out[2:30 - 2]   # steps whose 5-step window lies inside the recording
    assert attribution.shape == (F, 5)
    assert attribution.sum() == pytest.approx(inside.mean(), abs=1e-4)
    path = tmp_path / "attribution.png"
    save_attribution_png(attribution, path, [f"AU{i}" for i in range(F)])
    assert path.stat().st_size > 1000
    assert d.filter_l1().item() == pytest.approx(d.conv.weight.abs().sum().item())


PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs" / "baselines").glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny_aln(demo_root, tmp_path_factory) -> Path:
    """A 2-step ALN checkpoint on the tiny demo: the documented first step of ALN-T (configs/baselines/aln_t.yaml)."""
    run = tmp_path_factory.mktemp("aln")
    assert _run(demo_root, run, "train.max_steps=2", "train.eval_every=2") == 0
    return run / "last.pt"


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_baseline_preset_trains_and_logs_validation_ccc(preset, demo_root, tmp_path, request):
    demo = [o for o in TINY if o.startswith("data.demo.")]
    run = tmp_path / preset.stem
    cfg = yaml.safe_load(preset.read_text())
    if cfg["sequence"].get("aln_checkpoint"):   # ALN-T: export the ALN features on the fly from a trained ALN
        demo += [f"sequence.aln_checkpoint={request.getfixturevalue('tiny_aln')}",
                 f"sequence.features_dir={tmp_path / 'features'}"]
    assert train.main(["--config", str(preset), *demo, f"data.root={demo_root}", f"run.dir={run}",
                       "train.max_steps=20", "train.eval_every=10"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val/ccc_valence" in r]
    assert [r["step"] for r in val] == [10, 20] and all(np.isfinite(r["val/ccc_arousal"]) for r in val)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["system"] == cfg["system"] and ckpt["step"] == 20
    if "pandit_d" in preset.stem:   # trained as a linear B, evaluated and stored folded
        assert "folded_d" in ckpt and "dense.weight" not in ckpt["folded_d"]


def test_a_sequence_run_resumes_where_it_stopped(demo_root, tmp_path):
    demo = [o for o in TINY if o.startswith("data.demo.")]
    args = ["--config", str(PRESETS[1]), *demo, f"data.root={demo_root}", "train.eval_every=5"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main([*args, f"run.dir={straight}", "train.max_steps=10"]) == 0
    assert train.main([*args, f"run.dir={split}", "train.max_steps=5"]) == 0
    assert train.main([*args, f"run.dir={split}", f"run.resume={split / 'last.pt'}", "train.max_steps=10"]) == 0
    a, b = (torch.load(r / "last.pt", weights_only=True)["model"] for r in (straight, split))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_signal_saves_last_pt_and_the_run_resumes_to_the_same_weights(demo_root, tmp_path, monkeypatch):
    import os
    import signal

    from training.sequence_loop import SequenceTrainer

    demo = [o for o in TINY if o.startswith("data.demo.")]
    args = ["--config", str(PRESETS[1]), *demo, f"data.root={demo_root}", "train.eval_every=5", "train.max_steps=10"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    before = signal.getsignal(signal.SIGTERM)
    assert train.main([*args, f"run.dir={straight}"]) == 0
    step_once = SequenceTrainer.train_step

    def step_then_sigterm(self):
        logs = step_once(self)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)   # handled: finish this step, save, exit 130
        return logs

    monkeypatch.setattr(SequenceTrainer, "train_step", step_then_sigterm)
    assert train.main([*args, f"run.dir={stopped}"]) == 130
    assert torch.load(stopped / "last.pt", weights_only=True)["step"] == 3
    monkeypatch.setattr(SequenceTrainer, "train_step", step_once)
    assert train.main([*args, f"run.dir={stopped}", f"run.resume={stopped / 'last.pt'}"]) == 0
    a, b = (torch.load(r / "last.pt", weights_only=True)["model"] for r in (straight, stopped))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert signal.getsignal(signal.SIGTERM) is before   # the previous handler is back after each run
