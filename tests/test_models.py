"""Model shapes, value ranges, gradient flow per variant, and the consistency rules of the objective."""

import pytest
import torch

from gan.losses import class_balance_weights
from gan.models import ALN, ModelConfig, transfer_weights
from gan.objective import ALNObjective, LossConfig

SMALL = dict(image_size=32, g_conv_dim=4, g_res_blocks=1, d_conv_dim=4)


def _generator_loss(obj: ALNObjective, batch: dict) -> tuple[torch.Tensor, dict]:
    """G's loss as the stepper builds it: the sum of the weighted terms."""
    terms, logs = obj.generator_terms(batch)
    return sum(terms.values()), logs


def _batch(b=6, size=32, audio=10):
    g = torch.Generator().manual_seed(0)
    return {
        "face": torch.rand(b, 3, size, size, generator=g) * 2 - 1,
        "face_degraded": torch.rand(b, 3, size, size, generator=g) * 2 - 1,
        "audio": torch.randn(b, audio, generator=g),
        "va": torch.rand(b, 2, generator=g) * 2 - 1,
    }


@pytest.mark.parametrize("size,patch", [(64, 2), (112, 3), (128, 2)])
def test_shapes_and_ranges(size, patch):
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd_sz", image_size=size, g_conv_dim=4, g_res_blocks=1, d_conv_dim=4), 10)
    x = torch.rand(2, 3, size, size) * 2 - 1
    restored, z = model.clean(x)
    assert restored.shape == x.shape and restored.abs().max() <= 1.0
    assert z.shape == (2, 16, size // 4, size // 4)
    adv, va = model.critic(restored, z, torch.randn(2, 10))
    assert adv.shape == (2, 1, patch, patch)
    assert va.shape == (2, 2) and va.abs().max() < 1.0


def test_variants_switch_parts():
    disc = ALN(ModelConfig(variant="disc", **SMALL), 10)
    plain = ALN(ModelConfig(variant="aeg_cd", **SMALL), 10)
    full = ALN(ModelConfig(variant="aeg_cd_sz", **SMALL), 10)
    assert disc.aeg is None and plain.aeg is not None
    assert disc.cd.blocks[0][0].in_channels == 3 and full.cd.blocks[0][0].in_channels == 4
    assert full.cd.fuse is not None and plain.cd.fuse is None
    # the audio and z actually change the aeg_cd_sz prediction
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    a1, a2 = torch.randn(3, 10), torch.randn(3, 10)
    assert not torch.allclose(full.predict(x, a1), full.predict(x, a2))
    assert torch.allclose(plain.predict(x, a1), plain.predict(x, a2))
    with pytest.raises(ValueError, match="variant"):
        ALN(ModelConfig(variant="aeg", **SMALL), 10)
    with pytest.raises(ValueError, match="audio"):
        ALN(ModelConfig(variant="aeg_cd_sz", **SMALL), 0)


def test_disc_aug_is_disc_trained_on_the_degraded_faces():
    """The plain augmentation baseline: the same CD as disc (no AEG, no z), whose D loss is disc's loss on the
    degraded face; disc itself never looks at the degraded face."""
    torch.manual_seed(0)
    aug = ALN(ModelConfig(variant="disc_aug", **SMALL), 10)
    disc = ALN(ModelConfig(variant="disc", **SMALL), 10)
    disc.load_state_dict(aug.state_dict())
    assert aug.aeg is None and aug.cd.latent_channels == 0
    batch = _batch()
    swapped = {**batch, "face": batch["face_degraded"], "face_degraded": batch["face"]}
    aug_loss, _ = ALNObjective(aug, LossConfig(), None).discriminator_loss(batch)
    disc_on_degraded, _ = ALNObjective(disc, LossConfig(), None).discriminator_loss(swapped)
    disc_on_clean, _ = ALNObjective(disc, LossConfig(), None).discriminator_loss(batch)
    torch.testing.assert_close(aug_loss, disc_on_degraded, rtol=0, atol=0)
    assert not torch.allclose(aug_loss, disc_on_clean)


@pytest.mark.parametrize("variant", ["disc", "disc_aug", "aeg_cd", "aeg_cd_sz"])
def test_gradients_reach_every_parameter(variant):
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant=variant, **SMALL), 10)
    batch = _batch()
    obj = ALNObjective(model, LossConfig(), class_balance_weights(batch["va"]))
    d_loss, d_logs = obj.discriminator_loss(batch)
    d_loss.backward()
    cd_params = dict(model.cd.named_parameters())
    missing = [n for n, p in cd_params.items() if p.grad is None or p.grad.abs().sum() == 0]
    # the PatchGAN head gets no gradient without an adversarial term (disc trains on affect alone)
    expected_missing = ["adv_head.weight"] if variant in ("disc", "disc_aug") else []
    assert missing == expected_missing
    if model.aeg is None:
        with pytest.raises(RuntimeError):
            obj.generator_terms(batch)
        return
    assert all(p.grad is None for p in model.aeg.parameters())  # the D step never trains G
    model.zero_grad(set_to_none=True)
    g_loss, g_logs = _generator_loss(obj, batch)
    g_loss.backward()
    dead = [n for n, p in model.aeg.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []
    assert {"G/adv", "G/afc", "G/rec"} <= set(g_logs)


def test_d_sees_latent_for_real_and_fake():
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd_sz", **SMALL), 10)
    batch = _batch()
    calls = []
    original = model.critic

    def recording(image, z, audio):
        calls.append((image.detach().clone(), None if z is None else z.detach().clone()))
        return original(image, z, audio)

    model.critic = recording
    obj = ALNObjective(model, LossConfig(lambda_gp=0.0), None)
    obj.discriminator_loss(batch)
    assert len(calls) == 2 and all(z is not None for _, z in calls)
    (real_img, real_z), (fake_img, fake_z) = calls
    with torch.no_grad():
        restored, z_deg = model.aeg(batch["face_degraded"])
        assert torch.equal(real_img, batch["face"])
        assert torch.allclose(real_z, model.aeg.encode(batch["face"]))  # z of the real image, from the AEG
        assert torch.allclose(fake_img, restored) and torch.allclose(fake_z, z_deg)


def test_log_loss_option_and_denoise_term():
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd", **SMALL), 10)
    obj = ALNObjective(model, LossConfig(adversarial="log", lambda_denoise=1.0), None)
    d_loss, d_logs = obj.discriminator_loss(_batch())
    assert "D/gp" not in d_logs and torch.isfinite(d_loss)
    g_loss, g_logs = _generator_loss(obj, _batch())
    assert "G/denoise" in g_logs


def test_progressive_transfer_keeps_rgb_kernel():
    torch.manual_seed(0)
    stage1 = ALN(ModelConfig(variant="aeg_cd", **SMALL), 10)
    stage2 = ALN(ModelConfig(variant="aeg_cd_sz", **SMALL), 10)
    copied, fresh = transfer_weights(stage2, stage1.state_dict())
    w1, w2 = stage1.cd.blocks[0][0].weight, stage2.cd.blocks[0][0].weight
    assert torch.equal(w2[:, :3], w1) and torch.count_nonzero(w2[:, 3]) == 0
    assert torch.equal(stage2.aeg.encoder[0].weight, stage1.aeg.encoder[0].weight)
    assert any(n.startswith("cd.audio_map") for n in fresh) and any(n.startswith("cd.fuse") for n in fresh)
    assert copied == len(stage2.state_dict()) - len(fresh)


def test_generator_terms_are_weighted_and_sum_to_the_loss():
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd_sz", **SMALL), 10)
    cfg = LossConfig(lambda_adv=0.5, lambda_afc_g=2.0, lambda_rec=3.0, lambda_denoise=7.0)
    obj = ALNObjective(model, cfg, None)
    batch = _batch()
    torch.manual_seed(1)
    terms, logs = obj.generator_terms(batch)
    assert set(terms) == {"adv", "afc", "rec", "denoise"}
    for name, weight in (("adv", 0.5), ("afc", 2.0), ("rec", 3.0), ("denoise", 7.0)):
        assert torch.allclose(terms[name].detach(), weight * logs[f"G/{name}"])
    restored, _ = model.aeg(batch["face_degraded"])
    assert logs["G/denoise"] == pytest.approx(float((restored - batch["face"]).abs().mean().detach()), abs=1e-6)
    torch.manual_seed(1)
    loss, _ = _generator_loss(obj, batch)
    assert torch.allclose(loss, sum(terms.values()))
    # a zero weight drops the term (the paper's G: lambda_denoise=0)
    paper = ALNObjective(model, LossConfig(lambda_denoise=0.0), None)
    assert "denoise" not in paper.generator_terms(batch)[0]


def test_denoise_loss_is_l1_of_the_restoration_and_leaves_the_critic_alone():
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd", **SMALL), 10)
    batch = _batch()
    loss, logs = ALNObjective(model, LossConfig(), None).denoise_loss(batch)
    expected = (model.aeg(batch["face_degraded"])[0] - batch["face"]).abs().mean()
    assert torch.allclose(loss, expected) and set(logs) == {"G/denoise"}
    loss.backward()
    assert all(p.grad is None for p in model.cd.parameters())
    assert all(p.grad is not None for p in model.aeg.parameters())


def test_term_gradient_norms_match_each_term_alone():
    from gan.losses import term_gradient_norms

    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd", **SMALL), 10)
    terms, _ = ALNObjective(model, LossConfig(), None).generator_terms(_batch())
    params = list(model.aeg.parameters())
    norms = term_gradient_norms(terms, params)
    for name, term in terms.items():
        model.zero_grad(set_to_none=True)
        term.backward(retain_graph=True)
        direct = torch.sqrt(sum((p.grad**2).sum() for p in params if p.grad is not None))
        assert norms[f"G/gradnorm_{name}"] == pytest.approx(float(direct), rel=1e-5)
    assert len({round(float(v), 6) for v in norms.values()}) == len(norms)   # distinct terms, distinct norms


def test_lazy_penalty_is_weighted_by_its_interval_and_skipped_in_between():
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd_sz", **SMALL), 10)
    obj = ALNObjective(model, LossConfig(lambda_gp=10.0), None)
    batch, alpha = _batch(), torch.linspace(0.1, 0.9, 6)
    every_step, logs = obj.discriminator_loss(batch, gp_alpha=alpha, gp_scale=1)
    lazy, lazy_logs = obj.discriminator_loss(batch, gp_alpha=alpha, gp_scale=4)
    skipped, skipped_logs = obj.discriminator_loss(batch, gp_scale=0)
    gp = logs["D/gp"]
    assert gp > 0 and "D/gp" not in skipped_logs and torch.equal(lazy_logs["D/gp"], gp)
    torch.testing.assert_close(every_step - skipped, 10.0 * gp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lazy - skipped, 4 * 10.0 * gp, rtol=1e-5, atol=1e-5)
    assert skipped_logs["D/wasserstein"] == logs["D/wasserstein"]
    with pytest.raises(ValueError, match="gp_every must be an integer >= 1"):
        LossConfig(gp_every=0).validate()


def test_one_generator_pass_serves_the_critic_and_the_generator_step():
    """The loop computes AEG(degraded) once per G iteration; the losses equal the ones of separate passes."""
    torch.manual_seed(0)
    model = ALN(ModelConfig(variant="aeg_cd_sz", **SMALL), 10)
    obj = ALNObjective(model, LossConfig(), None)
    batch, alpha = _batch(), torch.rand(6)
    restored = obj.generate(batch)
    shared_d, _ = obj.discriminator_loss(batch, restored, gp_alpha=alpha)
    own_d, _ = obj.discriminator_loss(batch, gp_alpha=alpha)
    torch.testing.assert_close(shared_d, own_d)
    shared_d.backward()
    assert all(p.grad is None for p in model.aeg.parameters())   # the critic's loss sees the restoration detached
    shared_g = sum(obj.generator_terms(batch, restored)[0].values())
    own_g = sum(obj.generator_terms(batch)[0].values())
    torch.testing.assert_close(shared_g, own_g)
    shared_g.backward()
    assert all(p.grad is not None for p in model.aeg.parameters())
