"""Progressive training: stage plans, function-preserving stage transfer, runs and resumes across stages."""

from __future__ import annotations

import json

import pytest
import torch

import train
from gan.models import ALN, ModelConfig
from gan.stages import StageConfig, plan_stages, stage_at
from runconfig import ConfigError, load_config
from tests.train_helpers import TINY, _final_state, _interrupted_run, _jsonl, _run

STAGES = "train.stages=[{variant: denoise, steps: 3}, {variant: aeg_cd, steps: 3}, {variant: aeg_cd_sz}]"


def test_plan_covers_max_steps_and_the_last_stage_runs_to_the_end():
    plan = plan_stages([StageConfig("denoise", 3), StageConfig("aeg_cd", 4), StageConfig("aeg_cd_sz")],
                       "aeg_cd_sz", 10)
    assert [(s.variant, s.start, s.end, s.is_last) for s in plan] == [
        ("denoise", 0, 3, False), ("aeg_cd", 3, 7, False), ("aeg_cd_sz", 7, 10, True)]
    assert [stage_at(plan, k).index for k in range(11)] == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert plan[0].model_variant == "aeg_cd" and not plan[0].trains_critic and plan[1].trains_critic
    assert plan_stages([], "disc", 5) == [plan_stages([StageConfig("disc", 5)], "disc", 5)[0]]


@pytest.mark.parametrize("stages, variant, steps, needle", [
    ([StageConfig("denoise", 3), StageConfig("aeg_cd")], "aeg_cd_sz", 10, "model.variant is 'aeg_cd_sz'"),
    ([StageConfig("denoise", 0), StageConfig("aeg_cd")], "aeg_cd", 10, "stages[0].steps must be > 0"),
    ([StageConfig("denoise", 10), StageConfig("aeg_cd")], "aeg_cd", 10, "leaving none"),
    ([StageConfig("denoise", 3), StageConfig("aeg_cd", 3)], "aeg_cd", 10, "add up to 6"),
    ([StageConfig("warmup", 3), StageConfig("aeg_cd")], "aeg_cd", 10, "stages[0].variant"),
])
def test_bad_plans_are_refused_with_the_reason(stages, variant, steps, needle):
    with pytest.raises(ValueError) as info:
        plan_stages(stages, variant, steps)
    assert needle in str(info.value)


def test_stages_from_the_command_line_and_their_errors():
    cfg = load_config(None, ["train.max_steps=9", STAGES])
    assert [s.variant for s in cfg.train.stages] == ["denoise", "aeg_cd", "aeg_cd_sz"]
    with pytest.raises(ConfigError, match="model.variant"):
        load_config(None, ["train.max_steps=9", STAGES, "model.variant=aeg_cd"])
    with pytest.raises(ConfigError, match="unknown config key 'train.stages\\[0\\].step'"):
        load_config(None, ["train.stages=[{variant: denoise, step: 3}, {variant: aeg_cd_sz}]"])


