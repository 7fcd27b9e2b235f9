"""Speed of the §4.1 CNN: Keras (torch backend) beside plain PyTorch, in one run.

For each input length (frames × 96 mel bands) it measures training and
inference samples per second of

* ``keras``: :func:`ctxpaper.model.build_model` compiled with the eq. 2 loss
  and Adadelta, driven by ``train_on_batch`` / ``predict_on_batch``;
* ``keras_fit``: the same model through :func:`ctxpaper.train.train`'s data path
  (``model.fit`` on :class:`ctxpaper.train.FeatureBatches` reading a
  memory-mapped float32 store on disk), i.e. what a chapter pays per sample;
* ``torch``: the same network written directly in PyTorch (NCHW), same
  optimizer and loss, in the textbook order conv → ReLU → pool (the Keras
  model pools first, :class:`ctxpaper.model.ConvReLUPool`: same function);

and reports training throughput as a fraction of this machine's float32
matrix-multiply peak (numpy sgemm, measured here), with the training cost of a
sample from :func:`ctxpaper.model.training_flops` (≈ 5.3 GFLOP at 646 frames).
Beside it, ``conv only`` times the network's four convolutions alone
(:func:`conv_ceiling`): no implementation on PyTorch's CPU kernels can train
faster than that, so it says how much of the gap to the sgemm peak is the
kernels' and how much is the model's. Last, the model's fused
convolution blocks (:class:`ctxpaper.model.ConvReLUPool`) are timed against
the same model built from Keras' Conv2D + MaxPooling2D, in alternating rounds.
The load average before and after is printed: the machine may be shared.

Run: ``.venv/bin/python benchmarks/bench_model.py [--frames 32 64 128 646] [--seconds 8]``.
Targets (issue 7): Keras within 20% of plain PyTorch; training at >= 50% of the
sgemm peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctxpaper import model as M  # noqa: E402  (sets KERAS_BACKEND)
from ctxpaper import train as T  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

BATCH = 32


def sgemm_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best-of float32 matmul throughput of numpy, in FLOP/s."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def timed(step, seconds: float, min_steps: int = 2) -> float:
    """Seconds per call of ``step`` after one warm-up call, over >= ``seconds``."""
    step()
    n, t0 = 0, time.perf_counter()
    while n < min_steps or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return (time.perf_counter() - t0) / n


class TorchCNN(nn.Module):
    """The §4.1 network in plain PyTorch (paper variant)."""

    def __init__(self, frames: int):
        super().__init__()
        blocks: list[nn.Module] = [nn.BatchNorm2d(1)]
        c_in = 1
        for c_out in M.CONV_FILTERS:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        t, f = frames, M.N_MELS
        for _ in M.CONV_FILTERS:
            t, f = t // 2, f // 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(t * f * c_in, 256), nn.ReLU(), nn.Dropout(0.3),
                                  nn.Linear(256, M.N_CONTEXTS), nn.Sigmoid())

    def forward(self, x):
        return self.head(self.features(x))


def bench_torch(frames: int, seconds: float) -> tuple[float, float]:
    torch.manual_seed(0)
    net = TorchCNN(frames)
    opt = torch.optim.Adadelta(net.parameters(), lr=0.1, rho=0.95, eps=1e-7)
    x = torch.randn(BATCH, 1, frames, M.N_MELS)
    y = (torch.rand(BATCH, M.N_CONTEXTS) < 0.4).float()

    def train_step():
        net.train()
        opt.zero_grad(set_to_none=True)
        p = net(x).clamp(M.EPSILON, 1 - M.EPSILON)
        loss = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
        loss.backward()
        opt.step()

    def infer_step():
        net.eval()
        with torch.no_grad():
            net(x)

    return BATCH / timed(train_step, seconds), BATCH / timed(infer_step, seconds)


def conv_ceiling(frames: int, seconds: float) -> tuple[float, str]:
    """Samples/s of the network's four convolutions alone, forward + backward.

    Each layer's oneDNN convolution is timed on its own (batch 32, bias
    included, the input gradient skipped for the first layer as in training),
    in both memory layouts; the faster layout of each layer counts. The rest
    of the network (ReLU, pooling, batch norm, dense layers, optimizer) only
    adds time, so this bounds the whole network's training throughput from
    above: if the kernels alone stay under a fraction of the sgemm peak, so
    does any implementation built on them.
    """
    total = 0.0
    layouts = []
    c_in, t, f = 1, frames, M.N_MELS
    for c_out in M.CONV_FILTERS:
        best = float("inf")
        for name, fmt in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last)):
            conv = nn.Conv2d(c_in, c_out, 3, padding=1).to(memory_format=fmt)
            x = torch.randn(BATCH, c_in, t, f).contiguous(memory_format=fmt).requires_grad_(c_in > 1)
            grad = torch.randn(BATCH, c_out, t, f).contiguous(memory_format=fmt)
            wrt = [x, conv.weight, conv.bias] if c_in > 1 else [conv.weight, conv.bias]
            sec = timed(lambda: torch.autograd.grad(conv(x), wrt, grad), seconds / 8)
            if sec < best:
                best, layout = sec, name
        total += best
        layouts.append(layout)
        c_in, t, f = c_out, t // 2, f // 2
    return BATCH / total, "/".join(layouts)


def textbook_keras_model(frames: int):
    """The model of :func:`ctxpaper.model.build_model` with Keras' own Conv2D(relu) + MaxPooling2D."""
    layers = M.keras.layers
    inp = M.keras.Input((frames, M.N_MELS, 1))
    x = layers.Permute((3, 1, 2))(inp)
    x = layers.BatchNormalization(axis=1)(x)
    for f in M.CONV_FILTERS:
        x = layers.Conv2D(f, 3, padding="same", activation="relu", data_format=M.DATA_FORMAT)(x)
        x = layers.MaxPooling2D(2, data_format=M.DATA_FORMAT)(x)
    x = layers.Dropout(0.3)(layers.Dense(256, activation="relu")(layers.Flatten()(x)))
    return M.keras.Model(inp, layers.Dense(M.N_CONTEXTS, activation="sigmoid")(x))


