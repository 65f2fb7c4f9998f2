"""The run configuration: the dataclasses of ``gan`` and ``data`` composed into one tree.

Sources, in order: the dataclass defaults, a YAML preset (``configs/*.yaml``), then dotted command-line
overrides such as ``train.max_steps=200`` (values parsed as YAML: ``true``, ``1e-4``, ``[rmse, ccc]``).
Unknown keys and values of the wrong type are errors (:class:`ConfigError`, one line naming the key).
The resolved tree is written into the run folder and every checkpoint, and rebuilt from there.

Example:
    >>> cfg = load_config(None, ["train.max_steps=10", "model.variant=disc"])
    >>> cfg.train.max_steps, cfg.model.variant
    (10, 'disc')
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from baselines.sequence_config import SYSTEM_SECTIONS, SequenceSection
from data.errors import DataError
from data.samples.loaders import DataConfig
from gan.checkpoint import CheckpointError
from gan.models import ModelConfig
from gan.objective import LossConfig
from gan.stages import StageConfig, plan_stages

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """A configuration the user must fix: unknown key, wrong type, out-of-range value, unreadable preset."""


class RunFolderError(Exception):
    """The run folder cannot be written (read-only, disk full, ...): nothing written so far is lost."""


#: errors that are the user's to fix: printed as one line, exit code 2, no traceback
USER_ERRORS = (ConfigError, DataError, CheckpointError, RunFolderError)


@dataclass
class RunSection:
    dir: str = "runs/demo"         # run folder: config.yaml, last.pt, best.pt, metrics.jsonl, tb/
    resume: str = ""               # checkpoint to continue from (its config is the base; CLI overrides apply);
                                   # "auto": run.dir's last.pt when there is one, else a fresh start
    init_from: str = ""            # progressive training: start weights from an earlier stage's checkpoint
    overwrite: bool = False        # start afresh in a run.dir that already holds a run (its files are deleted)


@dataclass
class TrainSection:
    max_steps: int = 2000          # training iterations (one D step each)
    batch_size: int = 32
    eval_every: int = 250          # validation, image grid and checkpoint every this many steps
    log_every: int = 25            # scalars to TensorBoard / console every this many steps
    n_critic: int = 5              # G is updated every n_critic *iterations* (StarGAN default 5)
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_from: float = 0.5     # linear LR decay to 0 over the last (1 - this) share of max_steps
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    amp: bool = True               # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False          # torch.compile the networks
    channels_last: bool = True     # NHWC memory layout for the conv nets (oneDNN and cuDNN run it faster)
    threads: int = 0               # torch CPU threads; 0 = torch's default
    grid_size: int = 8             # faces in the TensorBoard image grid
    restoration_frames: int = 256  # validation frames degraded by each artefact alone for restoration scores
    restoration_every: int = 4     # val/psnr_*, val/ssim_* on every k-th scored frame (a fixed subset; CCC uses all)
    views_every: int = 1           # validation's extra views (val_clean_input/, val_degraded*/) on every k-th frame
    # progressive training: [{variant: denoise|disc|aeg_cd|aeg_cd_sz, steps: N}, ...]; empty = one stage of
    # model.variant; the last stage's steps may be 0 (= until max_steps)
    stages: list[StageConfig] = field(default_factory=list)

    def validate(self) -> None:
        checks = [
            (self.max_steps >= 1, "train.max_steps must be >= 1"),
            (self.batch_size >= 2, "train.batch_size must be >= 2 (correlation losses need a spread)"),
            (self.eval_every >= 1, "train.eval_every must be >= 1"),
            (self.log_every >= 1, "train.log_every must be >= 1"),
            (self.n_critic >= 1, "train.n_critic must be >= 1"),
            (self.lr_g > 0 and self.lr_d > 0, "train.lr_g and train.lr_d must be > 0"),
            (0.0 <= self.lr_decay_from <= 1.0, "train.lr_decay_from must be in [0, 1]"),
            (self.restoration_frames >= 0, "train.restoration_frames must be >= 0"),
            (self.restoration_every >= 1, "train.restoration_every must be >= 1"),
            (self.views_every >= 1, "train.views_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


SYSTEMS = ("aln", "pandit", "raju", "aminbeidokhti", "temporal_conv")


@dataclass
class RunConfig:
    seed: int = 0
    system: str = "aln"            # aln, or a sequence model (training/sequence_loop.py): a baseline system (docs/baselines.md)
    #                                (pandit | raju | aminbeidokhti) or ALN-T's head (temporal_conv)
    run: RunSection = field(default_factory=RunSection)
    train: TrainSection = field(default_factory=TrainSection)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sequence: SequenceSection = field(default_factory=SequenceSection)   # and the systems' sections under it

    def validate(self) -> None:
        """Each section checks its own ranges; raise ConfigError with the offending key."""
        if self.system not in SYSTEMS:
            raise ConfigError(f"system must be one of {SYSTEMS}, got {self.system!r}")
        try:
            for section in (self.train, self.model, self.loss, self.data, self.sequence):
                section.validate()
            plan_stages(self.train.stages, self.model.variant, self.train.max_steps)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


DEFAULT_PRESET = Path(__file__).resolve().parent / "configs" / "demo.yaml"


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain dicts/lists/primitives (YAML- and ``weights_only``-safe)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {annotation.__name__} settings, got {value!r}")
        return from_dict(annotation, value, key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)   # YAML 1.1 reads 3e-4 (no dot) as a string; on the command line it is a number
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if value is None:
            return ""
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        coerced = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(coerced) if origin is tuple else coerced
    if isinstance(annotation, types.UnionType) or origin is typing.Union:
        for option in typing.get_args(annotation):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: value {value!r} does not fit {annotation}")
    return value


def from_dict(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else key
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key '{where}' (known keys{' in ' + prefix if prefix else ''}: {known})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a section that checks itself on construction
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def set_dotted(tree: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` to a nested dict (value parsed as YAML)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not KEY=VALUE (e.g. train.max_steps=200)")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {assignment!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"unknown config key '{key}' ('{part}' is a value, not a section)")
        node = child
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections at the top level")
    return loaded


def build_config(base: dict[str, Any], overrides: list[str] = ()) -> RunConfig:
    """Config from a nested dict plus dotted overrides, validated."""
    tree = _moved_under_sequence(_deep_copy(base), "the config")
    for assignment in overrides:
        set_dotted(tree, assignment)
        tree = _moved_under_sequence(tree, f"override {assignment.split('=', 1)[0]}")
    cfg = from_dict(RunConfig, tree)
    cfg.validate()
    return cfg


def _moved_under_sequence(tree: dict[str, Any], where: str) -> dict[str, Any]:
    """The sections of the sequence systems moved under ``sequence:``; the old top-level keys (``pandit.kernel=9``,
    a preset or a checkpoint written before the move) are still read, with a one-line note."""
    moved = [name for name in SYSTEM_SECTIONS if name in tree]
    for name in moved:
        section = tree.pop(name)
        sequence = tree.setdefault("sequence", {})
        if isinstance(section, dict) and isinstance(sequence, dict) and isinstance(sequence.get(name, {}), dict):
            sequence[name] = {**sequence.get(name, {}), **section}
        else:
            raise ConfigError(f"{where}: '{name}' must be a mapping of settings (now sequence.{name})")
    if moved:
        log.warning("%s uses %s; these sections are now under sequence: (sequence.%s.*), read as such", where,
                    ", ".join(f"'{name}'" for name in moved), moved[0])
    return tree


def load_config(preset: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Defaults <- YAML preset (None: no preset) <- overrides."""
    return build_config(read_yaml(preset) if preset else {}, overrides)


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def _deep_copy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _deep_copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_deep_copy(v) for v in tree]
    return tree


# --------------------------------------------------------------------------- command-line glue

def resolve_device(name: str):
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a torch.device that exists here, else ConfigError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name} requested but this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {name!r} (use auto, cpu, cuda or cuda:N)")
    return device


def run_cli(action: Callable[[], int | None]) -> int:
    """Run an entry point's work: a user error becomes one ``error: ...`` line on stderr and exit code 2."""
    try:
        return action() or 0
    except USER_ERRORS as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2


def user_message(exc: BaseException) -> str:
    """The one line to show for a user error, also when it was raised inside a DataLoader worker.

    PyTorch re-raises worker exceptions with the worker's traceback folded into the message; the last
    line of that text is the original message.
    """
    text = str(exc).strip()
    if "Traceback (most recent call last)" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
        text = last[len(prefix):] if last.startswith(prefix) else last.split(": ", 1)[-1]
    return text
