"""SEWA splits: subject-disjoint fold manifests (drawn once, then only read and checked) and the protocols.

Why a fold manifest: the SEWA five-fold person-independent protocol is only reproducible when every run
uses the same folds, so the folds are drawn once from a seed, written to a JSON file, and from then on
read back and checked against the data, never silently regenerated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from data.datasets.sewa.config import SPLITS, SewaConfig, is_int
from data.datasets.sewa.index import labelled_recordings
from data.datasets.sewa.labels import unquote
from data.errors import DataError
from fileio.atomic import write_json

log = logging.getLogger(__name__)


def read_subjects(path: Path | str) -> dict[str, str]:
    """Read a ``recording,subject`` CSV (header required; ``,`` or ``;``) into {recording: subject}."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read subjects file ({exc.__class__.__name__})") from exc
    sep = ";" if lines and ";" in lines[0] else ","
    header = [unquote(c).lower() for c in lines[0].split(sep)] if lines else []
    if header != ["recording", "subject"]:
        raise DataError(f"{path}:1: expected the header 'recording,subject', found {(lines or [''])[0][:80]!r}")
    subjects: dict[str, str] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [unquote(f) for f in line.split(sep)]
        if len(fields) != 2 or not fields[0] or not fields[1]:
            raise DataError(f"{path}:{lineno}: expected 'recording{sep}subject', found {line.strip()[:80]!r}")
        if fields[0] in subjects:
            raise DataError(f"{path}:{lineno}: recording {fields[0]!r} listed twice")
        subjects[fields[0]] = fields[1]
    return subjects


def make_fold_manifest(recordings: Iterable[str], subjects: Mapping[str, str] | None, k: int,
                       seed: int) -> dict:
    """Draw ``k`` subject-disjoint folds, deterministically from ``seed``.

    Subjects (sorted, then shuffled with ``np.random.default_rng(seed)``) are placed largest first (a
    stable sort, so the shuffle orders subjects of equal size) into the fold with the fewest recordings so
    far (lowest index on ties): with one recording per subject this is a round robin, and the fold sizes
    differ by at most one whenever that is possible.

    Args:
        recordings: recording stems.
        subjects: {recording: subject}; None = every recording is its own subject.
        k: number of folds.
        seed: shuffling seed.

    Returns:
        ``{"seed", "num_folds", "subjects": {recording: subject}, "folds": [[recording, ...], ...]}``.
    """
    recordings = sorted(set(recordings))
    mapping = {r: (subjects[r] if subjects is not None else r) for r in recordings}
    groups: dict[str, list[str]] = {}
    for rec in recordings:
        groups.setdefault(mapping[rec], []).append(rec)
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    if len(groups) < k:
        raise DataError(f"{len(groups)} subjects cannot fill {k} subject-disjoint folds")
    names = sorted(groups)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    order.sort(key=lambda s: -len(groups[s]))
    folds: list[list[str]] = [[] for _ in range(k)]
    for subject in order:
        target = min(range(k), key=lambda f: (len(folds[f]), f))
        folds[target].extend(groups[subject])
    return {"seed": int(seed), "num_folds": int(k), "subjects": mapping, "folds": [sorted(f) for f in folds]}


def write_fold_manifest(path: Path | str, manifest: dict) -> Path:
    """Write ``manifest`` as JSON atomically (:mod:`fileio.atomic`): a killed run leaves no half file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json(path, manifest)
    except OSError as exc:
        raise DataError(f"{path}: cannot write the fold manifest ({exc.strerror or exc.__class__.__name__}); "
                        f"set sewa.fold_manifest to a writable path") from exc


def read_fold_manifest(path: Path | str) -> dict:
    """Read a fold manifest and check its shape (not yet against the data: see :func:`check_manifest`)."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable fold manifest ({exc.__class__.__name__})") from exc
    ok = (isinstance(manifest, dict) and is_int(manifest.get("seed")) and is_int(manifest.get("num_folds"))
          and isinstance(manifest.get("subjects"), dict)
          and all(isinstance(k, str) and isinstance(v, str) for k, v in manifest["subjects"].items())
          and isinstance(manifest.get("folds"), list)
          and all(isinstance(f, list) and all(isinstance(r, str) for r in f) for f in manifest["folds"]))
    if not ok:
        raise DataError(f"{path}: not a fold manifest (expected {{\"seed\": int, \"num_folds\": int, "
                        f"\"subjects\": {{recording: subject}}, \"folds\": [[recording, ...], ...]}})")
    return manifest


