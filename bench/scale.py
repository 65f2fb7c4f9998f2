"""Benchmark: ALN at Aff-Wild2 size — start-up, memory, loader, validation and evaluation, and the preset's time.

    python -m bench.scale [--tree /tmp/aln-full] [--videos 560] [--frames 2800000] [--networks demo paper]
                          [--val-frames 1024] [--workers 0 1 2] [--gpu-tflops 150] [--skip start,loader,...]

It builds (or reuses) a synthetic Aff-Wild2 tree of real size with ``bench/full_size_tree.py`` and prints, for
each network size (``demo``: configs/demo.yaml's g16/d16; ``paper``: configs/affwild2.yaml's g64/6 blocks/d64),
at the paper preset's 128 px:

* **index**: seconds to index both splits (``data.summary``'s reader) and its peak RSS, in a fresh process;
* **start**: ``train.py --config configs/affwild2.yaml`` on the tree: seconds from launch to the first logged
  step, seconds per step on this machine, and the peak RSS summed over all its processes (loader workers too);
* **loader**: training samples/s that the DataLoader delivers with k workers, against what one step consumes;
* **validation**: per frame, on the first ``--val-frames`` validation frames: the forward passes alone (2 AEG +
  4 CD passes per frame on batches already in memory), the validation as it is now (first pass, and later
  passes that reuse the fixed degraded faces' scores); the difference to the forward passes is the overhead
  the networks do not explain. Printed as ms per frame and seconds per 10 k frames. (The former validation pass,
  PSNR/SSIM in NumPy on the host, was measured beside it until that migration ended; it is retired.)
* **evaluate**: ``evaluate.py --split val`` of a freshly initialised checkpoint, seconds per 10 k frames, in a
  fresh process (start-up included);
* **projection**: the Aff-Wild2 preset's wall time, training iterations against validations, on a GPU. The FLOPs
  per iteration and per validation frame are counted (torch's FlopCounterMode); the GPU's effective throughput
  (``--gpu-tflops``) is an assumption, so these figures are marked *projected*; a GPU run replaces them
  (``bench/gpu_check.sh``). The host-side cost (data loading) is measured here and does not shrink on a GPU.

Timings only: nothing is asserted. A run at full size takes about 15-25 minutes on 2 cores (most of it the
paper networks' forward passes on the CPU); ``--frames 280000 --videos 56`` is a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.cli import chosen_device, device_option, write_report
from bench.full_size_tree import TreeSpec, build_tree
from bench.validation_share import preset_share
from data.samples.loaders import (
    DataConfig,
    build_dataset,
    collate,
    eval_loader,
    load_split,
    scoring_dataset,
    train_loader,
)
from gan.inference import DegradedReference, autocast, predict_batches
from gan.models import ALN, ModelConfig

REPO = Path(__file__).resolve().parents[1]

NETWORKS = {"demo": dict(g_conv_dim=16, g_res_blocks=2, d_conv_dim=16),
            "paper": dict(g_conv_dim=64, g_res_blocks=6, d_conv_dim=64)}
IMAGE_SIZE, BATCH, AUDIO_DIM = 128, 32, 50
PRESET = REPO / "configs" / "affwild2.yaml"
#: configs/affwild2.yaml: 200 k iterations, stages 10 % denoise / 30 % aeg_cd / rest aeg_cd_sz, n_critic 5,
#: validation every 5 000 steps and at each stage end (20 k and 80 k are multiples of 5 000)
PRESET_STEPS, PRESET_DENOISE, PRESET_N_CRITIC, PRESET_VALIDATIONS = 200_000, 20_000, 5, 40
AFFWILD2_VAL_FRAMES = 400_000


# ------------------------------------------------------------------ processes: wall time and summed peak RSS


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def run_measured(cmd: list[str], until=None, timeout: float = 3600, poll: float = 0.2) -> dict:
    """Run ``cmd``; sample its process tree's RSS every 0.2 s; ask ``until()`` every ``poll`` s and stop the
    run when it returns a value (a short ``poll`` times a fast GPU run's steps to within ``poll``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_ALBUMENTATIONS_UPDATE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, event, sampled = 0, None, -1.0
    while proc.poll() is None and time.perf_counter() - start < timeout:
        if time.perf_counter() - sampled >= 0.2:
            peak, sampled = max(peak, _tree_rss(proc.pid)), time.perf_counter()
        if until is not None and (event := until()) is not None:
            proc.terminate()
            break
        time.sleep(poll)
    output = proc.communicate()[0]
    return {"seconds": time.perf_counter() - start, "peak_rss_gb": peak / 2**30, "event": event,
            "returncode": proc.returncode, "output": output}


# ------------------------------------------------------------------ sections


def index_section(tree: Path) -> dict:
    code = ("from data.datasets.affwild2 import index_split; from pathlib import Path; import sys; "
            "[index_split(Path(sys.argv[1]), s, 30.0) for s in ('train', 'val')]")
    return run_measured([sys.executable, "-c", code, str(tree)])


def _train_args(tree: Path, networks: str, run_dir: Path, workers: int, log_every: int = 1) -> list[str]:
    sizes = NETWORKS[networks]
    return [sys.executable, "train.py", "--config", str(PRESET), f"data.root={tree}", "data.audio.enabled=false",
            f"run.dir={run_dir}", f"train.log_every={log_every}", "train.eval_every=1000000", "train.max_steps=1000000",
            "train.stages=[]",   # GAN iterations (n_critic 5) from the first step, not the denoise stage
            f"data.num_workers={workers}", f"model.g_conv_dim={sizes['g_conv_dim']}",
            f"model.g_res_blocks={sizes['g_res_blocks']}", f"model.d_conv_dim={sizes['d_conv_dim']}"]


def start_section(tree: Path, networks: str, steps: int, workers: int, log_every: int = 1) -> dict:
    """Launch to first logged step, seconds per step after it, summed peak RSS; stopped after ``steps`` logged
    steps. The log is watched every 10 ms and parsed when it grows; on a GPU ``log_every`` > 1 keeps the log
    steps' host reads (which wait for the GPU) out of most iterations."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "run" / "metrics.jsonl"
        marks: dict[int, float] = {}
        gpu_memory: list[float] = []
        t0 = time.perf_counter()
        seen_size = [-1]

        def until():
            if metrics.is_file() and metrics.stat().st_size != seen_size[0]:
                seen_size[0] = metrics.stat().st_size
                rows = [json.loads(x) for x in metrics.read_text().splitlines() if '"D/' in x or '"G/' in x]
                for row in rows:
                    marks.setdefault(row["step"], time.perf_counter() - t0)
                    gpu_memory.append(row.get("sys/gpu_peak_memory_gb", 0.0))
                if len(rows) >= steps:
                    return True
            return None

        result = run_measured(_train_args(tree, networks, Path(tmp) / "run", workers, log_every), until, poll=0.01)
    if len(marks) < 2:
        raise SystemExit(f"error: train.py logged fewer than 2 steps:\n{result['output'][-3000:]}")
    first, last = min(marks), max(marks)
    return {"first_step_s": marks[first], "s_per_step": (marks[last] - marks[first]) / (last - first),
            "peak_rss_gb": result["peak_rss_gb"], "gpu_peak_memory_gb": max(gpu_memory)}


def loader_section(tree: Path, workers: list[int], batches: int = 40) -> dict[str, dict[int, float]]:
    """Training samples/s delivered by the DataLoader at 128 px with k workers (after a warm-up batch), with
    float faces (as before) and uint8 faces (what train.py's loader now carries; the conversion runs on the
    training device), interleaved per k so both see the same machine state."""
    cfg = DataConfig(dataset="affwild2", root=str(tree))
    cfg.audio.enabled = False
    split, _ = load_split(cfg, "train")
    datasets = {"float": build_dataset(split, IMAGE_SIZE, cfg.degrade),
                "uint8": build_dataset(split, IMAGE_SIZE, cfg.degrade, faces_as_uint8=True)}
    rates: dict[str, dict[int, float]] = {name: {} for name in datasets}
    for k in workers:
        for name, dataset in datasets.items():
            stream = iter(train_loader(dataset, BATCH, seed=0, start_step=0, num_workers=k))
            next(stream)
            start = time.perf_counter()
            for _ in range(batches):
                next(stream)
            rates[name][k] = batches * BATCH / (time.perf_counter() - start)
            del stream
    return rates


def _model(networks: str, device: torch.device | None = None) -> ALN:
    torch.manual_seed(0)
    model = ALN(ModelConfig(image_size=IMAGE_SIZE, **NETWORKS[networks]), audio_dim=AUDIO_DIM)
    return model.to(device or torch.device("cpu")).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _forward_only(model: ALN, batches: list[dict]) -> None:
    """The six network passes validation needs per frame, on batches already on the model's device."""
    device = next(model.parameters()).device
    for b in batches:
        with autocast(device, True):
            restored, z = model.clean(b["face"])
            model.critic(restored, z, b["audio"])
            model.critic(b["face"], z, b["audio"])
            restored_deg, z_deg = model.clean(b["face_degraded"])
            model.critic(restored_deg, z_deg, b["audio"])
            model.critic(b["face_degraded"], z_deg, b["audio"])
    _sync(device)


def validation_section(tree: Path, networks: str, frames: int, batch_size: int, workers: int,
                       device: torch.device) -> dict:
    """Per-frame milliseconds of validation's parts on the first ``frames`` validation frames (see the docstring)."""
    cfg = DataConfig(dataset="affwild2", root=str(tree))
    cfg.audio.enabled = False
    split, _ = load_split(cfg, "val")
    dataset = torch.utils.data.Subset(scoring_dataset(split, IMAGE_SIZE, cfg.degrade), range(frames))
    model = _model(networks, device)
    in_memory = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(
        [dataset[i] for i in range(s, min(s + batch_size, frames))]).items()} for s in range(0, frames, batch_size)]
    every = 4   # train.restoration_every's default
    timings = {}

    def timed(name, fn, n=frames):
        _forward_only(model, in_memory[:1])   # warm-up (cuDNN autotuning, allocator)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        timings[name] = (time.perf_counter() - start) / n * 1e3
        return out

    timed("data loading alone", lambda: [None for _ in eval_loader(dataset, batch_size, workers)])
    timed("forward passes alone", lambda: _forward_only(model, in_memory))
    first = timed("now: first validation", lambda: predict_batches(
        model, eval_loader(dataset, batch_size, workers), device, restoration_every=every))
    reference = DegradedReference(first.psnr_degraded, first.ssim_degraded)
    timed("now: later validations", lambda: predict_batches(
        model, eval_loader(dataset, batch_size, workers), device, degraded_reference=reference,
        restoration_every=every))
    return {"ms_per_frame": timings}


