"""Tests for ctxpaper.model: the §4.1 CNN and the eq. 2 loss."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ctxpaper import model as M
from ctxpaper.contexts import CONTEXTS

import keras  # noqa: E402  (ctxpaper.model picked the backend)

# Keras internals call np.array(x, copy=False) on torch tensors under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def reference_loss(y, p, w_pos, w_neg, eps=1e-7):
    """Eq. 2 by explicit loops, mean over samples × contexts.

    Probabilities are clipped in float32, as the network computes them:
    float32(1 - 1e-7) is 1 - 1.19e-7.
    """
    n, m = y.shape
    lo, hi = np.float32(eps), np.float32(1) - np.float32(eps)
    total = 0.0
    for i in range(n):
        for c in range(m):
            q = float(min(max(np.float32(p[i, c]), lo), hi))
            total -= w_pos[i, c] * y[i, c] * math.log(q) + w_neg[i, c] * (1 - y[i, c]) * math.log(1 - q)
    return total / (n * m)


def keras_loss(y, p, w_pos=None, w_neg=None, batch_size=None):
    """The loss as Keras computes it in training: compiled, reduced over batches."""
    probe = keras.Sequential([keras.Input((len(CONTEXTS),)), keras.layers.Identity()])
    M.compile_model(probe)
    packed = M.pack_targets(y, w_pos, w_neg)
    return probe.evaluate(np.asarray(p, np.float32), packed, batch_size=batch_size or len(y), verbose=0)


def test_backend_is_torch():
    assert os.environ["KERAS_BACKEND"] == "torch"
    assert keras.backend.backend() == "torch"


@pytest.mark.parametrize("frames", [16, 33, 64, 646])
def test_parameter_count_matches_hand_count(frames):
    m = M.build_model(frames)
    assert m.count_params() == M.n_parameters(frames)
    assert m.input_shape == (None, frames, 96, 1)
    assert m.output_shape == (None, 15)


def test_paper_size_has_about_16_1_million_parameters():
    # The issue's figure for 646 x 96: "about 16.1 M".
    assert abs(M.build_model(646).count_params() - 16.1e6) < 0.05e6
    # Dense 256 on 40 x 6 x 256 flattened maps dominates.
    assert M.n_parameters(646) > 40 * 6 * 256 * 256


def test_training_flops_near_issue_estimate():
    assert 5.2e9 < M.training_flops(646) < 5.4e9


def test_architecture_layers():
    m = M.build_model(64)
    convs = [l for l in m.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    # each block pools 2×2 itself (M.ConvReLUPool), so the spatial size halves per block
    assert all(isinstance(c, M.ConvReLUPool) and c.pool_size == (2, 2) for c in convs)
    assert [tuple(c.output.shape[2:]) for c in convs] == [(32, 48), (16, 24), (8, 12), (4, 6)]
    assert isinstance(m.layers[1], keras.layers.Permute)  # to channels-first, see below
    assert isinstance(m.layers[2], keras.layers.BatchNormalization) and m.layers[2].axis == 1


def test_channels_first_layout_computes_the_channels_last_network():
    """The layout is an implementation detail: with the same weights (the dense
    kernel's rows reordered for the other flatten order) the paper's
    channels-last network gives the same outputs."""
    from keras import layers

    frames = 32
    m = M.build_model(frames, seed=3)
    inp = keras.Input((frames, M.N_MELS, 1))
    x = layers.BatchNormalization(name="input_bn")(inp)
    for i, f in enumerate((32, 64, 128, 256), start=1):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu", name="dense")(x)
    out = layers.Dense(15, activation="sigmoid", name="contexts")(x)
    ref = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for name in ("input_bn", "conv1", "conv2", "conv3", "conv4", "contexts"):
        w = m.get_layer(name).get_weights()
        if name == "input_bn":  # non-trivial statistics, so that the axis matters
            w = [w[0] + 0.5, w[1] - 0.2, w[2] + 0.3, w[3] * 2.0]
            m.get_layer(name).set_weights(w)
        ref.get_layer(name).set_weights(w)
    kernel, bias = m.get_layer("dense").get_weights()
    t, f, c = frames // 16, M.N_MELS // 16, 256
    # row of (channel, time, freq) in channels-first order -> row of (time, freq, channel)
    order = np.arange(t * f * c).reshape(c, t, f).transpose(1, 2, 0).ravel()
    ref.get_layer("dense").set_weights([kernel[order], bias])
    x = rng.normal(size=(4, frames, M.N_MELS, 1)).astype(np.float32)
    np.testing.assert_allclose(m.predict_on_batch(x), ref.predict_on_batch(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant,act,rate", [("paper", "relu", 0.3), ("released_code", "sigmoid", 0.7)])
def test_variants_differ_as_documented(variant, act, rate):
    m = M.build_model(32, variant)
    assert m.get_layer("dense").activation.__name__ == act
    assert m.get_layer("dropout").rate == pytest.approx(rate)
    assert m.get_layer("contexts").activation.__name__ == "sigmoid"


def test_released_code_initialisation():
    m = M.build_model(32, "released_code", seed=3)
    for name in ("conv1", "conv2", "conv3", "conv4", "dense", "contexts"):
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in m.get_layer(name).weights)
        np.testing.assert_allclose(bias, 0.1)
        # Truncated normal at two standard deviations (Keras' torch backend
        # redraws at most 4 times, so a few in a million may fall outside).
        assert (np.abs(kernel) > 0.2).mean() < 1e-4
    big = keras.ops.convert_to_numpy(m.get_layer("dense").weights[0])
    # Std of a normal truncated at ±2σ is 0.88σ.
    assert big.std() == pytest.approx(0.1 * 0.8796, rel=0.02)
    paper = M.build_model(32, "paper", seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(paper.get_layer("dense").weights[1]), 0.0)


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = M.build_model(32, seed=5), M.build_model(32, seed=5), M.build_model(32, seed=6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    for name in ("conv1", "dense", "contexts"):
        ka, kc = (m.get_layer(name).get_weights()[0] for m in (a, c))
        assert not np.array_equal(ka, kc)


def test_output_is_probability():
    m = M.build_model(32, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 32, 96, 1)).astype(np.float32)
    p = keras.ops.convert_to_numpy(m(x, training=False))
    assert p.shape == (4, 15) and ((p > 0) & (p < 1)).all()


@pytest.mark.parametrize("kwargs,match", [
    ({"frames": 15}, ">= 16"), ({"frames": 64.0}, "integer"), ({"architecture": "choi"}, "architecture"),
])
def test_build_model_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        M.build_model(**kwargs)


# ---------------------------------------------------------------------------
# eq. 2
# ---------------------------------------------------------------------------

def test_loss_matches_numpy_reference_through_keras_reduction():
    rng = np.random.default_rng(1)
    n = 23
    y = rng.random((n, 15)) < 0.4
    p = rng.random((n, 15)).astype(np.float32)
    p[0, :3] = [0.0, 1.0, 1e-9]  # exercised by the clipping
    y[0, :3] = [True, False, True]
    wp, wn = rng.random((n, 15)) * 2, rng.random((n, 15))
    ref = reference_loss(y, p, wp, wn)
    # Keras averages the per-batch means weighted by batch size: 23 = 7+7+7+2.
    assert keras_loss(y, p, wp, wn, batch_size=7) == pytest.approx(ref, rel=1e-5)
    assert keras_loss(y, p, wp, wn) == pytest.approx(ref, rel=1e-5)


def test_all_ones_weights_is_plain_binary_cross_entropy():
    rng = np.random.default_rng(2)
    y = rng.random((16, 15)) < 0.5
    p = rng.uniform(0.01, 0.99, (16, 15)).astype(np.float32)
    bce = keras.losses.BinaryCrossentropy()(y.astype(np.float32), p)
    assert keras_loss(y, p) == pytest.approx(float(keras.ops.convert_to_numpy(bce)), rel=1e-5)


def test_hand_computed_case():
    # One sample, a single positive at p=0.5 and a negative at p=0.5, weights 2 and 0.5.
    y = np.zeros((1, 15), bool)
    y[0, 0] = True
    p = np.full((1, 15), 0.5, np.float32)
    wp = np.ones((1, 15)); wp[0, 0] = 2.0
    wn = np.zeros((1, 15)); wn[0, 1] = 0.5
    expected = (2.0 * math.log(2) + 0.5 * math.log(2)) / 15
    assert keras_loss(y, p, wp, wn) == pytest.approx(expected, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    y=hnp.arrays(bool, (3, 15)),
    p=hnp.arrays(np.float32, (3, 15), elements=st.floats(0, 1, width=32)),
    wp=hnp.arrays(np.float64, (3, 15), elements=st.floats(0, 10)),
    wn=hnp.arrays(np.float64, (3, 15), elements=st.floats(0, 10)),
)
def test_loss_property_matches_reference(y, p, wp, wn):
    packed = M.pack_targets(y, wp, wn)
    got = keras.ops.convert_to_numpy(M.weighted_bce(packed, keras.ops.convert_to_tensor(p)))
    per_sample_ref = [reference_loss(y[i:i + 1], p[i:i + 1], wp[i:i + 1], wn[i:i + 1]) for i in range(3)]
    np.testing.assert_allclose(got, per_sample_ref, rtol=1e-5, atol=1e-6)
    assert (got >= 0).all()


def test_pack_targets_layout():
    rng = np.random.default_rng(3)
    y = rng.random((4, 15)) < 0.5
    wp, wn = rng.random((4, 15)), rng.random((4, 15))
    packed = M.pack_targets(y, wp, wn)
    assert packed.dtype == np.float32 and packed.shape == (4, 45)
    np.testing.assert_array_equal(packed[:, :15], y)
    np.testing.assert_allclose(packed[:, 15:30], wp, rtol=1e-7)
    np.testing.assert_allclose(packed[:, 30:], wn, rtol=1e-7)
    np.testing.assert_array_equal(M.pack_targets(y)[:, 15:], 1.0)


@pytest.mark.parametrize("y,wp,wn,match", [
    (np.zeros((2, 14)), None, None, r"shape \(n, 15\)"),
    (np.full((2, 15), 2), None, None, "0 or 1"),
    (np.zeros((2, 15)), np.ones((2, 14)), None, "positive_weights must have"),
    (np.zeros((2, 15)), None, -np.ones((2, 15)), "negative_weights must be finite and >= 0; row 0, column 0 .car."),
    (np.zeros((2, 15)), np.where(np.eye(2, 15) > 0, np.nan, 1.0), None, "positive_weights .* row 0"),
])
def test_pack_targets_rejects_bad_input(y, wp, wn, match):
    with pytest.raises(ValueError, match=match):
        M.pack_targets(y, wp, wn)


def test_variant_differences_table_covers_both_variants():
    assert len(M.ARCHITECTURE_DIFFERENCES) == 3
    assert all(set(v) == set(M.ARCHITECTURES) for v in M.ARCHITECTURE_DIFFERENCES.values())


def plain_blocks_model(frames, variant="paper"):
    """The §4.1 network written with Keras' own layers: Conv2D(relu) then MaxPooling2D."""
    from keras import layers

    released = variant == "released_code"
    inp = keras.Input((frames, M.N_MELS, 1))
    x = layers.Permute((3, 1, 2))(inp)
    x = layers.BatchNormalization(axis=1, name="input_bn")(x)
    for i, f in enumerate(M.CONV_FILTERS, start=1):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", data_format="channels_first",
                          name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, data_format="channels_first")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="sigmoid" if released else "relu", name="dense")(x)
    return keras.Model(inp, layers.Dense(15, activation="sigmoid", name="contexts")(x))


