"""Tiny end-to-end runs on generated demo data: train -> checkpoint -> resume -> evaluate, TensorBoard, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import evaluate
import train
from data.samples.loaders import train_loader
from runconfig import ConfigError
from scoring.metrics import ccc
from tests.train_helpers import HANG_GUARD_S, REPO, TINY, _final_state, _interrupted_run, _jsonl, _run


def test_train_checkpoint_evaluate(demo_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(demo_root, run, "train.max_steps=6", "train.eval_every=3") == 0
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl"):
        assert (run / name).is_file(), name
    rows = _jsonl(run / "metrics.jsonl")
    val_rows = [r for r in rows if "val/ccc_valence" in r]
    assert [r["step"] for r in val_rows] == [3, 6]
    assert {"val/ccc_arousal", "val/pcc_valence", "val/rmse_arousal", "val/psnr_restored"} <= set(val_rows[0])
    assert any("D/loss" in r and "G/loss" in r for r in rows)

    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == 6 and ckpt["config"]["model"]["variant"] == "aeg_cd_sz"
    assert {"model", "opt_d", "opt_g", "rng", "audio_stats", "balance_table", "best_score"} <= set(ckpt)
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["step"] in (3, 6) and best["best_score"] == pytest.approx(
        max(np.mean([r["val/ccc_valence"], r["val/ccc_arousal"]]) for r in val_rows))

    out = tmp_path / "eval"
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(run / "last.pt"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "valence" in printed and "CCC" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["valence"]) == {"ccc", "pcc", "rmse"} and set(metrics["arousal"]) == {"ccc", "pcc", "rmse"}
    assert metrics["protocol"] == "abaw" and metrics["split"] == "val"
    assert metrics["optimistic"] is None   # last.pt was not chosen on validation
    table = np.genfromtxt(out / "predictions.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert len(table) == metrics["frames"] == 80
    frame_level = metrics["frame_level"]
    assert frame_level["valence"]["ccc"] == pytest.approx(ccc(table["valence"], table["valence_gold"]), abs=1e-5)
    # evaluate.py and the last validation of training score the same clean frames with the same code
    assert frame_level["arousal"]["ccc"] == pytest.approx(val_rows[-1]["val/ccc_arousal"], abs=1e-5)
    # the headline is the official ABAW scoring of the written files: re-scoring them gives the same numbers
    rescored = tmp_path / "rescored.json"
    ann = demo_root / "annotations" / "VA_Set" / "Validation_Set"
    assert evaluate.main(["--protocol", "abaw", "--labels", str(ann), "--predictions", str(out / "official"),
                          "--json", str(rescored)]) == 0
    again = json.loads(rescored.read_text())
    for dim in ("valence", "arousal"):
        assert again[dim] == pytest.approx(metrics[dim], abs=1e-6)
    n_official = sum(len(f.read_text().splitlines()) - 1 for f in (out / "official").glob("*.txt"))
    assert n_official == 2 * 40  # every frame of every video, also those without a face
    assert (out / "plots" / "scatter.png").is_file() and len(list((out / "plots").glob("trace_*.png"))) == 2

    # best.pt was chosen on this very split: the scores say they are optimistic
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "eval-best")]) == 0
    assert "NOTE: optimistic scores: best.pt was selected on the validation split" in capsys.readouterr().out
    flagged = json.loads((tmp_path / "eval-best" / "metrics.json").read_text())["optimistic"]
    assert flagged == "best.pt was selected on the validation split, which holds 2 of the 2 scored recordings"


def test_tensorboard_events(demo_root, tmp_path):
    run = tmp_path / "run"
    assert _run(demo_root, run, "train.max_steps=4", "train.eval_every=2", "train.n_critic=2") == 0
    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"D/loss", "D/adv", "D/gp", "D/afc", "G/loss", "G/adv", "G/rec", "G/afc",
            "val/ccc_valence", "val/ccc_arousal"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("val/ccc_valence")] == [2, 4]
    assert [e.step for e in acc.Scalars("D/loss")] == [2, 4]
    grid = acc.Images("val/restoration_clean_degraded_restored_cycle")
    assert [g.step for g in grid] == [2, 4]
    # 4 rows (clean | degraded | restored | cycle) of 32 px faces with 2 px padding
    assert grid[0].height == 4 * 32 + 5 * 2
    assert {"val/pred_valence", "val/pred_arousal"} <= set(tags["histograms"])


@pytest.mark.parametrize("workers", [0, 1])
def test_exact_resume(demo_root, tmp_path, workers):
    """N steps in one run equal N/2 steps, an interruption, and a resume for the other N/2."""
    common = ["train.max_steps=8", "train.eval_every=3", "train.n_critic=3", f"data.num_workers={workers}"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(demo_root, straight, *common) == 0
    _interrupted_run(demo_root, split, 4, *common)
    assert _final_state(split)["step"] == 4
    assert train.main([f"run.resume={split / 'last.pt'}"]) == 0
    a, b = _final_state(straight), _final_state(split)
    assert a["step"] == b["step"] == 8
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for key in ("opt_d", "opt_g"):
        for pid, state in a[key]["state"].items():
            assert torch.equal(state["exp_avg_sq"], b[key]["state"][pid]["exp_avg_sq"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    rows = lambda run: _jsonl(run / "metrics.jsonl")  # noqa: E731
    assert rows(straight) == rows(split)  # same losses and validation scores, no duplicated rows
    assert [r["step"] for r in rows(split) if "D/loss" in r] == [2, 4, 6, 8]


def test_resume_between_g_steps_logs_the_same_generator_values(demo_root, tmp_path):
    """Log steps repeat the latest G step's values; a resume before the next G step must repeat them too."""
    common = ["train.max_steps=8", "train.eval_every=8", "train.n_critic=5"]   # G at 5; logs at 2, 4, 6, 8
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(demo_root, straight, *common) == 0
    _interrupted_run(demo_root, split, 6, *common)
    assert train.main([f"run.resume={split / 'last.pt'}"]) == 0
    rows = _jsonl(straight / "metrics.jsonl")
    assert [r["step"] for r in rows if "G/gradnorm_denoise" in r] == [6, 8]   # logged at step 5's G step, shown after
    assert _jsonl(split / "metrics.jsonl") == rows


