"""Checkpoint I/O: one plain dict of tensors and primitives, written atomically, loadable with
``torch.load(..., weights_only=True)``.

A checkpoint is self-describing (nanoGPT style): it holds the resolved run config, so ``evaluate.py``
rebuilds the model and the data pipeline from the checkpoint alone, plus everything a bit-exact resume
needs (both optimisers, schedulers, RNG states, audio normalisation statistics, class-balance weights,
the best validation score). The step is the number of completed iterations; the data order is a pure
function of (seed, step), so it needs no state of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fileio.atomic import atomic_open
from gan.models import ALN, ModelConfig

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "step", "config", "model")


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, unreadable, or from an incompatible run."""




def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (:mod:`fileio.atomic`): a kill mid-write leaves the previous
    file intact (and a ``.<name>.*.tmp``, which the run folder removes at the next start)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **payload}
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything but plain data."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or non-checkpoint files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from exc
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not an ALN checkpoint (missing keys {[k for k in REQUIRED_KEYS if k not in payload]})"
                              if isinstance(payload, dict) else f"{path}: not an ALN checkpoint")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer version (format {payload['format_version']})")
    return payload


def rng_state() -> dict[str, Any]:
    """Torch RNG states: the CPU's and, on a CUDA machine, the current GPU's (this process's device).

    One GPU's state, not every GPU's: in a data-parallel job each process uses one GPU, and a checkpoint
    written on 8 GPUs must resume on fewer.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`; the CUDA state goes to the current GPU (a list, from older checkpoints:
    its first entry, the GPU that rank 0 wrote it from)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):
            if not cuda:
                return
            cuda = cuda[0]
        torch.cuda.set_rng_state(cuda)


def model_from_checkpoint(payload: dict[str, Any]):
    """Rebuild the :class:`~gan.models.ALN` a checkpoint was trained with and load its weights.

    The architecture comes from the checkpoint's own config (``config["model"]``) and ``audio_dim``; the
    variant is the one of the weights (:func:`checkpoint_variant`), which differs from the run's final
    ``model.variant`` in the checkpoints of an earlier progressive-training stage.
    """
    try:
        model_cfg = ModelConfig(**{**payload["config"]["model"], "variant": checkpoint_variant(payload)})
        model = ALN(model_cfg, int(payload.get("audio_dim", 0)))
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint config does not describe a model this version can build ({exc})") from exc
    load_weights(model, payload["model"], "checkpoint")
    return model


def checkpoint_variant(payload: dict[str, Any]) -> str:
    """The ALN variant of the weights a checkpoint holds (an earlier stage's, or the run's model.variant)."""
    return str(payload.get("variant") or payload["config"]["model"]["variant"])


def load_weights(model, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a one-line explanation of what differs (another variant, image size or width)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            parts.append(f"{len(mismatched)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise CheckpointError(f"{source}: weights do not fit this model ({'; '.join(parts)}); "
                              "was it trained with another variant, image size or width?")
    model.load_state_dict(state)


def system_name(payload: dict[str, Any]) -> str:
    """What a checkpoint holds: the ALN variant, or the sequence system and its model (e.g. ``pandit D``)."""
    system = payload.get("system", "aln")
    if system == "aln":
        return checkpoint_variant(payload)
    config = payload["config"]   # the system's section sits under sequence: (top level in older checkpoints)
    model = config.get("sequence", {}).get(system, config.get(system, {})).get("model")
    return f"{system} {model}" if model else system


def inference_model(payload: dict[str, Any], device: torch.device, channels_last: bool) -> ALN:
    """The checkpoint's ALN on ``device``, in the memory layout training used (``train.channels_last``: NHWC,
    which oneDNN runs about 1.6x faster on a CPU), so evaluation computes what training's validation computed."""
    model = model_from_checkpoint(payload).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model
