"""Peak memory of a face-based sequence baseline at Aff-Wild2 size: the face cache against crops in RAM.

    python -m bench.sequence_memory [--trees DIR] [--sizes 0.1 0.5 1.0] [--preset configs/baselines/temporal_attention.yaml]
                                    [--steps 5] [--chunk 256] [--workers 2] [--old-at 0.1] [KEY=VALUE ...]

Why: the sequence models once decoded every face crop of a split into RAM (float16, 6 KB per frame at 32 px:
17 GB for Aff-Wild2's 2.8 M frames) and predicted whole recordings (up to 47 k frames) in one batch. This
measures what a run holds now, on synthetic Aff-Wild2 trees (``bench/full_size_tree.py``: real layout and
recording lengths, hard links to the demo's crops, no audio) at ``--sizes`` of full size (560 videos, 2.8 M
frames), in fresh subprocesses, one per phase:

* ``cache`` — index both splits and build the face cache (a one-off: every crop decoded once, by ``--workers``
  processes); its time is reported;
* ``train`` — what ``SequenceTrainer`` does before its loop (both splits indexed, their sequences built) and
  ``--steps`` training steps on random ``sequence.chunk`` chunks (``--chunk``: the presets train on whole
  recordings, which at 47 k frames is a memory wall of its own, see docs/scale.md, "Sequence baselines' memory");
* ``predict`` — the validation split's sequences and their prediction, as evaluate.py does it (the audio
  statistics given, not fitted; an untrained model of the preset).

Peak RSS is the child's own high-water mark (VmHWM, exact), with its RSS and high-water mark at marks
(after the imports, after ``data.samples.loaders.load_split``, once the sequences are built, at the end), the
largest worker's peak (``cache``) and the polled peak of mapped file pages. ``--old-at`` runs the ``train``
phase the old way (maps decoded into RAM) at those sizes; elsewhere the old figure is computed
(:func:`old_estimate`: never run at full size, where it needs 17 GB). Trees and caches are kept under
``--trees`` (``$ALN_CACHE_DIR`` is pointed there), so a second run skips building them: the ``cache`` phase
then only checks the caches, and the one-off decoding time is that of the first run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FULL_VIDEOS, FULL_FRAMES = 560, 2_800_000
MAP_BYTES = 3 * 32 * 32 * 2     # one frame of float16 maps at 32 px, what the old path held per frame


def status_kb(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in kB (empty once it has exited)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines) if k in keys}


def descendants(pid: int) -> list[int]:
    """The process and every process below it (worker pools), from /proc's parent links."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def run_child(args: list[str], env: dict[str, str]) -> dict:
    """Run one phase in a fresh interpreter, polling its process tree's RSS; its JSON result plus the peaks."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.sequence_memory", "--child", *args], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)
    peak = {"tree_rss": 0, "anon": 0, "file": 0}
    while proc.poll() is None:
        stats = [status_kb(p) for p in descendants(proc.pid)]
        peak["tree_rss"] = max(peak["tree_rss"], sum(s.get("VmRSS", 0) for s in stats))
        peak["anon"] = max(peak["anon"], sum(s.get("RssAnon", 0) for s in stats))
        peak["file"] = max(peak["file"], sum(s.get("RssFile", 0) for s in stats))
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"error: phase {args[0]} failed (exit {proc.returncode}); its output:\n{out[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, **{k: v / 1024 for k, v in peak.items()}}


# ---------------------------------------------------------------- child side: one phase, one JSON line out


def child(phase: str, preset: str, overrides: list[str], steps: int, old: bool) -> dict:
    """Run ``phase`` and report the child's own peak (VmHWM), its RSS at marks, and what it read."""
    import numpy as np
    import torch

    import training.sequence_inputs as inputs
    import training.sequence_loop as loop
    from data.preprocess.audio import AudioStandardiser
    from data.samples.loaders import index_records, load_split
    from data.samples.sequences import cached_face_maps, face_maps
    from runconfig import load_config

    torch.set_num_threads(2)
    cfg = load_config(preset, overrides)
    marks: dict[str, tuple[float, float]] = {}

    def mark(name: str) -> None:
        now = status_kb()
        marks[name] = (now.get("VmRSS", 0) / 1024, now.get("VmHWM", 0) / 1024)

    mark("imported")   # torch, torchvision, opensmile...: the floor every phase starts from

    if old:   # the old path: every crop decoded into RAM (float16), whole recordings predicted
        inputs.cached_face_maps = lambda records, size, workers=0: [face_maps(r, size) for r in records]
    started = time.perf_counter()
    frames, longest = 0, 0
    if phase == "cache":
        records = index_records(cfg.data, "training") + index_records(cfg.data, "val")
        mark("indexed")
        frames = sum(r.n_frames for r in records)
        cached_face_maps(records, cfg.sequence.face_size, cfg.data.num_workers)
    elif phase == "train":
        real_load_split = loop.load_split

        def load_split_marked(*args, **kwargs):
            result = real_load_split(*args, **kwargs)
            mark(f"load_split {args[1]}")
            return result

        loop.load_split = load_split_marked
        trainer = loop.SequenceTrainer(cfg, None)
        frames = sum(len(s) for s in trainer.train_seqs + trainer.val_seqs)
        mark("sequences built")
        for _ in range(steps):
            trainer.train_step()
        mark("after steps")
    else:   # as evaluate.py: the training statistics come with the checkpoint, nothing is fitted on val
        identity = AudioStandardiser(np.zeros(cfg.data.audio.dim, np.float32), np.ones(cfg.data.audio.dim, np.float32))
        split, _ = load_split(cfg.data, "val", identity)
        mark("load_split val")
        sequences = inputs.sequences_of(split, cfg, export=False)
        frames, longest = sum(len(s) for s in sequences), max(len(s) for s in sequences)
        mark("sequences built")
        first = sequences[0]
        model = inputs.build_model(cfg, first.features.shape[1], None if first.maps is None else first.maps.shape[1])
        chunk, context = inputs.prediction_settings(cfg)
        outputs = inputs.predict_sequences(model, sequences, cfg.sequence.recordings, 0 if old else chunk, context)
        assert sum(len(o) for o in outputs) == frames and all(np.isfinite(o).all() for o in outputs)
        mark("predicted")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"phase": phase, "old": old, "frames": frames, "longest": longest,
            "seconds": round(time.perf_counter() - started, 1),
            "hwm": status_kb().get("VmHWM", 0) / 1024, "largest_worker": children, "marks": marks}


