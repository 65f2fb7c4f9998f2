"""The Aff-Wild2 test split: the released list of video names and their crops, without labels.

ABAW publishes the names of its test videos as a text file (one name per line) and the crops in
``cropped_aligned/<video>/``; the labels stay private. A submission needs a prediction for every frame of
every listed video, so each video's frame count must be known even where no face was found:

1. ``meta/<video>.json`` (written by ``python -m data.prepare``): the decoded frame count;
2. else the video file ``DIR/videos/<video>.{mp4,avi,mkv}`` (two-subject names use the video's own file),
   counted with PyAV;
3. else the last crop number, with a warning: frames after the last detected face are then missing from the
   submission's count, which the challenge's checker will reject if the video runs on.

The list is ``data.test_list``, or the first of :data:`TEST_LIST_NAMES` found in the dataset root.
Labels are ``-5`` (unknown) for every frame; no score is computed from them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from data.datasets.affwild2 import VideoRecord, audio_stem, fps_and_source
from data.datasets.meta import read_meta
from data.errors import DataError
from data.preprocess.video import VIDEO_SUFFIXES, count_frames

log = logging.getLogger(__name__)

UNKNOWN = -5.0   # the label of every test frame: Aff-Wild2's marker of a frame without a valid label

#: names looked for in the dataset root when data.test_list is empty (ours first, then ABAW's release name)
TEST_LIST_NAMES = ("test_set.txt", "Valence_Arousal_Estimation_Challenge_test_set_release.txt")


def find_test_list(root: Path, configured: str) -> Path:
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise DataError(f"{path}: test list not found (data.test_list)")
        return path
    for name in TEST_LIST_NAMES:
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: no test list; put the released names file there as {TEST_LIST_NAMES[0]} "
                    f"(one video name per line) or set data.test_list=PATH")


def read_test_list(path: Path) -> list[str]:
    """Video names, one per line; blank lines ignored; a name listed twice is an error naming its line."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the test list ({exc.__class__.__name__})") from exc
    names: list[str] = []
    for lineno, line in enumerate(lines, start=1):
        name = line.strip()
        if not name:
            continue
        if name in names:
            raise DataError(f"{path}:{lineno}: video {name!r} listed twice")
        names.append(name)
    if not names:
        raise DataError(f"{path}: the test list names no video")
    return names


def frame_count(root: Path, video: str, crops: list[int]) -> tuple[int, str]:
    """(frames, where the count came from): metadata, the video file, or the last crop (with a warning)."""
    meta = read_meta(root, video) or read_meta(root, audio_stem(video))
    if meta is not None and meta.frames > 0:
        return int(meta.frames), "meta"
    for suffix in VIDEO_SUFFIXES:
        source = root / "videos" / f"{audio_stem(video)}{suffix}"
        if source.is_file():
            return count_frames(source), "video"
    if not crops:
        raise DataError(f"{root / 'cropped_aligned' / video}: no crops, no meta/{video}.json and no video in "
                        f"{root / 'videos'}: the frame count of test video {video!r} is unknown")
    log.warning("%s: frame count from the last crop (%d): no meta/%s.json and no video file in %s; frames after "
                "the last face are left out", video, max(crops), video, root / "videos")
    return max(crops), "last crop"


def index_test_split(root: Path, test_list: str, default_fps: float) -> list[VideoRecord]:
    """Every listed video as a :class:`VideoRecord` with unknown (-5) labels and its cropped frames."""
    root = Path(root)
    path = find_test_list(root, test_list)
    records = []
    for video in read_test_list(path):
        image_dir = root / "cropped_aligned" / video
        crops = sorted(int(p.stem) for p in image_dir.glob("*.jpg") if p.stem.isdigit()) if image_dir.is_dir() else []
        n, _ = frame_count(root, video, crops)
        frames = np.asarray([c for c in crops if 1 <= c <= n], dtype=np.int64)
        if not len(frames):
            log.warning("%s: no face crop in any of its %d frames", video, n)
        wav = root / "audio" / f"{audio_stem(video)}.wav"
        records.append(VideoRecord(
            name=video, split="test", annotation=path, image_dir=image_dir, audio=wav if wav.is_file() else None,
            fps=fps_and_source(root, video, default_fps)[0], labels=np.full((n, 2), UNKNOWN, np.float32),
            frames=frames))
    log.info("test: %d videos from %s, %d frames with a face", len(records), path, sum(len(r.frames) for r in records))
    return records
