"""data.preprocess.video: PyAV decoding, frame rate, audio extraction, and errors on unreadable files.

The module-level helpers (:func:`write_video`, :func:`face_frame`, :func:`grey_frame`) write tiny real
videos with PyAV; tests/test_prepare.py reuses them.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
import soundfile as sf
from skimage import data as skdata

from data.errors import DataError
from data.preprocess.video import decode_audio, extract_audio, frame_rate, iter_frames, probe

W, H = 160, 120
TONE_HZ = 440.0


def face_frame(i: int = 0, size: int = 96, x: int | None = None, y: int | None = None) -> np.ndarray:
    """A 160x120 RGB frame with the astronaut's face (a real photo, so MTCNN finds it) at (x, y),
    by default jittering by a few pixels with ``i`` like a hand-held camera."""
    face = cv2.resize(skdata.astronaut()[30:230, 125:325], (size, size), interpolation=cv2.INTER_AREA)
    frame = np.full((H, W, 3), 128, np.uint8)
    x = 30 + (i % 5) if x is None else x
    y = (H - size) // 2 + (i % 3) - 1 if y is None else y
    frame[y:y + size, x:x + size] = face
    return frame


def grey_frame(value: int = 128) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


def write_video(path: Path, frames: list[np.ndarray], fps: Fraction | int = 25, audio: bool = True,
                sample_rate: int = 44100, layout: str = "stereo", amplitude: float = 0.5,
                audio_delay: float = 0.0, codec: str | None = None) -> Path:
    """Write ``frames`` (RGB) to ``path`` with PyAV, plus an AAC sine tone lasting as long as the video."""
    codec = codec or ("libx264" if path.suffix == ".mp4" else "mpeg4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        vstream = container.add_stream(codec, rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = W, H, "yuv420p"
        astream = container.add_stream("aac", rate=sample_rate, layout=layout) if audio else None
        for rgb in frames:
            for packet in vstream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            n = int(round(sample_rate * len(frames) / float(fps)))
            tone = (amplitude * np.sin(2 * np.pi * TONE_HZ * np.arange(n) / sample_rate)).astype(np.float32)
            planes = np.stack([tone] * (2 if layout == "stereo" else 1))
            step, offset = astream.codec_context.frame_size or 1024, round(audio_delay * sample_rate)
            for s in range(0, n, step):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes[:, s:s + step]), format="fltp",
                                                   layout=layout)
                frame.sample_rate, frame.pts = sample_rate, s + offset
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """10 frames at 25 fps: colours that reveal channel order and frame order, stereo 44.1 kHz tone."""
    frames = [grey_frame(20 * i + 10) for i in range(10)]
    frames[3] = np.zeros((H, W, 3), np.uint8)
    frames[3][..., 0] = 230  # pure red: RGB order check
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames)


def test_probe_reads_container_header(clip):
    info = probe(clip)
    assert info.fps == 25.0
    assert (info.frames, info.width, info.height, info.has_audio) == (10, W, H, True)


def test_iter_frames_yields_rgb_frames_in_order_with_times(clip):
    frames = list(iter_frames(clip))
    assert [f.index for f in frames] == list(range(10))
    assert np.allclose([f.time for f in frames], np.arange(10) / 25.0, atol=1e-6)
    for f in frames:
        assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    greys = [float(frames[i].rgb.mean()) for i in (0, 1, 2, 4, 9)]
    assert np.allclose(greys, [10, 30, 50, 90, 190], atol=3)  # frame order preserved
    red = frames[3].rgb.reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 30 and red[2] < 30  # RGB, not BGR


def test_ntsc_frame_rate_is_fractional(tmp_path):
    path = write_video(tmp_path / "ntsc.mkv", [grey_frame()] * 4, fps=Fraction(30000, 1001), audio=False)
    assert probe(path).fps == pytest.approx(30000 / 1001)
    assert len(list(iter_frames(path, threads=1))) == 4


def test_frame_rate_fallbacks():
    def stream(**kw):
        base = dict(average_rate=None, guessed_rate=None, base_rate=None, frames=0, duration=None,
                    time_base=None, container=SimpleNamespace(name="x.avi"))
        return SimpleNamespace(**{**base, **kw})

    assert frame_rate(stream(average_rate=Fraction(25), base_rate=Fraction(90))) == 25.0
    assert frame_rate(stream(average_rate=Fraction(0, 1), guessed_rate=Fraction(24000, 1001))) == \
        pytest.approx(23.976, abs=1e-3)
    assert frame_rate(stream(base_rate=Fraction(30))) == 30.0
    assert frame_rate(stream(frames=50, duration=4000, time_base=Fraction(1, 1000))) == 12.5
    with pytest.raises(DataError, match=r"x\.avi: cannot determine the video frame rate"):
        frame_rate(stream())


def test_extract_audio_writes_16k_mono_pcm16_of_the_video_length(clip, tmp_path):
    wav = tmp_path / "audio" / "clip.wav"
    seconds = extract_audio(clip, wav)
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert seconds == pytest.approx(info.frames / 16000)
    assert seconds == pytest.approx(10 / 25, abs=0.05)  # AAC adds up to one 1024-sample frame of priming
    signal, _ = sf.read(str(wav))
    middle = signal[len(signal) // 4: 3 * len(signal) // 4]
    # Both channels carry the same 0.5-amplitude tone: the mono mean keeps it at 0.5 (FFmpeg's default
    # matrix would give 0.71), and the pitch survives resampling.
    assert np.abs(middle).max() == pytest.approx(0.5, abs=0.05)
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    assert np.fft.rfftfreq(len(middle), 1 / 16000)[spectrum.argmax()] == pytest.approx(TONE_HZ, abs=20)
    assert not list(tmp_path.glob("audio/.*"))  # no temp file left behind


def test_audio_starting_late_is_padded_to_stay_in_sync_with_the_video(tmp_path):
    path = write_video(tmp_path / "late.mkv", [grey_frame()] * 10, audio_delay=0.2, sample_rate=16000,
                       layout="mono")
    signal = decode_audio(path)
    onset = np.flatnonzero(np.abs(signal) > 0.05)[0] / 16000
    assert onset == pytest.approx(0.2, abs=0.01)


def test_video_without_audio_gives_none_and_no_file(tmp_path):
    path = write_video(tmp_path / "silent.avi", [grey_frame()] * 3, audio=False)
    assert probe(path).has_audio is False
    assert extract_audio(path, tmp_path / "silent.wav") is None
    assert not (tmp_path / "silent.wav").exists()


@pytest.mark.parametrize("content", [b"", b"not a video at all", np.random.default_rng(0).bytes(4096)])
def test_unreadable_video_raises_one_line_error_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    actions = (lambda: probe(path), lambda: list(iter_frames(path)),
               lambda: extract_audio(path, tmp_path / "b.wav"))
    for action in actions:
        with pytest.raises(DataError) as err:
            action()
        assert str(path) in str(err.value) and "\n" not in str(err.value)
        assert "not a readable video" in str(err.value)


def test_truncated_mp4_and_missing_file(clip, tmp_path):
    half = tmp_path / "half.mp4"
    half.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # the moov index is at the end
    with pytest.raises(DataError, match="half.mp4: not a readable video"):
        list(iter_frames(half))
    with pytest.raises(DataError, match="nothere.mp4: video file not found"):
        probe(tmp_path / "nothere.mp4")
