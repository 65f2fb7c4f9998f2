"""Dataset summary on a fixture tree in the Aff-Wild2 layout: exact counts, label statistics, JSON."""

import json

import numpy as np

from data import summary
from tests.fixtures import write_affwild2, write_face, write_recording


def test_affwild2_summary_counts_and_json(tmp_path, capsys):
    lab = np.array([[0.5, -0.5], [-5, -5], [0.1, 0.9], [-0.3, 0.2]])
    root = write_affwild2(tmp_path / "aw", "abaw_later", {
        "a": {"split": "train", "labels": lab, "missing": [4]},
        "b": {"split": "train", "labels": lab[[0, 2]]},
        "c": {"split": "val", "labels": lab},
    })
    write_face(root / "cropped_aligned" / "b" / "00007.jpg", 10)        # an image past b's labels
    write_face(root / "cropped_aligned" / "stray" / "00001.jpg", 10)    # a crop folder nobody annotates
    (root / "audio").mkdir()
    (root / "audio" / "a.wav").write_bytes(b"")
    out = tmp_path / "summary.json"
    assert summary.main([str(root), "--dataset", "affwild2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    train, val = data["splits"]["train"], data["splits"]["validation"]
    assert {k: train[k] for k in summary.COUNT_KEYS} == {
        "videos": 2, "valid_labels": 5, "invalid_labels": 1, "labelled_without_image": 1,
        "images_without_label": 1, "audio_missing": 1, "audio_drift": 0, "fps_from_audio": 0, "usable_frames": 4}
    assert (val["videos"], val["valid_labels"], val["invalid_labels"], val["audio_missing"]) == (1, 3, 1, 1)
    usable = np.array([[0.5, -0.5], [0.1, 0.9], [0.5, -0.5], [0.1, 0.9]])  # a: frames 1,3 ; b: frames 1,2
    assert abs(train["labels"]["valence"]["mean"] - usable[:, 0].mean()) < 1e-6  # labels are float32
    assert abs(train["labels"]["arousal"]["std"] - usable[:, 1].std()) < 1e-6
    assert sum(train["labels"]["valence"]["histogram"]) == 4
    assert train["labels"]["arousal"]["histogram"][0] == 0 and train["labels"]["arousal"]["histogram"][9] == 2
    assert data["unannotated_crop_folders"] == ["stray"]
    printed = capsys.readouterr().out
    assert "train" in printed and "validation" in printed and "stray" in printed


def test_missing_root_is_one_line_error(tmp_path, capsys):
    assert summary.main([str(tmp_path / "nope"), "--dataset", "affwild2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not exist" in err and "Traceback" not in err


def test_sewa_summary_groups_by_partition_and_culture(tmp_path):

    write_recording(tmp_path, "Train_DE_01", n_frames=20, fps=10, label_seconds=1.5, missing=(3,), audio=True)
    write_recording(tmp_path, "Train_DE_02", n_frames=10, fps=10, label_seconds=0.9)
    write_recording(tmp_path, "Devel_HU_01", n_frames=10, fps=10, label_seconds=0.9, crops=False)
    out = tmp_path / "s.json"
    assert summary.main([str(tmp_path), "--dataset", "sewa", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["splits"]) == {"Train_DE", "Devel_HU"}
    de, hu = data["splits"]["Train_DE"], data["splits"]["Devel_HU"]
    # Train_DE_01: frames at 0.0..1.9 s, labels to 1.5 s -> 16 valid, 4 past the labels; frame 3 has no crop
    assert (de["videos"], de["valid_labels"], de["invalid_labels"], de["labelled_without_image"]) == (2, 26, 4, 1)
    assert (de["usable_frames"], de["audio_missing"]) == (25, 1)
    assert (hu["videos"], hu["usable_frames"], hu["labelled_without_image"]) == (0, 0, 10)
