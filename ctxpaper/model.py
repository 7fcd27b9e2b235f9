"""The CNN auto-tagger of §4.1 and the weighted cross-entropy of §4.2 (eq. 2).

The network is Choi et al.'s multi-layer CNN as the paper describes it: batch
normalisation on the log-mel input, four 3×3 convolutions with 32, 64, 128 and
256 filters, each followed by ReLU and 2×2 max pooling, a 256-unit dense layer,
dropout, and 15 sigmoid outputs (one per context). At the paper's 646 × 96
input it has about 16.1 M parameters, almost all in the first dense layer.

The authors' released code differs from the paper's text in three places; both
are offered (``architecture="paper"`` or ``"released_code"``), see
:data:`ARCHITECTURE_DIFFERENCES`.

The loss is eq. 2, element-wise on (batch, 15) with one positive and one
negative weight per sample and context. Keras losses only see ``y_true`` and
``y_pred``, and Keras' own ``sample_weight`` is one number per sample, so the
weights travel inside ``y_true``: :func:`pack_targets` concatenates labels,
positive weights and negative weights into a (n, 45) array, which
:func:`weighted_bce` splits again. All-ones weights give plain binary
cross-entropy (the paper's "no weights" row).

Keras runs on the PyTorch backend: importing this module sets
``KERAS_BACKEND=torch`` before Keras is imported, so a reader never has to,
and the device (a CUDA GPU when there is one, :mod:`ctxpaper.device`).
"""

from __future__ import annotations

import os
import sys

from . import device as _device

# Must happen before the first ``import keras`` anywhere in the process.
if "keras" in sys.modules:
    import keras as _keras_already

    if _keras_already.backend.backend() != "torch":
        raise ImportError(
            "keras was imported with the "
            f"{_keras_already.backend.backend()!r} backend before ctxpaper.model; "
            "ctxpaper needs the torch backend: import ctxpaper.model first or set "
            "KERAS_BACKEND=torch"
        )
else:
    os.environ["KERAS_BACKEND"] = "torch"
_device.configure()  # KERAS_TORCH_DEVICE, also read once, at keras' import

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

from .contexts import CONTEXTS  # noqa: E402
from .losses import EPSILON  # noqa: E402  (probabilities are clipped to [EPSILON, 1 - EPSILON])

N_CONTEXTS = len(CONTEXTS)
#: Mel bands of the paper's input.
N_MELS = 96
#: Frames of the paper's input: 30 s of audio.
FULL_FRAMES = 646
#: Layout of the convolutional part (the input stays (frames, mels, 1)).
DATA_FORMAT = "channels_first"
#: Filters of the four convolution blocks.
CONV_FILTERS = (32, 64, 128, 256)
ARCHITECTURES = ("paper", "released_code")

#: Where the authors' released code departs from the paper's text (§4.1).
ARCHITECTURE_DIFFERENCES: dict[str, dict[str, str]] = {
    "activation of the 256-unit dense layer": {
        "paper": "ReLU", "released_code": "sigmoid"},
    "dropout": {
        "paper": "drops 30% (rate 0.3)",
        "released_code": "drops 70% (keep-probability 0.3)"},
    "initial weights and biases": {
        "paper": "Keras defaults: Glorot uniform kernels, zero biases",
        "released_code": "truncated normal kernels (std 0.1), biases 0.1"},
}


def _check_frames(frames: int) -> int:
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)):
        raise ValueError(f"frames must be an integer, got {frames!r}")
    # Four 2×2 poolings with floor division need at least 16 frames to leave 1.
    if frames < 16:
        raise ValueError(f"frames must be >= 16 (four 2x2 max-poolings), got {frames}")
    return int(frames)


