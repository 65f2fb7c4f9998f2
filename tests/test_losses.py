"""Losses against direct numpy formulas."""

import numpy as np
import pytest
import torch

from gan.losses import (
    AffectLoss,
    class_balance_weights,
    critic_gradient_norms,
    critic_loss,
    generator_adversarial_loss,
    gradient_penalty,
    l1,
    label_bins,
    weighted_affect_terms,
)
from scoring.metrics import ccc, pcc, rmse


def _np_weighted(p, t, w):
    ws = w.sum()
    mp, mt = (w * p).sum() / ws, (w * t).sum() / ws
    vp, vt = (w * (p - mp) ** 2).sum() / ws, (w * (t - mt) ** 2).sum() / ws
    cov = (w * (p - mp) * (t - mt)).sum() / ws
    return (np.sqrt((w * (p - t) ** 2).sum() / ws), cov / np.sqrt(vp * vt), 2 * cov / (vp + vt + (mp - mt) ** 2))


def test_weighted_terms_match_numpy_and_unweighted_match_metrics():
    rng = np.random.default_rng(0)
    p = rng.uniform(-1, 1, (64, 2))
    t = np.clip(p * 0.5 + rng.normal(scale=0.3, size=(64, 2)), -1, 1)
    w = rng.uniform(0.2, 3.0, (64, 2))
    out = weighted_affect_terms(torch.tensor(p), torch.tensor(t), torch.tensor(w), eps=0.0)
    for d in range(2):
        r, c, cc = _np_weighted(p[:, d], t[:, d], w[:, d])
        assert out["rmse"][d].item() == pytest.approx(r, abs=1e-9)
        assert out["pcc"][d].item() == pytest.approx(c, abs=1e-9)
        assert out["ccc"][d].item() == pytest.approx(cc, abs=1e-9)
    ones = weighted_affect_terms(torch.tensor(p), torch.tensor(t), torch.ones(64, 2, dtype=torch.float64), eps=0.0)
    for d in range(2):  # same statistics as the reported metrics (population convention)
        assert ones["ccc"][d].item() == pytest.approx(ccc(p[:, d], t[:, d]), abs=1e-9)
        assert ones["pcc"][d].item() == pytest.approx(pcc(p[:, d], t[:, d]), abs=1e-9)
        assert ones["rmse"][d].item() == pytest.approx(rmse(p[:, d], t[:, d]), abs=1e-9)


def test_class_balance_weights_inverse_frequency():
    # valence: 6 samples in bin of 0.0 (bin 10 of 21), 2 in bin of 0.95 (bin 20); arousal all in one bin
    labels = torch.tensor([[0.0, 0.5]] * 6 + [[0.95, 0.5]] * 2)
    table = class_balance_weights(labels, bins=21, clip=0)
    n, k = 8, 2
    assert table[0, 10].item() == pytest.approx(n / (k * 6))
    assert table[0, 20].item() == pytest.approx(n / (k * 2))
    assert table[0].sum().item() == pytest.approx(n / (k * 6) + n / (k * 2))  # empty bins are 0
    assert table[1, label_bins(torch.tensor(0.5), 21)].item() == pytest.approx(1.0)
    # mean weight over the training samples is 1 in each dimension
    idx = label_bins(labels, 21)
    for d in range(2):
        assert table[d][idx[:, d]].mean().item() == pytest.approx(1.0)


def test_class_balance_clip_renormalises():
    labels = torch.tensor([[0.0, 0.0]] * 99 + [[0.9, 0.9]])
    table = class_balance_weights(labels, bins=21, clip=5.0)
    assert table.max().item() <= 5.0 + 1e-5
    idx = label_bins(labels, 21)
    assert table[0][idx[:, 0]].mean().item() == pytest.approx(1.0, abs=1e-5)


def test_label_bins_edges():
    v = torch.tensor([-1.0, -0.999, 0.0, 0.999, 1.0])
    assert label_bins(v, 21).tolist() == [0, 0, 10, 20, 20]


