"""The CUDA path, checked without a GPU (tests/device_probes.py says what a CPU can show).

* The paper preset's iteration runs on the ``meta`` device (forward, the penalty's double backward, G step
  with the per-term gradient norms, Adam) with no host read and no host-to-device copy.
* With ``torch.distributed`` patched into a recorder, a 2-rank ``Distributed`` hands every collective a
  tensor on the training device, and the averaged gradients keep their parameters' strides.
* Layouts and precisions that only a GPU run would otherwise reveal: the CD's input keeps channels_last,
  the WGAN means and the penalty's interpolates are fp32 under bf16 inputs, cuDNN autotuning is on for
  CUDA, and a checkpoint's CUDA RNG state is one GPU's.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as torch_dist

from gan import checkpoint
from gan.inference import tune_for_fixed_shapes
from gan.losses import critic_loss, generator_adversarial_loss, gradient_penalty
from gan.models import CD
from gan.stages import plan_stages
from runconfig import load_config
from tests.device_probes import DeviceTraffic
from tests.train_helpers import REPO
from training.distributed import Distributed
from training.stepper import ALNStepper, uniform_hash

META = torch.device("meta")


def _paper_preset():
    return load_config(REPO / "configs" / "affwild2.yaml", ["data.root=/not/read/by/these/tests"])


def _meta_batch(cfg) -> dict[str, torch.Tensor]:
    b, s = cfg.train.batch_size, cfg.model.image_size
    return {"face": torch.empty(b, 3, s, s, device=META), "face_degraded": torch.empty(b, 3, s, s, device=META),
            "audio": torch.empty(b, cfg.data.audio.dim, device=META), "va": torch.empty(b, 2, device=META)}


def _stepper(cfg, stage_index: int, dist: Distributed | None = None) -> tuple[ALNStepper, object]:
    plan = plan_stages(cfg.train.stages, cfg.model.variant, cfg.train.max_steps)
    balance = torch.ones(2, cfg.loss.balance_bins, device=META)
    stepper = ALNStepper(cfg.train, cfg.model, cfg.loss, cfg.seed, cfg.data.audio.dim, balance, META, dist)
    stepper.build_stage(plan[stage_index])
    return stepper, plan[stage_index]


def test_the_meta_device_catches_host_reads():
    """The probe's premise: a host read of a device tensor raises on meta."""
    x = torch.empty(3, device=META)
    for read in (lambda: x.sum().item(), lambda: x.tolist(), lambda: float(x[0]), lambda: bool(x[0] > 0)):
        with pytest.raises((RuntimeError, NotImplementedError)):
            read()
    with DeviceTraffic() as traffic:
        torch.ones(3).to(META)
    assert traffic.host_to_device == ["_to_copy (3,)"]


@pytest.mark.parametrize("stage_index", [0, 1, 2], ids=["denoise", "aeg_cd", "aeg_cd_sz"])
def test_a_paper_preset_iteration_has_no_host_read_and_no_host_to_device_copy(stage_index):
    """n_critic iterations (D steps with the penalty, one G step with the gradient norms of a log step) of
    configs/affwild2.yaml on the meta device; on the parent commit the penalty's CPU-drawn weights were
    copied to the device in every penalised D step."""
    cfg = _paper_preset()
    stepper, stage = _stepper(cfg, stage_index)
    batch = _meta_batch(cfg)
    first = stage.start + cfg.train.log_every - cfg.train.n_critic   # the last n_critic iterations before a log step
    with DeviceTraffic() as traffic:
        for step in range(first, first + cfg.train.n_critic):
            logs = stepper.train_step(batch, step)
    assert traffic.host_to_device == [] and traffic.host_reads == []
    assert all(v.device == META for v in logs.values())
    if stage.trains_critic:
        assert {"D/gp", "G/loss", "G/gradnorm_adv"} <= set(logs)
        assert stepper.opt_d.state and all(s["exp_avg"].device == META for s in stepper.opt_d.state.values())


