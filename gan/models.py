"""The two networks of ALN and the variants that configure them.

* :class:`AEG` — StarGAN-style auto-encoder generator: conv 7x7, two stride-2 downsamplings, residual
  bottleneck, two transposed-conv upsamplings, conv 7x7 + tanh; instance norm + ReLU; no U-Net skips, so
  everything the decoder needs passes through the bottleneck, whose feature map is the latent ``z``.
  Its normalisation is configurable (``model.g_norm``): StarGAN's instance norm erases each image's
  channel means and contrasts, i.e. the colours a restoration must give back, and measured worse on
  unseen faces (docs/results-demo.md, "Why the generator does not restore more"); the default is no normalisation.
* :class:`CD` — conditional discriminator: a stack of stride-2 4x4 convs with LeakyReLU and no norm
  (StarGAN's D). Audio enters as one extra input channel (a linear map of the eGeMAPS vector to H*W values,
  "a single 2D kernel"); ``z`` is concatenated with the trunk's feature map of the same resolution (H/4)
  and a 1x1 conv (no activation) brings the width back; that fusion can start as the exact identity on
  the trunk, which makes the progressive ``aeg_cd`` -> ``aeg_cd_sz`` transfer function-preserving. Two heads: a PatchGAN real/fake map and V/A bounded by tanh.
* :class:`ALN` — one pair of (AEG, CD) built from :class:`ModelConfig`; the variants ``disc``, ``aeg_cd``
  and ``aeg_cd_sz`` only switch parts on and off (docs/design.md, "Consistency rules"), they are not separate classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

VARIANTS = ("disc", "disc_aug", "aeg_cd", "aeg_cd_sz")
WITHOUT_AEG = ("disc", "disc_aug")
G_NORMS = ("none", "instance")


@dataclass
class ModelConfig:
    """Architecture of ALN; written into every checkpoint so a checkpoint rebuilds its own model."""

    variant: str = "aeg_cd_sz"   # disc | disc_aug (the CD alone on the degradation mix) | aeg_cd | aeg_cd_sz
    image_size: int = 128         # square face crops are resized to this
    g_conv_dim: int = 64          # AEG width after the first conv (StarGAN: 64)
    g_res_blocks: int = 6         # residual blocks in the AEG bottleneck (StarGAN: 6)
    g_norm: str = "none"          # AEG normalisation: none | instance (StarGAN's; loses colours, see docs/method.md)
    d_conv_dim: int = 64          # CD width after the first conv (StarGAN: 64)
    d_layers: int = 0             # stride-2 convs in CD; 0 = log2(image_size) - 1 (2x2 patches at 128 px)

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"model.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.image_size < 16 or self.image_size % 4:
            raise ValueError(f"model.image_size must be a multiple of 4 and at least 16, got {self.image_size}")
        if self.g_norm not in G_NORMS:
            raise ValueError(f"model.g_norm must be one of {G_NORMS}, got {self.g_norm!r}")
        for key in ("g_conv_dim", "g_res_blocks", "d_conv_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be positive, got {getattr(self, key)}")
        if self.d_layers and not 3 <= self.d_layers <= int(math.log2(self.image_size)):
            raise ValueError(f"model.d_layers must be 0 (auto) or in [3, log2(image_size)], got {self.d_layers}")

    @property
    def uses_aeg(self) -> bool:
        return self.variant not in WITHOUT_AEG

    @property
    def critic_sees_degraded(self) -> bool:
        """``disc_aug``: the plain augmentation baseline. The CD alone, trained on the degraded faces (the same
        degradation mix and clean share the AEG variants' generator sees) instead of the clean ones."""
        return self.variant == "disc_aug"

    @property
    def uses_latent_and_audio(self) -> bool:
        return self.variant == "aeg_cd_sz"

    @property
    def cd_layers(self) -> int:
        return self.d_layers or int(math.log2(self.image_size)) - 1


def _norm(kind: str, channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels, affine=True)] if kind == "instance" else []


