"""SEWA folds and protocols: fold manifests (deterministic, subject-disjoint, checked) and split_recordings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data.datasets.sewa import (
    SewaConfig,
    check_manifest,
    index_sewa,
    make_fold_manifest,
    manifest_path,
    read_fold_manifest,
    split_recordings,
    write_fold_manifest,
)
from data.errors import DataError
from tests.fixtures import AVEC_STEMS, write_label_tree, write_recording

# ----------------------------------------------------------------------------------------------- folds


RECS = [f"Train_DE_{i:02d}" for i in range(1, 18)]


def test_manifest_is_deterministic_balanced_and_complete():
    a = make_fold_manifest(RECS, None, 5, seed=0)
    assert a == make_fold_manifest(list(reversed(RECS)), None, 5, seed=0)   # input order does not matter
    assert a["folds"] != make_fold_manifest(RECS, None, 5, seed=1)["folds"]
    assert (a["seed"], a["num_folds"]) == (0, 5)
    assert a["subjects"] == {r: r for r in RECS}
    flat = [r for f in a["folds"] for r in f]
    assert sorted(flat) == RECS and len(flat) == len(set(flat))           # each recording in exactly one fold
    assert sorted(len(f) for f in a["folds"]) == [3, 3, 3, 4, 4]
    check_manifest(a, RECS, num_folds=5)


def test_manifest_with_subjects_is_subject_disjoint():
    subjects = {r: f"s{i // 3}" for i, r in enumerate(RECS)}   # 6 subjects with 3, 3, 3, 3, 3, 2 recordings
    m = make_fold_manifest(RECS, subjects, 3, seed=7)
    fold_of_subject = {}
    for i, fold in enumerate(m["folds"]):
        for rec in fold:
            assert fold_of_subject.setdefault(subjects[rec], i) == i
    assert sorted(len(f) for f in m["folds"]) == [5, 6, 6]
    check_manifest(m, RECS, subjects=subjects)
    with pytest.raises(DataError, match="subjects cannot fill"):
        make_fold_manifest(RECS, subjects, 7, seed=0)


def test_manifest_write_read_roundtrip(tmp_path):
    m = make_fold_manifest(RECS, None, 5, seed=3)
    path = write_fold_manifest(tmp_path / "sub" / "folds.json", m)
    assert read_fold_manifest(path) == m
    assert json.loads(path.read_text())["folds"] == m["folds"]
    assert not [p for p in path.parent.iterdir() if p.name != "folds.json"]   # no temp file left behind
    path.write_text('{"seed": 0, "folds": "x"}')
    with pytest.raises(DataError, match="not a fold manifest"):
        read_fold_manifest(path)
    path.write_text("{")
    with pytest.raises(DataError, match="unreadable fold manifest"):
        read_fold_manifest(path)


def _edited(manifest, edit):
    m = json.loads(json.dumps(manifest))
    edit(m)
    return m


@pytest.mark.parametrize("edit,recordings,what", [
    (lambda m: m["folds"][0].pop(), RECS, "in no fold"),
    (lambda m: m["folds"][0].append("Devel_HU_01"), RECS, "have no label file"),
    (lambda m: m["folds"][1].append(m["folds"][0][0]), RECS, "is in folds 0 and 1"),
    (lambda m: m.update(num_folds=4), RECS, "num_folds is 4 but 5 folds"),
    (lambda m: m["subjects"].update({m["folds"][0][0]: "p", m["folds"][1][0]: "p"}), RECS, "split across folds"),
    (lambda m: m["subjects"].pop(m["folds"][2][0]), RECS, "has no subject"),
])
def test_check_manifest_mismatches_name_the_manifest(edit, recordings, what):
    bad = _edited(make_fold_manifest(RECS, None, 5, seed=0), edit)
    with pytest.raises(DataError, match=what) as err:
        check_manifest(bad, recordings, source="/x/folds_seed0.json")
    assert str(err.value).startswith("/x/folds_seed0.json: ")


def test_check_manifest_fold_count_and_subjects_against_config():
    m = make_fold_manifest(RECS, None, 5, seed=0)
    with pytest.raises(DataError, match="sewa.num_folds=3"):
        check_manifest(m, RECS, num_folds=3, source="m.json")
    other = {r: "s" + r[-1] for r in RECS}
    with pytest.raises(DataError, match="configured subjects"):
        check_manifest(m, RECS, subjects=other, source="m.json")


# ---------------------------------------------------------------------------------------- split_recordings


def test_folds_protocol_creates_then_rereads_the_manifest(tmp_path):
    root = write_label_tree(tmp_path, AVEC_STEMS)
    (root / "audio").mkdir()
    (root / "audio" / "Test_DE_01.wav").write_bytes(b"")   # a test recording: no public labels, so no fold
    cfg = SewaConfig(protocol="folds", num_folds=4, fold_seed=5)
    test = split_recordings(root, cfg, "test", fold=1)
    path = root / "folds_seed5.json"
    assert manifest_path(root, cfg) == path and path.is_file()
    manifest = read_fold_manifest(path)
    assert test == sorted(manifest["folds"][1])
    assert split_recordings(root, cfg, "val", fold=1) == sorted(manifest["folds"][2])
    train = split_recordings(root, cfg, "train", fold=1)
    assert sorted(train + test + split_recordings(root, cfg, "val", fold=1)) == sorted(AVEC_STEMS)

    tests = []
    for k in range(4):
        parts = {s: split_recordings(root, SewaConfig(num_folds=4, fold_seed=5), s, fold=k) for s in
                 ("train", "val", "test")}
        assert not set(parts["train"]) & set(parts["test"]) and not set(parts["val"]) & set(parts["test"])
        assert not set(parts["train"]) & set(parts["val"])
        tests += parts["test"]
    assert sorted(tests) == sorted(AVEC_STEMS)               # every recording is tested exactly once

    # the manifest is authoritative: an edited (still consistent) manifest is used, not regenerated
    edited = _edited(manifest, lambda m: (m["folds"][1].append(m["folds"][0].pop())))
    write_fold_manifest(path, edited)
    assert split_recordings(root, cfg, "test", fold=1) == sorted(edited["folds"][1])

    # data changed since the manifest was drawn: an error naming the manifest, never silent new folds
    write_label_tree(root, ["Devel_DE_09"])
    with pytest.raises(DataError, match="in no fold") as err:
        split_recordings(root, cfg, "train")
    assert str(err.value).startswith(str(path))
    assert read_fold_manifest(path) == edited


def test_folds_protocol_config_mismatches(tmp_path):
    root = write_label_tree(tmp_path, AVEC_STEMS)
    explicit = tmp_path / "m" / "folds.json"
    split_recordings(root, SewaConfig(fold_manifest=str(explicit), fold_seed=1), "test")
    assert explicit.is_file() and not (root / "folds_seed1.json").exists()
    with pytest.raises(DataError, match="seed 1 but sewa.fold_seed=2"):
        split_recordings(root, SewaConfig(fold_manifest=str(explicit), fold_seed=2), "test")
    with pytest.raises(DataError, match="sewa.num_folds=4"):
        split_recordings(root, SewaConfig(fold_manifest=str(explicit), fold_seed=1, num_folds=4), "test")


def test_folds_protocol_with_subjects_file(tmp_path):
    root = write_label_tree(tmp_path, AVEC_STEMS)
    subjects = {s: f"p{i // 2}" for i, s in enumerate(AVEC_STEMS)}     # two recordings per person
    subjects_file = tmp_path / "subjects.csv"
    subjects_file.write_text("recording,subject\n" + "".join(f"{r},{s}\n" for r, s in subjects.items()))
    cfg = SewaConfig(subjects_file=str(subjects_file), num_folds=4)
    splits = {s: split_recordings(root, cfg, s) for s in ("train", "val", "test")}
    people = {s: {subjects[r] for r in recs} for s, recs in splits.items()}
    assert not people["train"] & people["test"] and not people["val"] & people["test"]
    assert not people["train"] & people["val"]
    # the same manifest read without the subjects file: its subjects no longer match the configuration
    with pytest.raises(DataError, match="configured subjects"):
        split_recordings(root, SewaConfig(num_folds=4), "test")
    subjects_file.write_text("recording,subject\nTrain_DE_01,p0\n")
    with pytest.raises(DataError, match="no subject for"):
        split_recordings(root, cfg, "test")
    subjects_file.write_text("rec;subj\n")
    with pytest.raises(DataError, match=":1: expected the header"):
        split_recordings(root, cfg, "test")


def test_avec_and_cross_cultural_protocols(tmp_path):
    root = write_label_tree(tmp_path, AVEC_STEMS)
    avec = SewaConfig(protocol="avec")
    train_de = [s for s in AVEC_STEMS if s.startswith("Train_DE")]
    train_hu = [s for s in AVEC_STEMS if s.startswith("Train_HU")]
    devel = sorted(s for s in AVEC_STEMS if s.startswith("Devel"))
    assert split_recordings(root, avec, "train") == sorted(train_de + train_hu)
    assert split_recordings(root, avec, "val") == devel
    assert split_recordings(root, avec, "test") == devel          # AVEC test labels are not public
    cc = SewaConfig(protocol="cross_cultural")
    assert split_recordings(root, cc, "train") == train_de
    assert split_recordings(root, cc, "val") == ["Devel_DE_01", "Devel_DE_02", "Devel_DE_03"]
    assert split_recordings(root, cc, "test") == sorted(["Devel_HU_01", "Devel_HU_02", "Devel_HU_03"] + train_hu)
    assert not list(root.glob("folds_seed*.json"))                # only the folds protocol writes a manifest
    with pytest.raises(ValueError, match="split"):
        split_recordings(root, avec, "dev")
    only_de = write_label_tree(tmp_path / "de", ["Train_DE_01", "Devel_DE_01"])
    with pytest.raises(DataError, match="no labelled recordings for split 'test'"):
        split_recordings(only_de, cc, "test")


def test_official_rows_take_the_frame_at_label_time_minus_delay(tmp_path):
    """A label at time t describes the frame at t - delay: the AVEC row at t carries that frame's prediction."""
    from data.formats.official_outputs import sewa_tracks

    write_recording(tmp_path, "Train_DE_01", n_frames=30, fps=10, label_seconds=2.9)
    cfg = SewaConfig(delay_arousal=0.5, delay_valence=0.0)
    (record,), _ = index_sewa(tmp_path, ["Train_DE_01"], "train", cfg)
    frames = np.arange(1, 31)
    values = np.stack([frames * 0.01, frames * -0.01], axis=1)       # valence = frame/100, arousal = -frame/100
    (track,) = sewa_tracks([record], {"Train_DE_01": (frames, values)}, cfg)
    assert track.dims == ("arousal", "valence")
    t = track.times
    row = int(np.argmin(np.abs(t - 2.0)))                               # label time 2.0 s
    assert track.pred[row, 1] == pytest.approx(0.21)                    # valence: frame at 2.0 s = frame 21
    assert track.pred[row, 0] == pytest.approx(-0.16)                   # arousal: frame at 1.5 s = frame 16
    assert track.pred[0, 0] == pytest.approx(-0.01)                     # before the video start: first frame
