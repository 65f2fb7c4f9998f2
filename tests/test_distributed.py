"""Data-parallel training: torchrun with two gloo processes on CPU computes what one process computes.

The end-to-end tests start ``torchrun --standalone --nproc_per_node=2 train.py`` on the tiny demo config
(D and G steps, WGAN-GP, z and audio) and compare its checkpoint with ``python train.py`` given the same
global batch. The unit tests run the collectives in two spawned gloo processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gan.losses import AffectLoss, class_balance_weights
from gan.models import ALN
from tests.train_helpers import HANG_GUARD_S, REPO, TINY, _jsonl
from training.distributed import Distributed

#: weights (absolute) of one and of two processes agree to WEIGHTS, Adam's moments to MOMENTS of their scale;
#: measured after four iterations: 1.4e-7 and 2.3e-5 (the float summation order differs: shards, all-reduce)
WEIGHTS, MOMENTS = 1e-5, 1e-4
#: validation scores of two processes against one, relative (and absolute near 0): the weights differ by
#: WEIGHTS after training's all-reduce, and the restoration means are sums over two shares
VALIDATION = 1e-4
#: gloo on CPU in both runs, also on a machine with GPUs (train.device's default, auto, would take CUDA there)
COMMON = [*TINY, "train.device=cpu", "train.n_critic=2", "loss.gp_every=2", "train.eval_every=4",
          "train.lr_decay_from=1.0", "seed=7"]


#: loaded into every child process: records which rank renames a file into place or appends to a log
RECORD_WRITES = """import os
_replace, _open = os.replace, os.open
def _log(path):
    with open(os.environ["ALN_WRITE_LOG"], "a") as fh:
        fh.write(os.environ.get("RANK", "single") + " " + str(path) + "\\n")
def _recording_replace(src, dst, *args, **kwargs):
    _log(dst)
    return _replace(src, dst, *args, **kwargs)
def _recording_open(path, flags, *args, **kwargs):
    if flags & os.O_APPEND and str(path).endswith("metrics.jsonl"):
        _log(path)
    return _open(path, flags, *args, **kwargs)
os.replace, os.open = _recording_replace, _recording_open
"""


def _env(shim: Path | None = None, write_log: Path | None = None) -> dict[str, str]:
    path = f"{shim}{os.pathsep}{REPO}" if shim else str(REPO)
    extra = {"ALN_WRITE_LOG": str(write_log)} if write_log else {}
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


def _train(demo_root: Path, run: Path, *extra: str, processes: int = 1, write_log: Path | None = None) -> None:
    args = [*COMMON, f"data.root={demo_root}", f"run.dir={run}", *extra]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "train.py", *args]
    else:
        command = [sys.executable, "train.py", "train.threads=1", *args]
    shim = None
    if write_log:
        shim = write_log.parent / "shim"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(RECORD_WRITES)
    result = subprocess.run(command, cwd=REPO, env=_env(shim, write_log), capture_output=True, text=True,
                            timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stderr[-3000:]


def _differences(a: dict, b: dict) -> tuple[float, float]:
    """(largest absolute weight difference, largest Adam-moment difference relative to that moment's scale)."""
    weights = max((a["model"][k].float() - b["model"][k].float()).abs().max().item() for k in a["model"])
    moments = 0.0
    for opt in ("opt_d", "opt_g"):
        for i, state in a[opt].get("state", {}).items():
            for name in ("exp_avg", "exp_avg_sq"):
                scale = state[name].abs().max().item() or 1.0
                moments = max(moments, (state[name] - b[opt]["state"][i][name]).abs().max().item() / scale)
    return weights, moments


def _checkpoint(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def one_and_two(demo_root, tmp_path_factory):
    """Four iterations (two G steps) in one process and in two, from the same seed and global batch."""
    base = tmp_path_factory.mktemp("ddp")
    _train(demo_root, base / "one", "train.max_steps=4")
    _train(demo_root, base / "two", "train.max_steps=4", processes=2, write_log=base / "writes.log")
    return base


def test_two_processes_reach_the_weights_of_one(one_and_two):
    one, two = _checkpoint(one_and_two / "one" / "last.pt"), _checkpoint(one_and_two / "two" / "last.pt")
    assert one["step"] == two["step"] == 4
    weights, moments = _differences(one, two)
    assert weights < WEIGHTS and moments < MOMENTS
    # the logged values are the global batch's: the same numbers up to summation order
    rows_one, rows_two = _jsonl(one_and_two / "one" / "metrics.jsonl"), _jsonl(one_and_two / "two" / "metrics.jsonl")
    assert [r["step"] for r in rows_one] == [r["step"] for r in rows_two]
    for r1, r2 in zip(rows_one, rows_two, strict=True):
        assert r1.keys() == r2.keys()
        for key in r1:
            if isinstance(r1[key], float):
                assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-5), key


def test_only_rank_zero_writes(one_and_two):
    two = one_and_two / "two"
    # every checkpoint, config and log write into the run folder came from rank 0 (recorded in each process)
    writes = [line.split(" ", 1) for line in (one_and_two / "writes.log").read_text().splitlines()]
    into_run = [(rank, path) for rank, path in writes if path.startswith(str(two))]
    assert {Path(p).name for _, p in into_run} >= {"last.pt", "best.pt", "config.yaml", "metrics.jsonl"}
    assert {rank for rank, _ in into_run} == {"0"}
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in (one_and_two / "one").iterdir())
    # one TensorBoard writer (a second rank would add its own events file) and each log line once
    assert len(list((two / "tb").glob("events.out.tfevents.*"))) == 1
    lines = (two / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))
    steps = [json.loads(line)["step"] for line in lines if "D/loss" in line]
    assert steps == sorted(set(steps))


