"""python -m data.prepare --keep-crops: Aff-Wild2's shipped crops stay byte-for-byte; audio, eGeMAPS and meta are
written from the raw video without face detection or frame decoding; re-runs, shards, workers, two subjects."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data import summary
from data.datasets.affwild2 import index_split
from data.datasets.meta import VideoMeta, read_meta, write_meta
from data.prepare import main
from data.preprocess import audio as audio_mod
from data.preprocess import batch, pipeline, video
from data.preprocess.audio import AudioConfig, video_audio_features
from data.preprocess.pipeline import PrepareOptions, is_finished
from tests.fixtures import write_affwild2
from tests.test_video import grey_frame, write_video

N_FRAMES = 12
FPS = 25
MISSING = (4, 7)  # 1-based frames without a shipped crop
FAST = ["--no-progress", "--threads", "1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "clip.mp4", [grey_frame(60 + 10 * i) for i in range(N_FRAMES)], fps=FPS)
    write_video(folder / "other.mp4", [grey_frame(100)] * 5, fps=FPS)  # no shipped crops
    return folder


def _labels() -> np.ndarray:
    t = np.arange(N_FRAMES)
    return np.stack([np.sin(t / 3) * 0.5, np.cos(t / 3) * 0.5], axis=1)


def _shipped_root(tmp_path: Path) -> Path:
    """An Aff-Wild2 tree as licensed: VA annotations and crops of clip (frames 4 and 7 without a face), plus a
    hidden folder that a full run would delete as its own leftover."""
    root = write_affwild2(tmp_path / "affwild2", videos={
        "clip": {"split": "train", "labels": _labels(), "missing": MISSING},
        "held": {"split": "val", "labels": _labels()[:3]},   # a validation video whose raw file is not prepared
    })
    (root / "cropped_aligned" / ".clip.partial").mkdir()
    (root / "cropped_aligned" / ".clip.partial" / "00001.jpg").write_bytes(b"not ours to delete")
    return root


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``folder``, hidden ones included."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and not p.name.startswith("prepare_report")}


def _no_detection(monkeypatch) -> None:
    """Face detection, the detect-and-crop path and frame decoding all fail the test if reached."""
    def refuse(*args, **kwargs):
        raise AssertionError("--keep-crops must not detect faces or decode video frames")

    monkeypatch.setattr(batch, "make_landmarker", refuse)
    monkeypatch.setattr(batch, "prepare_video", refuse)
    monkeypatch.setattr(pipeline, "iter_frames", refuse)
    monkeypatch.setattr(video, "iter_frames", refuse)


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture
def kept(videos, tmp_path, monkeypatch):
    """One --keep-crops run of clip.mp4 into the shipped tree: (root, cache, crops before, exit code, stdout)."""
    root, cache = _shipped_root(tmp_path), tmp_path / "cache"
    before = _tree(root / "cropped_aligned")
    _no_detection(monkeypatch)
    code, stdout = _run([str(videos / "clip.mp4"), "--out", str(root), "--keep-crops",
                         "--audio-cache", str(cache), *FAST])
    return root, cache, before, code, stdout


def test_shipped_crops_stay_byte_identical_and_nothing_is_added(kept):
    root, _, before, code, _ = kept
    assert code == 0
    assert _tree(root / "cropped_aligned") == before
    assert sorted(p.name for p in (root / "cropped_aligned" / "clip").iterdir()) == \
        [f"{k:05d}.jpg" for k in range(1, N_FRAMES + 1) if k not in MISSING]


def test_wav_is_16k_mono_as_long_as_the_video(kept):
    info = sf.info(str(kept[0] / "audio" / "clip.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert info.duration == pytest.approx(N_FRAMES / FPS, abs=0.05)


def test_meta_has_the_container_rate_and_count_and_the_kept_crop_count(kept, videos):
    root = kept[0]
    meta = read_meta(root, "clip")
    assert (meta.video, meta.fps, meta.frames, meta.faces) == ("clip", 25.0, N_FRAMES, N_FRAMES - len(MISSING))
    assert meta.complete and meta.crops_kept and meta.warnings == []
    assert (meta.backend, meta.size, meta.subjects) == ("", 0, 1)
    assert meta.source == str((videos / "clip.mp4").resolve())
    assert meta.audio_seconds == pytest.approx(sf.info(str(root / "audio" / "clip.wav")).duration)


def test_report_says_the_crops_were_kept(kept):
    root, _, _, _, stdout = kept
    row = stdout.splitlines()[2].split()
    assert row[:4] == ["clip", str(N_FRAMES), str(N_FRAMES - len(MISSING)), "25.000"]
    assert " ".join(row[5:]) == "done, crops kept"
    report = json.loads((root / "prepare_report.json").read_text())
    assert report["options"] == {"backend": None, "size": None, "device": "cpu", "every": None, "keep_crops": True}
    (entry,) = report["videos"]
    assert (entry["status"], entry["crops_kept"], entry["faces"]) == ("done", True, N_FRAMES - len(MISSING))


def test_the_reader_loads_the_video_with_cached_audio_features(kept, monkeypatch, tmp_path):
    root, cache = kept[0], kept[1]
    (record,), report = index_split(root, "train", default_fps=30.0)
    assert record.fps == 25.0  # from the metadata, not the 30 fps fallback
    assert record.frames.tolist() == [k for k in range(1, N_FRAMES + 1) if k not in MISSING]
    assert record.audio == root / "audio" / "clip.wav"
    assert (report.audio_missing, report.audio_drift, report.usable_frames) == (0, 0, N_FRAMES - len(MISSING))

    def no_opensmile(*args, **kwargs):
        raise AssertionError("openSMILE ran although --keep-crops should have filled the cache")

    monkeypatch.setattr(audio_mod, "extract_lld", no_opensmile)
    features = video_audio_features(record.audio, record.n_frames, record.fps, AudioConfig(cache_dir=str(cache)))
    assert features.shape == (N_FRAMES, 50) and np.isfinite(features).all() and np.abs(features).sum() > 0

    assert summary.main([str(root), "--dataset", "affwild2", "--json", str(tmp_path / "s.json")]) == 0
    train = json.loads((tmp_path / "s.json").read_text())["splits"]["train"]
    assert (train["videos"], train["usable_frames"], train["audio_missing"]) == (1, N_FRAMES - len(MISSING), 0)


def test_rerun_skips_finished_videos_and_a_full_run_would_not(kept, videos, monkeypatch):
    root, cache = kept[0], kept[1]
    argv = [str(videos / "clip.mp4"), "--out", str(root), "--keep-crops", "--audio-cache", str(cache), *FAST]
    before = _mtimes(root)
    code, stdout = _run(argv)
    assert code == 0 and _mtimes(root) == before
    (entry,) = json.loads((root / "prepare_report.json").read_text())["videos"]
    assert (entry["status"], entry["crops_kept"]) == ("skipped", True)
    assert "skipped, crops kept" in stdout

    # a run that wants crops does not take the --keep-crops video as finished (it would detect and re-crop)
    assert is_finished(root, "clip", PrepareOptions(out=root)) is None

    # without its wav the video is redone, the crops still untouched
    crops = _tree(root / "cropped_aligned")
    (root / "audio" / "clip.wav").unlink()
    assert _run(argv)[0] == 0
    assert (root / "audio" / "clip.wav").is_file() and read_meta(root, "clip").complete
    assert _tree(root / "cropped_aligned") == crops


def test_a_video_finished_by_a_full_run_is_skipped_not_rewritten(videos, tmp_path, monkeypatch):
    root = _shipped_root(tmp_path)
    (root / "audio").mkdir()
    (root / "audio" / "clip.wav").write_bytes(b"from the full run")
    write_meta(root, VideoMeta(video="clip", fps=25.0, frames=N_FRAMES, faces=9, audio_seconds=0.48,
                               backend="mtcnn", size=112, complete=True))
    before = _mtimes(root)
    _no_detection(monkeypatch)
    code, stdout = _run([str(videos / "clip.mp4"), "--out", str(root), "--keep-crops",
                         "--audio-cache", str(tmp_path / "cache"), *FAST])
    assert code == 0 and _mtimes(root) == before
    (entry,) = json.loads((root / "prepare_report.json").read_text())["videos"]
    assert (entry["status"], entry["crops_kept"], entry["faces"]) == ("skipped", False, 9)


def test_shards_and_merge(videos, tmp_path, monkeypatch):
    root, cache = _shipped_root(tmp_path), tmp_path / "cache"
    before = _tree(root / "cropped_aligned")
    _no_detection(monkeypatch)
    for k in (0, 1):
        code, _ = _run([str(videos), "--out", str(root), "--keep-crops", "--shard", f"{k}/2",
                        "--audio-cache", str(cache), *FAST])
        assert code == 0
    code, stdout = _run(["--merge-reports", "--out", str(root)])
    assert code == 0 and "2 videos: 2 done" in stdout
    merged = json.loads((root / "prepare_report.json").read_text())
    assert merged["options"]["keep_crops"] is True
    rows = {r["video"]: r for r in merged["videos"]}
    assert {v: (r["status"], r["crops_kept"], r["frames"]) for v, r in rows.items()} == \
        {"clip": ("done", True, N_FRAMES), "other": ("done", True, 5)}
    assert any("no crop folder" in w for w in rows["other"]["warnings"]) and rows["other"]["faces"] == 0
    assert read_meta(root, "other").frames == 5 and not (root / "cropped_aligned" / "other").exists()
    assert _tree(root / "cropped_aligned") == before

    # a shard of another kind of run is refused by the merge
    shard = root / "prepare_report.shard-1-of-2.json"
    report = json.loads(shard.read_text())
    report["options"].update(keep_crops=False, backend="mtcnn", size=112, every=1)
    shard.write_text(json.dumps(report))
    assert main(["--merge-reports", "--out", str(root)]) == 2


def test_parallel_workers_keep_the_crops_too(videos, tmp_path):
    root = _shipped_root(tmp_path)
    before = _tree(root / "cropped_aligned")
    code, _ = _run([str(videos), "--out", str(root), "--keep-crops", "--workers", "2",
                    "--audio-cache", str(tmp_path / "cache"), *FAST])
    assert code == 0 and _tree(root / "cropped_aligned") == before
    assert [(m.frames, m.faces, m.crops_kept) for m in (read_meta(root, "clip"), read_meta(root, "other"))] == \
        [(N_FRAMES, N_FRAMES - len(MISSING), True), (5, 0, True)]


def test_two_subject_folders_are_counted_and_the_option_is_refused(videos, tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    assert main([str(videos / "clip.mp4"), "--out", str(root), "--keep-crops", "--two-subjects", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --two-subjects does nothing with --keep-crops") and err.count("\n") == 1
    assert not root.exists()

    for side, frames in (("left", (1, 2, 3)), ("right", (2, 5))):
        for k in frames:
            (root / "cropped_aligned" / f"clip_{side}").mkdir(parents=True, exist_ok=True)
            (root / "cropped_aligned" / f"clip_{side}" / f"{k:05d}.jpg").write_bytes(b"jpeg")
    _no_detection(monkeypatch)
    assert _run([str(videos / "clip.mp4"), "--out", str(root), "--keep-crops",
                 "--audio-cache", str(tmp_path / "cache"), *FAST])[0] == 0
    meta = read_meta(root, "clip")
    assert (meta.faces, meta.subjects, meta.crops_kept) == (5, 2, True)
    assert sorted(p.name for p in (root / "cropped_aligned").iterdir()) == ["clip_left", "clip_right"]
