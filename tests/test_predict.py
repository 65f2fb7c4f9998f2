"""predict.py on a short video written by PyAV in the test: crops, audio, per-frame CSV, plot, drawn video."""

import numpy as np
import pytest

import predict
import train
from data.preprocess.video import iter_frames, probe
from tests.test_video import face_frame, grey_frame, write_video
from tests.train_helpers import TINY

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_predict_video_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main([*TINY, f"data.root={tmp_path / 'demo'}", f"run.dir={run}", "train.max_steps=1",
                       "train.eval_every=1"]) == 0
    frames = [grey_frame(90) if i == 4 else face_frame(i) for i in range(10)]
    video = write_video(tmp_path / "clip.mp4", frames, fps=25)
    out = tmp_path / "pred"
    assert predict.main([str(video), "--checkpoint", str(run / "best.pt"), "--out", str(out), "--draw"]) == 0
    rows = (out / "clip.csv").read_text().splitlines()
    assert rows[0] == "frame,time,valence,arousal"
    table = np.array([[float(x) for x in r.split(",")] for r in rows[1:]])
    assert 5 not in table[:, 0] and len(table) == 9          # the faceless frame 5 is absent, not invented
    assert np.allclose(table[:, 1], (table[:, 0] - 1) / 25, atol=1e-3)
    assert np.all(np.abs(table[:, 2:]) <= 1) and table[:, 2:].std() > 0
    assert (out / "clip_trace.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = out / "clip_va.mp4"
    assert probe(drawn).frames == 10
    first = next(iter_frames(drawn)).rgb
    assert not np.array_equal(first[5:30, 5:150], frames[0][5:30, 5:150])   # the values are drawn in the corner
    assert "9 of 10 frames with a face" in capsys.readouterr().out


def test_missing_video_is_one_line_error(tmp_path, capsys):
    assert predict.main([str(tmp_path / "none.mp4"), "--checkpoint", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not found" in err
