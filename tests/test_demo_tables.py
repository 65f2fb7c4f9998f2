"""experiments.demo_tables: the default-run tables are the logged values of the steps asked for."""

from __future__ import annotations

import json

import pytest

from experiments.demo_tables import main


def _write(run, records):
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _restoration(step, base):
    out = {"step": step}
    for i, art in enumerate(["blur", "downscale", "colour", "noise", "all", "clean"]):
        out |= {f"restoration/psnr_degraded_{art}": 30.0 + i, f"restoration/psnr_restored_{art}": base + i,
                f"restoration/ssim_degraded_{art}": 0.9, f"restoration/ssim_restored_{art}": 0.5 + i / 100}
    return out


def test_tables_hold_the_logged_values_of_each_step(tmp_path, capsys):
    run = tmp_path / "run"
    _write(run, [_restoration(1800, 20.0), {"step": 2400, "val/ccc_valence": 0.25, "val/ccc_arousal": 0.5},
                 {"step": 3000, "val/ccc_valence": 0.75, "val/ccc_arousal": 0.875,
                  "val_degraded_no_aeg/ccc_valence": 0.125, "val_degraded_no_aeg/ccc_arousal": 0.0625},
                 _restoration(3000, 21.0)])
    assert main([str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "| test path (AEG cleans the clean frame, CD scores it) | 2,400 | 0.250 | 0.500 |" in out
    assert "| test path (AEG cleans the clean frame, CD scores it) | 3,000 | 0.750 | 0.875 |" in out
    assert "| CD on degraded frames without the AEG | 3,000 | 0.125 | 0.062 |" in out
    assert not any(line.startswith("| test path on degraded frames") for line in out)  # not logged: no row
    assert "| colour | 32.00 → 22.00 dB / 0.900 → 0.520 | 32.00 → 23.00 dB / 0.900 → 0.520 |" in out
    assert "| clean (fidelity) | 25.00 dB / 0.550 | 26.00 dB / 0.550 |" in out


def test_a_run_without_validation_is_refused_with_its_path(tmp_path):
    run = tmp_path / "run"
    _write(run, [{"step": 25, "G/denoise": 0.3}])
    with pytest.raises(SystemExit, match="run/metrics.jsonl has no validation CCC"):
        main([str(run)])