@keras.saving.register_keras_serializable(package="ctxpaper")
class ConvReLUPool(layers.Conv2D):
    """One convolution block of §4.1: 3×3 "same" convolution, ReLU, 2×2 max pooling.

    Computed as convolution → max pooling → bias → ReLU. Max pooling commutes
    with adding a per-channel constant and with ReLU (both are monotone, and
    so is float rounding), so ``relu(pool(conv(x)) + b)`` equals
    ``pool(relu(conv(x) + b))`` exactly, and the gradients agree except where
    a pooling window holds a tie. Doing the bias and the ReLU after pooling
    touches a quarter of the elements: at 646 frames the first convolution's
    output is 254 MB per batch of 32, and these element-wise passes, forward
    and backward, were a third of a CPU training step (``bench_model.py``).

    The layer holds the same ``kernel`` and ``bias`` as the ``Conv2D`` it
    replaces, so weights move between the two unchanged.

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size : int
        Convolution size (3 in the paper).
    pool_size : int
        Max-pooling size and stride (2 in the paper).
    **kwargs
        Passed to :class:`keras.layers.Conv2D` (``data_format``,
        initializers, ``name``...). ``padding`` is ``"same"``; the activation
        is the built-in ReLU and cannot be changed.
    """

    def __init__(self, filters: int, kernel_size: int = 3, pool_size: int = 2, **kwargs):
        activation = kwargs.pop("activation", None)
        if activation not in (None, "linear"):
            raise ValueError(f"ConvReLUPool applies ReLU itself; got activation={activation!r}")
        if kwargs.setdefault("padding", "same") != "same":
            raise ValueError(f"ConvReLUPool pads 'same'; got padding={kwargs['padding']!r}")
        super().__init__(filters, kernel_size, **kwargs)
        self.pool_size = (int(pool_size),) * 2

    def call(self, inputs):
        x = self.convolution_op(inputs, self.kernel)
        x = ops.max_pool(x, self.pool_size, strides=self.pool_size, padding="valid",
                         data_format=self.data_format)
        if self.use_bias:
            shape = (1, self.filters, 1, 1) if self.data_format == "channels_first" else (self.filters,)
            x = ops.add(x, ops.reshape(self.bias, shape))
        return ops.relu(x)

    def compute_output_shape(self, input_shape):
        shape = list(super().compute_output_shape(input_shape))
        spatial = (2, 3) if self.data_format == "channels_first" else (1, 2)
        for axis, size in zip(spatial, self.pool_size):
            shape[axis] = None if shape[axis] is None else shape[axis] // size
        return tuple(shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("activation", None)
        config["pool_size"] = self.pool_size[0]
        return config


def build_model(frames: int = FULL_FRAMES, architecture: str = "paper", seed: int = 0,
                n_mels: int = N_MELS) -> keras.Model:
    """Build the §4.1 CNN (not compiled).

    Parameters
    ----------
    frames : int
        Time frames of the log-mel input (646 = 30 s, the paper's size).
    architecture : {"paper", "released_code"}
        Follow the paper's text or the authors' released code
        (:data:`ARCHITECTURE_DIFFERENCES`).
    seed : int
        Seeds every initializer and the dropout mask, so the same seed gives
        the same initial weights and the same training.
    n_mels : int
        Mel bands (96 in the paper).

    Returns
    -------
    keras.Model
        Input (frames, n_mels, 1), output (15,) sigmoid probabilities in
        :data:`~ctxpaper.contexts.CONTEXTS` order.
    """
    frames = _check_frames(frames)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
    released = architecture == "released_code"
    seeds = iter(range(seed * 1000, seed * 1000 + 100))

    def kernel_init():
        if released:
            return keras.initializers.TruncatedNormal(stddev=0.1, seed=next(seeds))
        return keras.initializers.GlorotUniform(seed=next(seeds))

    def bias_init():
        return keras.initializers.Constant(0.1) if released else "zeros"

    inputs = keras.Input((frames, n_mels, 1), name="logmel")
    # PyTorch convolves channels-first: computing in that layout avoids a
    # transpose around every layer, 1.5-1.9x faster on CPU (bench_model.py).
    # With one input channel the permutation is a free reshape.
    x = layers.Permute((3, 1, 2), name="to_channels_first")(inputs)
    x = layers.BatchNormalization(axis=1, name="input_bn")(x)
    for i, filters in enumerate(CONV_FILTERS, start=1):
        # conv 3×3 + ReLU + max-pool 2×2 in one layer (see ConvReLUPool: same
        # function, 1.3-1.4x faster training at 646 frames on CPU).
        x = ConvReLUPool(filters, 3, pool_size=2, data_format=DATA_FORMAT,
                         kernel_initializer=kernel_init(), bias_initializer=bias_init(),
                         name=f"conv{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="sigmoid" if released else "relu",
                     kernel_initializer=kernel_init(), bias_initializer=bias_init(),
                     name="dense")(x)
    x = layers.Dropout(0.7 if released else 0.3, seed=next(seeds), name="dropout")(x)
    outputs = layers.Dense(N_CONTEXTS, activation="sigmoid",
                           kernel_initializer=kernel_init(), bias_initializer=bias_init(),
                           name="contexts")(x)
    return keras.Model(inputs, outputs, name=f"choi_cnn_{architecture}")


def n_parameters(frames: int = FULL_FRAMES, n_mels: int = N_MELS) -> int:
    """Parameter count of :func:`build_model` computed by hand (no Keras).

    Used by the chapter to check the ~16.1 M of the paper's size and by the
    tests as an independent reference.
    """
    frames = _check_frames(frames)
    total = 4 * 1  # input batch norm: gamma, beta, moving mean, moving variance
    c_in, t, f = 1, frames, n_mels
    for c_out in CONV_FILTERS:
        total += 3 * 3 * c_in * c_out + c_out
        c_in, t, f = c_out, t // 2, f // 2
    flat = t * f * c_in
    return total + flat * 256 + 256 + 256 * N_CONTEXTS + N_CONTEXTS


def training_flops(frames: int = FULL_FRAMES, n_mels: int = N_MELS) -> float:
    """Approximate floating-point operations of one training sample.

    Counts the multiply-adds of the convolutions and dense layers (2 FLOPs
    each) in the forward pass and triples it for forward + backward, the usual
    estimate. About 5.3 GFLOP at 646 × 96.
    """
    frames = _check_frames(frames)
    macs = 0
    c_in, t, f = 1, frames, n_mels
    for c_out in CONV_FILTERS:
        macs += t * f * 9 * c_in * c_out
        c_in, t, f = c_out, t // 2, f // 2
    macs += t * f * c_in * 256 + 256 * N_CONTEXTS
    return 3 * 2 * float(macs)


# ----------------------------------------------------------------------------
# eq. 2
# ----------------------------------------------------------------------------

def pack_targets(labels: np.ndarray, positive_weights: np.ndarray | None = None,
                 negative_weights: np.ndarray | None = None) -> np.ndarray:
    """Pack labels and the two weight matrices into the (n, 45) ``y_true``.

    Parameters
    ----------
    labels : array (n, 15) of {0, 1} (bool or numbers)
    positive_weights, negative_weights : array (n, 15) of finite numbers >= 0, optional
        ω and ω̄ of eq. 2. ``None`` means all ones (plain cross-entropy).

    Returns
    -------
    numpy.ndarray
        float32 (n, 45): ``[labels | positive weights | negative weights]``.

    Raises
    ------
    ValueError
        Wrong shapes, labels other than 0/1, weights negative or not finite.
    """
    y = np.asarray(labels)
    if y.ndim != 2 or y.shape[1] != N_CONTEXTS:
        raise ValueError(f"labels must have shape (n, {N_CONTEXTS}), got {y.shape}")
    yf = y.astype(np.float32)
    if not np.isin(yf, (0.0, 1.0)).all():
        bad = np.argwhere(~np.isin(yf, (0.0, 1.0)))[0]
        raise ValueError(f"labels must be 0 or 1; row {bad[0]}, column {bad[1]} is {y[tuple(bad)]!r}")
    packed = [yf]
    for name, w in (("positive_weights", positive_weights), ("negative_weights", negative_weights)):
        if w is None:
            packed.append(np.ones_like(yf))
            continue
        w = np.asarray(w, dtype=np.float64)
        if w.shape != y.shape:
            raise ValueError(f"{name} must have the labels' shape {y.shape}, got {w.shape}")
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"{name} must be finite and >= 0; row {r}, column {c} "
                             f"({CONTEXTS[c]}) is {w[r, c]!r}")
        packed.append(w.astype(np.float32))
    return np.concatenate(packed, axis=1)


def weighted_bce(y_true, y_pred):
    """Eq. 2 per sample: the mean over the 15 contexts of the weighted terms.

    ``y_true`` is the (batch, 45) array of :func:`pack_targets`; ``y_pred`` the
    (batch, 15) probabilities, clipped to [1e-7, 1 − 1e-7]. Keras then averages
    the per-sample values over the batch, so the training loss is the mean over
    batch × 15, the released code's reduction.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    y = y_true[:, :N_CONTEXTS]
    w_pos = y_true[:, N_CONTEXTS:2 * N_CONTEXTS]
    w_neg = y_true[:, 2 * N_CONTEXTS:]
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    ce = -(w_pos * y * ops.log(p) + w_neg * (1.0 - y) * ops.log(1.0 - p))
    return ops.mean(ce, axis=-1)


def compile_model(model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None) -> keras.Model:
    """Compile ``model`` with :func:`weighted_bce` (Adadelta 0.1 by default)."""
    if optimizer is None:
        optimizer = keras.optimizers.Adadelta(learning_rate=0.1)
    model.compile(optimizer=optimizer, loss=weighted_bce)
    return model
