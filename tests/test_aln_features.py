"""Per-frame ALN features: their content, the export command, and a sequence baseline trained on them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import evaluate
import train
from data.errors import DataError
from data.samples.loaders import load_split
from gan.features import frame_feature_parts
from gan.models import ALN, ModelConfig
from runconfig import ConfigError, build_config
from tests.train_helpers import TINY, _run
from training.export_features import main as export_main
from training.sequence_inputs import ensure_aln_features, sequences_of

PANDIT_B = Path(__file__).resolve().parents[1] / "configs" / "baselines" / "pandit_b.yaml"
ALN_T = PANDIT_B.with_name("aln_t.yaml")


def test_features_are_pooled_z_audio_and_the_critics_last_map():
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd_sz", image_size=32, g_conv_dim=4, g_res_blocks=1, d_conv_dim=4), 10).eval()
    face, audio = torch.rand(3, 3, 32, 32) * 2 - 1, torch.randn(3, 10)
    parts = frame_feature_parts(model, face, audio)
    assert list(parts) == ["z", "audio", "cd", "va"]
    feats = torch.cat(list(parts.values()), dim=1)
    _, z = model.clean(face)
    width = model.cd.blocks[-1][0].out_channels
    assert feats.shape == (3, 16 + 10 + width + 2)
    torch.testing.assert_close(feats[:, :16], z.mean(dim=(2, 3)))
    torch.testing.assert_close(feats[:, 16:26], audio)
    torch.testing.assert_close(feats[:, -2:], model.critic(model.clean(face)[0], z, audio)[1])   # ALN's V/A
    disc = ALN(ModelConfig(variant="disc", image_size=32, d_conv_dim=4), 0).eval()
    disc_parts = frame_feature_parts(disc, face, None)   # no latent, no audio: the CD map and V/A only
    assert {k: v.shape[1] for k, v in disc_parts.items()} == {"cd": disc.cd.blocks[-1][0].out_channels, "va": 2}


def test_exported_features_train_a_sequence_baseline(demo_root, tmp_path):
    run = tmp_path / "aln"
    assert _run(demo_root, run, "train.max_steps=2", "train.eval_every=2") == 0
    out = tmp_path / "features"
    assert export_main(["--checkpoint", str(run / "last.pt"), "--out", str(out), f"data.root={demo_root}"]) == 0
    info = json.loads((out / "features.json").read_text())
    tables = sorted(out.glob("*.npy"))
    assert len(tables) == 5 and info["width"] > 16   # 3 training and 2 validation demo videos
    table = np.load(tables[0])
    assert table.shape == (40, info["width"])          # one row per frame of the 40-frame demo videos
    missing = [k for k in range(1, 41) if not (demo_root / "cropped_aligned" / tables[0].stem / f"{k:05d}.jpg").exists()]
    assert all(not table[k - 1].any() for k in missing) and np.abs(table).sum(axis=1).astype(bool).sum() == 40 - len(missing)
    seq = tmp_path / "pandit"
    demo = [o for o in TINY if o.startswith("data.demo.")]
    assert train.main(["--config", str(PANDIT_B), *demo, f"data.root={demo_root}", f"run.dir={seq}",
                       "sequence.features=aln", f"sequence.features_dir={out}", "train.max_steps=20",
                       "train.eval_every=10"]) == 0
    rows = [json.loads(line) for line in (seq / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val/ccc_valence" in r] == [10, 20]

    # parts by name: the aeg_cd_sz demo model has z, audio, the CD map and V/A, in that column order
    parts = info["parts"]
    assert list(parts) == ["z", "audio", "cd", "va"] and sum(parts.values()) == info["width"] and parts["va"] == 2
    cfg = build_config(yaml.safe_load(PANDIT_B.read_text()), [*demo, f"data.root={demo_root}", "sequence.features=aln",
                                                             f"sequence.features_dir={out}",
                                                             "sequence.aln_parts=[va,z]"])
    split, _ = load_split(cfg.data, "val")
    seq0 = sequences_of(split, cfg)[0]
    full = np.load(out / f"{split.records[0].name}.npy")
    np.testing.assert_array_equal(seq0.features, np.concatenate([full[:, -2:], full[:, :parts["z"]]], axis=1))
    # Raju's EAF on ALN features: one modality per part, stored in the checkpoint; resumes and evaluates
    raju = tmp_path / "raju"
    args = ["--config", str(PANDIT_B.with_name("raju_eaf.yaml")), *demo, f"data.root={demo_root}", f"run.dir={raju}",
            "sequence.features=aln", f"sequence.features_dir={out}", "train.eval_every=2"]
    assert train.main([*args, "train.max_steps=2"]) == 0
    ckpt = torch.load(raju / "last.pt", weights_only=True)
    assert ckpt["config"]["sequence"]["raju"]["streams"] == list(parts.values())
    assert ckpt["model"]["front.modality_scores.3.weight"].shape == (1, 2)   # the fourth modality: ALN's V/A
    assert train.main([*args, "train.max_steps=4", f"run.resume={raju / 'last.pt'}"]) == 0
    assert evaluate.main(["--checkpoint", str(raju / "last.pt"), "--out", str(tmp_path / "raju_eval")]) == 0

    del parts["cd"]
    (out / "features.json").write_text(json.dumps({**info, "parts": parts}))
    with pytest.raises(DataError, match="do not add up"):
        sequences_of(split, cfg)


def test_aln_t_exports_features_on_the_fly_once_per_checkpoint(demo_root, tmp_path, capsys):
    run = tmp_path / "aln"
    assert _run(demo_root, run, "train.max_steps=2", "train.eval_every=2") == 0
    overrides = [f"data.root={demo_root}", *[o for o in TINY if o.startswith("data.demo.")],
                 f"sequence.aln_checkpoint={run / 'last.pt'}", f"sequence.features_dir={tmp_path / 'features'}"]
    cfg = build_config(yaml.safe_load(ALN_T.read_text()), overrides)
    info = tmp_path / "features" / "features.json"
    alnt = tmp_path / "alnt"   # an ALN-T trained on these features (their first export happens here)
    assert train.main(["--config", str(ALN_T), *overrides, f"run.dir={alnt}", "train.max_steps=2"]) == 0
    first = info.stat().st_mtime_ns
    assert json.loads(info.read_text())["layout"] == "z|audio|cd|va"
    ensure_aln_features(cfg)
    assert info.stat().st_mtime_ns == first                       # same checkpoint: the cache is used
    assert evaluate.main(["--checkpoint", str(alnt / "last.pt"), "--out", str(tmp_path / "eval")]) == 0
    os.utime(run / "last.pt", ns=(first + 10**9, first + 10**9))   # retrained in place: exported again
    ensure_aln_features(cfg)
    assert info.stat().st_mtime_ns != first
    # the features now come from another ALN checkpoint: scoring the old ALN-T on them is refused, not re-exported
    assert evaluate.main(["--checkpoint", str(alnt / "last.pt"), "--out", str(tmp_path / "eval")]) != 0
    assert "not from the ALN checkpoint this model was trained on" in capsys.readouterr().err
    missing = build_config(yaml.safe_load(ALN_T.read_text()), [f"sequence.aln_checkpoint={tmp_path / 'none.pt'}"])
    with pytest.raises(ConfigError, match="run python train.py first"):
        ensure_aln_features(missing)