def compare_blocks(frames: int, seconds: float, rounds: int = 3) -> tuple[float, float]:
    """Training samples/s of ConvReLUPool blocks and of Conv2D + MaxPooling2D, alternated.

    Rounds alternate between the two models and the best round of each
    counts, so a slow spell of a shared machine does not favour either.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, frames, M.N_MELS, 1)).astype(np.float32)
    y = M.pack_targets(rng.random((BATCH, M.N_CONTEXTS)) < 0.4)
    models = [M.compile_model(M.build_model(frames, seed=0)), M.compile_model(textbook_keras_model(frames))]
    best = [0.0, 0.0]
    for _ in range(rounds):
        for i, m in enumerate(models):
            best[i] = max(best[i], BATCH / timed(lambda: m.train_on_batch(x, y), seconds / rounds))
    return best[0], best[1]


def bench_keras(frames: int, seconds: float) -> tuple[float, float]:
    model = M.compile_model(M.build_model(frames, seed=0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, frames, M.N_MELS, 1)).astype(np.float32)
    y = M.pack_targets(rng.random((BATCH, M.N_CONTEXTS)) < 0.4)
    train = BATCH / timed(lambda: model.train_on_batch(x, y), seconds)
    infer = BATCH / timed(lambda: model.predict_on_batch(x), seconds)
    return train, infer


def bench_keras_fit(frames: int, seconds: float, tmp: Path, keras_rate: float) -> float:
    """Samples/s of ``train`` end to end (data from a memmap, checkpoints, log)."""
    per_step = BATCH / keras_rate  # to size an epoch to about ``seconds``
    n_batches = max(4, int(seconds / per_step))
    n = n_batches * BATCH
    path = tmp / f"store_{frames}.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(n + BATCH, M.FULL_FRAMES, M.N_MELS))
    mm[:] = np.random.default_rng(0).normal(size=mm.shape[1:]).astype(np.float32)  # same patch, cheap
    mm.flush()
    feats = np.memmap(path, dtype=np.float32, mode="r", shape=mm.shape)
    rng = np.random.default_rng(1)
    targets = M.pack_targets(rng.random((n + BATCH, M.N_CONTEXTS)) < 0.4)
    tr = T.FeatureBatches(feats, np.arange(n), targets[:n], BATCH, frames, shuffle_seed=0)
    va = T.FeatureBatches(feats, np.arange(n, n + BATCH), targets[n:], BATCH, frames)
    cfg = T.TrainConfig(frames=frames, max_epochs=2, patience=5, batch_size=BATCH)
    r = T.train(tr, va, tmp / f"run_{frames}", cfg, progress=False)
    # The second epoch excludes warm-up; its time includes validation and the checkpoint.
    return n / float(r.history["seconds"].iloc[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[32, 64, 128, 646])
    ap.add_argument("--seconds", type=float, default=8.0, help="time per measurement")
    ap.add_argument("--no-fit", action="store_true", help="skip the end-to-end fit measurement")
    args = ap.parse_args()

    load_before = os.getloadavg()
    peak = sgemm_peak()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} threads {torch.get_num_threads()}, keras backend "
          f"{M.keras.backend.backend()}")
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"numpy sgemm peak: {peak / 1e9:.1f} GFLOP/s")
    header = (f"{'frames':>6} {'GFLOP/sample':>12} | {'keras train':>11} {'torch train':>11} {'keras/torch':>11} "
              f"{'% sgemm':>8} | {'keras infer':>11} {'torch infer':>11} {'keras/torch':>11} | {'fit()':>8} | "
              f"{'conv only':>9} {'% sgemm':>8} {'keras/it':>8}")
    print("samples/s (batch 32):")
    print(header)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for frames in args.frames:
            kt, ki = bench_keras(frames, args.seconds)
            tt, ti = bench_torch(frames, args.seconds)
            fit = float("nan") if args.no_fit else bench_keras_fit(frames, args.seconds, Path(tmp), kt)
            flops = M.training_flops(frames)
            frac = kt * flops / peak
            ceiling, layouts = conv_ceiling(frames, args.seconds)
            rows.append({"frames": frames, "gflop_per_sample": flops / 1e9, "keras_train": kt, "torch_train": tt,
                         "keras_infer": ki, "torch_infer": ti, "fit_train": fit, "sgemm_fraction": frac,
                         "conv_only_train": ceiling, "conv_only_sgemm_fraction": ceiling * flops / peak,
                         "conv_only_layouts": layouts})
            print(f"{frames:>6} {flops / 1e9:>12.2f} | {kt:>11.1f} {tt:>11.1f} {kt / tt:>11.2f} {100 * frac:>7.0f}% | "
                  f"{ki:>11.1f} {ti:>11.1f} {ki / ti:>11.2f} | {fit:>8.1f} | {ceiling:>9.1f} "
                  f"{100 * ceiling * flops / peak:>7.0f}% {100 * kt / ceiling:>8.0f}%", flush=True)
    print("conv only: the four convolutions alone (forward + backward, best layout per layer), "
          "an upper bound on training samples/s; keras/it: the Keras model's share of that bound.")
    print("training samples/s, ConvReLUPool blocks vs Keras' Conv2D(relu) + MaxPooling2D "
          "(alternating rounds, best of each):")
    blocks = []
    for frames in args.frames:
        fused, textbook = compare_blocks(frames, args.seconds)
        blocks.append({"frames": frames, "conv_relu_pool": fused, "conv2d_maxpool": textbook})
        print(f"{frames:>6} frames: {fused:.1f} vs {textbook:.1f} samples/s, {fused / textbook:.2f}x", flush=True)
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    out = Path(__file__).resolve().parent / "results" / "bench_model.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"sgemm_gflops": peak / 1e9, "load_before": load_before,
                               "load_after": load_after, "rows": rows, "blocks": blocks}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