def test_resume_continues_a_finished_run_to_more_steps(demo_root, tmp_path):
    run = tmp_path / "run"
    assert _run(demo_root, run, "train.max_steps=2", "train.eval_every=2") == 0
    assert train.main([f"run.resume={run / 'last.pt'}", "train.max_steps=4"]) == 0
    assert _final_state(run)["step"] == 4
    assert train.main([f"run.resume={run / 'last.pt'}"]) == 0  # already there: nothing to do


def test_generator_updated_every_n_critic_iterations(demo_root, tmp_path):
    cfg = train.load_config(train.DEFAULT_PRESET, [*TINY, f"data.root={demo_root}", f"run.dir={tmp_path}",
                                                   "train.n_critic=3"])
    trainer = train.Trainer(cfg, None)
    counts = {"d": 0, "g": 0}
    d_step, g_step = trainer.stepper.opt_d.step, trainer.stepper.opt_g.step
    trainer.stepper.opt_d.step = lambda *a, **k: (counts.__setitem__("d", counts["d"] + 1), d_step(*a, **k))[1]
    trainer.stepper.opt_g.step = lambda *a, **k: (counts.__setitem__("g", counts["g"] + 1), g_step(*a, **k))[1]
    loader = iter(train_loader(trainer.train_set, 8, 0, 0, 0))
    for _ in range(7):
        trainer.train_step(next(loader))
        trainer.step += 1
    assert counts == {"d": 7, "g": 2}
    trainer.runlog.close()


def test_lazy_penalty_runs_every_k_th_d_step_weighted_by_k_and_its_value_is_logged(demo_root, tmp_path):
    cfg = train.load_config(train.DEFAULT_PRESET, [*TINY, f"data.root={demo_root}", f"run.dir={tmp_path}",
                                                   "loss.gp_every=3"])
    trainer = train.Trainer(cfg, None)
    objective, scales = trainer.stepper.objective, []
    real = objective.discriminator_loss

    def recording(batch, restored=None, gp_alpha=None, gp_scale=1.0):
        scales.append((gp_scale, gp_alpha is not None))
        return real(batch, restored, gp_alpha, gp_scale)

    objective.discriminator_loss = recording
    loader = iter(train_loader(trainer.train_set, 8, 0, 0, 0))
    logged = []
    for _ in range(6):
        logs = trainer.train_step(next(loader))
        trainer.step += 1
        logged.append(float(logs["D/gp"]))
    assert scales == [(3, True), (0, False), (0, False), (3, True), (0, False), (0, False)]
    assert logged[0] == logged[1] == logged[2] != logged[3] == logged[4] == logged[5]   # carried between penalties
    trainer.runlog.close()


