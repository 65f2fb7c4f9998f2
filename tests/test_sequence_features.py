"""The sequence models' other inputs: eGeMAPS LLDs pooled to the hop and AVEC 2018/2019 feature files."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import train
from data.preprocess.audio import LLD_STEP_S, pool_to_hop
from data.samples.loaders import load_split
from runconfig import build_config
from tests.train_helpers import REPO, TINY
from training.sequence_inputs import sequences_of

PANDIT_B = REPO / "configs" / "baselines" / "pandit_b.yaml"
DEMO = [o for o in TINY if o.startswith("data.demo.")]


def test_pool_to_hop_averages_the_rows_starting_in_each_step():
    track = np.random.default_rng(0).normal(size=(95, 3))
    for hop in (0.1, 1 / 30, 0.004):
        n = 12
        pooled = pool_to_hop(track, n, hop)
        for t in range(n):
            rows = [k for k in range(len(track)) if t * hop <= k * LLD_STEP_S + 1e-9 < (t + 1) * hop]
            expected = track[rows].mean(axis=0) if rows else track[min(round(t * hop / LLD_STEP_S), 94)]
            np.testing.assert_allclose(pooled[t], expected, rtol=1e-5, atol=1e-6)
    assert np.array_equal(pool_to_hop(track, 20, 0.1)[10:], np.repeat(track[-1:], 10, 0).astype(np.float32))


def _cfg(demo_root, *extra):
    return build_config(yaml.safe_load(PANDIT_B.read_text()), [*DEMO, f"data.root={demo_root}", *extra])


def test_egemaps_pooled_to_the_frame_hop_are_standardised_per_recording(demo_root):
    cfg = _cfg(demo_root, "sequence.features=egemaps_hop")
    split, _ = load_split(cfg.data, "val")
    for seq, record in zip(sequences_of(split, cfg), split.records, strict=True):
        assert seq.features.shape == (record.n_frames, 25) and np.isfinite(seq.features).all()
        moving = seq.features.std(axis=0) > 0
        np.testing.assert_allclose(seq.features.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(seq.features.std(axis=0)[moving], 1, atol=1e-4)


def _write_avec(folder, name: str, seconds: float, rng) -> np.ndarray:
    times = np.arange(0, seconds, 0.1)
    values = rng.normal(size=(len(times), 2))
    lines = ["name;frameTime;F0_mean;loudness_mean"]
    lines += [f"'{name}';{t:.6f};{a:.6f};{b:.6f}" for t, (a, b) in zip(times, values, strict=True)]
    (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return values


def test_avec_feature_files_are_aligned_to_the_frames_and_train(demo_root, tmp_path):
    cfg = _cfg(demo_root, "sequence.features=avec", f"sequence.features_dir={tmp_path}")
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for record in load_split(cfg.data, split)[0].records:
            values = _write_avec(tmp_path, record.name, record.n_frames / record.fps + 0.05, rng)
    split, _ = load_split(cfg.data, "val")
    record, seq = split.records[-1], sequences_of(split, cfg)[-1]
    nearest = np.floor(np.arange(record.n_frames) / record.fps / 0.1 + 0.5 - 1e-9).astype(int)   # 10 Hz rows
    expected = values[nearest]
    expected = (expected - expected.mean(axis=0)) / expected.std(axis=0)
    np.testing.assert_allclose(seq.features, expected, atol=1e-4)
    run = tmp_path / "run"
    assert train.main(["--config", str(PANDIT_B), *DEMO, f"data.root={demo_root}", f"run.dir={run}",
                       "sequence.features=avec", f"sequence.features_dir={tmp_path}", "sequence.pandit.kernel=5",
                       "train.max_steps=4", "train.eval_every=2"]) == 0


def test_a_missing_avec_file_is_one_line_naming_it(demo_root, tmp_path, capsys):
    assert train.main(["--config", str(PANDIT_B), *DEMO, f"data.root={demo_root}", f"run.dir={tmp_path / 'run'}",
                       "sequence.features=avec", f"sequence.features_dir={tmp_path}", "train.max_steps=2"]) != 0
    err = capsys.readouterr().err
    assert "no AVEC feature file for recording" in err and str(tmp_path) in err and "Traceback" not in err
    with pytest.raises(Exception, match="needs sequence.features_dir"):
        build_config(yaml.safe_load(PANDIT_B.read_text()), ["sequence.features=avec"])
