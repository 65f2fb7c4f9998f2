"""python -m data.prepare end to end on tiny generated videos: layout, resumability, bad-input policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from data.datasets.meta import read_meta
from data.prepare import main
from data.preprocess import audio as audio_mod
from data.preprocess.audio import AudioConfig, video_audio_features
from data.preprocess.faces import make_landmarker, template
from tests.test_video import face_frame, grey_frame, write_video
from tests.train_helpers import HANG_GUARD_S

REPO = Path(__file__).resolve().parents[1]
FAST = ["--no-progress", "--threads", "1"]  # one torch thread: tests share the machine with other jobs
NO_FACE = (3, 7)  # 0-based frames of CLIP that show no face
N_FRAMES = 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clip_frames() -> list[np.ndarray]:
    return [grey_frame(90 + i) if i in NO_FACE else face_frame(i) for i in range(N_FRAMES)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "clip.mp4", _clip_frames())
    return folder


@pytest.fixture(scope="module")
def prepared(videos, tmp_path_factory):
    """One complete run on clip.mp4; returns (root, exit code, stdout)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("prepared")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(videos / "clip.mp4"), "--out", str(root), *FAST])
    return root, code, out.getvalue()


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and p.name != "prepare_report.json"}


def test_crops_are_written_at_one_based_names_and_faceless_frames_are_absent(prepared):
    root, code, _ = prepared
    assert code == 0
    names = sorted(p.name for p in (root / "cropped_aligned" / "clip").iterdir())
    assert names == [f"{i + 1:05d}.jpg" for i in range(N_FRAMES) if i not in NO_FACE]
    assert not list((root / "cropped_aligned").glob(".*"))  # no partial folder left behind


def test_crops_are_aligned_face_images(prepared):
    root = prepared[0]
    crop = cv2.imread(str(root / "cropped_aligned" / "clip" / "00001.jpg"))
    assert crop.shape == (112, 112, 3)
    points = make_landmarker("mtcnn")(crop[..., ::-1].copy())
    # Within 4 px: the face in the video is smaller than the crop (96 px frame region, h264 + JPEG).
    assert np.linalg.norm(points[:2] - template(112)[:2], axis=1).max() < 4.0


