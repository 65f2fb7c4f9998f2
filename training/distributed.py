"""Data-parallel training over processes started by ``torchrun``: one process per device, CPU (gloo) or CUDA (NCCL).

Why no DistributedDataParallel wrapper (StyleGAN3's pattern instead): WGAN-GP takes a double backward
through the critic, whose gradients DDP does not synchronise ("grad of grads will not be synced"); the
critic is frozen during the generator step and the generator runs without gradient during the critic step,
so a DDP wrapper would see a different set of used parameters in every phase. Here the training step stays
plain single-process code, and :class:`GradientAverage` averages the gradients of the network being trained
in buckets, each all-reduced as soon as the backward has produced it (overlapping the rest of the backward,
as DDP's buckets do). Parameters are broadcast from rank 0
once at the start, so every rank holds the same weights and, with the same averaged gradients, the same
Adam states at every step.

The global batch (``train.batch_size``) is cut into equal contiguous shards, one per rank, of the same
sample stream a single process sees. Every loss term that is a mean over samples (adversarial terms, the
gradient penalty, the L1 terms) then has the single-process gradient after averaging. The affect loss is
*not* a mean over samples (PCC and CCC are statistics of the whole batch, and the class-balance weights are
normalised over it), so its inputs are gathered into the global batch with :meth:`Distributed.gather`,
whose backward sums the gradients of all ranks: every rank computes the same global loss and, after
averaging, receives exactly its shard's share of the gradient.

With one process (no ``torchrun``), every method is the identity and no process group is created.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

_STOP = "\0stop"   # the stop flag's key among the logged values (no real tag starts with NUL)


class Distributed:
    """This process's place in the job (rank, world size, device) and the collectives training needs."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @classmethod
    def from_environment(cls, device: torch.device, timeout_minutes: float = 120.0) -> Distributed:
        """Join the process group that ``torchrun`` describes in RANK / WORLD_SIZE / LOCAL_RANK, if any.

        The backend follows the device: NCCL for CUDA, gloo for CPU. The timeout covers the longest time
        one rank may wait for another, e.g. while rank 0 alone runs validation.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
        return cls(rank, world_size, local_rank)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder, the logs and the checkpoints (every rank validates its share)."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` on CUDA (one process per GPU), else ``device``."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, global_batch: int) -> slice:
        """This rank's contiguous share of a global batch of ``global_batch`` samples."""
        if global_batch % self.world_size:
            raise ValueError(f"train.batch_size={global_batch} must be divisible by the number of processes "
                             f"({self.world_size})")
        size = global_batch // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    # ------------------------------------------------------------------ collectives

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        if self.enabled:
            with torch.no_grad():
                for tensor in [*module.parameters(), *module.buffers()]:
                    buffer = tensor.detach().contiguous()   # channels_last weights are not contiguous
                    dist.broadcast(buffer, src=0)
                    tensor.copy_(buffer)

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank (anything picklable)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gradient_average(self, parameters, bucket_bytes: int | None = None) -> GradientAverage:
        """A :class:`GradientAverage` of ``parameters`` (one per network and stage; see there)."""
        return GradientAverage(self.world_size if self.enabled else 1, parameters,
                               bucket_bytes or GradientAverage.BUCKET_BYTES)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """The global batch of ``tensor`` (shards concatenated in rank order); gradients flow back to each shard."""
        if not self.enabled:
            return tensor
        return _GatherWithGradient.apply(tensor, self.rank, self.world_size)

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Average of scalar ``values`` over ranks (every rank must pass the same keys, on its device)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        flat = torch.stack([values[k].detach().float().reshape(()) for k in keys])
        dist.all_reduce(flat)
        flat /= self.world_size
        return dict(zip(keys, flat.unbind(), strict=True))

    def log_mean_and_stop(self, values: dict[str, torch.Tensor], stop: bool, device: torch.device
                          ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """At a log step: ``values`` averaged over ranks, and how many ranks (as a fraction) asked to stop.

        The stop flag travels in the same all-reduce as the logged scalars, as a tensor on the training
        device (NCCL takes no CPU tensor), and the caller reads it on the host with them, where the log
        step reads them anyway: no collective and no host read of its own. A data-parallel job therefore
        stops at the first log step after the signal (at most ``train.log_every`` iterations later), every
        rank at the same step. One process (None: nothing to agree on) stops at the step the signal arrives.
        """
        if not self.enabled:
            return values, None
        averaged = self.mean({**values, _STOP: torch.full((), float(stop), device=device)})
        return averaged, averaged.pop(_STOP)

    # ------------------------------------------------------------------ validation on every rank

    def share(self, n: int) -> range:
        """This rank's contiguous share of ``n`` items in order (validation frames): the first ranks get
        ceil(n / world_size) each, the last what is left (possibly none)."""
        per = -(-n // self.world_size)
        return range(min(n, self.rank * per), min(n, (self.rank + 1) * per))

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over ranks (a new tensor)."""
        if not self.enabled:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total

    def gather_rows(self, rows: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """Every rank's ``rows`` (rank r holds ``counts[r]`` of them, known to all) concatenated in rank order.

        Padded to the largest count for the all-gather (which needs equal shapes), then trimmed.
        """
        if not self.enabled:
            return rows
        longest = max(counts)
        padded = rows.new_zeros((longest, *rows.shape[1:]))
        padded[:rows.shape[0]] = rows
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])

    def vector_mean(self, vector: torch.Tensor) -> torch.Tensor:
        """Average of a tensor over ranks (used for the logged per-term gradient norms)."""
        if not self.enabled:
            return vector
        vector = vector.detach().clone()
        dist.all_reduce(vector)
        return vector / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


class GradientAverage:
    """Averages a network's gradients over ranks while its backward runs, in place, in buckets.

    The parameters are cut into buckets of about ``BUCKET_BYTES`` in reverse order of registration (the
    backward reaches the last layers first). A hook on each parameter counts its bucket down when its
    gradient is accumulated; a bucket whose gradients are all there is flattened and all-reduced
    asynchronously at once, so the CD's ~46 M-parameter average no longer waits for its whole backward.
    Buckets are launched strictly in index order (a ready bucket waits for those before it), and what is
    left when the backward ends is launched then, also in order: every rank issues the same collectives in
    the same order (NCCL requires it), since every rank runs the same graph on a shard of the same shape.
    Which gradients a bucket holds is decided on the host (``p.grad is not None``), never read back.

    A bucket waits for the gradients its parameters received in the previous backward (all of them in the
    first), so a parameter the loss never reaches holds up its bucket only once. A gradient that arrives
    after its bucket was launched (a parameter the previous step did not reach) is averaged in one more
    all-reduce at the end.

    Hooks count only inside :meth:`during_backward`: another network's backward (the D step reaching the
    AEG's output) or ``torch.autograd.grad`` (the penalty, the logged per-term norms) leaves them alone.
    Each ``p.grad`` keeps its own tensor, and so its strides (a channels_last weight keeps a channels_last
    gradient, which Adam's multi-tensor path needs to match its parameter's). With one process, nothing
    is registered and :meth:`during_backward` only runs its block.
    """

    BUCKET_BYTES = 25 * 2 ** 20   # DDP's default bucket size

    def __init__(self, world_size: int, parameters, bucket_bytes: int = BUCKET_BYTES):
        self.world_size = world_size
        self.buckets: list[list[nn.Parameter]] = []
        if world_size <= 1:
            return
        size = 0
        for p in reversed([p for p in parameters if p.requires_grad]):
            nbytes = p.numel() * p.element_size()
            if not self.buckets or size + nbytes > bucket_bytes:
                self.buckets.append([])
                size = 0
            self.buckets[-1].append(p)
            size += nbytes
        self._bucket_of = {id(p): i for i, bucket in enumerate(self.buckets) for p in bucket}
        self._expected = [len(bucket) for bucket in self.buckets]   # gradients each bucket waits for
        self._armed = False
        self.launched_in_backward = 0   # buckets all-reduced before the backward ended, in the latest step
        for bucket in self.buckets:
            for p in bucket:
                p.register_post_accumulate_grad_hook(self._on_gradient)

    @contextmanager
    def during_backward(self) -> Iterator[None]:
        """Run the block (the backward); on leaving it every gradient of the network is the ranks' average."""
        if not self.buckets:
            yield
            return
        self._waiting = list(self._expected)
        self._next, self._flights, self._late, self._armed = 0, [], [], True
        try:
            yield
        finally:
            self._armed = False
        self.launched_in_backward = self._next
        while self._next < len(self.buckets):
            self._launch()
        if self._late:
            self._all_reduce(self._late)
        self._expected = [sum(p.grad is not None for p in bucket) for bucket in self.buckets]
        for grads, flat, work in self._flights:
            work.wait()
            flat.div_(self.world_size)
            offset = 0
            for g in grads:
                n = g.numel()
                g.copy_(flat[offset:offset + n].view(g.shape))   # back into the gradient's own layout
                offset += n
        self._flights = []

    def _on_gradient(self, p: nn.Parameter) -> None:
        if not self._armed:
            return
        bucket = self._bucket_of[id(p)]
        if bucket < self._next:
            self._late.append(p.grad)
            return
        self._waiting[bucket] -= 1
        while self._next < len(self.buckets) and self._waiting[self._next] <= 0:
            self._launch()

    def _launch(self) -> None:
        grads = [p.grad for p in self.buckets[self._next] if p.grad is not None]
        self._next += 1
        if grads:
            self._all_reduce(grads)

    def _all_reduce(self, grads: list[torch.Tensor]) -> None:
        flat = torch.cat([g.reshape(-1) for g in grads])   # NCHW-order copy of the gradients
        self._flights.append((grads, flat, dist.all_reduce(flat, async_op=True)))


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over ranks and returns this rank's slice.

    Written with all_reduce rather than torch.distributed.nn's all_gather, whose backward needs
    reduce-scatter or all-to-all, which gloo lacks.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.size = rank, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size], None, None
