"""The robustness protocol: several checkpoints under every corruption condition, scored and reported.

``evaluate.py --robustness`` runs :func:`robustness_report`. The work is arranged so that a condition's corrupted faces
are made once for all the per-frame (ALN) checkpoints that can share them: checkpoints with the same data
settings, input size and audio statistics form a group, and each batch of a condition goes through every model
of the group (``gan.inference.predict_corrupted``). Every checkpoint with an AEG is also scored without its cleaning
pass (the CD on the corrupted face, with that face's ``z``): rows labelled ``<label> no-AEG``, whose difference to
the AEG path says how much of the robustness the cleaning itself gives. Sequence checkpoints that take faces read their recordings
with the corruption applied to every crop (``training.sequence_inputs``); sequence checkpoints without faces
are refused, since no corruption reaches them.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.preprocess.audio import AudioStandardiser
from data.samples.corruptions import ARTEFACTS, Corruption, conditions, severity_table
from data.samples.loaders import condition_loader, load_split, resolve_root
from evaluation.official import headline_of, official_scores, tracks_for
from gan.checkpoint import inference_model, load_checkpoint, system_name
from gan.inference import DegradedReference, Predictions, predict_corrupted
from gan.models import ALN
from runconfig import ConfigError, RunConfig, build_config
from scoring.robustness_summary import NO_AEG, markdown_report, write_report
from training.sequence_inputs import SequencePredictor

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One checkpoint to score: its label, rebuilt config and audio statistics, and its model or predictor."""

    label: str
    cfg: RunConfig
    standardiser: AudioStandardiser
    model: ALN | SequencePredictor
    cleans: bool = True   # False: the no-AEG path of an ALN with an AEG (its CD on the corrupted face itself)


@dataclass
class ConditionResult:
    """One checkpoint under one condition (``("clean", 0)`` or an artefact at a severity)."""

    entry: Entry
    artefact: str
    severity: int
    records: list
    predictions: Predictions
    reference: DegradedReference | None   # PSNR/SSIM of the corrupted input itself (None: clean, or not computed)
    seconds: float


def _group_key(entry: Entry) -> tuple:
    stats = entry.standardiser.state_dict()
    digest = tuple((k, np.asarray(v).tobytes()) for k, v in sorted(stats.items()))
    return repr(entry.cfg.data), entry.cfg.model.image_size, digest


def run_conditions(entries: list[Entry], split: str, device: torch.device,
                   selected: list[tuple[str, int]] | dict[str, list[tuple[str, int]]] | None = None
                   ) -> Iterator[ConditionResult]:
    """Every entry under every condition (default: :func:`data.samples.corruptions.conditions`, clean first);
    ``selected`` may be one list for all, or a list per entry label (what a resumed run still lacks)."""
    if not isinstance(selected, dict):
        selected = {e.label: list(selected or conditions()) for e in entries}
    for entry in entries:
        if isinstance(entry.model, SequencePredictor) and not entry.model.takes_faces:
            raise ConfigError(f"{entry.label}: this sequence model reads no faces (sequence.maps="
                              f"{entry.cfg.sequence.maps}), so the image corruptions cannot reach it")
    groups: dict[tuple, list[Entry]] = {}
    for entry in entries:
        if isinstance(entry.model, ALN) and selected[entry.label]:
            groups.setdefault((*_group_key(entry), tuple(selected[entry.label])), []).append(entry)
    for members in groups.values():
        yield from _aln_group(members, split, device, selected[members[0].label])
    for entry in entries:
        if isinstance(entry.model, SequencePredictor) and selected[entry.label]:
            yield from _sequence_entry(entry, split, selected[entry.label])