def test_disc_variant_trains_without_generator(demo_root, tmp_path):
    run = tmp_path / "disc"
    assert _run(demo_root, run, "model.variant=disc", "train.max_steps=2", "train.eval_every=2") == 0
    ckpt = _final_state(run)
    assert not any(k.startswith("aeg.") for k in ckpt["model"]) and ckpt["opt_g"] == {}
    assert any("D/afc" in r and "D/adv" not in r for r in _jsonl(run / "metrics.jsonl"))


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)


def _assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_cli_user_errors(demo_root, tmp_path):
    missing = tmp_path / "no-such-folder"
    _assert_one_line_error(_cli("train.py", "data.dataset=affwild2", f"data.root={missing}",
                                f"run.dir={tmp_path / 'r1'}"), str(missing), "does not exist")
    _assert_one_line_error(_cli("train.py", "train.max_step=3"), "unknown config key 'train.max_step'")
    _assert_one_line_error(_cli("train.py", "train.batch_size=many"), "train.batch_size", "integer")
    _assert_one_line_error(_cli("evaluate.py", "--checkpoint", str(tmp_path / "x.pt")), "checkpoint file not found")

    broken = tmp_path / "broken"
    shutil.copytree(demo_root, broken)
    ann = next((broken / "annotations" / "VA_Set" / "Training_Set").glob("*.txt"))
    ann.write_text(ann.read_text().replace("valence,arousal", "arousal;valence", 1))
    _assert_one_line_error(_cli("train.py", *TINY, f"data.root={broken}", "train.max_steps=1",
                                f"run.dir={tmp_path / 'r2'}"), str(ann), "expected header")


def test_corrupt_jpeg_named_from_a_worker(demo_root, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(demo_root, broken)
    frames = sorted((broken / "cropped_aligned").glob("demo_t*/*.jpg"))
    for frame in frames:  # corrupt every training frame so the first batch must hit one
        frame.write_bytes(frame.read_bytes()[:100])
    result = _cli("train.py", *TINY, f"data.root={broken}", f"run.dir={tmp_path / 'run'}", "train.max_steps=2",
                  "data.num_workers=1")
    _assert_one_line_error(result, "truncated JPEG", str(broken / "cropped_aligned"))


def test_checkpoint_with_foreign_weights_is_a_clear_error(demo_root, tmp_path, capsys):
    """A checkpoint whose config says another image size than its weights were built for is refused."""
    run = tmp_path / "run"
    assert _run(demo_root, run, "train.max_steps=1", "train.eval_every=1") == 0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["config"]["model"]["image_size"] = 64
    torch.save(ckpt, tmp_path / "edited.pt")
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(tmp_path / "edited.pt")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights do not fit this model" in err and "image size" in err
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    assert evaluate.main(["--checkpoint", str(tmp_path / "garbage.pt")]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_used_run_folder_is_refused_unless_overwritten(demo_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(demo_root, run, "train.max_steps=1", "train.eval_every=1") == 0
    capsys.readouterr()
    assert _run(demo_root, run, "train.max_steps=1", "train.eval_every=1") == 2
    assert "holds a run already" in capsys.readouterr().err
    assert _run(demo_root, run, "train.max_steps=2", "train.eval_every=2", "run.overwrite=true") == 0
    assert [r["step"] for r in _jsonl(run / "metrics.jsonl") if "val/ccc_valence" in r] == [2]  # no mixed runs


def test_degradations_off_still_trains_the_generator(demo_root, tmp_path):
    run = tmp_path / "run"
    assert _run(demo_root, run, "data.degrade.enabled=false", "train.max_steps=2", "train.eval_every=2",
                "train.n_critic=1") == 0
    rows = _jsonl(run / "metrics.jsonl")
    assert any("G/rec" in r for r in rows) and not any("val/psnr_degraded" in r for r in rows)


def test_resume_keeps_the_tensorboard_events_of_the_checkpoint_step(demo_root, tmp_path):
    common = ["train.max_steps=6", "train.eval_every=3", "train.n_critic=3"]
    run = tmp_path / "run"
    _interrupted_run(demo_root, run, 4, *common)
    assert train.main([f"run.resume={run / 'last.pt'}"]) == 0
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("D/loss")] == [2, 4, 6]   # step 4 was logged before the save
    assert [e.step for e in acc.Scalars("val/ccc_valence")] == [3, 6]


def test_postprocess_fits_on_labels_only(demo_root, tmp_path):
    """The demo's validation videos have -5 rows: the chain must be fitted and scored without them."""
    run = tmp_path / "run"
    assert _run(demo_root, run, "train.max_steps=2", "train.eval_every=2") == 0
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(run / "last.pt"), "--postprocess", "--out", str(out)]) == 0
    post = json.loads((out / "metrics.json").read_text())["postprocess"]
    for dim in ("valence", "arousal"):
        assert post["chain"]["dimensions"][dim]["val_ccc_before"] == pytest.approx(post["before"][dim]["ccc"],
                                                                                     abs=1e-9)