def test_affect_loss_equals_sum_of_terms_with_dimension_specific_weights():
    rng = np.random.default_rng(1)
    train = rng.uniform(-1, 1, (500, 2)) ** 3  # skewed towards 0
    table = class_balance_weights(torch.tensor(train, dtype=torch.float32))
    p = rng.uniform(-1, 1, (32, 2))
    t = train[:32]
    loss, stats = AffectLoss(table)(torch.tensor(p, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    expected = 0.0
    idx = label_bins(torch.tensor(t), 21).numpy()
    for d in range(2):
        w = table[d].numpy()[idx[:, d]]  # each dimension with its own weights
        r, c, cc = _np_weighted(p[:, d], t[:, d], w.astype(np.float64))
        expected += r + (1 - c) + (1 - cc)
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    only_rmse, _ = AffectLoss(None, ("rmse",))(torch.tensor(p), torch.tensor(t))
    assert only_rmse.item() == pytest.approx(sum(rmse(p[:, d], t[:, d]) for d in range(2)), abs=1e-6)
    with pytest.raises(ValueError):
        AffectLoss(None, ("mse",))


def test_affect_loss_gradient_improves_ccc():
    torch.manual_seed(0)
    t = torch.rand(64, 2) * 2 - 1
    p = torch.zeros(64, 2, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.5)
    loss_fn = AffectLoss(None)
    first = None
    for _ in range(50):
        loss, stats = loss_fn(torch.tanh(p + 0.01 * torch.arange(64.0).unsqueeze(1)), t)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 1.0
    assert stats["ccc"].min().item() > 0.8


def test_adversarial_losses():
    real = torch.tensor([[1.0, 2.0]])
    fake = torch.tensor([[0.5, -0.5]])
    assert critic_loss(real, fake, "wgan-gp").item() == pytest.approx(0.0 - 1.5)
    assert generator_adversarial_loss(fake, "wgan-gp").item() == pytest.approx(0.0)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected_d = -np.mean(np.log(sig(np.array([1.0, 2.0])))) - np.mean(np.log(1 - sig(np.array([0.5, -0.5]))))
    assert critic_loss(real, fake, "log").item() == pytest.approx(expected_d, abs=1e-6)
    expected_g = -np.mean(np.log(sig(np.array([0.5, -0.5]))))
    assert generator_adversarial_loss(fake, "log").item() == pytest.approx(expected_g, abs=1e-6)
    with pytest.raises(ValueError):
        critic_loss(real, fake, "hinge")


def test_gradient_penalty_of_linear_critic():
    # D(x, z) = sum(a*x) + sum(b*z): gradient is (a, b) everywhere, so GP = (sqrt(|a|^2+|b|^2) - 1)^2
    a = torch.full((3, 4, 4), 0.1)
    b = torch.full((2, 2, 2), 0.2)
    critic = lambda x, z: (x * a).flatten(1).sum(1) + (z * b).flatten(1).sum(1)  # noqa: E731
    real = [torch.randn(5, 3, 4, 4), torch.randn(5, 2, 2, 2)]
    fake = [torch.randn(5, 3, 4, 4), torch.randn(5, 2, 2, 2)]
    gp = gradient_penalty(critic, real, fake, torch.rand(5))
    norm = np.sqrt(48 * 0.01 + 8 * 0.04)
    assert gp.item() == pytest.approx((norm - 1) ** 2, rel=1e-5)
    gp_x = gradient_penalty(lambda x: (x * a).flatten(1).sum(1), real[:1], fake[:1], torch.rand(5))
    assert gp_x.item() == pytest.approx((np.sqrt(48 * 0.01) - 1) ** 2, rel=1e-5)


def test_l1():
    a, b = torch.zeros(2, 3), torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.5, 0.0]])
    assert l1(a, b).item() == pytest.approx(4.0 / 6)


def test_gradient_penalty_uses_alpha_interpolates():
    # D(x) = sum(x^2): grad = 2 x_hat with x_hat = alpha*real + (1-alpha)*fake, so the penalty depends on alpha
    critic = lambda x: (x**2).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.full((2, 1, 2, 2), 1.0), torch.full((2, 1, 2, 2), -1.0)
    alpha = torch.tensor([0.75, 0.25])
    gp = gradient_penalty(critic, [real], [fake], alpha)
    x_hat = np.array([0.5, -0.5])                      # per sample, every one of the 4 pixels
    norms = np.sqrt(4 * (2 * x_hat) ** 2)              # |grad| = 2|x_hat| * sqrt(4)
    assert gp.item() == pytest.approx(np.mean((norms - 1) ** 2), rel=1e-5)
    assert gradient_penalty(critic, [real], [fake], torch.tensor([0.5, 0.5])).item() == pytest.approx(1.0, abs=1e-5)


def test_critic_gradient_norms_at_real_fake_and_interpolates():
    """D(x) = sum(w * x^2): grad = 2 w x, so the norm is 2|w| |x| per sample, at each of the three points; the
    parameter w gets no gradient (a diagnostic leaves training alone)."""
    w = torch.tensor(0.5, requires_grad=True)
    critic = lambda x: (w * x**2).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.full((2, 1, 2, 2), 1.0), torch.full((2, 1, 2, 2), -3.0)
    alpha = torch.tensor([0.75, 0.25])
    with torch.no_grad():   # measured from inside a no-grad region too
        norms = critic_gradient_norms(critic, [real], [fake], alpha)
    x_hat = np.array([0.75 * 1 - 0.25 * 3, 0.25 * 1 - 0.75 * 3])
    expected = {"real": 2 * 0.5 * 1.0 * 2, "fake": 2 * 0.5 * 3.0 * 2, "interp": np.mean(2 * 0.5 * np.abs(x_hat) * 2)}
    assert {k: v.item() for k, v in norms.items()} == pytest.approx(expected, rel=1e-5)
    assert w.grad is None and not any(v.requires_grad for v in norms.values())
