"""Missing-label losses against numpy references and their defining properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctxpaper import losses as mlml
from ctxpaper.model import pack_targets, weighted_bce


def _batch(seed, n=64):
    rng = np.random.default_rng(seed)
    y = rng.random((n, 15)) < 0.4
    p = rng.random((n, 15)).astype(np.float32)
    p[0, :3] = [0.0, 1.0, 0.03]  # clipping and the ASL margin
    return y, p


def _eval(loss, y, p, **kw):
    out = loss(torch.from_numpy(pack_targets(y)), torch.from_numpy(p), **kw)
    return out.detach().numpy().astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_losses_match_numpy_reference(seed):
    y, p = _batch(seed)
    assert np.allclose(_eval(mlml.asymmetric_loss, y, p), mlml.numpy_reference("asl", y, p), atol=1e-5)
    assert np.allclose(_eval(mlml.entropy_max_loss, y, p, alpha=0.3),
                       mlml.numpy_reference("em", y, p, alpha=0.3), atol=1e-5)


def test_asl_without_focusing_and_margin_is_bce():
    y, p = _batch(3)
    asl = _eval(mlml.asymmetric_loss, y, p, gamma_neg=0.0, margin=0.0)
    bce = weighted_bce(torch.from_numpy(pack_targets(y)), torch.from_numpy(p)).numpy()
    assert np.allclose(asl, bce, atol=1e-5)


def test_asl_ignores_negatives_below_the_margin():
    y = np.zeros((1, 15), bool)
    y[0, 0] = True
    p = np.full((1, 15), 0.04, np.float32)
    p[0, 0] = 0.9
    only_positive = -np.log(0.9) / 15
    assert _eval(mlml.asymmetric_loss, y, p)[0] == pytest.approx(only_positive, rel=1e-5)


def test_em_pushes_zeros_towards_uncertainty_not_towards_zero():
    y = np.zeros((1, 15), bool)
    y[0, 0] = True
    for start, direction in ((0.1, +1), (0.9, -1)):
        p = torch.full((1, 15), start, requires_grad=True)
        mlml.entropy_max_loss(torch.from_numpy(pack_targets(y)), p).sum().backward()
        # gradient descent moves p by -grad: towards 0.5 on the zero cells
        assert np.all(np.sign(-p.grad[0, 1:].numpy()) == direction)
    p = torch.full((1, 15), 0.1, requires_grad=True)
    weighted_bce(torch.from_numpy(pack_targets(y)), p).sum().backward()
    assert np.all(-p.grad[0, 1:].numpy() < 0)  # plain BCE pushes them to 0


def test_wan_weights():
    y = np.array([[1, 0, 0], [0, 1, 1]], bool)
    w = mlml.wan_negative_weights(y)
    assert np.array_equal(w, [[0, 0.5, 0.5], [0.5, 0, 0]])
    assert mlml.wan_negative_weights(np.zeros((2, 15), bool)).max() == pytest.approx(1 / 14)
    with pytest.raises(ValueError, match="gamma must be in"):
        mlml.wan_negative_weights(y, gamma=0)


def test_unknown_reference():
    with pytest.raises(ValueError, match="unknown loss"):
        mlml.numpy_reference("focal", np.zeros((1, 15)), np.zeros((1, 15)))
