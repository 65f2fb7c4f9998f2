"""The robustness report: summary metrics, ``robustness.json`` / CSV / markdown, and the two figures.

Rows are one (checkpoint, artefact, severity) each, the clean input being ``artefact="clean", severity=0``.
Summaries follow ImageNet-C (Hendrycks & Dietterich, 2019), with CCC in place of the error rate:

* **mCCC** of an artefact: the mean CCC over its five severities;
* **rCCC** = mCCC / clean CCC: the share of the clean score that survives the artefact (1 = unaffected);
* both averaged over the artefacts seen in training and over the unseen ones, apart, and over all.

Checkpoints of one variant (seeds) are also summarised together as mean ± sample std (ddof=1).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fileio.atomic import atomic_open, write_json, write_text
from scoring.plots import markdown_table, plt, save_figure

ROW_KEYS = ("checkpoint", "artefact", "severity", "ccc_valence", "ccc_arousal", "psnr_degraded", "psnr_restored",
            "ssim_degraded", "ssim_restored")
DIMS = ("valence", "arousal")
NO_AEG = " no-AEG"   # label and variant suffix of a checkpoint scored without its cleaning pass (the no-AEG path)


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise_checkpoint(rows: list[dict], trained: Sequence[str]) -> dict:
    """``{"clean": {dim}, "artefacts": {name: {mccc_*, rccc_*}}, "trained"|"unseen"|"all": {mccc_*, rccc_*}}``
    of one checkpoint's rows."""
    clean = next(r for r in rows if r["severity"] == 0)
    out = {"clean": {d: clean[f"ccc_{d}"] for d in DIMS}, "artefacts": {}}
    for name in dict.fromkeys(r["artefact"] for r in rows if r["severity"] > 0):
        mine = [r for r in rows if r["artefact"] == name and r["severity"] > 0]
        entry = {}
        for d in DIMS:
            mccc = _mean([r[f"ccc_{d}"] for r in mine])
            entry[f"mccc_{d}"] = mccc
            entry[f"rccc_{d}"] = mccc / clean[f"ccc_{d}"] if clean[f"ccc_{d}"] else None
        out["artefacts"][name] = entry
    groups = {"trained": [n for n in out["artefacts"] if n in trained],
              "unseen": [n for n in out["artefacts"] if n not in trained], "all": list(out["artefacts"])}
    for group, names in groups.items():
        out[group] = {key: _mean([out["artefacts"][n][key] for n in names])
                      for key in ("mccc_valence", "mccc_arousal", "rccc_valence", "rccc_arousal")}
    return out


def summarise(rows: list[dict], trained: Sequence[str], variants: dict[str, str]) -> dict:
    """Per checkpoint (:func:`summarise_checkpoint`), and per variant over its checkpoints (mean, std, n)."""
    per_checkpoint = {c: summarise_checkpoint([r for r in rows if r["checkpoint"] == c], trained)
                      for c in dict.fromkeys(r["checkpoint"] for r in rows)}
    per_variant = {}
    for variant in dict.fromkeys(variants[c] for c in per_checkpoint):
        mine = [s for c, s in per_checkpoint.items() if variants[c] == variant]
        per_variant[variant] = {"checkpoints": [c for c in per_checkpoint if variants[c] == variant]}
        for group in ("trained", "unseen", "all"):
            per_variant[variant][group] = {key: _spread([s[group][key] for s in mine]) for key in mine[0][group]}
        per_variant[variant]["clean"] = {d: _spread([s["clean"][d] for s in mine]) for d in DIMS}
    return {"checkpoints": per_checkpoint, "variants": per_variant, "cleaning_gain": cleaning_gain(rows, variants)}


def _spread(values: list[float | None]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values)}


def variant_curves(rows: list[dict], variants: dict[str, str]) -> list[dict]:
    """Mean ± std over each variant's checkpoints, per (artefact, severity): the summary table (docs/robustness.md)."""
    out = []
    keys = [k for k in ROW_KEYS if k.startswith(("ccc", "psnr", "ssim"))]
    for variant in dict.fromkeys(variants.values()):
        for artefact, severity in dict.fromkeys((r["artefact"], r["severity"]) for r in rows):
            mine = [r for r in rows if variants[r["checkpoint"]] == variant and r["artefact"] == artefact
                    and r["severity"] == severity]
            if mine:
                out.append({"variant": variant, "artefact": artefact, "severity": severity,
                            **{k: _spread([r[k] for r in mine]) for k in keys}})
    return out


