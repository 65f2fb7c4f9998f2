"""Malformed inputs, one case each: a clear error naming the file (and line), or a logged, counted skip.

Every case of docs/troubleshooting.md's "Bad input, case by case" is a row here: ``build(tmp_path)``
writes the bad input in its real layout and returns the call that reads it; the policy is either ``error`` (a DataError whose
message must match, file name included) or ``accept`` (the call returns; ``check`` asserts what was
kept, dropped, counted or converted, and ``warns`` the logged warning).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile as sf

from data.datasets.affwild2 import index_split, read_va_annotation
from data.datasets.sewa import read_avec_labels, read_subjects
from data.errors import DataError
from data.preprocess.audio import AudioConfig, video_audio_features
from data.preprocess.video import extract_audio, iter_frames, probe
from data.samples.abaw_test_set import read_test_list
from data.samples.dataset import read_rgb
from gan.checkpoint import CheckpointError, load_checkpoint
from tests.fixtures import write_affwild2
from tests.test_video import grey_frame, write_video


@dataclass
class Case:
    name: str
    build: Callable[[Path], Callable[[], object]]
    error: str | None = None                 # regex the DataError message must match ({path} substituted)
    check: Callable[[object], bool] | None = None
    warns: str | None = None


def _file(tmp: Path, name: str, content: bytes | str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _jpeg(tmp: Path, image: np.ndarray, name: str = "00001.jpg") -> Path:
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return _file(tmp, name, buf.tobytes())


def _annotation(tmp: Path, text: str) -> Callable[[], object]:
    path = _file(tmp, "video.txt", text)
    return lambda: read_va_annotation(path)


def _avec(tmp: Path, text: str) -> Callable[[], object]:
    path = _file(tmp, "Devel_DE_01.csv", text)
    return lambda: read_avec_labels(path)


def _index_with_labels(tmp: Path, n_labels: int, n_crops: int):
    labels = np.full((n_labels, 2), 0.5)
    root = write_affwild2(tmp, "abaw2020", {"v": {"split": "train", "labels": labels,
                                                  "missing": list(range(n_crops + 1, n_labels + 1))},
                                            "w": {"split": "val", "labels": labels[:2]}})
    for k in range(n_labels + 1, n_crops + 1):   # crops beyond the labels
        _jpeg(root / "cropped_aligned" / "v", np.full((24, 24, 3), 90, np.uint8), f"{k:05d}.jpg")
    return lambda: index_split(root, "train")


def _wav(tmp: Path, signal: np.ndarray, rate: int = 16000, subtype: str = "FLOAT") -> Callable[[], object]:
    path = tmp / "audio.wav"
    sf.write(str(path), signal, rate, subtype=subtype)
    return lambda: video_audio_features(path, 10, 10.0, AudioConfig(cache_dir=str(tmp / "cache")))


def _tone(seconds: float = 1.0, rate: int = 16000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _vfr_video(tmp: Path) -> Path:
    """12 frames at irregular timestamps (a phone's variable frame rate): 50 and 150 ms apart in turn."""
    path = tmp / "vfr.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.time_base = Fraction(1, 1000)
        pts = np.cumsum([0] + [50, 150] * 5 + [100]).tolist()
        for i, t in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(grey_frame(20 * i), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _audio_only(tmp: Path) -> Path:
    """A container with a sound track and no video stream (e.g. an .mp4 exported as audio)."""
    path = tmp / "voice_only.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray((_tone(0.2)[None] * 3000).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


GOOD_AVEC = "name;timestamp;arousal;valence;liking\n'Devel_DE_01';0.0;0.1;0.2;0.3\n'Devel_DE_01';0.1;0.1;0.2;0.3\n"

CASES = [
    # ---------------------------------------------------------------- face crops (JPEG)
    Case("image: truncated JPEG", lambda t: (lambda p: lambda: read_rgb(p))(
        _file(t, "00001.jpg", _jpeg(t, np.full((24, 24, 3), 80, np.uint8)).read_bytes()[:-40])),
        error=r"00001.jpg: truncated JPEG"),
    Case("image: zero bytes", lambda t: (lambda p: lambda: read_rgb(p))(_file(t, "00001.jpg", b"")),
         error=r"00001.jpg: truncated JPEG"),
    Case("image: not an image", lambda t: (lambda p: lambda: read_rgb(p))(_file(t, "00001.png", b"hello")),
         error=r"00001.png: cannot decode image"),
    Case("image: grayscale JPEG is converted to RGB",
         lambda t: (lambda p: lambda: read_rgb(p))(_jpeg(t, np.full((24, 24), 120, np.uint8))),
         check=lambda rgb: rgb.shape == (24, 24, 3) and abs(int(rgb[0, 0, 0]) - 120) <= 2),
    Case("image: RGBA PNG keeps its colour, drops alpha",
         lambda t: (lambda p: lambda: read_rgb(p))(
             _file(t, "00001.png", cv2.imencode(".png", np.dstack([np.full((8, 8, 3), (10, 20, 200), np.uint8),
                                                                   np.full((8, 8), 7, np.uint8)]))[1].tobytes())),
         check=lambda rgb: rgb.shape == (8, 8, 3) and rgb[0, 0].tolist() == [200, 20, 10]),
    Case("image: other size is read as is (resized by the dataset)",
         lambda t: (lambda p: lambda: read_rgb(p))(_jpeg(t, np.full((50, 70, 3), 60, np.uint8))),
         check=lambda rgb: rgb.shape == (50, 70, 3)),
    # ---------------------------------------------------------------- Aff-Wild2 annotation files
    Case("annotation: wrong header", lambda t: _annotation(t, "arousal,valence\n0.1,0.2\n"),
         error=r"video.txt: expected header 'valence,arousal' on line 1"),
    Case("annotation: extra column", lambda t: _annotation(t, "valence,arousal\n0.1,0.2\n0.1,0.2,0.3\n"),
         error=r"video.txt:3: expected two comma-separated numbers"),
    Case("annotation: blank line inside", lambda t: _annotation(t, "valence,arousal\n0.1,0.2\n\n0.3,0.4\n"),
         error=r"video.txt:3: blank line inside the labels"),
    Case("annotation: trailing blank lines are ignored", lambda t: _annotation(t, "valence,arousal\n0.1,0.2\n\n\n"),
         check=lambda v: v.shape == (1, 2)),
    Case("annotation: CRLF line ends", lambda t: _annotation(t, "valence,arousal\r\n0.1,0.2\r\n-0.5,0.25\r\n"),
         check=lambda v: v.tolist() == [[pytest.approx(0.1), pytest.approx(0.2)], [-0.5, 0.25]]),
    Case("annotation: non-numeric", lambda t: _annotation(t, "valence,arousal\n0.1,0.2\nhigh,0.2\n"),
         error=r"video.txt:3: expected two comma-separated numbers, found 'high,0.2'"),
    Case("annotation: NaN", lambda t: _annotation(t, "valence,arousal\n0.1,0.2\nnan,0.2\n"),
         error=r"video.txt:3: label is not a finite number"),
    Case("annotation: out of range (not -5) is counted invalid and dropped",
         lambda t: (lambda root: lambda: index_split(root, "train"))(write_affwild2(t, "abaw2020", {
             "v": {"split": "train", "labels": np.array([[0.5, 0.5], [1.5, 0.2], [-5, -5], [0.1, 0.1]])},
             "w": {"split": "val", "labels": np.array([[0.5, 0.5]])}})),
         check=lambda out: out[1].invalid_labels == 2 and out[0][0].frames.tolist() == [1, 4]),
    Case("annotation: not UTF-8",
         lambda t: (lambda p: lambda: read_va_annotation(p))(_file(t, "video.txt", b"valence,arousal\n0.1,\xff0.2\n")),
         error=r"video.txt: cannot read annotation file \(UnicodeDecodeError\)"),
    Case("annotation: more lines than frames: labelled frames without a crop are counted",
         lambda t: _index_with_labels(t, 6, 4), check=lambda out: out[1].labelled_without_image == 2
         and out[0][0].frames.tolist() == [1, 2, 3, 4]),
    Case("annotation: fewer lines than frames: crops without a label are counted",
         lambda t: _index_with_labels(t, 3, 5), check=lambda out: out[1].images_without_label == 2
         and out[0][0].frames.tolist() == [1, 2, 3]),
    # ---------------------------------------------------------------- AVEC 2019 label files
    Case("AVEC: tab separator", lambda t: _avec(t, GOOD_AVEC.replace(";", "\t")),
         error=r"Devel_DE_01.csv:1: expected a header of ';'- or ','-separated column names"),
    Case("AVEC: comma separator is accepted", lambda t: _avec(t, GOOD_AVEC.replace(";", ",")),
         check=lambda labels: len(labels) == 2 and labels.liking is not None),
    Case("AVEC: missing valence column",
         lambda t: _avec(t, "name;timestamp;arousal;liking\n'Devel_DE_01';0.0;0.1;0.3\n"),
         error=r"Devel_DE_01.csv:1: header must name the columns timestamp, arousal and valence"),
    Case("AVEC: row with a missing field", lambda t: _avec(t, GOOD_AVEC + "'Devel_DE_01';0.2;0.1;0.2\n"),
         error=r"Devel_DE_01.csv:4: expected 5 ';'-separated fields"),
    Case("AVEC: timestamps that do not increase", lambda t: _avec(t, GOOD_AVEC + "'Devel_DE_01';0.1;0.1;0.2;0.3\n"),
         error=r"Devel_DE_01.csv:4: timestamp 0.1 does not increase"),
    Case("AVEC: non-numeric value", lambda t: _avec(t, GOOD_AVEC + "'Devel_DE_01';0.2;x;0.2;0.3\n"),
         error=r"Devel_DE_01.csv:4: arousal value 'x' is not a number"),
    Case("AVEC: two recordings in one file", lambda t: _avec(t, GOOD_AVEC + "'Devel_DE_02';0.2;0.1;0.2;0.3\n"),
         error=r"Devel_DE_01.csv:4: row names recording 'Devel_DE_02'"),
    # ---------------------------------------------------------------- audio
    Case("audio: zero samples", lambda t: _wav(t, np.zeros(0, np.float32)),
         check=lambda f: f.shape == (10, 50) and not f.any(), warns="audio is silent"),
    Case("audio: 44.1 kHz instead of 16 kHz", lambda t: _wav(t, _tone(rate=44100), rate=44100),
         check=lambda f: f.shape == (10, 50) and np.isfinite(f).all() and f.any()),
    Case("audio: stereo is averaged to mono", lambda t: _wav(t, np.stack([_tone(), _tone()], axis=1)),
         check=lambda f: f.shape == (10, 50) and f.any()),
    Case("audio: clipped", lambda t: _wav(t, np.clip(_tone(amplitude=3.0), -1, 1)),
         check=lambda f: np.isfinite(f).all() and f.any(), warns="of the audio samples are clipped"),
    Case("audio: NaN samples after decoding", lambda t: _wav(t, np.where(np.arange(16000) % 97 == 0, np.nan,
                                                                         _tone()).astype(np.float32)),
         check=lambda f: not f.any(), warns="non-finite audio samples"),
    Case("audio: not a wav", lambda t: (lambda p: lambda: video_audio_features(p, 10, 10.0, AudioConfig()))(
        _file(t, "audio.wav", b"RIFF....garbage")), error=r"audio.wav: not a readable audio file"),
    # ---------------------------------------------------------------- videos
    Case("video: no video stream (audio only)", lambda t: (lambda p: lambda: probe(p))(_audio_only(t)),
         error=r"voice_only.mkv: contains no video stream"),
    Case("video: zero bytes", lambda t: (lambda p: lambda: list(iter_frames(p)))(_file(t, "empty.mp4", b"")),
         error=r"empty.mp4: not a readable video"),
    Case("video: no audio track", lambda t: (lambda p: lambda: extract_audio(p, t / "a.wav"))(
        write_video(t / "silent.mp4", [grey_frame()] * 5, audio=False)),
        check=lambda seconds: seconds is None),
    Case("video: variable frame rate keeps every frame at its own time",
         lambda t: (lambda p: lambda: list(iter_frames(p)))(_vfr_video(t)),
         check=lambda frames: [round(f.time, 3) for f in frames] == [0.0, 0.05, 0.2, 0.25, 0.4, 0.45, 0.6, 0.65, 0.8,
                                                                     0.85, 1.0, 1.1]),
    Case("video: not a video", lambda t: (lambda p: lambda: probe(p))(_file(t, "fake.mp4", b"not a video")),
         error=r"fake.mp4: not a readable video"),
    # ---------------------------------------------------------------- lists, subjects, checkpoints
    Case("test list: a name twice", lambda t: (lambda p: lambda: read_test_list(p))(_file(t, "test_set.txt", "a\nb\na\n")),
         error=r"test_set.txt:3: video 'a' listed twice"),
    Case("subjects file: wrong header", lambda t: (lambda p: lambda: read_subjects(p))(
        _file(t, "subjects.csv", "rec,person\nTrain_DE_01,s1\n")), error=r"subjects.csv:1: expected the header"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_input(case: Case, tmp_path, caplog):
    read = case.build(tmp_path)
    with caplog.at_level(logging.WARNING):
        if case.error:
            with pytest.raises(DataError, match=case.error) as raised:
                read()
            assert str(tmp_path) in str(raised.value)   # the message names the file
            return
        result = read()
    assert case.check(result), result
    if case.warns:
        assert any(case.warns in m and str(tmp_path) in m for m in caplog.messages), caplog.messages


def test_a_truncated_checkpoint_is_a_one_line_error(tmp_path):
    path = _file(tmp_path, "last.pt", b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"last.pt: not a readable checkpoint"):
        load_checkpoint(path)


def test_the_table_has_at_least_thirty_cases():
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)