@pytest.mark.parametrize("variant", M.ARCHITECTURES)
def test_conv_relu_pool_blocks_equal_conv2d_then_maxpool(variant):
    """Same weights, same outputs and same gradients as Keras' Conv2D → MaxPooling2D."""
    import torch

    frames = 32
    m = M.build_model(frames, variant, seed=2)
    ref = plain_blocks_model(frames, variant)
    for name in ("input_bn", "conv1", "conv2", "conv3", "conv4", "dense", "contexts"):
        w = m.get_layer(name).get_weights()
        if name.startswith("conv"):  # biases of both signs, so the ReLU cuts somewhere
            w[1] = np.random.default_rng(len(name)).normal(0, 0.5, w[1].shape).astype(np.float32)
            m.get_layer(name).set_weights(w)
        ref.get_layer(name).set_weights(w)
    x = np.random.default_rng(0).normal(size=(4, frames, M.N_MELS, 1)).astype(np.float32)
    outs, grads = [], []
    for net in (m, ref):
        out = net(torch.from_numpy(x), training=False)
        loss = (out * torch.arange(1.0, 16.0)).sum()
        params = [v.value for v in net.trainable_variables]
        grads.append([g.numpy() for g in torch.autograd.grad(loss, params)])
        outs.append(out.detach().numpy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    # input batch norm (2), four conv blocks (2 each), two dense layers (2 each)
    assert len(grads[0]) == len(grads[1]) == 14
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(b).max())))


def test_conv_relu_pool_config_round_trip_and_bad_arguments():
    layer = M.ConvReLUPool(8, 3, pool_size=2, data_format="channels_first", name="c")
    clone = M.ConvReLUPool.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.pool_size, clone.padding) == (8, (3, 3), (2, 2), "same")
    assert layer.compute_output_shape((None, 1, 33, 96)) == (None, 8, 16, 48)
    with pytest.raises(ValueError, match="applies ReLU itself"):
        M.ConvReLUPool(8, activation="sigmoid")
    with pytest.raises(ValueError, match="pads 'same'"):
        M.ConvReLUPool(8, padding="valid")
    # channels-last works too (bias on the last axis)
    cl = M.ConvReLUPool(4, data_format="channels_last")
    y = keras.ops.convert_to_numpy(cl(np.ones((1, 6, 8, 2), dtype=np.float32)))
    assert y.shape == (1, 3, 4, 4) and (y >= 0).all()