def cleaning_gain(rows: list[dict], variants: dict[str, str]) -> list[dict]:
    """AEG path minus no-AEG path, CCC per dimension, per (artefact, severity), as mean ± std over each variant's
    checkpoints: what the cleaning pass itself adds, the CD and its training being the same."""
    by_key = {(r["checkpoint"], r["artefact"], r["severity"]): r for r in rows}
    out = []
    for variant in dict.fromkeys(v for v in variants.values() if not v.endswith(NO_AEG)):
        paired = [c for c, v in variants.items() if v == variant and c + NO_AEG in variants]
        for artefact, severity in dict.fromkeys((r["artefact"], r["severity"]) for r in rows):
            diffs = {d: [by_key[(c, artefact, severity)][f"ccc_{d}"] - by_key[(c + NO_AEG, artefact, severity)][f"ccc_{d}"]
                         for c in paired if (c, artefact, severity) in by_key and (c + NO_AEG, artefact, severity) in by_key]
                     for d in DIMS}
            if diffs["valence"]:
                out.append({"variant": variant, "artefact": artefact, "severity": severity,
                            **{f"gain_{d}": _spread(diffs[d]) for d in DIMS}})
    return out


def _pm(cell: dict | None, digits: int) -> str:
    if cell is None:
        return "—"
    return f"{cell['mean']:.{digits}f}" + (f" ± {cell['std']:.{digits}f}" if cell["n"] > 1 else "")