class ResidualBlock(nn.Module):
    """Conv-norm-ReLU-Conv-norm with identity shortcut (StarGAN bottleneck)."""

    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        with_norm = norm == "instance"
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=not with_norm),
            *_norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=not with_norm),
            *_norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _conv_norm_relu(cin: int, cout: int, k: int, s: int, p: int, norm: str,
                    transpose: bool = False) -> list[nn.Module]:
    # a conv followed by a norm needs no bias (the norm removes it); without a norm it does
    conv = (nn.ConvTranspose2d if transpose else nn.Conv2d)(cin, cout, k, s, p, bias=norm != "instance")
    return [conv, *_norm(norm, cout), nn.ReLU(inplace=True)]


class AEG(nn.Module):
    """Auto-encoder generator: degraded face in [-1, 1] -> (restored face, latent z).

    Neither choice of ``norm`` keeps running statistics, so train and eval modes compute the same function.
    """

    def __init__(self, conv_dim: int = 64, res_blocks: int = 6, norm: str = "instance"):
        super().__init__()
        d = conv_dim
        self.encoder = nn.Sequential(
            *_conv_norm_relu(3, d, 7, 1, 3, norm),
            *_conv_norm_relu(d, 2 * d, 4, 2, 1, norm),
            *_conv_norm_relu(2 * d, 4 * d, 4, 2, 1, norm),
            *[ResidualBlock(4 * d, norm) for _ in range(res_blocks)],
        )
        self.decoder = nn.Sequential(
            *_conv_norm_relu(4 * d, 2 * d, 4, 2, 1, norm, transpose=True),
            *_conv_norm_relu(2 * d, d, 4, 2, 1, norm, transpose=True),
            nn.Conv2d(d, 3, 7, 1, 3, bias=norm != "instance"),
            nn.Tanh(),
        )
        self.latent_channels = 4 * d

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck map z, (B, 4*conv_dim, H/4, W/4)."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.decoder(z), z