# ---------------------------------------------------------------- parent side


def tree_for(root: Path, share: float) -> tuple[Path, dict]:
    """The synthetic tree at ``share`` of full size (built once by bench/full_size_tree.py)."""
    out = root / f"tree-{share:g}"
    videos, frames = max(4, round(FULL_VIDEOS * share)), round(FULL_FRAMES * share)
    subprocess.run([sys.executable, "-m", "bench.full_size_tree", str(out), "--videos", str(videos),
                    "--frames", str(frames)], check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return out, json.loads((out / "tree.json").read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trees", type=Path, default=Path("/tmp/aln-sequence-memory"))
    p.add_argument("--sizes", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    p.add_argument("--preset", default=str(REPO / "configs" / "baselines" / "temporal_attention.yaml"))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--old-at", type=float, nargs="*", default=[0.1])
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a, extra = p.parse_known_args(argv)
    if a.child:   # --child PHASE OLD STEPS PRESET OVERRIDES...
        phase, old, steps, preset, *overrides = a.child
        print(json.dumps(child(phase, preset, overrides, int(steps), old == "old")))
        return 0
    a.trees.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ALN_CACHE_DIR": str(a.trees / "cache")}
    rows = []
    for share in a.sizes:
        root, manifest = tree_for(a.trees, share)
        overrides = [f"data.root={root}", "data.dataset=affwild2", "data.audio.enabled=false",
                     f"data.num_workers={a.workers}", f"sequence.chunk={a.chunk}", f"run.dir={a.trees / 'run'}",
                     "run.overwrite=true", *extra]
        phases = [("cache", False), ("train", False), ("predict", False)]
        phases += [("train", True)] if any(abs(share - s) < 1e-9 for s in a.old_at) else []
        for phase, old in phases:
            result = run_child([phase, "old" if old else "new", str(a.steps), a.preset, *overrides], env)
            result.update(share=share, videos=manifest["videos"], tree_frames=manifest["frames"])
            rows.append(result)
            print(json.dumps(result), file=sys.stderr)
    print_table(rows)
    return 0


def old_estimate(r: dict) -> float:
    """The old path's peak, computed: this phase's RSS once its sequences are built plus the float16 maps it
    would hold (frames x 6144 B) and, to predict, the padded float32 batch of ``recordings`` (8) whole
    recordings (8 x longest x 12288 B); a lower bound (the CNN's activations come on top)."""
    rss_built = r["marks"]["sequences built"][0]
    batch = 8 * r["longest"] * 2 * MAP_BYTES if r["phase"] == "predict" else 0
    return max(r["hwm"], rss_built + (r["frames"] * MAP_BYTES + batch) / 2**20)


def print_table(rows: list[dict]) -> None:
    """One line per (size, phase): the new peak, where it was reached, and the old path's (run or computed)."""
    print(f"{'size':>4} {'videos':>6} {'frames':>9} {'phase':<8} {'seconds':>7} {'imports':>7} {'load_split':>10} "
          f"{'peak':>6} {'after load_split':>16} {'file':>5} {'old (in RAM)':>18}")
    for r in rows:
        if r["old"]:
            continue
        old = next((o for o in rows if o["old"] and o["share"] == r["share"] and o["phase"] == r["phase"]), None)
        loaded = next((v[1] for k, v in r["marks"].items() if k.startswith("load_split")), None)
        if r["phase"] == "cache":
            old_text, loaded_text, after = "-", "-", f"workers {r['largest_worker']:.0f}"
        else:
            old_text = f"{old['hwm']:.0f} run" if old else f"{old_estimate(r):.0f} computed"
            loaded_text, after = f"{loaded:.0f}", f"+{r['hwm'] - loaded:.0f}"
        print(f"{r['share']:>4g} {r['videos']:>6} {r['tree_frames']:>9,} {r['phase']:<8} {r['seconds']:>7.1f} "
              f"{r['marks']['imported'][1]:>7.0f} {loaded_text:>10} {r['hwm']:>6.0f} {after:>16} {r['file']:>5.0f} "
              f"{old_text:>18}")
    print("MB. imports: RSS after importing torch & co.; load_split: high-water mark once data.samples.loaders has "
          "indexed the split(s) and computed their eGeMAPS rows; peak: the phase's high-water mark (VmHWM); after "
          "load_split: what the sequences, the face maps and the model added on top; file: polled peak of mapped "
          "file pages (shared libraries; the face cache's pages are released after each read); old: the in-RAM "
          "path, run, or computed as the RSS with sequences built + frames x 6144 B of float16 maps (+ to "
          "predict, 8 padded whole recordings of float32 maps), a lower bound")
    news = [r for r in rows if not r["old"] and r["phase"] != "cache"]
    for phase in ("train", "predict"):
        pts = sorted((r["frames"], r["hwm"], r["marks"]["sequences built"][0]) for r in news if r["phase"] == phase)
        if len(pts) > 1:
            (f0, h0, s0), (f1, h1, s1) = pts[0], pts[-1]
            per = 2**20 / (f1 - f0)
            print(f"{phase}: peak grows {(h1 - h0) * per:.0f} B per frame read, RSS once built "
                  f"{(s1 - s0) * per:.0f} B per frame (between {f0:,} and {f1:,} frames)")
    for r in rows:
        marks = ", ".join(f"{k} {v[0]:.0f}/{v[1]:.0f}" for k, v in r["marks"].items())
        print(f"  {r['share']:g} {r['phase']}{' (old)' if r['old'] else ''}: RSS/high-water mark at {marks} MB")


if __name__ == "__main__":
    sys.exit(main())