def test_two_processes_validate_their_shares_and_log_the_one_process_scores(demo_root, tmp_path):
    """Every rank scores its share of the validation frames; the logged scores are one process's. An odd
    eval batch and a views subset make the shares' boundaries cut through batches and through the subset."""
    extra = ("train.max_steps=2", "train.eval_every=2", "data.eval_batch_size=7", "train.views_every=3",
             "train.restoration_every=2")
    _train(demo_root, tmp_path / "one", *extra)
    _train(demo_root, tmp_path / "two", *extra, processes=2)
    val_one, val_two = ([r for r in _jsonl(tmp_path / name / "metrics.jsonl") if "val/ccc_valence" in r]
                        for name in ("one", "two"))
    assert len(val_one) == len(val_two) == 1 and val_one[0].keys() == val_two[0].keys()
    assert {"val_degraded/ccc_valence", "val/psnr_restored", "restoration/psnr_restored_all"} <= set(val_one[0])
    for key, value in val_one[0].items():
        assert val_two[0][key] == pytest.approx(value, rel=VALIDATION, abs=VALIDATION), key


def test_a_two_process_checkpoint_resumes_in_one_process(demo_root, one_and_two):
    """The data order is a function of (seed, step), not of the number of processes."""
    for name in ("one", "two"):
        _train(demo_root, one_and_two / name, f"run.resume={one_and_two / name / 'last.pt'}", "train.max_steps=8")
    one, two = _checkpoint(one_and_two / "one" / "last.pt"), _checkpoint(one_and_two / "two" / "last.pt")
    assert one["step"] == two["step"] == 8
    weights, moments = _differences(one, two)
    assert weights < WEIGHTS and moments < MOMENTS


# ------------------------------------------------------------------------------------------ collectives


def _in_two_processes(fn, tmp_path: Path) -> None:
    mp.spawn(_worker, args=(fn, str(tmp_path / "store")), nprocs=2, join=True)


