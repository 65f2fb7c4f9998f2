"""experiments.learning_curve: validation lines of several runs, per step, with the stage and mean ± std."""

from __future__ import annotations

import json

from experiments.learning_curve import table


def _run(path, values):
    path.mkdir()
    lines = [{"step": 0, "event": "stage_start", "stage": 0, "variant": "aeg_cd", "first_step": 1, "last_step": 10},
             {"step": 5, "G/loss": 1.0, "stage": 0},
             {"step": 10, "event": "stage_start", "stage": 1, "variant": "aeg_cd_sz", "first_step": 11,
              "last_step": 20}]
    lines += [{"step": s, "val/ccc_valence": v, "val/ccc_arousal": 0.5} for s, v in values]
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_steps_are_labelled_with_their_stage_and_averaged_over_the_runs(tmp_path):
    a = _run(tmp_path / "a", [(10, 0.1), (20, 0.7)])
    b = _run(tmp_path / "b", [(10, 0.3), (20, 0.9), (15, 0.4)])
    rows = table([a, b], ["val/ccc_valence"])
    assert [(r["step"], r["stage"], r["runs"]) for r in rows] == [(10, "aeg_cd", 2), (15, "aeg_cd_sz", 1),
                                                                 (20, "aeg_cd_sz", 2)]
    # mean and sample std (ddof 1) of 0.1 and 0.3: 0.2 ± 0.141; one run alone has no spread
    assert [r["val/ccc_valence"] for r in rows] == ["0.200 ± 0.141", "0.400", "0.800 ± 0.141"]


def test_a_torn_last_line_of_a_killed_run_is_dropped_with_a_warning(tmp_path, caplog):
    run = _run(tmp_path / "killed", [(10, 0.1), (20, 0.7)])
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 30, "val/ccc_vale')   # the write a SIGKILL interrupted
    rows = table([run], ["val/ccc_valence"])
    assert [(r["step"], r["val/ccc_valence"]) for r in rows] == [(10, "0.100"), (20, "0.700")]
    assert "dropped 1 torn line" in caplog.text