def _aln_group(members: list[Entry], split: str, device: torch.device, selected: list[tuple[str, int]]
               ) -> Iterator[ConditionResult]:
    """All conditions through one loader; each condition's batches go to every model of the group."""
    cfg = members[0].cfg
    data_split, _ = load_split(cfg.data, split, members[0].standardiser)
    models = [m.model for m in members]
    corruptions = [Corruption(artefact, severity) if severity else None for artefact, severity in selected]
    loader = condition_loader(data_split, cfg.model.image_size, corruptions, cfg.data.eval_batch_size,
                              cfg.data.num_workers)
    started = time.perf_counter()
    for condition, batches in itertools.groupby(loader, key=lambda batch: batch["condition"][0]):
        artefact, severity = selected[condition]
        preds, reference = predict_corrupted(models, batches, device, cfg.train.amp, cfg.train.restoration_every,
                                             [m.cleans for m in members])
        seconds = (time.perf_counter() - started) / len(members)
        log.info("%s %d: %d checkpoint(s), %d frames, %.1f s", artefact, severity, len(members),
                 len(preds[0].gold), seconds * len(members))
        for member, pred in zip(members, preds, strict=True):
            yield ConditionResult(member, artefact, severity, data_split.records, pred, reference, seconds)
        started = time.perf_counter()


def _sequence_entry(entry: Entry, split: str, selected: list[tuple[str, int]]) -> Iterator[ConditionResult]:
    for artefact, severity in selected:
        started = time.perf_counter()
        corruption = Corruption(artefact, severity) if severity else None
        records, preds, _ = entry.model(split, corruption=corruption)
        yield ConditionResult(entry, artefact, severity, records, preds, None, time.perf_counter() - started)


def _checkpoint_labels(paths: list[str]) -> list[str]:
    """Run folder names (``disc-seed0``), or the paths themselves where two runs share a folder name."""
    labels = [Path(p).parent.name or Path(p).stem for p in paths]
    return labels if len(set(labels)) == len(labels) else [str(p) for p in paths]


def _robustness_key(path: str, ckpt: dict, split: str, protocol: str, cleans: bool = True) -> str:
    """What a stored robustness row depends on: the checkpoint file as it is now, the path through it (with or
    without the cleaning pass), the split and the protocol's severities (a retrained checkpoint or a changed table
    makes the row stale)."""
    stat = Path(path).stat()
    key = {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
           "step": int(ckpt["step"]), "split": split, "protocol": protocol, "severities": severity_table()}
    return json.dumps(key if cleans else {**key, "no_aeg": True}, sort_keys=True)


def _stored_rows(path: Path) -> dict[tuple[str, str, int], dict]:
    """Rows of an earlier, possibly interrupted run in ``path`` (``rows.jsonl``), keyed by (key, artefact, severity);
    a line cut short by a kill is skipped with a warning."""
    stored, broken = {}, 0
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                stored[(record["key"], record["row"]["artefact"], record["row"]["severity"])] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                broken += 1
    if broken:
        log.warning("%s: %d unreadable line(s) skipped (a run killed while writing); those rows are computed again",
                    path, broken)
    return stored