def _worker(rank: int, fn, store: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        fn(Distributed(rank, 2))
    finally:
        dist.destroy_process_group()


def _affect_gradient_matches_one_process(d: Distributed) -> None:
    """CCC/PCC are batch statistics: on gathered shards, the averaged gradient is the global batch's."""
    g = torch.Generator().manual_seed(0)
    x, target = torch.randn(8, 3, generator=g), torch.rand(8, 2, generator=g) * 2 - 1
    weight = torch.randn(3, 2, generator=g)
    loss = AffectLoss(class_balance_weights(target, 5, 10.0))

    whole = weight.clone().requires_grad_(True)
    expected, _ = loss(torch.tanh(x @ whole), target)
    expected.backward()

    shared = torch.nn.Parameter(weight.clone())   # the same weights on both ranks, each with its shard
    part = d.shard(8)
    value, _ = loss(d.gather(torch.tanh(x[part] @ shared)), d.gather(target[part]))
    with d.gradient_average([shared]).during_backward():
        value.backward()
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(shared.grad, whole.grad, rtol=1e-5, atol=1e-7)


def _sync_averages_in_place_and_the_stop_flag_reaches_every_rank(d: Distributed) -> None:
    used, unused = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    conv = torch.nn.Parameter(torch.zeros(4, 3, 2, 2).contiguous(memory_format=torch.channels_last))
    with d.gradient_average([used, unused, conv]).during_backward():   # gradients set by hand: no hook fires
        used.grad = torch.full((3,), float(d.rank + 1))       # 1 and 2: the average is 1.5
        conv.grad = torch.arange(48.0).view(4, 2, 2, 3).permute(0, 3, 1, 2) * (d.rank + 1)   # channels_last strides
        expected = conv.grad.clone() * 1.5 / (d.rank + 1)
        grad_tensor = conv.grad
    assert used.grad.tolist() == [1.5] * 3
    assert unused.grad is None                            # no rank touched it
    assert conv.grad is grad_tensor and conv.grad.stride() == conv.stride()   # in place, layout kept
    assert torch.equal(conv.grad, expected)
    averaged, stop = d.log_mean_and_stop({"x": torch.tensor(float(d.rank))}, d.rank == 1, torch.device("cpu"))
    assert averaged["x"].item() == 0.5 and float(stop) > 0   # rank 1's request, seen by both
    _, stop = d.log_mean_and_stop({"x": torch.tensor(0.0)}, False, torch.device("cpu"))
    assert float(stop) == 0
    # validation's shares: contiguous, in order, covering 7 frames as 4 + 3; gathered back in frame order
    shares = [Distributed(r, 2).share(7) for r in range(2)]
    assert shares == [range(0, 4), range(4, 7)] and d.share(7) == shares[d.rank]
    rows = torch.arange(14.0).view(7, 2)[d.share(7)]
    assert torch.equal(d.gather_rows(rows, [4, 3]), torch.arange(14.0).view(7, 2))
    assert torch.equal(d.sum(torch.tensor([1.0, d.rank])), torch.tensor([2.0, 1.0]))


def _buckets_are_averaged_while_the_backward_runs(d: Distributed) -> None:
    """A small CNN with ~1 KB buckets: every gradient equals the mean of the two ranks' gradients (each
    computed here without a collective), in every step. A parameter the loss does not use keeps no
    gradient and holds up its bucket in the first step only: from the second, every bucket
    is all-reduced from the hooks, before the backward ends. A parameter reached again after a step
    that did not reach it arrives after its bucket's launch and is averaged all the same."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 2))
    net.to(memory_format=torch.channels_last)
    unused = torch.nn.Parameter(torch.zeros(5))
    params = [*net.parameters(), unused]
    inputs = [torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(r)) for r in range(2)]

    def gradients(x):
        for p in params:
            p.grad = None
        net(x.contiguous(memory_format=torch.channels_last)).square().sum().backward()
        return [p.grad.clone() for p in net.parameters()]

    expected = [(a + b) / 2 for a, b in zip(gradients(inputs[0]), gradients(inputs[1]), strict=True)]
    average = d.gradient_average(params, bucket_bytes=1024)
    launched = []
    for _ in range(2):
        for p in params:
            p.grad = None
        with average.during_backward():
            net(inputs[d.rank].contiguous(memory_format=torch.channels_last)).square().sum().backward()
        launched.append(average.launched_in_backward)
        for p, want in zip(net.parameters(), expected, strict=True):
            torch.testing.assert_close(p.grad, want, rtol=1e-6, atol=1e-7)
            assert p.grad.stride() == p.stride()
        assert unused.grad is None
    assert len(average.buckets) >= 4 and launched == [0, len(average.buckets)], (launched, average.buckets)
    # a step that reaches the formerly unused parameter: its gradient comes late and is averaged too
    for p in params:
        p.grad = None
    with average.during_backward():
        (net(inputs[d.rank].contiguous(memory_format=torch.channels_last)).square().sum()
         + unused.sum() * (d.rank + 1)).backward()
    assert unused.grad.tolist() == [1.5] * 5
    for p, want in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("check", [_affect_gradient_matches_one_process,
                                   _sync_averages_in_place_and_the_stop_flag_reaches_every_rank,
                                   _buckets_are_averaged_while_the_backward_runs])
def test_collectives_in_two_processes(check, tmp_path):
    _in_two_processes(check, tmp_path)


def _each_rank_validates_its_share(demo_root: str, d: Distributed) -> None:
    """Each rank's AEG sees only its share of the validation frames; the shared pass returns the scores of a
    one-process pass over every frame (computed here too, with no collective)."""
    import train
    from data.samples.loaders import load_split
    from training.validation import Validator

    cfg = train.load_config(train.DEFAULT_PRESET, [*TINY, f"data.root={demo_root}", "run.dir=/unused",
                                                   "train.views_every=3", "data.eval_batch_size=7",
                                                   "train.restoration_frames=0"])   # the AEG sees the pass alone
    split, _ = load_split(cfg.data, "val")
    torch.manual_seed(0)
    model = ALN(cfg.model, cfg.data.audio.dim)
    seen = []
    model.aeg.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))
    whole = Validator(cfg.train, cfg.data, cfg.model.image_size, split, torch.device("cpu")).run(model, 1, 0, None)
    seen.clear()
    shared_validator = Validator(cfg.train, cfg.data, cfg.model.image_size, split, torch.device("cpu"), d)
    shared = shared_validator.run(model, 1, 0, None)
    frames, mine = len(shared_validator.val_set), d.share(len(shared_validator.val_set))
    views = range(-(-mine.start // 3) * 3, mine.stop, 3)   # this share's frames of the views subset
    assert sum(seen) == len(mine) + len(views) and len(mine) < frames   # headline pass + degraded views' pass
    for dim in whole:
        for metric, value in whole[dim].items():
            assert shared[dim][metric] == pytest.approx(value, rel=1e-5, abs=1e-6), (dim, metric)


def test_every_rank_validates_its_share_and_gets_the_whole_splits_scores(demo_root, tmp_path):
    _in_two_processes(partial(_each_rank_validates_its_share, str(demo_root)), tmp_path)


def test_single_process_is_the_identity():
    d = Distributed()
    x = torch.randn(4, 2)
    assert d.gather(x) is x and d.shard(4) == slice(0, 4) and not d.enabled
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        Distributed(0, 3).shard(8)
