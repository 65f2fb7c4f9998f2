"""Per-frame ALN features for temporal models: pooled latent z, the audio vector, the CD's last activations
and its V/A output.

The ALN paper names temporal modelling as its future work (§V); the sequence baselines and ALN-T read these
features per frame. They come from the test-time path on the face: the AEG restores it and encodes z, the CD
scores the restored face with z and the audio. ``z`` and the CD's last feature map are averaged over space; the
last two columns are ALN's own per-frame valence and arousal, so a temporal head can start from (and must beat)
the per-frame estimate.
"""

from __future__ import annotations

import torch

from gan.models import ALN

LAYOUT = "z|audio|cd|va"   # recorded in features.json: a cache of another layout is re-exported


@torch.no_grad()
def frame_feature_parts(model: ALN, face: torch.Tensor, audio: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Features of faces in [-1, 1] by part, in column order: ``z`` (mean latent, if the variant has one),
    ``audio`` (if any), ``cd`` (mean of the CD's last map) and ``va`` (ALN's valence and arousal), each (B, width).
    The exporter concatenates them into one row per frame and records each part's width."""
    restored, z = model.clean(face)
    captured: dict[str, torch.Tensor] = {}
    handle = model.cd.blocks[-1].register_forward_hook(lambda _m, _i, out: captured.__setitem__("h", out))
    try:
        _, va = model.critic(restored, z, audio)
    finally:
        handle.remove()
    parts = {} if z is None else {"z": z.float().mean(dim=(2, 3))}
    if audio is not None and model.cd.audio_dim:
        parts["audio"] = audio.float()
    parts["cd"] = captured["h"].float().mean(dim=(2, 3))
    parts["va"] = va.float()
    return parts
