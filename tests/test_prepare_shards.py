"""python -m data.prepare --shard K/N and --merge-reports: shards of one batch on tiny generated videos.

Two shards into one ROOT must write exactly the files of one unsharded run, and the merged report must be
the unsharded report but for the per-run ``seconds`` of each row.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import zlib
from pathlib import Path

import pytest

from data.prepare import main
from data.preprocess import batch
from data.preprocess.batch import Shard, select_shard, shard_of
from tests.test_video import face_frame, grey_frame, write_video

FAST = ["--no-progress", "--threads", "1"]  # one torch thread: tests share the machine with other jobs
# crc32 % 2: alpha and charlie -> shard 0, bravo and delta -> shard 1 (both shards get work);
# crc32 % 16: 10, 9, 6, 9 -> shard 0/16 is empty.
NAMES = ("alpha", "bravo", "charlie", "delta")
REPORTS = ("prepare_report.json", "prepare_report.shard-0-of-2.json", "prepare_report.shard-1-of-2.json")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(argv: list[str]) -> tuple[int, str]:
    """main(argv) with stdout captured: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Four short videos of different kinds: faces with audio, without audio, with faceless frames, AVI."""
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "alpha.mp4", [face_frame(i) for i in range(4)])
    write_video(folder / "bravo.mp4", [face_frame(i + 2) for i in range(3)], audio=False)
    write_video(folder / "charlie.mp4", [face_frame(0), grey_frame(), face_frame(3), grey_frame(60)])
    write_video(folder / "sub" / "delta.avi", [face_frame(i, x=20 + i) for i in range(3)])
    return folder


@pytest.fixture(scope="module")
def runs(videos, tmp_path_factory):
    """An unsharded run into one root; shards 0/2 and 1/2 into another (shard 1 given the files one by one
    in reverse order), then merged. Returns a dict of roots, exit codes and stdouts."""
    whole, sharded = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("sharded")
    files = sorted(videos.rglob("*.*"), reverse=True)
    r = {"whole": whole, "sharded": sharded}
    r["code_whole"], r["out_whole"] = _run([str(videos), "--out", str(whole), *FAST])
    r["code_0"], r["out_0"] = _run([str(videos), "--out", str(sharded), "--shard", "0/2", *FAST])
    r["code_1"], r["out_1"] = _run([*map(str, files), "--out", str(sharded), "--shard", "1/2", *FAST])
    r["code_merge"], r["out_merge"] = _run(["--merge-reports", "--out", str(sharded)])
    return r


def _files(root: Path) -> dict[str, bytes]:
    """Every file under root but the run reports, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name not in REPORTS}


def _report(path: Path, per_run: tuple[str, ...] = ("seconds",)) -> dict:
    """A report without the rows' per-run fields."""
    report = json.loads(path.read_text())
    report["videos"] = [{k: v for k, v in row.items() if k not in per_run} for row in report["videos"]]
    return report


def test_two_shards_write_exactly_the_files_of_one_unsharded_run(runs):
    assert (runs["code_whole"], runs["code_0"], runs["code_1"]) == (0, 0, 0)
    whole, sharded = _files(runs["whole"]), _files(runs["sharded"])
    assert sorted(whole) == sorted(sharded)
    assert {p for p in whole if p.startswith("meta/")} == {f"meta/{n}.json" for n in NAMES}
    assert "audio/bravo.wav" not in whole and len([p for p in whole if p.endswith(".jpg")]) >= 10
    different = [p for p in whole if whole[p] != sharded[p]]
    assert different == []  # crops, wavs and metadata byte for byte


def test_shards_take_disjoint_hash_defined_shares_covering_all_videos(runs):
    rows = {k: json.loads((runs["sharded"] / f"prepare_report.shard-{k}-of-2.json").read_text()) for k in (0, 1)}
    got = {k: {row["video"] for row in rows[k]["videos"]} for k in (0, 1)}
    assert got == {0: {"alpha", "charlie"}, 1: {"bravo", "delta"}}
    assert got == {k: {n for n in NAMES if zlib.crc32(n.encode()) % 2 == k} for k in (0, 1)}
    assert rows[0]["shard"] == {"index": 0, "count": 2, "all_videos": ["alpha", "bravo", "charlie", "delta"]}
    assert rows[1]["shard"]["all_videos"] == ["delta", "charlie", "bravo", "alpha"]  # listed in reverse
    assert rows[0]["counts"] == {"done": 2, "skipped": 0, "failed": 0}
    assert "shard 1/2: 2 of 4 videos" in runs["out_1"] and "--merge-reports" in runs["out_1"]


