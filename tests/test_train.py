"""Tests for ctxpaper.train: batches, schedule, early stopping, checkpoints, resume.

Every training here is tiny (16 frames, a few dozen samples, a few epochs).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctxpaper import model as M
from ctxpaper import train as T

import keras  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

N_TRAIN, N_VAL, STORED, FRAMES, BATCH = 40, 16, 24, 16, 8


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = N_TRAIN + N_VAL
    y = rng.random((n, 15)) < 0.4
    feats = rng.normal(size=(n, STORED, 96)).astype(np.float32)
    feats[y[:, 0], :, :10] += 1.5  # something learnable
    return feats, y


def batches(data, val_neg_weight=1.0, shuffle_seed=7):
    feats, y = data
    tr = T.FeatureBatches(feats, np.arange(N_TRAIN), M.pack_targets(y[:N_TRAIN]), BATCH, FRAMES,
                          shuffle_seed=shuffle_seed)
    vy = y[N_TRAIN:]
    w = np.full(vy.shape, val_neg_weight)
    va = T.FeatureBatches(feats, np.arange(N_TRAIN, N_TRAIN + N_VAL), M.pack_targets(vy, w, w), BATCH, FRAMES)
    return tr, va


def config(**kw):
    base = dict(frames=FRAMES, max_epochs=3, patience=10, batch_size=BATCH, seed=3)
    base.update(kw)
    return T.TrainConfig(**base)


class CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.n = 0

    def on_train_batch_end(self, batch, logs=None):
        self.n += 1


class Interrupt(keras.callbacks.Callback):
    """Simulates a killed job: raises after ``after`` training batches."""

    def __init__(self, after):
        super().__init__()
        self.after, self.n = after, 0

    def on_train_batch_end(self, batch, logs=None):
        self.n += 1
        if self.n >= self.after:
            raise KeyboardInterrupt("simulated interruption")


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


# ---------------------------------------------------------------------------
# schedule, crop, batches
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("step,expected", [(0, 0.1), (999, 0.1), (1000, 0.095), (2999, 0.1 * 0.95 ** 2)])
def test_staircase_learning_rate(step, expected):
    assert T.TrainConfig().learning_rate_at(step) == pytest.approx(expected)


def test_optimizer_follows_the_staircase(tmp_path, data):
    # 5 batches per epoch, decay every 3 steps: after epoch 1 step 5 -> 1 decay,
    # after epoch 2 step 10 -> 3 decays.
    tr, va = batches(data)
    r = T.train(tr, va, tmp_path, config(max_epochs=2, decay_steps=3), progress=False)
    np.testing.assert_allclose(r.history["learning_rate"], [0.1 * 0.95, 0.1 * 0.95 ** 3], rtol=1e-6)
    lr = r.model.optimizer.learning_rate
    assert float(keras.ops.convert_to_numpy(lr)) == pytest.approx(0.1 * 0.95 ** 3, rel=1e-6)


@pytest.mark.parametrize("valid,frames,window", [(646, 646, (0, 646)), (646, 64, (291, 355)), (24, 16, (4, 20)),
                                                 (25, 16, (4, 20)), (259, 32, (113, 145)), (22, 646, (0, 22))])
def test_crop_window_is_centred_in_the_valid_frames_or_whole_when_shorter(valid, frames, window):
    assert T.crop_window(valid, frames) == window
    assert T.crop_offset(valid, frames) == window[0]


def test_crop_of_a_clip_without_audio_is_refused():
    with pytest.raises(T.AudioError, match="too_short") as e:
        T.crop_window(0, 16)
    assert e.value.reason == "too_short"


def test_crop_longer_than_features_is_an_error():
    with pytest.raises(ValueError, match="cannot crop 64 frames from features of 32"):
        T.FeatureBatches(np.zeros((3, 32, 96), np.float32), np.arange(3), None, 2, 64)
    with pytest.raises(ValueError, match="cannot crop 64 frames from features of 32"):
        T.check_features(np.zeros((3, 32, 96), np.float32), np.arange(3), 64)


def test_batches_hold_the_crop_of_the_right_rows():
    # Each value encodes (row, frame, mel): any mix-up shows.
    n, stored = 11, 20
    r, t, m = np.meshgrid(np.arange(n), np.arange(stored), np.arange(96), indexing="ij")
    feats = (r * 10000 + t * 100 + m).astype(np.float32)
    rows = np.array([9, 2, 5, 0, 7])
    targets = M.pack_targets(np.eye(5, 15, dtype=bool))
    ds = T.FeatureBatches(feats, rows, targets, batch_size=2, frames=8)
    assert len(ds) == 3
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.shape == (5, 8, 96, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], feats[rows, 6:14])
    np.testing.assert_array_equal(y, targets)


def test_shuffle_is_a_seeded_permutation_per_epoch():
    feats = np.arange(13, dtype=np.float32)[:, None, None] * np.ones((13, 16, 96), np.float32)
    ds = T.FeatureBatches(feats, np.arange(13), M.pack_targets(np.zeros((13, 15))), 4, 16, shuffle_seed=1)

    def epoch_rows(epoch):
        ds.epoch = epoch
        return np.concatenate([ds[i][0][:, 0, 0, 0] for i in range(len(ds))]).astype(int)

    e0, e1 = epoch_rows(0), epoch_rows(1)
    assert sorted(e0) == list(range(13)) and sorted(e1) == list(range(13))
    assert not np.array_equal(e0, e1)
    np.testing.assert_array_equal(epoch_rows(0), e0)
    plain = T.FeatureBatches(feats, np.arange(13), None, 4, 16)
    np.testing.assert_array_equal(np.concatenate([plain[i][0][:, 0, 0, 0] for i in range(4)]), np.arange(13))


def test_nan_features_are_named_before_and_during_training():
    feats = np.ones((6, 20, 96), np.float32)
    feats[4, 10, 3] = np.nan
    ids = ["a", "b", "c", "d", "e"]
    rows = np.array([0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"track 'e' \(store row 4\) contain NaN or infinite values \(non_finite\)"):
        T.check_features(feats, rows, 16, ids=ids, chunk=2)
    feats2 = feats.copy()
    feats2[4, 10, 3] = 1
    feats2[4, 0, 0] = np.inf  # outside the centred 16-frame crop 2..17
    T.check_features(feats2, rows, 16)
    ds = T.FeatureBatches(feats, rows, None, 2, 16, ids=ids)
    with pytest.raises(ValueError, match="track 'e'"):
        ds[2]


def test_check_features_shape_and_rows():
    with pytest.raises(ValueError, match=r"shape \(n, frames, 96\)"):
        T.check_features(np.zeros((3, 20, 40)), np.arange(3), 16)
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 3\)"):
        T.check_features(np.zeros((3, 20, 96)), np.array([0, 3]), 16)


def test_feature_batches_reject_wrong_targets():
    with pytest.raises(ValueError, match=r"targets must have shape \(3, 45\)"):
        T.FeatureBatches(np.zeros((3, 20, 96)), np.arange(3), np.zeros((3, 15)), 2, 16)


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------

def test_training_writes_log_state_and_is_reproducible(tmp_path, data):
    tr, va = batches(data)
    a = T.train(tr, va, tmp_path / "a", config(), progress=False)
    b = T.train(*batches(data), tmp_path / "b", config(), progress=False)
    assert list(a.history["epoch"]) == [1, 2, 3] and a.stop_reason == "max_epochs"
    pd.testing.assert_frame_equal(a.history.drop(columns="seconds"), b.history.drop(columns="seconds"))
    log = T.load_history(tmp_path / "a")
    np.testing.assert_allclose(log["val_loss"], a.history["val_loss"], rtol=1e-6)
    state = json.loads((tmp_path / "a" / T.STATE_FILE).read_text())
    assert state["epochs_done"] == 3 and state["best_epoch"] == a.best_epoch
    assert a.best_epoch == int(a.history["val_loss"].idxmin()) + 1
    assert (tmp_path / "a" / T.BEST_WEIGHTS).exists()
    # The returned model is the best epoch's: its validation loss is the logged minimum.
    assert a.model.evaluate(va, verbose=0) == pytest.approx(a.history["val_loss"].min(), rel=1e-5)


def test_early_stopping_restores_the_best_weights(tmp_path, data):
    # Zero validation weights make the validation loss 0 at every epoch, so
    # epoch 1 stays the best and patience 2 stops after epoch 3.
    tr, va = batches(data, val_neg_weight=0.0)
    va.targets[:, 15:] = 0.0
    r = T.train(tr, va, tmp_path / "es", config(max_epochs=20, patience=2), progress=False)
    assert r.stop_reason == "early_stopping" and r.best_epoch == 1
    assert list(r.history["epoch"]) == [1, 2, 3]
    one = T.train(*batches(data), tmp_path / "one", config(max_epochs=1), progress=False)
    for w_best, w_one in zip(weights_of(r.model), weights_of(one.model)):
        np.testing.assert_allclose(w_best, w_one, rtol=1e-5, atol=1e-6)
    last = np.load(tmp_path / "es" / "checkpoint-0003.npz", allow_pickle=False)
    dense_kernel = r.model.get_layer("dense").get_weights()[0]
    assert not any(a.shape == dense_kernel.shape and np.allclose(a, dense_kernel) for a in last.values())


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, data):
    steps = N_TRAIN // BATCH  # 5 batches per epoch
    ref = T.train(*batches(data), tmp_path / "ref", config(), progress=False)

    work = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        T.train(*batches(data), work, config(), callbacks=[Interrupt(after=steps + 2)], progress=False)
    state = json.loads((work / T.STATE_FILE).read_text())
    assert state["epochs_done"] == 1 and len(T.load_history(work)) == 1

    counter = CountBatches()
    resumed = T.train(*batches(data), work, config(), callbacks=[counter], progress=False)
    assert counter.n == 2 * steps  # epochs 2 and 3 only
    assert list(resumed.history["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(resumed.history.drop(columns="seconds"),
                                  ref.history.drop(columns="seconds"), rtol=1e-5)
    for w_r, w_ref in zip(weights_of(resumed.model), weights_of(ref.model)):
        np.testing.assert_allclose(w_r, w_ref, rtol=1e-4, atol=1e-6)
    assert sorted(p.name for p in work.glob("checkpoint-*.npz")) == ["checkpoint-0003.npz"]


def test_finished_run_is_loaded_not_retrained(tmp_path, data):
    first = T.train(*batches(data), tmp_path, config(max_epochs=2), progress=False)
    counter = CountBatches()
    again = T.train(*batches(data), tmp_path, config(max_epochs=2), callbacks=[counter], progress=False)
    assert counter.n == 0
    for a, b in zip(weights_of(first.model), weights_of(again.model)):
        np.testing.assert_array_equal(a, b)


def test_other_config_in_same_workdir_is_refused(tmp_path, data):
    T.train(*batches(data), tmp_path, config(max_epochs=1), progress=False)
    with pytest.raises(ValueError, match="holds a run with config"):
        T.train(*batches(data), tmp_path, config(max_epochs=1, seed=4), progress=False)


def test_train_checks_data_against_config(tmp_path, data):
    tr, va = batches(data)
    with pytest.raises(ValueError, match="crops 16 frames but config.frames is 20"):
        T.train(tr, va, tmp_path, config(frames=20), progress=False)
    with pytest.raises(ValueError, match="val_data must be a FeatureBatches with targets"):
        T.train(tr, T.FeatureBatches(data[0], np.arange(4), None, BATCH, FRAMES), tmp_path, config(),
                progress=False)


def test_predict_order_and_shape(tmp_path, data):
    r = T.train(*batches(data), tmp_path, config(max_epochs=1), progress=False)
    feats = data[0]
    rows = np.array([5, 1, 3])
    p = T.predict(r.model, T.FeatureBatches(feats, rows, None, 2, FRAMES))
    single = np.concatenate([T.predict(r.model, T.FeatureBatches(feats, rows[i:i + 1], None, 2, FRAMES))
                             for i in range(3)])
    assert p.shape == (3, 15) and ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(p, single, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# training losses (chapter 07's extra rows)
# ---------------------------------------------------------------------------

def test_default_loss_keeps_the_old_config_dict():
    # Runs cached before the ``loss`` field existed are keyed by this dict.
    old_fields = {"frames", "max_epochs", "patience", "batch_size", "learning_rate", "decay_steps",
                  "decay_rate", "architecture", "seed"}
    assert set(config().as_dict()) == old_fields
    assert config(loss="weighted_bce").as_dict() == config().as_dict()
    d = config(loss="asl").as_dict()
    assert d["loss"] == "asl" and {k: v for k, v in d.items() if k != "loss"} == config().as_dict()


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown training loss 'focal'"):
        config(loss="focal")
    with pytest.raises(ValueError, match="unknown training loss"):
        T.loss_function("focal")


@pytest.mark.parametrize("loss", ["asl", "em"])
def test_training_uses_the_configured_loss(tmp_path, data, loss):
    from ctxpaper import losses

    tr, va = batches(data)
    r = T.train(tr, va, tmp_path / loss, config(max_epochs=1, loss=loss), progress=False)
    # The logged validation loss is the configured loss of the model's
    # predictions, recomputed with the numpy reference.
    p = T.predict(r.model, T.FeatureBatches(data[0], va.rows, None, BATCH, FRAMES))
    expected = losses.numpy_reference(loss, data[1][N_TRAIN:], p).mean()
    assert r.history["val_loss"].iloc[0] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    bce = T.train(*batches(data), tmp_path / "bce", config(max_epochs=1), progress=False)
    assert r.history["val_loss"].iloc[0] != pytest.approx(bce.history["val_loss"].iloc[0], rel=1e-3)
    # A finished run with a non-default loss is loaded with the same loss.
    again = T.load_trained(tmp_path / loss, config(max_epochs=1, loss=loss))
    assert again.model.loss is T.loss_function(loss)
    with pytest.raises(ValueError, match="holds a run with config"):
        T.load_trained(tmp_path / loss, config(max_epochs=1))
