"""Per-frame ALN features for temporal models: pooled latent z, the audio vector, the CD's last activations.

The ALN paper names temporal modelling as its future work (§V); the sequence baselines and ALN-T read these
features per frame. They come from the test-time path on the face: the AEG restores it and encodes z, the CD
scores the restored face with z and the audio. ``z`` and the CD's last feature map are averaged over space.
"""

from __future__ import annotations

import torch

from gan.models import ALN


@torch.no_grad()
def frame_features(model: ALN, face: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
    """(B, F) features of faces in [-1, 1]: [mean z (if the variant has one) | audio (if any) | mean CD map]."""
    restored, z = model.restore(face)
    captured: dict[str, torch.Tensor] = {}
    handle = model.cd.blocks[-1].register_forward_hook(lambda _m, _i, out: captured.__setitem__("h", out))
    try:
        model.critic(restored, z, audio)
    finally:
        handle.remove()
    parts = [] if z is None else [z.float().mean(dim=(2, 3))]
    if audio is not None and model.cd.audio_dim:
        parts.append(audio.float())
    parts.append(captured["h"].float().mean(dim=(2, 3)))
    return torch.cat(parts, dim=1)
