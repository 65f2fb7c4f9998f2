"""``evaluate.py --robustness``: the clean row is the clean evaluation, the report's numbers follow from its rows,
an interrupted run resumes, and sequence models that read faces are scored the same way."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import evaluate
import train
from scoring.robustness_summary import ROW_KEYS
from tests.train_helpers import TINY

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "baselines"
ARTEFACTS = ["noise", "jpeg"]   # one trained, one unseen: 11 conditions keep the test short


@pytest.fixture(scope="module")
def checkpoints(demo_root, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    paths = []
    for variant in ("aeg_cd_sz", "disc"):
        run = runs / f"{variant}-run"
        assert train.main([*TINY, f"data.root={demo_root}", f"run.dir={run}", f"model.variant={variant}",
                           "train.max_steps=6", "train.eval_every=6"]) == 0
        paths.append(str(run / "last.pt"))
    return paths


def _report(out: Path) -> dict:
    return json.loads((out / "robustness.json").read_text())


def test_robustness_rows_summary_files_and_the_clean_row_is_the_clean_evaluation(checkpoints, tmp_path, capsys):
    out = tmp_path / "robust"
    assert evaluate.main(["--checkpoint", *checkpoints, "--robustness", "--artefacts", *ARTEFACTS,
                          "--out", str(out)]) == 0
    report = _report(out)
    # every checkpoint with an AEG is scored on two paths: cleaned (the test-time path) and its no-AEG twin
    assert [c["label"] for c in report["checkpoints"]] == ["aeg_cd_sz-run", "aeg_cd_sz-run no-AEG", "disc-run"]
    assert [c["variant"] for c in report["checkpoints"]] == ["aeg_cd_sz", "aeg_cd_sz no-AEG", "disc"]
    rows = report["results"]
    assert len(rows) == 3 * (1 + 5 * len(ARTEFACTS))
    assert set(rows[0]) == set(ROW_KEYS)
    by = {(r["checkpoint"], r["artefact"], r["severity"]): r for r in rows}

    # severity 0 is exactly what a plain evaluation of the same checkpoint reports
    for path, label in zip(checkpoints, ("aeg_cd_sz-run", "disc-run"), strict=True):
        plain = tmp_path / f"plain-{label}"
        assert evaluate.main(["--checkpoint", path, "--out", str(plain), "--max-trace-plots", "0"]) == 0
        metrics = json.loads((plain / "metrics.json").read_text())
        clean = by[(label, "clean", 0)]
        assert clean["ccc_valence"] == metrics["valence"]["ccc"]
        assert clean["ccc_arousal"] == metrics["arousal"]["ccc"]

    # the corrupted inputs lose PSNR with every severity step (the same frames for both checkpoints)
    for artefact in ARTEFACTS:
        psnr = [by[("aeg_cd_sz-run", artefact, s)]["psnr_degraded"] for s in range(1, 6)]
        assert all(a > b for a, b in zip(psnr, psnr[1:], strict=False)), (artefact, psnr)
        assert psnr == [by[("disc-run", artefact, s)]["psnr_degraded"] for s in range(1, 6)]
        # the AEG's output is scored; disc has none
        assert all(by[("aeg_cd_sz-run", artefact, s)]["psnr_restored"] > 0 for s in range(1, 6))
        assert all(by[("disc-run", artefact, s)]["psnr_restored"] is None for s in range(1, 6))
    assert by[("aeg_cd_sz-run", "clean", 0)]["psnr_degraded"] is None
    # the no-AEG path has no restoration, sees the same corrupted faces, and predicts otherwise
    assert all(by[("aeg_cd_sz-run no-AEG", a, s)]["psnr_restored"] is None for a in ARTEFACTS for s in range(1, 6))
    assert by[("aeg_cd_sz-run no-AEG", "noise", 5)]["psnr_degraded"] == by[("aeg_cd_sz-run", "noise", 5)]["psnr_degraded"]
    assert by[("aeg_cd_sz-run no-AEG", "noise", 5)]["ccc_valence"] != by[("aeg_cd_sz-run", "noise", 5)]["ccc_valence"]
    # the cleaning gain is the AEG row minus its no-AEG twin, per artefact and severity
    gains = {(g["artefact"], g["severity"]): g for g in report["summary"]["cleaning_gain"]}
    assert {g["variant"] for g in report["summary"]["cleaning_gain"]} == {"aeg_cd_sz"} and len(gains) == 11
    for (artefact, severity), gain in gains.items():
        for dim in ("valence", "arousal"):
            expected = (by[("aeg_cd_sz-run", artefact, severity)][f"ccc_{dim}"]
                        - by[("aeg_cd_sz-run no-AEG", artefact, severity)][f"ccc_{dim}"])
            assert gain[f"gain_{dim}"] == {"mean": pytest.approx(expected, abs=1e-12), "std": 0.0, "n": 1}
    # corruptions change the predictions
    assert by[("disc-run", "noise", 5)]["ccc_valence"] != by[("disc-run", "clean", 0)]["ccc_valence"]

    # summary: mCCC is the mean over severities, rCCC its ratio to the clean CCC; trained and unseen apart
    for label in ("aeg_cd_sz-run", "disc-run"):
        summary = report["summary"]["checkpoints"][label]
        clean = by[(label, "clean", 0)]
        for artefact in ARTEFACTS:
            for dim in ("valence", "arousal"):
                mccc = np.mean([by[(label, artefact, s)][f"ccc_{dim}"] for s in range(1, 6)])
                assert summary["artefacts"][artefact][f"mccc_{dim}"] == pytest.approx(mccc, abs=1e-12)
                assert summary["artefacts"][artefact][f"rccc_{dim}"] == pytest.approx(mccc / clean[f"ccc_{dim}"])
        assert summary["trained"]["mccc_valence"] == summary["artefacts"]["noise"]["mccc_valence"]
        assert summary["unseen"]["mccc_valence"] == summary["artefacts"]["jpeg"]["mccc_valence"]

    with (out / "robustness.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows) and float(table[0]["ccc_valence"]) == pytest.approx(rows[0]["ccc_valence"])
    markdown = (out / "robustness.md").read_text()
    assert "## Severities" in markdown and "| aeg_cd_sz | noise | 5 |" in markdown
    assert "## Cleaning: the AEG path minus the no-AEG path" in markdown
    for plot in ("ccc_vs_severity.png", "psnr_vs_severity.png"):
        assert (out / "plots" / plot).stat().st_size > 10_000


def test_an_interrupted_robustness_run_resumes_with_the_same_rows(checkpoints, tmp_path, capsys):
    full = tmp_path / "full"
    assert evaluate.main(["--checkpoint", checkpoints[0], "--robustness", "--artefacts", "noise",
                          "--out", str(full)]) == 0
    expected = _report(full)["results"]
    # a kill after four rows, in the middle of writing the fifth
    cut = tmp_path / "cut"
    cut.mkdir()
    lines = (full / "rows.jsonl").read_text().splitlines()
    (cut / "rows.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:30])
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", checkpoints[0], "--robustness", "--artefacts", "noise",
                          "--out", str(cut)]) == 0
    assert "reusing 4 row(s)" in capsys.readouterr().out
    assert _report(cut)["results"] == expected
    # a retrained (rewritten) checkpoint makes its rows stale
    path = Path(checkpoints[0])
    path.write_bytes(path.read_bytes())
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", checkpoints[0], "--robustness", "--artefacts", "noise",
                          "--out", str(cut)]) == 0
    assert "reusing" not in capsys.readouterr().out


def test_sequence_models_that_read_faces_are_scored_and_the_others_refused(demo_root, tmp_path, capsys):
    demo = [o for o in TINY if o.startswith("data.demo.")]
    faces = tmp_path / "attention"
    assert train.main(["--config", str(PRESETS / "temporal_attention.yaml"), *demo, f"data.root={demo_root}",
                       f"run.dir={faces}", "train.max_steps=6", "train.eval_every=6"]) == 0
    out = tmp_path / "robust"
    assert evaluate.main(["--checkpoint", str(faces / "last.pt"), "--robustness", "--artefacts", "noise",
                          "--out", str(out)]) == 0
    rows = {(r["artefact"], r["severity"]): r for r in _report(out)["results"]}
    plain = tmp_path / "plain"
    assert evaluate.main(["--checkpoint", str(faces / "last.pt"), "--out", str(plain), "--max-trace-plots", "0"]) == 0
    metrics = json.loads((plain / "metrics.json").read_text())
    assert rows[("clean", 0)]["ccc_valence"] == metrics["valence"]["ccc"]
    assert rows[("noise", 5)]["ccc_valence"] != rows[("clean", 0)]["ccc_valence"]
    assert rows[("noise", 5)]["psnr_degraded"] is None    # PSNR is measured at ALN's input only

    audio_only = tmp_path / "pandit"
    assert train.main(["--config", str(PRESETS / "pandit_c.yaml"), *demo, f"data.root={demo_root}",
                       f"run.dir={audio_only}", "train.max_steps=2", "train.eval_every=2", "sequence.pandit.kernel=9"]) == 0
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(audio_only / "last.pt"), "--robustness", "--out",
                          str(tmp_path / "no")]) != 0
    assert "reads no faces" in capsys.readouterr().err


def test_the_no_aeg_path_is_the_cd_on_the_corrupted_face_with_its_own_z():
    """``predict_corrupted`` with a model listed twice: cleaned, then not; the second is CD(input, z(input))."""
    import torch

    from gan.inference import predict_corrupted
    from gan.models import ALN, ModelConfig
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd_sz", image_size=32, g_conv_dim=4, g_res_blocks=1, d_conv_dim=4), 6).eval()
    g = torch.Generator().manual_seed(1)
    batches = [{"face": torch.rand(4, 3, 32, 32, generator=g) * 2 - 1,
                "face_degraded": torch.rand(4, 3, 32, 32, generator=g) * 2 - 1,
                "audio": torch.randn(4, 6, generator=g), "va": torch.rand(4, 2, generator=g) * 2 - 1,
                "video": ["v"] * 4, "frame": torch.arange(1, 5) + 4 * k} for k in range(2)]
    (cleaned, plain), reference = predict_corrupted([model, model], batches, torch.device("cpu"), amp=False,
                                                    cleans=[True, False])
    with torch.no_grad():
        direct = torch.cat([model.critic(b["face_degraded"], model.clean(b["face_degraded"])[1], b["audio"])[1]
                            for b in batches])
        test_time = torch.cat([model.predict(b["face_degraded"], b["audio"]) for b in batches])
    np.testing.assert_allclose(plain.pred, direct.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(cleaned.pred, test_time.numpy(), rtol=0, atol=1e-6)
    assert not np.allclose(plain.pred, cleaned.pred)
    assert cleaned.psnr_restored is not None and plain.psnr_restored is None and reference is not None
