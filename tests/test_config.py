"""Config composition: presets, dotted overrides, unknown keys and bad values."""

import pytest
import yaml

from runconfig import DEFAULT_PRESET, ConfigError, RunConfig, build_config, dump_yaml, load_config, to_dict


def test_demo_preset_defaults_and_overrides():
    cfg = load_config(DEFAULT_PRESET, ["train.max_steps=7", "model.variant=disc", "train.stages=[]", "loss.affect_terms=[rmse,ccc]",
                                       "data.degrade.blur_sigma=[0.5,1.5]", "loss.lambda_rec=1"])
    assert cfg.model.variant == "disc" and cfg.train.max_steps == 7
    assert cfg.loss.affect_terms == ["rmse", "ccc"]
    assert cfg.data.degrade.blur_sigma == (0.5, 1.5)
    assert isinstance(cfg.loss.lambda_rec, float)
    assert load_config(DEFAULT_PRESET).model.variant == "aeg_cd_sz"


def test_round_trip_through_yaml_and_dict():
    cfg = load_config(DEFAULT_PRESET, ["seed=3"])
    again = build_config(yaml.safe_load(dump_yaml(cfg)))
    assert to_dict(again) == to_dict(cfg)
    assert isinstance(again, RunConfig) and again.seed == 3


@pytest.mark.parametrize("override,message", [
    ("train.max_stpes=3", "unknown config key 'train.max_stpes'"),
    ("trian.max_steps=3", "unknown config key 'trian'"),
    ("train.max_steps=abc", "train.max_steps: expected an integer"),
    ("train.max_steps=0", "train.max_steps must be >= 1"),
    ("model.variant=gan", "model.variant must be one of"),
    ("train.amp=maybe", "train.amp: expected true or false"),
    ("loss.affect_terms=[mse]", "loss.affect_terms must be"),
    ("data.dataset=sewa2", "data.dataset must be one of"),
    ("train.max_steps", "is not KEY=VALUE"),
    ("train.max_steps.x=1", "'max_steps' is a value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(DEFAULT_PRESET, [override])


def test_bad_preset_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model:\n  width: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'model.width'"):
        load_config(unknown)


def test_demo_preset_trains_progressively_and_a_plain_variant_needs_no_stages():
    cfg = load_config(DEFAULT_PRESET)
    assert [s.variant for s in cfg.train.stages] == ["denoise", "aeg_cd", "aeg_cd_sz"]
    with pytest.raises(ConfigError, match="train.stages=\\[\\] to train disc alone"):
        load_config(DEFAULT_PRESET, ["model.variant=disc"])
    assert load_config(DEFAULT_PRESET, ["model.variant=disc", "train.stages=[]"]).train.stages == []


def test_exponent_without_a_dot_is_a_number_and_words_are_still_refused():
    # YAML 1.1 reads "3e-4" as a string; a user typing it on the command line means the number
    assert build_config({}, ["train.lr_g=3e-4"]).train.lr_g == pytest.approx(3e-4)
    assert build_config({}, ["sequence.lr=1E-3"]).sequence.lr == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match="sequence.lr: expected a number, got 'fast'"):
        build_config({}, ["sequence.lr=fast"])


def test_the_sequence_systems_sections_sit_under_sequence_and_the_old_keys_still_read(caplog):
    """``sequence.pandit`` etc.; a top-level ``pandit:`` (old presets and checkpoints) or ``pandit.kernel=9`` (the old
    override) gives the same config, with one line saying where the section is now."""
    preset = "configs/baselines/pandit_d.yaml"
    new = load_config(preset, ["sequence.pandit.kernel=9"])
    assert new.sequence.pandit.model == "D" and new.sequence.pandit.kernel == 9 and not caplog.records
    assert load_config(preset, ["pandit.kernel=9"]) == new
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["override pandit.kernel uses 'pandit'; these sections are now under sequence: "
                        "(sequence.pandit.*), read as such"]
    old_tree = to_dict(new)
    old_tree["pandit"] = old_tree["sequence"].pop("pandit")   # a checkpoint's config from before the move
    caplog.clear()
    assert build_config(old_tree) == new and len(caplog.records) == 1
    assert "temporal_conv" not in to_dict(new) and "temporal_conv" in to_dict(new)["sequence"]
    with pytest.raises(ConfigError, match=r"unknown config key 'sequence.pandit.kernal'"):
        load_config(preset, ["pandit.kernal=9"])


def test_each_section_validates_itself():
    """The range checks sit with their sections (a section used alone still refuses a bad value)."""
    from baselines.sequence_config import SequenceSection
    from runconfig import TrainSection
    with pytest.raises(ValueError, match="train.n_critic must be >= 1"):
        TrainSection(n_critic=0).validate()
    with pytest.raises(ValueError, match="sequence.optimizer must be rmsprop or adam"):
        SequenceSection(optimizer="sgd").validate()
    TrainSection().validate()
    SequenceSection().validate()
