"""The built-in demo in the SEWA / AVEC 2019 layout (data/datasets/demo/sewa_layout.py), read by the real SEWA reader.

What a training run on it relies on: ``data.dataset=sewa data.demo.layout=sewa`` generates it once into its own
cache folder; the label files carry the annotator delays, so reading with the same delays gives every frame
the value its face shows (checked against the generator's own trace functions, not the files); all three
protocols have data; and the Aff-Wild2 demo is byte-for-byte what it was before the layouts existed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re

import numpy as np
import pytest

from data.datasets.demo import (
    SEWA_DEMO_DELAYS,
    DemoSpec,
    default_demo_root,
    default_root_for,
    ensure_demo_dataset,
    expressed_traces,
    recording_names,
    sewa_layout,
)
from data.datasets.sewa import SewaConfig, read_avec_labels
from data.errors import DataError
from data.samples.loaders import DataConfig, build_dataset, index_records, load_split, resolve_root
from runconfig import ConfigError, load_config
from tests.fixtures import AVEC

# 4 Train + 4 Devel recordings (2 per culture) of 12 s at 25 fps: frames fall between the 10 Hz label rows.
SPEC = DemoSpec(layout="sewa", num_train=4, num_val=4, frames=300, fps=25, size=48)
BUILT_IN = {"delay_arousal": 4.0, "delay_valence": 2.8, "delay_liking": 0.0}
HOP = 0.1
ROUNDING = 1e-6   # labels are written with 6 decimals and read back as float32


def _config(root: str = "", **sewa) -> DataConfig:
    cfg = DataConfig(dataset="sewa", root=root, demo=SPEC, sewa=SewaConfig(**sewa), num_workers=0)
    cfg.validate()
    return cfg


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> pathlib.Path:
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("cache")
        mp.setenv("ALN_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def root(cache) -> pathlib.Path:
    """The SEWA-layout demo as ``data.dataset=sewa data.demo.layout=sewa`` without ``data.root`` makes it."""
    return resolve_root(_config())


def _derivative_bounds(trace) -> tuple[float, float]:
    """max |x'| and max |x''| of a trace over the recording (and the delay before it), with a 1 % margin.

    Computed from the sinusoids' exact derivatives on a 1 ms grid.
    """
    grid = np.arange(-4.0, SPEC.frames / SPEC.fps, 0.001)
    w = 2.0 * np.pi / trace.periods
    arg = w * grid[:, None] + trace.phases
    slope = np.abs(np.cos(arg) @ (trace.amps * w)).max()
    curvature = np.abs(np.sin(arg) @ (trace.amps * w ** 2)).max()
    return 1.01 * float(slope), 1.01 * float(curvature)


# ------------------------------------------------------------------------------ generation and caching


def test_resolve_root_generates_once_into_its_own_cache_folder(root, cache):
    assert root == cache / "demo-v1-sewa-v1-4x4x300-25fps-48px-seed0"
    marker = json.loads((root / "DEMO_DONE.json").read_text())
    assert marker == {"demo_version": 1, "sewa_demo_version": 1, "spec": dataclasses.asdict(SPEC)}
    assert marker["spec"]["layout"] == "sewa"
    assert sorted(p.name for p in root.iterdir()) == ["DEMO_DONE.json", "audio", "cropped_aligned", "labels", "meta"]
    before = {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}
    assert resolve_root(_config()) == root
    assert {str(p): p.stat().st_mtime_ns for p in root.rglob("*")} == before
    # the default SEWA demo and the Aff-Wild2 demo have folders of their own
    assert default_root_for(DemoSpec(layout="sewa")) == cache / "demo-v1-sewa-v1"
    assert default_root_for(DemoSpec()) == default_demo_root() == cache / "demo-v1"
    assert default_root_for(DemoSpec(num_train=3, num_val=2, frames=20)).name == "demo-v1-3x2x20-112px-seed0"


def test_data_root_given_generates_there_replacing_a_stale_demo(root, tmp_path):
    target = tmp_path / "mine"   # a SEWA demo of another spec, already used with the folds protocol
    (target / "labels").mkdir(parents=True)
    (target / "labels" / "Train_DE_09.csv").write_text("stale")
    (target / "folds_seed0.json").write_text("{}")
    (target / "DEMO_DONE.json").write_text(json.dumps({"demo_version": 1, "sewa_demo_version": 1,
                                                        "spec": dataclasses.asdict(DemoSpec(layout="sewa"))}))
    assert resolve_root(_config(str(target))) == target
    assert not (target / "labels" / "Train_DE_09.csv").exists() and not (target / "folds_seed0.json").exists()
    for name in ("labels/Train_DE_01.csv", "labels/Devel_HU_02.csv", "audio/Train_HU_01.wav", "meta/Devel_DE_01.json"):
        assert (target / name).read_bytes() == (root / name).read_bytes()


def test_refuses_to_overwrite_a_real_sewa_root(tmp_path):
    real = tmp_path / "sewa"
    (real / "labels").mkdir(parents=True)
    (real / "labels" / "Train_DE_01.csv").write_text("precious")
    (real / "cropped_aligned").mkdir()
    with pytest.raises(DataError, match="refusing"):
        resolve_root(_config(str(real)))
    assert (real / "labels" / "Train_DE_01.csv").read_text() == "precious"


def test_layout_is_selected_by_overrides_and_validated():
    cfg = load_config(None, ["data.dataset=sewa", "data.demo.layout=sewa"]).data
    assert cfg.demo == DemoSpec(layout="sewa")
    assert (cfg.demo.num_train, cfg.demo.num_val, cfg.demo.frames, cfg.demo.fps) == (24, 12, 300, 10)
    assert load_config(None, ["data.dataset=sewa", "data.demo.layout=sewa", "data.demo.frames=120"]).data.demo \
        == DemoSpec(layout="sewa", frames=120)
    with pytest.raises(ConfigError, match="data.root must be set for data.dataset=sewa"):
        load_config(None, ["data.dataset=sewa"])
    with pytest.raises(ConfigError, match="data.dataset=sewa"):
        load_config(None, ["data.demo.layout=sewa"])      # the SEWA layout is not read by the demo (Aff-Wild2) reader
    with pytest.raises(ConfigError, match="layout must be one of"):
        load_config(None, ["data.dataset=sewa", "data.demo.layout=avec"])
    with pytest.raises(ValueError, match="num_val >= 2"):
        ensure_demo_dataset(None, DemoSpec(layout="sewa", num_val=1))
    with pytest.raises(ValueError, match="at least 5 s"):
        ensure_demo_dataset(None, DemoSpec(layout="sewa", frames=40))


def test_default_sewa_corpus_size():
    spec = DemoSpec(layout="sewa")
    names = recording_names(spec)
    assert len(names) == 36 and len(set(names)) == 36
    assert [sum(n.startswith(g) for n in names) for g in ("Train_DE", "Train_HU", "Devel_DE", "Devel_HU")] \
        == [12, 12, 6, 6]
    assert len(names) * spec.frames == 10_800 and spec.frames / spec.fps == 30.0
    assert len(sewa_layout.label_times(spec)) == 300


# ------------------------------------------------------------------------------ files in the AVEC format


def test_label_files_are_in_the_avec_2019_format(root):
    real = AVEC / "labels_devel" / "Devel_DE_01.csv"
    real_lines = real.read_text().splitlines() if real.is_file() else None
    row = re.compile(r"^'(Train|Devel)_(DE|HU)_\d{2}';\d+\.\d{6}(;-?\d\.\d{6}){3}$")
    for stem in recording_names(SPEC):
        lines = (root / "labels" / f"{stem}.csv").read_text().splitlines()
        assert lines[0] == "name;timestamp;arousal;valence;liking"
        if real_lines is not None:
            assert lines[0] == real_lines[0] and row.match(real_lines[1].replace("Devel_DE_01", stem))
        assert len(lines) == 1 + 120 and all(row.match(line) and line.startswith(f"'{stem}';") for line in lines[1:])
        labels = read_avec_labels(root / "labels" / f"{stem}.csv")
        assert labels.name == stem and labels.liking is not None
        np.testing.assert_allclose(labels.times, np.arange(120) * HOP, atol=1e-9)
        for dim in ("arousal", "valence", "liking"):
            assert np.abs(labels.track(dim)).max() <= 0.96 and labels.track(dim).std() > 0.1
        meta = json.loads((root / "meta" / f"{stem}.json").read_text())
        assert (meta["fps"], meta["frames"], meta["complete"]) == (25.0, 300, True)
        assert meta["faces"] == len(list((root / "cropped_aligned" / stem).glob("*.jpg")))


def test_label_rows_are_the_expressed_traces_recorded_late(root):
    """Written value at row time t = expressed(t - delay), from the generator's trace functions."""
    for stem in recording_names(SPEC)[:3]:
        labels = read_avec_labels(root / "labels" / f"{stem}.csv")
        traces = expressed_traces(SPEC, stem)
        for dim in ("arousal", "valence", "liking"):
            expected = traces[dim](labels.times - SEWA_DEMO_DELAYS[dim])
            np.testing.assert_allclose(labels.track(dim), expected, atol=ROUNDING)
    assert SEWA_DEMO_DELAYS == {"arousal": 4.0, "valence": 2.8, "liking": 0.0}


