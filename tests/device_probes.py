"""What a CPU can show of code meant for a GPU: host-to-device copies and host reads inside an iteration.

On the ``meta`` device every tensor has a shape and no data, so an iteration of the real stepper runs
(forward, the penalty's double backward, Adam) at the cost of its shape arithmetic, and any host read of a
device tensor (``.item()``, ``.tolist()``, ``float()``, ``bool()``) raises, as does a CPU tensor meeting a
device tensor in an op. What the meta device lets through is an explicit copy from the host (``.to(device)``
of a CPU tensor): on CUDA each such copy of pageable memory blocks the host mid-step. :class:`DeviceTraffic`
counts those copies, and the host reads, of whatever runs under it.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _devices(args) -> set[str]:
    return {t.device.type for t in tree_leaves(args) if isinstance(t, torch.Tensor)}


class DeviceTraffic(TorchDispatchMode):
    """Counts host-to-device copies and host reads of device tensors (``aten._local_scalar_dense``)."""

    def __init__(self):
        super().__init__()
        self.host_to_device: list[str] = []
        self.host_reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func.overloadpacket.__name__)
        inputs, outputs = _devices((args, kwargs)), _devices(out)
        if name in ("_to_copy", "copy_", "_copy_from", "_copy_from_and_resize") and "cpu" in inputs \
                and outputs - {"cpu"}:
            source = next(t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.device.type == "cpu")
            self.host_to_device.append(f"{name} {tuple(source.shape)}")
        if name == "_local_scalar_dense" and inputs - {"cpu"}:
            self.host_reads.append(name)
        return out