def robustness_report(paths: list[str], overrides: list[str], split: str | None, protocol: str | None,
                      artefacts: list[str] | None, out: Path | None, device: torch.device) -> dict:
    """``evaluate.py --robustness``: every checkpoint under every condition, scored with the official protocol.

    ``overrides`` are data.* settings; ``split`` / ``protocol`` None take the dataset's defaults (as a plain
    evaluation does); ``artefacts`` None scores them all. Each scored row is appended to ``out/rows.jsonl`` as it
    comes, keyed by the checkpoint file, split and severities; a rerun (after a kill, or with more checkpoints)
    reuses the rows it finds and computes the rest. Returns the summary of ``scoring.robustness_summary``.
    """
    entries, described, checkpoints = [], [], []
    for path, label in zip(paths, _checkpoint_labels(paths), strict=True):
        ckpt = load_checkpoint(path)
        cfg = build_config(ckpt["config"], overrides)
        standardiser = AudioStandardiser.from_state_dict(ckpt["audio_stats"])
        system = ckpt.get("system", "aln")
        model = inference_model(ckpt, device, cfg.train.channels_last) if system == "aln" else SequencePredictor(ckpt, cfg, standardiser)
        about = {"path": str(path), "step": int(ckpt["step"]), "dataset": cfg.data.dataset}
        entries.append(Entry(label, cfg, standardiser, model))
        checkpoints.append((path, ckpt))
        described.append({"label": label, "variant": system_name(ckpt), **about})
        if isinstance(model, ALN) and model.aeg is not None:   # is it the cleaning? the same CD without it
            entries.append(Entry(label + NO_AEG, cfg, standardiser, model, cleans=False))
            checkpoints.append((path, ckpt))
            described.append({"label": label + NO_AEG, "variant": system_name(ckpt) + NO_AEG, **about})
    datasets = {(e.cfg.data.dataset, str(resolve_root(e.cfg.data))) for e in entries}
    if len(datasets) > 1:
        raise ConfigError(f"--robustness compares checkpoints on one dataset; these evaluate {sorted(datasets)} "
                          "(give --dataset / data.root to pick one)")
    cfg = entries[0].cfg
    split = split or ("test" if cfg.data.dataset == "sewa" else "val")
    if split == "test" and cfg.data.dataset != "sewa":
        raise ConfigError(f"--robustness needs labels; {cfg.data.dataset}'s test split has none (use --split val)")
    protocol = protocol or ("avec2019" if cfg.data.dataset == "sewa" else "abaw")
    out = out or \
        Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths])) / f"robustness-{split}"
    out.mkdir(parents=True, exist_ok=True)
    selected = [c for c in conditions() if c[1] == 0 or not artefacts or c[0] in artefacts]
    keys = {e.label: _robustness_key(p, c, split, protocol, e.cleans) for e, (p, c) in zip(entries, checkpoints,
                                                                                          strict=True)}
    stored = _stored_rows(out / "rows.jsonl")
    todo = {e.label: [c for c in selected if (keys[e.label], *c) not in stored] for e in entries}
    reused = sum(len(selected) - len(t) for t in todo.values())
    if reused:
        print(f"reusing {reused} row(s) of {out / 'rows.jsonl'}; computing {sum(map(len, todo.values()))}")
    started, per_condition, frames = time.perf_counter(), {}, None
    with tempfile.TemporaryDirectory(prefix="aln-robustness-") as scratch, (out / "rows.jsonl").open("a") as sink:
        for result in run_conditions([e for e in entries if todo[e.label]], split, device, todo):
            tracks = tracks_for(protocol, result.entry.cfg, result.records, result.predictions)
            official = official_scores(protocol, result.entry.cfg, split, tracks, Path(scratch) / "official")
            shutil.rmtree(Path(scratch) / "official")
            headline = headline_of(protocol, official)
            preds, reference = result.predictions, result.reference
            row = {"checkpoint": result.entry.label, "artefact": result.artefact, "severity": result.severity,
                   "ccc_valence": headline["valence"]["ccc"], "ccc_arousal": headline["arousal"]["ccc"],
                   "psnr_degraded": reference.psnr if reference else None, "psnr_restored": preds.psnr_restored,
                   "ssim_degraded": reference.ssim if reference else None, "ssim_restored": preds.ssim_restored}
            record = {"key": keys[result.entry.label], "row": row, "seconds": result.seconds}
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            stored[(record["key"], result.artefact, result.severity)] = record
            name = f"{result.artefact}-{result.severity}"
            per_condition[name] = per_condition.get(name, 0.0) + result.seconds
            frames = len(preds.gold)
            print(f"{result.entry.label:24s} {result.artefact:12s} {result.severity}  CCC V {row['ccc_valence']:.3f}"
                  f"  A {row['ccc_arousal']:.3f}", flush=True)
    rows = [{**stored[(keys[e.label], *c)]["row"], "checkpoint": e.label} for e in entries for c in selected]
    timing = {"seconds": time.perf_counter() - started, "per_condition": per_condition, "device": str(device),
              "frames": frames, "rows_reused": reused, "rows_computed": len(rows) - reused}
    summary = write_report(out, rows, described, [n for n, a in ARTEFACTS.items() if a.trained], severity_table(),
                           timing)
    print(markdown_report(rows, summary, {c["label"]: c["variant"] for c in described}, severity_table())
          .split("## Per artefact")[0])
    print(f"{len(entries)} checkpoint(s) x {len(selected)} conditions on {cfg.data.dataset}/{split}: "
          f"{timing['rows_computed']} rows computed in {timing['seconds'] / 60:.1f} min ({reused} reused); wrote "
          f"{out / 'robustness.json'}, robustness.csv, robustness.md and plots/")
    return summary