# ------------------------------------------------------------------------------ read back through the reader


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_compensated_labels_are_what_each_frame_shows(root, interpolation):
    """With the built-in delays configured, every usable frame's label is the trace at the frame's time."""
    cfg = _config(protocol="avec", interpolation=interpolation, **BUILT_IN)
    plan = sewa_layout.missing_plan(SPEC)
    last_label = sewa_layout.label_times(SPEC)[-1]
    checked = 0
    for split in ("train", "val"):
        for record in index_records(cfg, split):
            # usable: the arousal label (4 s later) exists, and the face was found
            numbers = np.arange(1, SPEC.frames + 1)
            labelled = (numbers - 1) / SPEC.fps + 4.0 <= last_label + 1e-6
            expected_frames = numbers[labelled & ~np.isin(numbers - 1, plan[record.name])]
            np.testing.assert_array_equal(record.frames, expected_frames)
            assert record.fps == 25.0 and record.audio is not None

            t = (record.frames - 1) / SPEC.fps
            traces = expressed_traces(SPEC, record.name)
            got = {"valence": record.labels[record.frames - 1, 0], "arousal": record.labels[record.frames - 1, 1],
                   "liking": record.liking[record.frames - 1]}
            for dim, values in got.items():
                slope, curvature = _derivative_bounds(traces[dim])
                tol = (slope * HOP / 2 if interpolation == "nearest" else curvature * HOP ** 2 / 8) + ROUNDING
                err = np.abs(values - traces[dim](t))
                assert err.max() <= tol, (record.name, dim, err.max(), tol)
                assert tol < (0.1 if interpolation == "nearest" else 0.005)   # tight enough to mean something
            checked += len(record.frames)
    assert checked == sum(len(np.flatnonzero(((np.arange(300) / 25 + 4.0) <= 11.9 + 1e-6)
                                             & ~np.isin(np.arange(300), m))) for m in plan.values())