def _perturbed(model: torch.nn.Module, seed: int) -> None:
    """Move every weight off its initial value, so that a copy that forgot a tensor shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_stage_transfer_aeg_cd_to_aeg_cd_sz_preserves_the_outputs():
    cfg = ModelConfig(image_size=32, g_conv_dim=4, g_res_blocks=1, d_conv_dim=4)
    torch.manual_seed(0)
    before = ALN(ModelConfig(**{**cfg.__dict__, "variant": "aeg_cd"}), audio_dim=50)
    _perturbed(before, 1)
    after = ALN(ModelConfig(**{**cfg.__dict__, "variant": "aeg_cd_sz"}), audio_dim=50)
    copied, fresh = after.start_from_stage(before.state_dict())
    assert sorted(fresh) == ["cd.audio_map.bias", "cd.audio_map.weight", "cd.fuse.bias", "cd.fuse.weight"]
    face = torch.rand(6, 3, 32, 32) * 2 - 1
    audio = torch.randn(6, 50) * 3    # any audio: the new audio channel must not matter yet
    restored_a, z_a = before.clean(face)
    restored_b, z_b = after.clean(face)
    assert torch.equal(restored_a, restored_b) and torch.equal(z_a, z_b)
    logits_a, va_a = before.critic(restored_a, z_a, audio)
    logits_b, va_b = after.critic(restored_b, z_b, audio)
    assert torch.allclose(logits_a, logits_b, atol=1e-6, rtol=0) and torch.allclose(va_a, va_b, atol=1e-6, rtol=0)
    assert (va_a - va_b).abs().max() < 1e-6 and va_a.std() > 1e-3   # outputs are not trivially constant
    # the new inputs are no-ops, not dead: they receive gradient from the first step
    logits_b.sum().backward()
    assert after.cd.fuse.weight.grad[:, after.cd.fuse.out_channels:].abs().sum() > 0
    assert after.cd.blocks[0][0].weight.grad[:, 3].abs().sum() > 0


def test_stage_transfer_from_denoise_keeps_the_generator():
    cfg = ModelConfig(variant="aeg_cd", image_size=32, g_conv_dim=4, g_res_blocks=1, d_conv_dim=4)
    before, after = ALN(cfg, 50), ALN(cfg, 50)
    _perturbed(before.aeg, 2)
    after.start_from_stage(before.state_dict())
    face = torch.rand(4, 3, 32, 32) * 2 - 1
    assert torch.equal(before.clean(face)[0], after.clean(face)[0])


def test_staged_run_marks_boundaries_and_keeps_each_stage(demo_root, tmp_path):
    run = tmp_path / "run"
    assert _run(demo_root, run, "train.max_steps=8", "train.eval_every=4", "train.n_critic=2", STAGES) == 0
    rows = _jsonl(run / "metrics.jsonl")
    starts = [(r["step"], r["variant"]) for r in rows if r.get("event") == "stage_start"]
    assert starts == [(0, "denoise"), (3, "aeg_cd"), (6, "aeg_cd_sz")]
    # the denoise stage trains the AEG alone: no D losses before step 3, D losses after
    assert all("D/loss" not in r for r in rows if r.get("step", 0) <= 3 and "G/denoise" in r)
    assert any("D/loss" in r and r["stage"] == 2 for r in rows)
    # each stage ends with a validation and a checkpoint of that stage's model; the denoise stage's (step 3),
    # whose CD is untrained, scores restoration only
    val_steps = [r["step"] for r in rows if "val/ccc_valence" in r]
    assert val_steps == [4, 6, 8]
    restoration_steps = [r["step"] for r in rows if "restoration/psnr_restored_all" in r]
    assert restoration_steps == [3, 4, 6, 8]
    s0 = torch.load(run / "stage0-denoise.pt", weights_only=True)
    s1 = torch.load(run / "stage1-aeg_cd.pt", weights_only=True)
    assert (s0["step"], s0["variant"], s1["step"], s1["variant"]) == (3, "aeg_cd", 6, "aeg_cd")
    last = _final_state(run)
    assert last["variant"] == "aeg_cd_sz" and last["stage"] == 2 and "cd.fuse.weight" in last["model"]
    # best.pt is chosen within the final stage, so it holds the final model
    assert torch.load(run / "best.pt", weights_only=True)["variant"] == "aeg_cd_sz"
    # restoration and the three V/A views are logged at every validation, per artefact too
    val = [r for r in rows if "val/ccc_valence" in r][-1]
    for tag in ("val/psnr_restored", "val/ssim_degraded", "val_clean_input/ccc_valence",
                "val_degraded_no_aeg/ccc_arousal", "restoration/psnr_restored_colour",
                "restoration/ssim_degraded_blur", "restoration/psnr_degraded_all"):
        assert tag in val, tag
    # G's per-term gradient norms on the AEG reach the logs
    assert any("G/gradnorm_adv" in r and "G/gradnorm_denoise" in r for r in rows)


@pytest.mark.parametrize("stop_after", [3, 5])
def test_exact_resume_across_a_stage_boundary(demo_root, tmp_path, stop_after):
    """Interrupted at a stage boundary (3) or inside the next stage (5): resuming equals one straight run."""
    common = ["train.max_steps=8", "train.eval_every=4", "train.n_critic=2", STAGES]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(demo_root, straight, *common) == 0
    _interrupted_run(demo_root, split, stop_after, *common)
    assert _final_state(split)["step"] == stop_after
    assert train.main([f"run.resume={split / 'last.pt'}"]) == 0
    a, b = _final_state(straight), _final_state(split)
    assert a["step"] == b["step"] == 8
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert json.dumps(_jsonl(straight / "metrics.jsonl")) == json.dumps(_jsonl(split / "metrics.jsonl"))
    for name in ("stage0-denoise.pt", "stage1-aeg_cd.pt"):
        x = torch.load(straight / name, weights_only=True)["model"]
        y = torch.load(split / name, weights_only=True)["model"]
        assert all(torch.equal(x[k], y[k]) for k in x), name


def test_evaluate_reports_restoration_and_views_of_a_stage_checkpoint(demo_root, tmp_path):
    import evaluate

    run = tmp_path / "run"
    assert _run(demo_root, run, "train.max_steps=7", "train.eval_every=3", STAGES) == 0
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(run / "stage0-denoise.pt"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "aeg_cd"
    assert set(metrics["restoration"]) == {"blur", "noise", "downscale", "colour", "all", "clean"}
    row = metrics["restoration"]["noise"]
    assert set(row) == {"psnr_degraded", "psnr_restored", "ssim_degraded", "ssim_restored"}
    assert set(metrics["views"]) == {"clean_input", "degraded", "degraded_no_aeg"}
    # training's last validation of that checkpoint scored the same frames with the same code
    val = [r for r in _jsonl(run / "metrics.jsonl") if r.get("step") == 3 and "restoration/psnr_restored_noise" in r]
    assert row["psnr_restored"] == pytest.approx(val[0]["restoration/psnr_restored_noise"], abs=1e-6)


def test_a_denoise_stage_builds_no_critic_optimiser(demo_root, tmp_path):
    cfg = load_config(train.DEFAULT_PRESET, [*TINY, f"data.root={demo_root}", f"run.dir={tmp_path}",
                                             "train.max_steps=8", STAGES])
    trainer = train.Trainer(cfg, None)
    assert trainer.stage.variant == "denoise" and trainer.stepper.opt_d is None and trainer.stepper.opt_g is not None
    trainer.runlog.close()



def test_ablation_gives_every_variant_the_same_critic_iterations_with_denoise_on_top():
    from experiments import ablation

    # the demo preset in shares: 3000 iterations, denoise 0.6 (1800), aeg_cd 0.1 (300), aeg_cd_sz the rest (900)
    shares = {"train": {"max_steps": 3000, "stages": [{"variant": "denoise", "share": 0.6, "lr": 1e-3},
                                                      {"variant": "aeg_cd", "share": 0.1}, {"variant": "aeg_cd_sz"}]}}
    critic, denoise, part = ablation.preset_budget(shares)
    assert (critic, denoise, part) == (1200, 1800, 0.25)
    stages = shares["train"]["stages"]
    assert ablation.stages_for("disc", stages, 600, 900, part) == ([{"variant": "disc", "steps": 0}], 600)
    assert ablation.stages_for("disc_aug", stages, 600, 900, part) == ([{"variant": "disc_aug", "steps": 0}], 600)
    aeg_cd, total = ablation.stages_for("aeg_cd", stages, 600, 900, part)
    assert total == 1500 and aeg_cd == [{"variant": "denoise", "lr": 1e-3, "steps": 900}, {"variant": "aeg_cd", "steps": 0}]
    sz, total = ablation.stages_for("aeg_cd_sz", stages, 600, 900, part)
    # the flow string is a valid train.stages override, and every variant's critic runs 600 iterations
    cfg = load_config(None, [f"train.max_steps={total}", f"train.stages={ablation.flow(sz)}"])
    plan = plan_stages(cfg.train.stages, "aeg_cd_sz", total)
    assert [(s.variant, s.start, s.end) for s in plan] == [("denoise", 0, 900), ("aeg_cd", 900, 1050),
                                                           ("aeg_cd_sz", 1050, 1500)]
    assert cfg.train.stages[0].lr == 1e-3
    for variant in ablation.VARIANTS:
        flow, total = ablation.stages_for(variant, stages, 600, 900, part)
        cfg = load_config(None, [f"model.variant={variant}", f"train.max_steps={total}",
                                 f"train.stages={ablation.flow(flow)}"])
        critic_iterations = sum(s.end - s.start for s in plan_stages(cfg.train.stages, variant, total)
                                if s.variant != "denoise")
        assert critic_iterations == 600
    # a preset given in steps reads the same
    steps = {"train": {"max_steps": 3000, "stages": [{"variant": "denoise", "steps": 1800},
                                                     {"variant": "aeg_cd", "steps": 300}, {"variant": "aeg_cd_sz"}]}}
    assert ablation.preset_budget(steps) == (1200, 1800, 0.25)


def test_stage_shares_follow_max_steps_and_are_checked():
    shares = [StageConfig("denoise", share=0.6), StageConfig("aeg_cd", share=0.1), StageConfig("aeg_cd_sz")]
    assert [(s.start, s.end) for s in plan_stages(shares, "aeg_cd_sz", 3000)] == [(0, 1800), (1800, 2100), (2100, 3000)]
    # eight steps (a quick check): 0.6 * 8 = 4.8 -> 5, 0.1 * 8 = 0.8 -> 1, the rest for the last stage
    assert [(s.start, s.end) for s in plan_stages(shares, "aeg_cd_sz", 8)] == [(0, 5), (5, 6), (6, 8)]
    with pytest.raises(ValueError, match=r"stages\[0\] gives both steps \(5\) and share"):
        plan_stages([StageConfig("denoise", steps=5, share=0.5), StageConfig("aeg_cd_sz")], "aeg_cd_sz", 10)
    with pytest.raises(ValueError, match=r"stages\[0\].share must be in \[0, 1\)"):
        plan_stages([StageConfig("denoise", share=1.5), StageConfig("aeg_cd_sz")], "aeg_cd_sz", 10)
    with pytest.raises(ValueError, match="leaving none"):
        plan_stages([StageConfig("denoise", share=0.9), StageConfig("aeg_cd", share=0.9), StageConfig("aeg_cd_sz")],
                    "aeg_cd_sz", 10)