def check_manifest(manifest: dict, recordings: Iterable[str], *, num_folds: int | None = None,
                   subjects: Mapping[str, str] | None = None, source: Path | str = "fold manifest") -> None:
    """Check that ``manifest`` describes exactly ``recordings``.

    Args:
        manifest: as returned by :func:`make_fold_manifest` / :func:`read_fold_manifest`.
        recordings: the labelled recordings found in the data.
        num_folds: the configured number of folds, if it must match.
        subjects: the configured {recording: subject} mapping, if it must match the manifest's.
        source: the manifest's path, named in every error.

    Raises:
        DataError: naming ``source``: a fold-count mismatch, a recording in two folds, a data recording
            missing from the manifest or a manifest recording missing from the data, a recording without a
            subject, a subject split across folds, or subjects that differ from ``subjects``.
    """
    folds = manifest["folds"]
    if manifest["num_folds"] != len(folds):
        raise DataError(f"{source}: num_folds is {manifest['num_folds']} but {len(folds)} folds are listed")
    if num_folds is not None and num_folds != len(folds):
        raise DataError(f"{source}: has {len(folds)} folds but sewa.num_folds={num_folds}; set sewa.num_folds or "
                        f"point sewa.fold_manifest to another file")
    fold_of: dict[str, int] = {}
    for i, fold in enumerate(folds):
        for rec in fold:
            if rec in fold_of:
                raise DataError(f"{source}: recording {rec!r} is in folds {fold_of[rec]} and {i}")
            fold_of[rec] = i
    data = set(recordings)
    missing, extra = sorted(data - set(fold_of)), sorted(set(fold_of) - data)
    if missing:
        raise DataError(f"{source}: {len(missing)} labelled recordings are in no fold (e.g. {missing[:3]}); the "
                        f"data changed since the manifest was written - delete it to draw new folds")
    if extra:
        raise DataError(f"{source}: {len(extra)} recordings of the manifest have no label file (e.g. {extra[:3]})")
    subject_fold: dict[str, int] = {}
    for rec, i in sorted(fold_of.items()):
        subject = manifest["subjects"].get(rec)
        if subject is None:
            raise DataError(f"{source}: recording {rec!r} has no subject")
        if subjects is not None and subjects.get(rec, rec) != subject:
            raise DataError(f"{source}: recording {rec!r} has subject {subject!r} here but "
                            f"{subjects.get(rec, rec)!r} in the configured subjects")
        if subject_fold.setdefault(subject, i) != i:
            raise DataError(f"{source}: subject {subject!r} is split across folds {subject_fold[subject]} and {i}")


def manifest_path(root: Path | str, cfg: SewaConfig) -> Path:
    return Path(cfg.fold_manifest).expanduser() if cfg.fold_manifest else \
        Path(root) / f"folds_seed{cfg.fold_seed}.json"


def _by_prefix(recordings: list[str], *prefixes: str) -> list[str]:
    return sorted(r for r in recordings if any(r.startswith(p + "_") for p in prefixes))


def split_recordings(root: Path | str, cfg: SewaConfig, split: str, fold: int = 0) -> list[str]:
    """The recordings of ``split`` (train | val | test) under ``cfg.protocol``.

    * ``folds`` (the SEWA person-independent K-fold protocol): subject-disjoint folds over every
      recording with a label file; test = fold ``fold`` (``data.fold``), val = fold ``(fold + 1) % K``,
      train = the rest. The folds come from the manifest (created at the first call, then only read
      and checked; see the module docstring).
    * ``avec``: train = Train_DE + Train_HU, val = Devel_DE + Devel_HU, test = the same Devel recordings,
      because the AVEC 2019 test labels are not public (test scores equal validation scores).
    * ``cross_cultural``: train = Train_DE, val = Devel_DE, test = Devel_HU + Train_HU (train on German,
      test on Hungarian, as in the cross-cultural papers).

    Raises:
        DataError: a missing label folder, a manifest that does not match the data, or an empty split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cfg.validate()
    if not is_int(fold) or not 0 <= fold < cfg.num_folds:
        raise ValueError(f"data.fold must be an integer in [0, {cfg.num_folds - 1}], got {fold!r}")
    recordings = labelled_recordings(root)
    if cfg.protocol == "folds":
        chosen = _fold_split(root, cfg, recordings, split, fold)
    elif cfg.protocol == "avec":
        chosen = {"train": _by_prefix(recordings, "Train_DE", "Train_HU"),
                  "val": _by_prefix(recordings, "Devel_DE", "Devel_HU"),
                  "test": _by_prefix(recordings, "Devel_DE", "Devel_HU")}[split]
    else:
        chosen = {"train": _by_prefix(recordings, "Train_DE"),
                  "val": _by_prefix(recordings, "Devel_DE"),
                  "test": _by_prefix(recordings, "Devel_HU", "Train_HU")}[split]
    if not chosen:
        raise DataError(f"{Path(root) / 'labels'}: no labelled recordings for split '{split}' of protocol "
                        f"'{cfg.protocol}'")
    return chosen


def _fold_split(root: Path | str, cfg: SewaConfig, recordings: list[str], split: str, fold: int) -> list[str]:
    subjects = read_subjects(cfg.subjects_file) if cfg.subjects_file else None
    if subjects is not None:
        unmapped = [r for r in recordings if r not in subjects]
        if unmapped:
            raise DataError(f"{cfg.subjects_file}: no subject for {len(unmapped)} labelled recordings "
                            f"(e.g. {unmapped[:3]})")
    path = manifest_path(root, cfg)
    if path.is_file():
        manifest = read_fold_manifest(path)
        if manifest["seed"] != cfg.fold_seed:
            raise DataError(f"{path}: folds were drawn with seed {manifest['seed']} but sewa.fold_seed="
                            f"{cfg.fold_seed}; use the matching seed or another sewa.fold_manifest")
    else:
        manifest = make_fold_manifest(recordings, subjects, cfg.num_folds, cfg.fold_seed)
        write_fold_manifest(path, manifest)
        log.info("%s: wrote %d-fold manifest (seed %d) over %d recordings", path, cfg.num_folds,
                 cfg.fold_seed, len(recordings))
    effective = subjects if subjects is not None else {r: r for r in recordings}
    check_manifest(manifest, recordings, num_folds=cfg.num_folds, subjects=effective, source=path)
    folds = manifest["folds"]
    test, val = fold, (fold + 1) % cfg.num_folds
    if split == "test":
        return sorted(folds[test])
    if split == "val":
        return sorted(folds[val])
    return sorted(r for i, f in enumerate(folds) if i not in (test, val) for r in f)