def test_without_compensation_labels_lag_behind_the_faces(root):
    """The delays really are in the files: read raw, arousal and valence are 2.8-4 s stale."""
    raw = {r.name: r for r in index_records(_config(protocol="avec", interpolation="linear"), "train")}
    for name, record in raw.items():
        traces = expressed_traces(SPEC, name)
        t = (record.frames - 1) / SPEC.fps
        labelled_arousal = record.labels[record.frames - 1, 1]
        tol = _derivative_bounds(traces["arousal"])[1] * HOP ** 2 / 8 + ROUNDING
        assert np.abs(labelled_arousal - traces["arousal"](t - 4.0)).max() <= tol   # what it showed 4 s ago
        assert np.abs(labelled_arousal - traces["arousal"](t)).mean() > 0.1
        assert np.abs(record.labels[record.frames - 1, 0] - traces["valence"](t)).mean() > 0.05


def test_samples_carry_faces_audio_and_the_shown_values(root, tmp_path):
    cfg = _config(protocol="cross_cultural", **BUILT_IN)
    cfg.audio.cache_dir = str(tmp_path / "egemaps")
    split, _ = load_split(cfg, "train")
    assert [r.name for r in split.records] == ["Train_DE_01", "Train_DE_02"]
    features = np.concatenate([split.audio[r.name][r.frames - 1] for r in split.records])
    assert features.shape[1] == 50 and np.isfinite(features).all() and (np.abs(features) > 0).any(axis=1).all()
    dataset = build_dataset(split, 48, None)
    for i in (0, len(dataset) // 2, len(dataset) - 1):
        sample = dataset[i]
        traces = expressed_traces(SPEC, sample["video"])
        t = (sample["frame"] - 1) / SPEC.fps
        assert tuple(sample["face"].shape) == (3, 48, 48)
        expected = [traces["valence"](t), traces["arousal"](t)]
        np.testing.assert_allclose(sample["va"].numpy(), expected, atol=0.01)


@pytest.mark.parametrize("protocol", ["folds", "avec", "cross_cultural"])
def test_every_protocol_has_data_in_the_right_partitions(root, protocol):
    cfg = _config(protocol=protocol, num_folds=4, **BUILT_IN)
    names = {split: [r.name for r in index_records(cfg, split)] for split in ("train", "val", "test")}
    assert all(names.values()), names

    def group(*prefixes):
        return sorted(n for n in recording_names(SPEC) if n.startswith(prefixes))

    if protocol == "avec":
        assert names == {"train": group("Train_"), "val": group("Devel_"), "test": group("Devel_")}
    elif protocol == "cross_cultural":
        assert names == {"train": group("Train_DE"), "val": group("Devel_DE"), "test": group("Devel_HU", "Train_HU")}
    else:
        every = names["train"] + names["val"] + names["test"]
        assert sorted(every) == sorted(recording_names(SPEC)) and len(set(every)) == len(every)
        assert (root / "folds_seed0.json").is_file()
        assert resolve_root(_config()) == root   # the fold manifest does not make the demo look stale


# ------------------------------------------------------------------------------ the Aff-Wild2 demo is unchanged

#: sha256 over (path, sha256(content)) of every file but the marker of DemoSpec(num_train=2, num_val=1,
#: frames=12, size=48), generated by the code before the SEWA layout existed (commit 4f8fe64).
AFFWILD2_TINY_SHA = "aef264f10c0d95247e64004221838dc4269faa1b85ef17a080acf2ab0f63d59d"


def _tree_hash(root: pathlib.Path) -> tuple[int, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "DEMO_DONE.json")
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(root)).encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return len(files), h.hexdigest()


def test_affwild2_demo_is_byte_identical(tmp_path):
    spec = DemoSpec(num_train=2, num_val=1, frames=12, size=48)
    assert spec == DemoSpec(num_train=2, num_val=1, frames=12, size=48, fps=30, layout="affwild2")
    root = ensure_demo_dataset(tmp_path / "d", spec)
    assert _tree_hash(root) == (38, AFFWILD2_TINY_SHA)
    assert DemoSpec() == DemoSpec(num_train=96, num_val=32, frames=75, fps=30, size=112, sample_rate=16000, seed=0)
    assert (DemoSpec.num_train, DemoSpec.num_val, DemoSpec.frames, DemoSpec.fps) == (96, 32, 75, 30)

    # A marker written before DemoSpec.layout existed still counts as complete: nothing is regenerated.
    marker = root / "DEMO_DONE.json"
    old = {"demo_version": 1, "spec": {k: v for k, v in dataclasses.asdict(spec).items() if k != "layout"}}
    marker.write_text(json.dumps(old))
    before = {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}
    assert ensure_demo_dataset(root, spec) == root
    assert {str(p): p.stat().st_mtime_ns for p in root.rglob("*")} == before