class _RecordingCollectives:
    """Stands in for torch.distributed in a 2-rank job whose other rank holds the same tensors."""

    def __init__(self, monkeypatch):
        self.devices: list[tuple[str, str]] = []
        self.in_backward: list[int] = []   # sizes of the all-reduces issued while a backward ran
        for name in ("all_reduce", "broadcast", "all_gather", "barrier"):
            monkeypatch.setattr(torch_dist, name, getattr(self, name))

    def _note(self, op: str, tensor: torch.Tensor) -> None:
        self.devices.append((op, tensor.device.type))

    def all_reduce(self, tensor, op=None, async_op=False, **_):
        self._note("all_reduce", tensor)
        if torch._C._current_graph_task_id() != -1:
            self.in_backward.append(tensor.numel())
        if op is None:
            tensor.mul_(2)   # the sum over two ranks with equal tensors
        return _Done() if async_op else None

    def broadcast(self, tensor, src=0, **_):
        self._note("broadcast", tensor)

    def all_gather(self, parts, tensor, **_):
        self._note("all_gather", tensor)
        for part in parts:
            part.copy_(tensor)

    def barrier(self, **_):
        pass


class _Done:
    def wait(self):
        pass


def test_a_two_rank_iteration_hands_every_collective_a_device_tensor(monkeypatch):
    """Broadcast of the weights, the affect loss's gather, the gradient averages of D and G, the logged
    gradient norms, and the log step's reduction with the stop flag: all on the training device. On the
    parent commit the stop flag was a CPU tensor, all-reduced in every iteration (NCCL rejects it).
    The CD's gradients are averaged in buckets issued while its backward runs (on the parent commit, in
    one all-reduce after it)."""
    recorder = _RecordingCollectives(monkeypatch)
    cfg = _paper_preset()
    d = Distributed(rank=0, world_size=2)
    stepper, stage = _stepper(cfg, 2, d)
    batch = {k: v[stepper.shard] for k, v in _meta_batch(cfg).items()}
    first = stage.start + cfg.train.log_every - cfg.train.n_critic
    with DeviceTraffic() as traffic:
        for step in range(first, first + cfg.train.n_critic):
            recorder.in_backward.clear()
            logs = stepper.train_step(batch, step)
        averaged, stop = d.log_mean_and_stop(logs, True, META)
    cd_average = stepper.averages[id(stepper.model.cd)]
    cd_parameters = sum(p.numel() for p in stepper.model.cd.parameters())
    assert len(cd_average.buckets) >= 4 and cd_average.launched_in_backward == len(cd_average.buckets)
    assert sum(n for n in recorder.in_backward if n > batch["va"].numel() * 2) >= cd_parameters
    assert traffic.host_to_device == [] and traffic.host_reads == []
    ops = {op for op, _ in recorder.devices}
    assert ops == {"broadcast", "all_gather", "all_reduce"}
    assert {device for _, device in recorder.devices} == {"meta"}, recorder.devices
    assert stop is not None and stop.device == META and set(averaged) == set(logs)
    # the averaged gradients kept their parameters' layout (channels_last convolution weights)
    conv = stepper.model.cd.blocks[1][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.grad.stride() == conv.stride()


def test_the_cd_keeps_channels_last_after_adding_the_audio_plane():
    cd = CD(32, 8, 4, audio_dim=5, latent_channels=4).to(memory_format=torch.channels_last)
    seen = []
    cd.blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    image = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    cd(image, torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last), torch.randn(2, 5))
    assert seen[0].shape == (2, 4, 32, 32) and seen[0].is_contiguous(memory_format=torch.channels_last)


