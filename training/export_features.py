"""Export per-frame ALN features of every recording, for the sequence baselines and ALN-T.

    python -m training.export_features --checkpoint RUN/best.pt --out FEATURES_DIR [data.KEY=VALUE ...]

Writes ``FEATURES_DIR/<recording>.npy`` (frames × features, float32; frame k on row k-1) for the training and
validation splits of the checkpoint's data (``gan.features.frame_feature_parts``: pooled z, the audio vector, the CD's
pooled last activations, ALN's V/A), and ``FEATURES_DIR/features.json`` (the checkpoint, its step, the feature
width and the width of each part, which ``sequence.aln_parts`` selects from). Every frame with a face crop gets features, whatever its label; frames without one stay at zero, as frames
without audio do.
A sequence preset then reads them with ``sequence.features=aln sequence.features_dir=FEATURES_DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from data.preprocess.audio import AudioStandardiser
from data.samples.loaders import DataConfig, SplitData, build_dataset, eval_loader, load_split
from fileio.atomic import atomic_open
from gan.checkpoint import load_checkpoint, model_from_checkpoint
from gan.features import LAYOUT, frame_feature_parts
from runconfig import ConfigError, build_config, resolve_device, run_cli
from training.run_folder import replace_file


def checkpoint_fingerprint(path: str | Path) -> str:
    """Size and modification time of the checkpoint file: a retrained checkpoint at the same path and step
    is not served stale features."""
    stat = Path(path).stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def export(checkpoint: str, out: Path, overrides: list[str], device_name: str = "auto",
           data_cfg: DataConfig | None = None) -> dict:
    """Export the features of the training and validation recordings of ``data_cfg`` (default: the checkpoint's
    data section with ``overrides``)."""
    ckpt = load_checkpoint(checkpoint)
    if any(not o.startswith("data.") for o in overrides):
        raise ConfigError("export_features takes only data.* overrides (the model comes from the checkpoint)")
    cfg = build_config(ckpt["config"], overrides)
    if data_cfg is not None:
        cfg = dataclasses.replace(cfg, data=data_cfg)
    device = resolve_device(device_name)
    model = model_from_checkpoint(ckpt).to(device).eval()
    standardiser = AudioStandardiser.from_state_dict(ckpt["audio_stats"])
    out.mkdir(parents=True, exist_ok=True)
    width, widths = 0, {}
    for split in ("train", "val"):
        data, _ = load_split(cfg.data, split, standardiser)
        # every frame with a face, also those whose label is invalid: a temporal model reads them all
        data = SplitData([dataclasses.replace(r, frames=np.asarray(
            [k for k in range(1, r.n_frames + 1) if r.image_path(k).is_file()], np.int64)) for r in data.records],
            data.audio)
        dataset = build_dataset(data, cfg.model.image_size, None)
        rows: dict[str, list[tuple[int, np.ndarray]]] = {}
        for batch in eval_loader(dataset, cfg.data.eval_batch_size):
            audio = batch.get("audio")
            parts = frame_feature_parts(model, batch["face"].to(device), None if audio is None else audio.to(device))
            widths = widths or {name: int(p.shape[1]) for name, p in parts.items()}
            feats = torch.cat(list(parts.values()), dim=1)
            for video, frame, row in zip(batch["video"], batch["frame"], feats.cpu().numpy(), strict=True):
                rows.setdefault(video, []).append((int(frame), row))
        for record in data.records:
            found = rows.get(record.name, [])
            width = width or (len(found[0][1]) if found else 0)
            table = np.zeros((record.n_frames, width), np.float32)
            for frame, row in found:
                table[frame - 1] = row
            with atomic_open(out / f"{record.name}.npy", "wb") as fh:
                np.save(fh, table)
    info = {"checkpoint": str(checkpoint), "step": int(ckpt["step"]), "width": width, "layout": LAYOUT,
            "fingerprint": checkpoint_fingerprint(checkpoint), "parts": widths}
    # written last and atomically: a features.json names a complete export (a killed export is redone)
    replace_file(out / "features.json", json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export_features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="auto")
    parser.add_argument("overrides", nargs="*", metavar="data.KEY=VALUE")
    args = parser.parse_args(argv)

    def action() -> int:
        info = export(args.checkpoint, args.out, args.overrides, args.device)
        print(f"wrote {args.out}: {info['width']} features per frame from {info['checkpoint']} (step {info['step']})")
        return 0

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