def test_audio_is_16k_mono_and_as_long_as_the_video(prepared):
    root = prepared[0]
    info = sf.info(str(root / "audio" / "clip.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert info.duration == pytest.approx(N_FRAMES / 25, abs=0.05)


def test_meta_marks_the_video_complete(prepared, videos):
    root = prepared[0]
    meta = read_meta(root, "clip")
    assert meta.complete and meta.warnings == []
    assert (meta.video, meta.fps, meta.frames) == ("clip", 25.0, N_FRAMES)
    assert meta.faces == N_FRAMES - len(NO_FACE)
    assert meta.audio_seconds == pytest.approx(sf.info(str(root / "audio" / "clip.wav")).duration)
    assert (meta.backend, meta.size, meta.source) == ("mtcnn", 112, str((videos / "clip.mp4").resolve()))


def test_report_is_printed_as_a_table_and_written_as_json(prepared):
    root, _, stdout = prepared
    lines = stdout.splitlines()
    assert lines[0].split() == ["video", "frames", "faces", "fps", "audio", "s", "status"]
    assert lines[2].split()[:4] == ["clip", str(N_FRAMES), str(N_FRAMES - len(NO_FACE)), "25.000"]
    assert lines[2].split()[-1] == "done"
    report = json.loads((root / "prepare_report.json").read_text())
    assert report["counts"] == {"done": 1, "skipped": 0, "failed": 0}
    (row,) = report["videos"]
    assert (row["video"], row["status"], row["frames"], row["faces"]) == ("clip", "done", N_FRAMES, 10)


def test_egemaps_cache_is_filled_so_training_runs_no_opensmile(prepared, monkeypatch):
    root = prepared[0]

    def no_opensmile(*args, **kwargs):
        raise AssertionError("openSMILE ran although preprocessing should have cached the LLD track")

    monkeypatch.setattr(audio_mod, "extract_lld", no_opensmile)
    features = video_audio_features(root / "audio" / "clip.wav", N_FRAMES, 25.0, AudioConfig())
    assert features.shape == (N_FRAMES, 50) and np.isfinite(features).all() and np.abs(features).sum() > 0


def test_second_run_skips_finished_videos_and_rewrites_nothing(videos, tmp_path, capsys):
    root = tmp_path / "out"
    assert main([str(videos), "--out", str(root), *FAST]) == 0
    before = _mtimes(root)
    assert main([str(videos), "--out", str(root), *FAST]) == 0
    assert _mtimes(root) == before
    assert json.loads((root / "prepare_report.json").read_text())["videos"][0]["status"] == "skipped"
    assert "skipped" in capsys.readouterr().out

    # Without its metadata the video counts as half-written and is redone from scratch.
    (root / "meta" / "clip.json").unlink()
    stale = root / "cropped_aligned" / "clip" / "00099.jpg"
    stale.write_bytes(b"left over")
    assert main([str(videos), "--out", str(root), *FAST]) == 0
    after = _mtimes(root)
    assert not stale.exists() and read_meta(root, "clip").complete
    assert set(after) == set(before)
    assert all(after[name] != before[name] for name in after if name.startswith("cropped_aligned"))

    # Another crop size is another result: redone, not skipped.
    assert main([str(videos), "--out", str(root), "--size", "128", *FAST]) == 0
    crop = cv2.imread(str(root / "cropped_aligned" / "clip" / "00001.jpg"))
    assert crop.shape == (128, 128, 3) and read_meta(root, "clip").size == 128


def test_leftovers_of_a_killed_run_are_cleaned_up(videos, tmp_path):
    root = tmp_path / "out"
    (root / "cropped_aligned" / ".clip.partial").mkdir(parents=True)
    (root / "cropped_aligned" / ".clip.partial" / "00001.jpg").write_bytes(b"half")
    (root / "cropped_aligned" / "clip").mkdir()
    (root / "cropped_aligned" / "clip" / "00500.jpg").write_bytes(b"old")
    assert main([str(videos / "clip.mp4"), "--out", str(root), *FAST]) == 0
    assert sorted(p.name for p in (root / "cropped_aligned").iterdir()) == ["clip"]
    assert not (root / "cropped_aligned" / "clip" / "00500.jpg").exists()
    assert len(list((root / "cropped_aligned" / "clip").iterdir())) == N_FRAMES - len(NO_FACE)
    assert any("replaced crops" in w for w in read_meta(root, "clip").warnings)


def test_bad_inputs_do_not_stop_the_batch(videos, tmp_path):
    """A corrupt file, a video without audio and one without any face, in a subprocess with 2 workers:
    exit code 1, the corrupt file named on stderr and in the report, no traceback, the rest finished."""
    batch = tmp_path / "batch"
    batch.mkdir()
    os.link(videos / "clip.mp4", batch / "clip.mp4")
    (batch / "broken.mp4").write_bytes(np.random.default_rng(1).bytes(3000))
    write_video(batch / "nested" / "mute.AVI", [face_frame(i) for i in range(4)], audio=False)
    write_video(batch / "empty_room.mkv", [grey_frame()] * 4)
    root = tmp_path / "out"
    command = [sys.executable, "-m", "data.prepare", str(batch), "--out", str(root), "--workers", "2",
               "--no-progress"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{batch / 'broken.mp4'}: not a readable video" in proc.stderr
    assert "1 of 4 videos failed" in proc.stderr

    report = {row["video"]: row for row in json.loads((root / "prepare_report.json").read_text())["videos"]}
    assert report["broken"]["status"] == "failed" and str(batch / "broken.mp4") in report["broken"]["error"]
    assert read_meta(root, "broken") is None and not (root / "cropped_aligned" / "broken").exists()
    assert report["clip"]["status"] == "done" and read_meta(root, "clip").complete

    mute = read_meta(root, "mute")
    assert mute.complete and mute.audio_seconds is None and mute.faces == 4
    assert not (root / "audio" / "mute.wav").exists()
    assert any("no audio track" in w for w in report["mute"]["warnings"])

    room = read_meta(root, "empty_room")
    assert room.complete and room.faces == 0 and room.frames == 4
    assert any("no face found in any of the 4 frames" in w for w in room.warnings)
    assert "warning: empty_room: no face found" in proc.stdout


def test_every_nth_frame_detection_interpolates_landmarks(tmp_path):
    frames = [face_frame(x=20 + 3 * i) for i in range(9)] + [grey_frame()] * 3  # steady pan: linear motion
    video = write_video(tmp_path / "v" / "steady.mp4", frames, audio=False)
    assert main([str(video), "--out", str(tmp_path / "all"), *FAST]) == 0
    assert main([str(video), "--out", str(tmp_path / "sparse"), "--every", "4", *FAST]) == 0
    sparse = sorted(p.name for p in (tmp_path / "sparse" / "cropped_aligned" / "steady").iterdir())
    # Key frames 0, 4, 8 and the last (11) are detected; 1-3 and 5-7 lie between two faces and are
    # interpolated; 9-10 lie between a face (8) and no face (11), so they get no crop.
    assert sparse == [f"{i:05d}.jpg" for i in range(1, 10)]
    for name in ("00002.jpg", "00007.jpg"):  # interpolated frames look like directly detected ones
        a = cv2.imread(str(tmp_path / "all" / "cropped_aligned" / "steady" / name)).astype(float)
        b = cv2.imread(str(tmp_path / "sparse" / "cropped_aligned" / "steady" / name)).astype(float)
        assert np.abs(a - b).mean() < 8  # measured 3.8 and 4.5; a 3-px misplacement gives > 15
    assert any("every 4th frame" in w for w in read_meta(tmp_path / "sparse", "steady").warnings)


def test_duplicate_names_are_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"1")
    (tmp_path / "b" / "x.avi").write_bytes(b"2")
    root = tmp_path / "out"
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(root), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: two videos are both named 'x'") and "\n" not in err
    assert str(tmp_path / "a" / "x.mp4") in err and str(tmp_path / "b" / "x.avi") in err
    assert not root.exists()


@pytest.mark.parametrize("case", ["missing", "empty folder"])
def test_missing_inputs_are_usage_errors(tmp_path, capsys, case):
    target = tmp_path / "nothing"
    if case == "empty folder":
        target.mkdir()
        (target / "notes.txt").write_text("no videos here")
    assert main([str(target), "--out", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {target}: ") and err.count("\n") == 1


def test_face_alignment_without_weights_is_a_one_line_usage_error(videos, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code = main([str(videos), "--out", str(tmp_path / "out"), "--backend", "face-alignment", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: face-alignment weights missing: put 2DFAN4-11f355bf06.pth.tar")
    assert "or use --backend mtcnn" in err and not (tmp_path / "out").exists()