class CD(nn.Module):
    """Conditional discriminator and affect estimator.

    Args:
        image_size: side of the square input.
        conv_dim: width of the first conv; doubles at every stride-2 layer.
        layers: number of stride-2 4x4 convs.
        audio_dim: length of the audio vector, 0 for no audio input.
        latent_channels: channels of z, 0 for no latent input.
    """

    def __init__(self, image_size: int, conv_dim: int, layers: int, audio_dim: int = 0, latent_channels: int = 0):
        super().__init__()
        self.image_size = image_size
        self.audio_dim = audio_dim
        self.latent_channels = latent_channels
        self.audio_map = nn.Linear(audio_dim, image_size * image_size) if audio_dim else None
        act = nn.LeakyReLU(0.01)
        blocks, cin, cout, size = [], 3 + (1 if audio_dim else 0), conv_dim, image_size
        for _ in range(layers):
            blocks.append(nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), act))
            cin, cout, size = cout, cout * 2, (size + 2 - 4) // 2 + 1
        self.blocks = nn.ModuleList(blocks)
        # z lives at H/4: after the second stride-2 block.
        self.fuse_after = 1
        fused_width = conv_dim * 2
        self.fuse = nn.Conv2d(fused_width + latent_channels, fused_width, 1) if latent_channels else None
        self.adv_head = nn.Conv2d(cin, 1, 3, 1, 1, bias=False)
        self.va_head = nn.Conv2d(cin, 2, size, 1, 0, bias=False)
        self.final_size = size

    def forward(self, image: torch.Tensor, z: torch.Tensor | None = None,
                audio: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (real/fake logits map (B,1,h,w), valence/arousal (B,2) in [-1, 1])."""
        h = image
        if self.audio_map is not None:
            if audio is None:
                raise ValueError("this CD was built with audio input; pass the audio features")
            plane = self.audio_map(audio).view(-1, 1, self.image_size, self.image_size)
            h = torch.cat([h, plane.to(h.dtype)], dim=1)
            if image.is_contiguous(memory_format=torch.channels_last):
                # cat of an NHWC image and the NCHW plane gives NCHW: keep the image's layout for the convs
                h = h.contiguous(memory_format=torch.channels_last)
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.fuse_after and self.fuse is not None:
                if z is None:
                    raise ValueError("this CD was built with latent input; pass z from the AEG")
                h = self.fuse(torch.cat([h, z.to(h.dtype)], dim=1))
        va = torch.tanh(self.va_head(h).flatten(1))
        return self.adv_head(h), va

    @torch.no_grad()
    def start_new_inputs_as_noop(self) -> None:
        """Make the audio plane and z exact no-ops: the CD then computes what the CD without them did.

        The first conv's weights on the audio channel become zero and the fusion becomes [identity | 0]
        (trunk passed through unchanged, z ignored). Gradients still reach those weights (the audio plane
        and z are non-zero), so the new inputs are learnt from the first step of the new stage.
        """
        if self.audio_map is not None:
            self.blocks[0][0].weight[:, 3:].zero_()
        if self.fuse is not None:
            width = self.fuse.out_channels
            self.fuse.weight.zero_()
            self.fuse.weight[:, :width, 0, 0].copy_(torch.eye(width))
            self.fuse.bias.zero_()


class ALN(nn.Module):
    """AEG + CD configured by :class:`ModelConfig`.

    ``aeg`` is None for the ``disc`` and ``disc_aug`` variants. ``predict`` is the test-time path (docs/design.md): the AEG cleans
    the input, the CD scores the cleaned image with the z of that input and the audio.
    """

    def __init__(self, cfg: ModelConfig, audio_dim: int):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.aeg = AEG(cfg.g_conv_dim, cfg.g_res_blocks, cfg.g_norm) if cfg.uses_aeg else None
        sz = cfg.uses_latent_and_audio
        if sz and audio_dim <= 0:
            raise ValueError("variant aeg_cd_sz needs audio features (audio_dim > 0)")
        self.cd = CD(cfg.image_size, cfg.d_conv_dim, cfg.cd_layers,
                     audio_dim=audio_dim if sz else 0,
                     latent_channels=self.aeg.latent_channels if sz else 0)

    @property
    def conditions_on_latent(self) -> bool:
        return self.cd.latent_channels > 0

    def clean(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(cleaned image, z); the identity and None without an AEG."""
        if self.aeg is None:
            return image, None
        return self.aeg(image)

    def critic(self, image: torch.Tensor, z: torch.Tensor | None, audio: torch.Tensor | None):
        """CD on an image, passing z and audio only when this variant uses them."""
        if not self.conditions_on_latent:
            return self.cd(image)
        return self.cd(image, z, audio)

    def start_from_stage(self, state: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
        """Progressive training: take the weights of the previous stage's ALN, function-preservingly.

        Tensors with the same name and shape are copied; the CD's first conv keeps the old kernel for the
        image channels; parts the previous stage did not have (audio map, latent fusion) start as exact
        no-ops, so this model's first outputs equal the previous stage's. Returns (copied, new names).
        """
        copied, fresh = transfer_weights(self, state)
        if any(name.startswith(("cd.fuse", "cd.audio_map")) for name in fresh):
            self.cd.start_new_inputs_as_noop()
        return copied, fresh

    @torch.no_grad()
    def predict(self, face: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        """Test-time valence/arousal (B, 2) of faces in [-1, 1]."""
        restored, z = self.clean(face)
        return self.critic(restored, z, audio)[1]


def set_requires_grad(module: nn.Module | None, flag: bool) -> None:
    """Freeze or unfreeze a network (CycleGAN idiom): D is frozen during the G step and vice versa."""
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(flag)


def transfer_weights(model, state: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """Progressive training: start ``model`` from an earlier stage's weights (e.g. aeg_cd -> aeg_cd_sz).

    Tensors with the same name and shape are copied. A conv whose input grew by extra channels (the CD's
    first conv gains the audio plane) gets the old kernel for the old channels and zeros for the new
    ones, so the new stage starts out computing what the old one did. Returns (copied, names left as
    initialised).
    """
    own = model.state_dict()
    copied, fresh = 0, []
    with torch.no_grad():
        for name, tensor in own.items():
            old = state.get(name)
            if old is not None and old.shape == tensor.shape:
                tensor.copy_(old)
                copied += 1
            elif (old is not None and old.dim() == 4 and tensor.dim() == 4 and old.shape[0] == tensor.shape[0]
                  and old.shape[2:] == tensor.shape[2:] and old.shape[1] < tensor.shape[1]):
                tensor.zero_()
                tensor[:, : old.shape[1]].copy_(old)
                copied += 1
            else:
                fresh.append(name)
    return copied, fresh
