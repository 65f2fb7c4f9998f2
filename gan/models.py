"""The two networks of ALN and the variants that configure them.

* :class:`AEG` — StarGAN-style auto-encoder generator: conv 7x7, two stride-2 downsamplings, residual
  bottleneck, two transposed-conv upsamplings, conv 7x7 + tanh; instance norm + ReLU; no U-Net skips, so
  everything the decoder needs passes through the bottleneck, whose feature map is the latent ``z``.
* :class:`CD` — conditional discriminator: a stack of stride-2 4x4 convs with LeakyReLU and no norm
  (StarGAN's D). Audio enters as one extra input channel (a linear map of the eGeMAPS vector to H*W values,
  "a single 2D kernel"); ``z`` is concatenated with the trunk's feature map of the same resolution (H/4)
  and a 1x1 conv brings the width back. Two heads: a PatchGAN real/fake map and V/A bounded by tanh.
* :class:`ALN` — one pair of (AEG, CD) built from :class:`ModelConfig`; the variants ``disc``, ``aeg_cd``
  and ``aeg_cd_sz`` only switch parts on and off (DESIGN §4), they are not separate classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

VARIANTS = ("disc", "aeg_cd", "aeg_cd_sz")


@dataclass
class ModelConfig:
    """Architecture of ALN; written into every checkpoint so a checkpoint rebuilds its own model."""

    variant: str = "aeg_cd_sz"   # disc | aeg_cd | aeg_cd_sz
    image_size: int = 128         # square face crops are resized to this
    g_conv_dim: int = 64          # AEG width after the first conv (StarGAN: 64)
    g_res_blocks: int = 6         # residual blocks in the AEG bottleneck (StarGAN: 6)
    d_conv_dim: int = 64          # CD width after the first conv (StarGAN: 64)
    d_layers: int = 0             # stride-2 convs in CD; 0 = log2(image_size) - 1 (2x2 patches at 128 px)

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"model.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.image_size < 16 or self.image_size % 4:
            raise ValueError(f"model.image_size must be a multiple of 4 and at least 16, got {self.image_size}")
        for key in ("g_conv_dim", "g_res_blocks", "d_conv_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be positive, got {getattr(self, key)}")
        if self.d_layers and not 3 <= self.d_layers <= int(math.log2(self.image_size)):
            raise ValueError(f"model.d_layers must be 0 (auto) or in [3, log2(image_size)], got {self.d_layers}")

    @property
    def uses_aeg(self) -> bool:
        return self.variant != "disc"

    @property
    def uses_latent_and_audio(self) -> bool:
        return self.variant == "aeg_cd_sz"

    @property
    def cd_layers(self) -> int:
        return self.d_layers or int(math.log2(self.image_size)) - 1


class ResidualBlock(nn.Module):
    """Conv-IN-ReLU-Conv-IN with identity shortcut (StarGAN bottleneck)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _conv_in_relu(cin: int, cout: int, k: int, s: int, p: int, transpose: bool = False) -> list[nn.Module]:
    conv = (nn.ConvTranspose2d if transpose else nn.Conv2d)(cin, cout, k, s, p, bias=False)
    return [conv, nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True)]


class AEG(nn.Module):
    """Auto-encoder generator: degraded face in [-1, 1] -> (restored face, latent z).

    Instance norm keeps no running statistics, so train and eval modes compute the same function.
    """

    def __init__(self, conv_dim: int = 64, res_blocks: int = 6):
        super().__init__()
        d = conv_dim
        self.encoder = nn.Sequential(
            *_conv_in_relu(3, d, 7, 1, 3),
            *_conv_in_relu(d, 2 * d, 4, 2, 1),
            *_conv_in_relu(2 * d, 4 * d, 4, 2, 1),
            *[ResidualBlock(4 * d) for _ in range(res_blocks)],
        )
        self.decoder = nn.Sequential(
            *_conv_in_relu(4 * d, 2 * d, 4, 2, 1, transpose=True),
            *_conv_in_relu(2 * d, d, 4, 2, 1, transpose=True),
            nn.Conv2d(d, 3, 7, 1, 3, bias=False),
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
        self.fuse = (nn.Sequential(nn.Conv2d(fused_width + latent_channels, fused_width, 1), act)
                     if latent_channels else None)
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
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.fuse_after and self.fuse is not None:
                if z is None:
                    raise ValueError("this CD was built with latent input; pass z from the AEG")
                h = self.fuse(torch.cat([h, z.to(h.dtype)], dim=1))
        va = torch.tanh(self.va_head(h).flatten(1))
        return self.adv_head(h), va


class ALN(nn.Module):
    """AEG + CD configured by :class:`ModelConfig`.

    ``aeg`` is None for the ``disc`` variant. ``predict`` is the test-time path (DESIGN §4): the AEG cleans
    the input, the CD scores the cleaned image with the z of that input and the audio.
    """

    def __init__(self, cfg: ModelConfig, audio_dim: int):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.aeg = AEG(cfg.g_conv_dim, cfg.g_res_blocks) if cfg.uses_aeg else None
        sz = cfg.uses_latent_and_audio
        if sz and audio_dim <= 0:
            raise ValueError("variant aeg_cd_sz needs audio features (audio_dim > 0)")
        self.cd = CD(cfg.image_size, cfg.d_conv_dim, cfg.cd_layers,
                     audio_dim=audio_dim if sz else 0,
                     latent_channels=self.aeg.latent_channels if sz else 0)

    @property
    def conditions_on_latent(self) -> bool:
        return self.cd.latent_channels > 0

    def restore(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(cleaned image, z); the identity and None without an AEG."""
        if self.aeg is None:
            return image, None
        return self.aeg(image)

    def critic(self, image: torch.Tensor, z: torch.Tensor | None, audio: torch.Tensor | None):
        """CD on an image, passing z and audio only when this variant uses them."""
        if not self.conditions_on_latent:
            return self.cd(image)
        return self.cd(image, z, audio)

    @torch.no_grad()
    def predict(self, face: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        """Test-time valence/arousal (B, 2) of faces in [-1, 1]."""
        restored, z = self.restore(face)
        return self.critic(restored, z, audio)[1]


def set_requires_grad(module: nn.Module | None, flag: bool) -> None:
    """Freeze or unfreeze a network (CycleGAN idiom): D is frozen during the G step and vice versa."""
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(flag)