def test_final_model_on_train_and_val_has_no_best_checkpoint_and_says_so(demo_root, tmp_path, capsys):
    run = tmp_path / "final"
    assert _run(demo_root, run, "data.train_splits=[train, val]", "train.max_steps=2", "train.eval_every=2") == 0
    assert (run / "last.pt").is_file() and not (run / "best.pt").exists()
    assert "trains the final model on train + val for a fixed 2 steps" in (run / "FINAL_MODEL.txt").read_text()
    cfg = train.load_config(train.DEFAULT_PRESET, [*TINY, f"data.root={demo_root}", f"run.dir={tmp_path / 'x'}",
                                                   "data.train_splits=[train, val]"])
    both = train.Trainer(cfg, None)
    only_train = train.Trainer(train.load_config(train.DEFAULT_PRESET, [*TINY, f"data.root={demo_root}",
                                                                        f"run.dir={tmp_path / 'y'}"]), None)
    assert len(both.train_set) == len(only_train.train_set) + len(both.validator.val_set)
    both.runlog.close()
    only_train.runlog.close()
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(run / "last.pt"), "--out", str(tmp_path / "eval")]) == 0
    assert "NOTE: optimistic scores: the model was trained on the val split" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"data.train_splits must be \[train\] or \[train, val\]"):
        train.load_config(None, ["data.train_splits=[val, test]"])


def test_uint8_faces_converted_on_the_device_equal_the_float_samples(demo_root, tmp_path):
    """The training loader carries uint8 faces; converted by faces_to_float they are the float contract's
    faces bit for bit (clean and degraded, with the training degradations and their seeds)."""
    from data.samples.dataset import faces_to_float
    from data.samples.loaders import build_dataset, collate, load_split

    cfg = train.load_config(train.DEFAULT_PRESET, [*TINY, f"data.root={demo_root}", f"run.dir={tmp_path}"])
    split, _ = load_split(cfg.data, "training")
    as_float = build_dataset(split, 32, cfg.data.degrade)
    as_uint8 = build_dataset(split, 32, cfg.data.degrade, faces_as_uint8=True)
    keys = [(i, 1000 + i) for i in range(0, len(as_float), 7)]
    floats, uint8s = collate(as_float.__getitems__(keys)), collate(as_uint8.__getitems__(keys))
    assert uint8s["face"].dtype == torch.uint8 and uint8s["face_degraded"].dtype == torch.uint8
    converted = faces_to_float(uint8s)
    for key in ("face", "face_degraded", "va", "audio"):
        assert converted[key].dtype == torch.float32 and torch.equal(converted[key], floats[key]), key


def test_disc_aug_trains_its_critic_on_degraded_faces_and_disc_on_clean_ones(demo_root, tmp_path):
    """The augmentation baseline is configuration (model.variant=disc_aug): its samples carry the degraded face
    that its D step reads; disc's samples carry none, so disc never sees a degradation."""
    base = [*TINY, f"data.root={demo_root}", "train.max_steps=2", "train.eval_every=2"]
    aug = train.Trainer(train.load_config(train.DEFAULT_PRESET, [*base, f"run.dir={tmp_path / 'aug'}",
                                                                 "model.variant=disc_aug"]), None)
    disc = train.Trainer(train.load_config(train.DEFAULT_PRESET, [*base, f"run.dir={tmp_path / 'disc'}",
                                                                  "model.variant=disc"]), None)
    sample_aug, sample_disc = aug.train_set[(0, 1)], disc.train_set[(0, 1)]
    assert "face_degraded" in sample_aug and "face_degraded" not in sample_disc
    assert not torch.equal(sample_aug["face_degraded"], sample_aug["face"])   # the mix degraded this one
    assert aug.stepper.model.aeg is None and aug.fit() == 0
    disc.runlog.close()
    assert (tmp_path / "aug" / "last.pt").is_file()
