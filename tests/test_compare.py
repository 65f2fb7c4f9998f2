"""experiments.compare decides which runs to reuse: a finished last.pt of the preset as it is now."""

from __future__ import annotations

import importlib
import shutil

import torch

import train
from tests.train_helpers import REPO, TINY


def _compare():
    return importlib.import_module("experiments.compare")


def test_a_run_is_reused_only_when_finished_with_the_presets_settings(demo_root, tmp_path, capsys):
    compare = _compare()
    run = tmp_path / "pandit_b"
    overrides = (*[o for o in TINY if o.startswith("data.demo.")], f"data.root={demo_root}", f"run.dir={run}",
                 "train.max_steps=4", "train.eval_every=2")
    system = compare.System("pandit_b", "000", "eGeMAPS", "configs/baselines/pandit_b.yaml", overrides)
    assert system.train_command()[:4] == ["python", "train.py", "--config", "configs/baselines/pandit_b.yaml"]
    assert not compare.finished(system)                                  # nothing trained yet
    assert train.main(["--config", str(REPO / system.preset), *overrides, "train.max_steps=2"]) == 0
    assert not compare.finished(system)                                  # settings differ: max_steps 2 vs 4
    assert "train.max_steps" in capsys.readouterr().out
    shutil.rmtree(run)                                                   # what score() does before training again
    assert train.main(["--config", str(REPO / system.preset), *overrides]) == 0
    assert compare.finished(system)

    # a key the checkpoint predates counts as its default; any other value of it means other settings
    ckpt = torch.load(run / "last.pt", weights_only=True)
    del ckpt["config"]["sequence"]["liking"]
    torch.save(ckpt, run / "last.pt")
    assert compare.finished(system)
    changed = compare.System("pandit_b", "000", "eGeMAPS", system.preset, (*overrides, "sequence.liking=true"))
    assert not compare.finished(changed)


def test_alnt_is_trained_again_when_its_aln_checkpoint_is_newer(demo_root, tmp_path):
    compare = _compare()
    aln = tmp_path / "aln.pt"
    run = tmp_path / "aln_t"
    run.mkdir()
    overrides = (f"run.dir={run}", f"sequence.aln_checkpoint={aln}", "train.max_steps=4")
    system = compare.System("aln_t", "004", "ALN features", "configs/baselines/aln_t.yaml", overrides)
    cfg = system.config()
    from runconfig import to_dict

    torch.save({"step": 4, "config": to_dict(cfg)}, run / "last.pt")
    aln.write_bytes(b"older")
    import os

    t = (run / "last.pt").stat().st_mtime_ns
    os.utime(aln, ns=(t - 10**9, t - 10**9))
    assert compare.finished(system)
    os.utime(aln, ns=(t + 10**9, t + 10**9))
    assert not compare.finished(system)
