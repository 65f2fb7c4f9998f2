"""evaluate.py on sequence checkpoints: the same protocols and files as ALN, the predictions of the model,
label delays undone, and Pandit's attribution heatmaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
import train
from data.preprocess.audio import AudioStandardiser
from data.samples.loaders import load_split
from scoring.metrics import ccc
from tests.fixtures import write_recording
from tests.train_helpers import TINY
from training.sequence_inputs import predict_sequences, sequence_model_from_checkpoint, sequences_of, undelay

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "baselines"


def _train(preset: str, demo_root: Path, run: Path, *extra: str) -> Path:
    demo = [o for o in TINY if o.startswith("data.demo.")]
    assert train.main(["--config", str(PRESETS / f"{preset}.yaml"), *demo, f"data.root={demo_root}",
                       f"run.dir={run}", "train.max_steps=20", "train.eval_every=10", *extra]) == 0
    return run / "last.pt"


def test_a_sequence_checkpoint_is_scored_on_the_models_own_predictions(demo_root, tmp_path):
    ckpt_path = _train("pandit_d", demo_root, tmp_path / "run", "sequence.pandit.kernel=9", "sequence.delay_arousal=0.1")
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(ckpt_path), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "pandit D" and metrics["protocol"] == "abaw" and metrics["videos"] == 2
    assert sorted(p.name for p in (out / "official").iterdir()) == sorted(
        p.name for p in (demo_root / "annotations" / "VA_Set" / "Validation_Set").iterdir())

    # the same numbers straight from the model: outputs per recording, shifted back by the arousal delay (3 frames)
    ckpt = torch.load(ckpt_path, weights_only=True)
    cfg, model = sequence_model_from_checkpoint(ckpt)
    cfg.data.root = str(demo_root)
    split, _ = load_split(cfg.data, "val", AudioStandardiser.from_state_dict(ckpt["audio_stats"]))
    outputs = predict_sequences(model, sequences_of(split, cfg), 8)
    pred = np.concatenate([undelay(o, [0, 3])[r.frames - 1] for o, r in zip(outputs, split.records, strict=True)])
    gold = np.concatenate([r.labels[r.frames - 1] for r in split.records])
    for d, dim in enumerate(("valence", "arousal")):
        assert metrics["frame_level"][dim]["ccc"] == pytest.approx(ccc(pred[:, d], gold[:, d]), abs=1e-6)

    # Pandit's §5.1 heatmaps: per dimension, summing to the mean output of the windows inside the recordings
    k = cfg.sequence.pandit.kernel
    for d, dim in enumerate(("valence", "arousal")):
        assert (out / f"attribution_{dim}.png").stat().st_size > 1000
        attribution = np.load(out / f"attribution_{dim}.npy")
        assert attribution.shape == (ckpt["n_features"], k)
        inside = [o[(k - 1) // 2:(k - 1) // 2 + len(o) - k + 1, d].mean() for o in outputs]
        assert attribution.sum() == pytest.approx(np.mean(inside), abs=1e-4)


def test_undelay_moves_each_dimension_back_by_its_delay():
    pred = np.arange(12, dtype=np.float32).reshape(6, 2)
    out = undelay(pred, [0, 2])
    assert out[:, 0].tolist() == pred[:, 0].tolist()
    assert out[:, 1].tolist() == [1, 1, 1, 3, 5, 7]   # frame t takes output t - 2; the first frames repeat output 0


def test_models_without_a_single_filter_write_no_attribution(demo_root, tmp_path):
    ckpt_path = _train("augmented_ensemble", demo_root, tmp_path / "run")
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(ckpt_path), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "aminbeidokhti augmented_ensemble"
    assert np.isfinite(metrics["valence"]["ccc"]) and not list(out.glob("attribution_*"))


def test_liking_is_learned_and_scored_where_the_recordings_have_it(tmp_path, capsys):
    root = tmp_path / "sewa"
    for stem in [f"Train_DE_{i:02d}" for i in range(1, 4)] + [f"Devel_HU_{i:02d}" for i in range(1, 4)]:
        write_recording(root, stem, n_frames=20, fps=10, label_seconds=1.9)
    run = tmp_path / "run"
    assert train.main(["--config", str(PRESETS / "augmented_ensemble.yaml"), "data.dataset=sewa", "data.num_workers=0", f"data.root={root}",
                       "data.sewa.num_folds=3", "data.fold=1", f"run.dir={run}", "sequence.liking=true",
                       "train.max_steps=4", "train.eval_every=2"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val/ccc_liking" in r] == [2, 4]
    ckpt = torch.load(run / "last.pt", weights_only=True)
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(run / "last.pt"), "--split", "test", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    cfg, model = sequence_model_from_checkpoint(ckpt)
    split, _ = load_split(cfg.data, "test", AudioStandardiser.from_state_dict(ckpt["audio_stats"]))
    outputs = predict_sequences(model, sequences_of(split, cfg), 8)
    assert all(o.shape[1] == 3 for o in outputs)
    pred = np.concatenate([o[r.frames - 1, 2] for o, r in zip(outputs, split.records, strict=True)])
    gold = np.concatenate([r.liking[r.frames - 1] for r in split.records])
    assert metrics["liking"]["ccc"] == pytest.approx(ccc(pred, gold), abs=1e-6)
    assert metrics["protocol"] == "avec2019" and "liking (frame level" in capsys.readouterr().out

    demo = tmp_path / "demo_run"
    assert train.main(["--config", str(PRESETS / "raju_eaf.yaml"), f"data.root={tmp_path / 'none'}",
                       f"run.dir={demo}", "sequence.liking=true", *[o for o in TINY if o.startswith("data.demo.")],
                       "train.max_steps=2"]) != 0
    assert "no recording of demo has liking labels" in capsys.readouterr().err