def evaluate_section(tree: Path, networks: str, workers: int) -> dict:
    """``evaluate.py --split val`` on a checkpoint of an initialised (untrained) model, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        maker = ("import sys; from runconfig import load_config; from training.aln_loop import Trainer; "
                 "t = Trainer(load_config(sys.argv[1], sys.argv[2:]), None); t.folder.save('last.pt', t.state())")
        made = subprocess.run([sys.executable, "-c", maker, str(PRESET), *_train_args(tree, networks, run, 0)[4:]],
                              cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        if made.returncode:
            raise SystemExit(f"error: could not make a checkpoint:\n{made.stderr[-3000:]}")
        result = run_measured([sys.executable, "evaluate.py", "--checkpoint", str(run / "last.pt"), "--split", "val",
                               "--out", str(Path(tmp) / "eval"), f"data.num_workers={workers}"])
        predictions = Path(tmp) / "eval" / "predictions.csv"
        if result["returncode"] or not predictions.is_file():
            raise SystemExit(f"error: evaluate.py failed:\n{result['output'][-3000:]}")
        result["frames"] = sum(1 for _ in predictions.open()) - 1
    return result


def flops_per_iteration(networks: str) -> dict[str, float]:
    """FLOPs of the preset's training iterations (the project's own stepper) and of one validation frame."""
    from types import SimpleNamespace

    from bench.train_step import count_flops, fixed_batch, project_stepper
    from gan.stages import Stage

    # counted at batch 4 and scaled: the networks' FLOPs are linear in the batch (the batch statistics of the
    # affect loss are a negligible share), and a batch-32 paper iteration takes minutes on a small CPU
    small = 4
    args = SimpleNamespace(size=networks, image=IMAGE_SIZE, batch=small)
    cpu = torch.device("cpu")
    batch = fixed_batch(small, IMAGE_SIZE, cpu)
    stepper = project_stepper(args, cpu, channels_last=False, gp_every=1, compiled=False)
    stepper.train.n_critic = PRESET_N_CRITIC
    # n_critic D steps and one G step, as configs/affwild2.yaml runs them, averaged per iteration
    gan = count_flops(lambda: [stepper.train_step(batch, i) for i in range(PRESET_N_CRITIC)]) / PRESET_N_CRITIC
    stepper.build_stage(Stage(0, "denoise", 0, 10**9, False))
    denoise = count_flops(lambda: stepper.train_step(batch, 0))
    model = stepper.model.eval()
    with torch.no_grad():
        val = count_flops(lambda: _forward_only(model, [batch])) / small
    return {"denoise": denoise * BATCH / small, "gan": gan * BATCH / small, "val_frame": val}


# ------------------------------------------------------------------ report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=Path, default=Path(tempfile.gettempdir()) / "aln-full")
    p.add_argument("--videos", type=int, default=560)
    p.add_argument("--frames", type=int, default=2_800_000)
    p.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=["demo", "paper"])
    p.add_argument("--val-frames", type=int, default=1024, help="validation frames timed (paper networks: /4)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    device_option(p)
    p.add_argument("--val-workers", type=int, default=-1,
                   help="loader workers of the timed validation (default: 0 on the CPU, 8 on CUDA as the preset)")
    p.add_argument("--gpu-tflops", type=float, default=150.0,
                   help="assumed effective bf16 TFLOP/s of the GPU for the projection (not measured here)")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: index,start,loader,validation,"
                                              "evaluate,projection")
    a = p.parse_args(argv)
    skip = set(filter(None, a.skip.split(",")))
    torch.set_num_threads(os.cpu_count() or 1)
    device = chosen_device(a.device)
    on_gpu = device.type == "cuda"
    val_workers = a.val_workers if a.val_workers >= 0 else (8 if on_gpu else 0)
    manifest = build_tree(a.tree, TreeSpec(videos=a.videos, frames=a.frames))
    print(f"tree {a.tree}: {manifest['videos']} videos, {manifest['frames']:,} frames "
          f"({manifest['split_frames']['val']:,} validation), {manifest['crops']:,} crops; "
          f"{os.cpu_count()} CPU cores, torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}")
    report: dict = {"tree": manifest}
    if "index" not in skip:
        r = index_section(a.tree)
        report["index"] = r
        print(f"\nindex (both splits, fresh process): {r['seconds']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB")
    for networks in a.networks:
        print(f"\n== {networks} networks ({NETWORKS[networks]}), 128 px, batch {BATCH}")
        if "start" not in skip:
            workers = 8 if on_gpu else max(a.workers)
            steps = 12 if on_gpu else (4 if networks == "paper" else 8)   # logged steps: 60 iterations on a GPU
            r = start_section(a.tree, networks, steps=steps, workers=workers, log_every=5 if on_gpu else 1)
            report[f"start_{networks}"] = r
            print(f"start (train.py, {device}, {workers} loader workers): first step after {r['first_step_s']:.1f} s; "
                  f"{r['s_per_step']:.3f} s/step ({BATCH / r['s_per_step']:.0f} samples/s consumed); peak RSS over "
                  f"all processes {r['peak_rss_gb']:.2f} GB" +
                  (f"; peak GPU memory {r['gpu_peak_memory_gb']:.2f} GB" if on_gpu else ""))
        if "validation" not in skip:
            frames = a.val_frames if networks == "demo" or on_gpu else max(64, a.val_frames // 4)
            r = validation_section(a.tree, networks, frames, 128, val_workers, device)
            report[f"validation_{networks}"] = r
            ms = r["ms_per_frame"]
            forward = ms["forward passes alone"]
            print(f"validation on {frames} frames ({device}, batch 128, {val_workers} loader workers):")
            print(f"  {'path':<28}{'ms/frame':>10}{'s per 10k':>11}{'beyond forward':>16}")
            for name, value in ms.items():
                beyond = "" if name == "forward passes alone" else f"{value - forward:.2f} ms"
                print(f"  {name:<28}{value:>10.2f}{value * 10:>11.1f}{beyond:>16}")
    if "evaluate" not in skip:
        small = a.tree.with_name(a.tree.name + "-10k")
        made = build_tree(small, TreeSpec(videos=40, frames=10_000))
        r = evaluate_section(small, "demo", workers=0)
        report["evaluate_demo"] = r
        print(f"\nevaluate.py --split val, demo networks, {r['frames']:,} frames of {small} "
              f"({made['frames']:,}-frame tree), fresh process: {r['seconds']:.1f} s = "
              f"{1e3 * r['seconds'] / r['frames']:.1f} ms/frame, {1e4 * r['seconds'] / r['frames']:.0f} s per 10k "
              f"(start-up included); peak RSS {r['peak_rss_gb']:.2f} GB")
    if "loader" not in skip:
        rates = loader_section(a.tree, a.workers)
        report["loader"] = rates
        print("\ntraining loader at 128 px, batch 32 (samples/s):")
        for k in a.workers:
            print(f"  {k} workers: float faces {rates['float'][k]:.0f}, uint8 faces {rates['uint8'][k]:.0f} "
                  f"({rates['uint8'][k] / rates['float'][k]:.2f}x)")
    if "projection" not in skip:
        projection(report, a, on_gpu)
    out = Path(tempfile.gettempdir()) / "aln-scale.json"
    write_report(out, report)
    print(f"\nall figures: {out}")
    return 0


def projection(report: dict, a, on_gpu: bool) -> None:
    """The Aff-Wild2 preset (paper networks) on one GPU: training iterations against validations."""
    if on_gpu and "start_paper" in report and "validation_paper" in report:
        train_s = PRESET_STEPS * report["start_paper"]["s_per_step"]   # GAN iterations; denoise ones cost less
        ms = report["validation_paper"]["ms_per_frame"]
        print("\nAff-Wild2 preset on this GPU (MEASURED: s/step of train.py and ms/frame of validation above):")
        print(f"  training iterations: {train_s / 3600:.1f} h ({PRESET_STEPS:,} at the GAN iteration's "
              f"{report['start_paper']['s_per_step']:.3f} s)")
        key = "now: later validations"
        total = PRESET_VALIDATIONS * AFFWILD2_VAL_FRAMES * ms[key] / 1e3
        report.setdefault("measured", {})["validation_now_h"] = total / 3600
        print(f"  validation: {ms[key]:.3f} ms/frame -> {total / 3600:5.1f} h for {PRESET_VALIDATIONS} "
              f"validations of {AFFWILD2_VAL_FRAMES:,} frames = {100 * total / train_s:.0f} % of the training time")
        return
    flops = flops_per_iteration("paper")
    eff = a.gpu_tflops * 1e12
    train_s = (PRESET_DENOISE * flops["denoise"] + (PRESET_STEPS - PRESET_DENOISE) * flops["gan"]) / eff
    gpu_frame_ms = flops["val_frame"] / eff * 1e3
    report["projection"] = {"flops": flops, "gpu_tflops_assumed": a.gpu_tflops, "train_h": train_s / 3600}
    print(f"\nprojection of configs/affwild2.yaml on one GPU at an assumed {a.gpu_tflops:.0f} effective TFLOP/s "
          f"(PROJECTED: no GPU ran this; FLOPs counted, host costs measured on this CPU):")
    print(f"  counted: {flops['gan'] / 1e12:.2f} TFLOP per GAN iteration (n_critic {PRESET_N_CRITIC}), "
          f"{flops['denoise'] / 1e12:.2f} per denoise iteration, {flops['val_frame'] / 1e9:.1f} GFLOP per "
          f"validation frame ({gpu_frame_ms:.3f} ms on the GPU)")
    print(f"  training iterations: {train_s / 3600:.1f} h ({PRESET_STEPS:,} iterations)")
    val = report.get("validation_paper") or report.get("validation_demo")
    if not val:
        return
    ms, workers = val["ms_per_frame"], 8   # configs/affwild2.yaml: data.num_workers 8
    # the metrics run on the GPU; loading runs in the loader's workers, overlapping the GPU's passes
    per_frame = max(gpu_frame_ms, ms["data loading alone"] / workers)
    total = PRESET_VALIDATIONS * AFFWILD2_VAL_FRAMES * per_frame / 1e3
    report["projection"]["validation_now_h"] = total / 3600
    print(f"  validation: {per_frame:.3f} ms/frame -> {total / 3600:5.1f} h for {PRESET_VALIDATIONS} "
          f"validations of {AFFWILD2_VAL_FRAMES:,} frames = {100 * total / train_s:.0f} % of the training time "
          f"(the former schedule: 6 passes on every frame)")
    # the preset's schedule as it is now (eval_every, views_every, restoration-only denoise validations)
    share = preset_share(str(REPO / "configs" / "affwild2.yaml"), AFFWILD2_VAL_FRAMES)
    report["projection"]["preset_validation_share"] = share["share_now"]
    print(f"  validation of configs/affwild2.yaml as it is now ({share['validations']} validations, views on every "
          f"{share['views_every']}-th frame; bench.validation_share's FLOP count): {100 * share['share_now']:.1f} % "
          f"of the training FLOPs ({100 * share['share_before']:.1f} % for the former schedule by that count)")


if __name__ == "__main__":
    sys.exit(main())