def test_the_wgan_means_are_fp32_under_bf16_logits():
    logits = torch.linspace(-3, 3, 4096).reshape(4, 1, 32, 32)
    real, fake = logits.to(torch.bfloat16), (logits * 0.5 + 0.01).to(torch.bfloat16)
    exact = fake.double().mean() - real.double().mean()
    loss = critic_loss(real, fake, "wgan-gp")
    assert loss.dtype == torch.float32 and abs(loss.double() - exact) < 1e-7
    assert generator_adversarial_loss(fake, "wgan-gp").dtype == torch.float32


def test_the_penalty_interpolates_in_fp32_and_in_the_input_layout():
    """Under bf16 autocast z comes out of the AEG in bf16 while the image is fp32: both are mixed in fp32."""
    seen = []

    def critic(x, z):
        seen.extend([x, z])
        return (x.float().mean(dim=(1, 2, 3)) + z.float().mean(dim=(1, 2, 3))).view(-1, 1, 1, 1)

    image = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    z = torch.randn(4, 2, 4, 4).to(torch.bfloat16)
    gp = gradient_penalty(critic, [image, z], [image.flip(0), z.flip(0)], torch.rand(4))
    assert [t.dtype for t in seen] == [torch.float32, torch.float32] and gp.dtype == torch.float32
    assert seen[0].is_contiguous(memory_format=torch.channels_last)


def test_cudnn_autotuning_is_on_for_cuda_only():
    old = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        tune_for_fixed_shapes(torch.device("cpu"))
        assert torch.backends.cudnn.benchmark is False
        tune_for_fixed_shapes(torch.device("cuda", 3))   # only sets a flag: needs no GPU
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = old


def test_a_checkpoint_holds_one_gpus_rng_state_and_resumes_on_fewer_gpus(monkeypatch):
    """An 8-GPU checkpoint of the parent commit held 8 CUDA states, and restoring them on fewer GPUs raised."""
    states = {0: torch.tensor([0], dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": states[0].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": states.__setitem__(0, state))
    saved = checkpoint.rng_state()
    assert torch.equal(saved["cuda"], torch.tensor([0], dtype=torch.uint8))
    old_format = {"torch": saved["torch"], "cuda": [torch.tensor([k], dtype=torch.uint8) for k in range(1, 9)]}
    checkpoint.restore_rng_state(old_format)
    assert torch.equal(states[0], torch.tensor([1], dtype=torch.uint8))   # rank 0's GPU, the one that saved
    checkpoint.restore_rng_state({**saved, "cuda": torch.tensor([5], dtype=torch.uint8)})
    assert torch.equal(states[0], torch.tensor([5], dtype=torch.uint8))


def test_resumed_sparse_logs_live_on_the_training_device():
    cfg = _paper_preset()
    stepper, _ = _stepper(cfg, 2)
    ckpt = {"model": stepper.model.state_dict(), "opt_d": stepper.opt_d.state_dict(),
            "opt_g": stepper.opt_g.state_dict(), "sparse_logs": {"D/gp": 0.25, "G/loss": 3.0}}
    stepper.load_state_dict(ckpt, "test")
    assert {k: v.device for k, v in stepper.sparse_logs.items()} == {"D/gp": META, "G/loss": META}


def test_the_penalty_weights_are_uniform_and_a_function_of_seed_and_step():
    """Drawn on the device by a hash: uniform on [0, 1), the same on every call, another set at every step."""
    cpu = torch.device("cpu")
    x = uniform_hash(200_000, 12345, cpu).double()
    assert 0 <= x.min() and x.max() < 1
    assert abs(x.mean() - 0.5) < 0.005 and abs(x.std() - 12 ** -0.5) < 0.005
    counts = torch.histc(x.float(), bins=10, min=0, max=1)
    assert (counts / 20_000 - 1).abs().max() < 0.03
    assert torch.equal(uniform_hash(32, 7, cpu), uniform_hash(32, 7, cpu))
    a, b = uniform_hash(4096, 7, cpu), uniform_hash(4096, 8, cpu)
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1]) < 0.05