def test_merged_report_is_the_unsharded_report_but_for_timings(runs):
    assert runs["code_merge"] == 0
    merged = _report(runs["sharded"] / "prepare_report.json")
    whole = _report(runs["whole"] / "prepare_report.json")
    assert merged == whole
    assert [row["video"] for row in merged["videos"]] == list(NAMES)
    assert merged["counts"] == {"done": 4, "skipped": 0, "failed": 0}
    assert runs["out_merge"] == runs["out_whole"]  # the printed table too


def test_a_missing_shard_is_named_and_exits_2(runs, tmp_path, capsys):
    shutil.copy(runs["sharded"] / "prepare_report.shard-0-of-2.json", tmp_path)
    assert main(["--merge-reports", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {tmp_path}: missing shard report of --shard 1/2 (1 of 2 found)")
    assert not (tmp_path / "prepare_report.json").exists()


def test_merge_refuses_shards_that_saw_different_inputs_or_splits(runs, tmp_path, capsys):
    for k in (0, 1):
        shutil.copy(runs["sharded"] / f"prepare_report.shard-{k}-of-2.json", tmp_path)
    one = tmp_path / "prepare_report.shard-1-of-2.json"
    report = json.loads(one.read_text())
    report["shard"]["all_videos"].append("echo")
    one.write_text(json.dumps(report))
    assert main(["--merge-reports", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "found different videos (1 differ, e.g. 'echo')" in err and err.count("\n") == 1

    (tmp_path / "prepare_report.shard-0-of-3.json").write_text("{}")
    assert main(["--merge-reports", "--out", str(tmp_path)]) == 2
    assert "shard reports of different splits (N=2: 2 reports, N=3: 1 report); delete the stale ones" in capsys.readouterr().err


def test_an_empty_shard_writes_an_empty_report(videos, tmp_path, monkeypatch):
    def no_landmarker(*args, **kwargs):
        raise AssertionError("a landmarker was built for a shard without videos")

    monkeypatch.setattr(batch, "make_landmarker", no_landmarker)
    code, out = _run([str(videos), "--out", str(tmp_path), "--shard", "0/16", *FAST])
    assert code == 0 and "shard 0/16: 0 of 4 videos" in out
    report = json.loads((tmp_path / "prepare_report.shard-0-of-16.json").read_text())
    assert report["videos"] == [] and report["shard"]["all_videos"] == list(NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepare_report.shard-0-of-16.json"]


def test_sharding_is_deterministic_whatever_the_input_order():
    names = [f"{i:03d}-{w}x{h}" for i, (w, h) in enumerate([(640, 360), (1280, 720)] * 50)]
    paths = [Path("/videos") / f"{n}.mp4" for n in names]
    shards = [Shard(k, 7) for k in range(7)]
    expected = [{p.stem for p in select_shard(paths, s)} for s in shards]
    assert set().union(*expected) == set(names) and sum(map(len, expected)) == len(names)
    for seed in range(3):
        shuffled = random.Random(seed).sample(paths, len(paths))
        assert [{p.stem for p in select_shard(shuffled, s)} for s in shards] == expected
    # Pinned values: machines running this with another Python (or hash seed) must agree.
    assert [shard_of(n, 4) for n in ("alpha", "bravo", "room", "mute", "video-1")] == [2, 1, 3, 0, 1]
    assert select_shard(paths, None) == paths


@pytest.mark.parametrize("value", ["3/3", "a/2", "0/0", "-1/2", "1", "1/2/3"])
def test_bad_shard_values_are_usage_errors_naming_the_flag(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--out", str(tmp_path / "out"), f"--shard={value}", *FAST])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "argument --shard: expected K/N" in err and repr(value) in err
    assert not (tmp_path / "out").exists()


def test_merge_reports_takes_no_videos(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--merge-reports", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--merge-reports takes no VIDEOS" in capsys.readouterr().err