def markdown_report(rows: list[dict], summary: dict, variants: dict[str, str], severities: list[dict]) -> str:
    """The severities, the summary per variant, then CCC and PSNR per (artefact, severity) per variant."""
    parts = ["## Severities", "", markdown_table(severities, list(severities[0])), "",
             "## Summary (mCCC: mean CCC over severities 1-5; rCCC = mCCC / clean CCC; mean ± std over "
             "checkpoints of a variant)", ""]
    head = ["variant", "n", "clean V", "clean A"] + [f"{g} {k}" for g in ("trained", "unseen")
                                                     for k in ("mCCC V", "mCCC A", "rCCC V", "rCCC A")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, s in summary["variants"].items():
        cells = [variant, str(len(s["checkpoints"])), _pm(s["clean"]["valence"], 3), _pm(s["clean"]["arousal"], 3)]
        for group in ("trained", "unseen"):
            cells += [_pm(s[group][k], 3) for k in ("mccc_valence", "mccc_arousal", "rccc_valence", "rccc_arousal")]
        lines.append("| " + " | ".join(cells) + " |")
    parts += [*lines, "", "## Per artefact and severity (mean ± std over checkpoints of a variant)", ""]
    head = ["variant", "artefact", "severity", "CCC V", "CCC A", "PSNR degraded", "PSNR restored", "SSIM degraded",
            "SSIM restored"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in variant_curves(rows, variants):
        lines.append("| " + " | ".join([c["variant"], c["artefact"], str(c["severity"]), _pm(c["ccc_valence"], 3),
                                        _pm(c["ccc_arousal"], 3), _pm(c["psnr_degraded"], 2),
                                        _pm(c["psnr_restored"], 2), _pm(c["ssim_degraded"], 3),
                                        _pm(c["ssim_restored"], 3)]) + " |")
    gains = cleaning_gain(rows, variants)
    if gains:
        parts += [*lines, "", "## Cleaning: the AEG path minus the no-AEG path (CCC; mean ± std over checkpoints; "
                  "> 0: the cleaning pass helps)", ""]
        lines = ["| variant | artefact | severity | ΔCCC V | ΔCCC A |", "|---|---|---|---|---|"]
        lines += [f"| {g['variant']} | {g['artefact']} | {g['severity']} | {_pm(g['gain_valence'], 3)} | "
                  f"{_pm(g['gain_arousal'], 3)} |" for g in gains]
    parts += [*lines, "", "## Per checkpoint", "",
              markdown_table([{"checkpoint": c, "variant": variants[c], **{f"{g} {k}": s[g][k] for g in
                                                                          ("trained", "unseen")
                                                                          for k in ("mccc_valence", "mccc_arousal")},
                               "clean V": s["clean"]["valence"], "clean A": s["clean"]["arousal"]}
                              for c, s in summary["checkpoints"].items()],
                             ["checkpoint", "variant", "clean V", "clean A", "trained mccc_valence",
                              "trained mccc_arousal", "unseen mccc_valence", "unseen mccc_arousal"])]
    return "\n".join(parts) + "\n"


def write_report(out: Path, rows: list[dict], checkpoints: list[dict], trained: Sequence[str],
                 severities: list[dict], timing: dict) -> dict:
    """``robustness.json``, ``robustness.csv``, ``robustness.md`` and ``plots/`` in ``out``; returns the summary.

    ``checkpoints``: ``[{"label", "path", "variant", ...}]`` in the order given on the command line.
    """
    out.mkdir(parents=True, exist_ok=True)
    variants = {c["label"]: c["variant"] for c in checkpoints}
    summary = summarise(rows, trained, variants)
    write_json(out / "robustness.json", {"checkpoints": checkpoints, "results": rows, "summary": summary,
                                         "severities": severities, "trained_artefacts": list(trained),
                                         "timing": timing}, indent=2)
    with atomic_open(out / "robustness.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["variant", *ROW_KEYS])
        writer.writeheader()
        writer.writerows({"variant": variants[r["checkpoint"]], **{k: r[k] for k in ROW_KEYS}} for r in rows)
    write_text(out / "robustness.md", markdown_report(rows, summary, variants, severities))
    plot_ccc(out / "plots" / "ccc_vs_severity.png", rows, variants)
    plot_psnr(out / "plots" / "psnr_vs_severity.png", rows, variants)
    return summary


def _artefacts(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["artefact"] for r in rows if r["severity"] > 0))


def _colours(variants: dict[str, str]) -> dict[str, str]:
    palette = plt.get_cmap("tab10")
    return {v: palette(i % 10) for i, v in enumerate(dict.fromkeys(variants.values()))}


def _curve(rows: list[dict], checkpoint: str, artefact: str, key: str) -> tuple[list[int], list[float]]:
    """Severity 0 (the clean row) then the artefact's severities, for one checkpoint."""
    mine = sorted((r for r in rows if r["checkpoint"] == checkpoint
                   and (r["artefact"] == artefact or r["severity"] == 0)), key=lambda r: r["severity"])
    points = [(r["severity"], r[key]) for r in mine if r[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_ccc(path: Path, rows: list[dict], variants: dict[str, str]) -> Path:
    """CCC (valence top, arousal bottom) against severity, one panel per artefact, one line per checkpoint
    coloured by variant; severity 0 is the clean input."""
    artefacts, colours = _artefacts(rows), _colours(variants)
    fig, axes = plt.subplots(2, len(artefacts), figsize=(2.6 * len(artefacts), 5.6), sharex=True, sharey=True,
                             squeeze=False)
    for col, artefact in enumerate(artefacts):
        for row, dim in enumerate(DIMS):
            ax = axes[row][col]
            labelled = set()
            for checkpoint, variant in variants.items():
                x, y = _curve(rows, checkpoint, artefact, f"ccc_{dim}")
                ax.plot(x, y, marker="o", ms=3, lw=1.2, color=colours[variant], alpha=0.8,
                        label=None if variant in labelled else variant)
                labelled.add(variant)
            ax.set_title(f"{artefact}: {dim}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_xticks(range(6))
            if row == 1:
                ax.set_xlabel("severity (0 = clean)")
            if col == 0:
                ax.set_ylabel("CCC")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_psnr(path: Path, rows: list[dict], variants: dict[str, str]) -> Path:
    """PSNR of the corrupted input (black, dashed) and of each AEG checkpoint's restored face against the clean
    face, by severity, one panel per artefact; severity 0's restored PSNR is the AEG's fidelity on clean faces."""
    artefacts, colours = _artefacts(rows), _colours(variants)
    fig, axes = plt.subplots(1, len(artefacts), figsize=(2.6 * len(artefacts), 3.0), sharey=True, squeeze=False)
    for col, artefact in enumerate(artefacts):
        ax = axes[0][col]
        first = next(iter(variants))
        x, y = _curve(rows, first, artefact, "psnr_degraded")
        ax.plot(x, y, "k--", marker="s", ms=3, lw=1.5, label="corrupted input")
        labelled = set()
        for checkpoint, variant in variants.items():
            x, y = _curve(rows, checkpoint, artefact, "psnr_restored")
            if y:
                ax.plot(x, y, marker="o", ms=3, lw=1.2, color=colours[variant], alpha=0.8,
                        label=None if variant in labelled else f"restored ({variant})")
                labelled.add(variant)
        ax.set_title(artefact, fontsize=9)
        ax.set_xlabel("severity")
        ax.set_xticks(range(6))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PSNR vs clean (dB)")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)
