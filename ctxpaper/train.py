"""Training the §4.1 CNN: Adadelta, early stopping, checkpoints (paper §4.1).

The paper's recipe: Adadelta with a learning rate of 0.1 decayed exponentially
every 1,000 iterations (the released code: × 0.95, staircase), mini-batches of
32, training stopped after 10 epochs without improvement of the validation
loss and the weights of the best epoch restored. With the weighted loss of
eq. 2 the validation loss is weighted the same way as the training loss.

What this module adds for a reader on a small machine:

* batches are read from the on-disk feature store (:mod:`ctxpaper.features`)
  by a :class:`FeatureBatches` ``keras.utils.PyDataset``, row by row, so the
  full profile never holds the dataset in memory;
* every crop the model reads comes from frames that hold audio
  (:func:`crop_window`, the one rule shared by training, prediction and the
  tagger): centred within the clip's valid frames, and a clip shorter than
  the crop is looped (its valid frames repeated to fill it) rather than padded
  with silence or dropped — a 20 s preview keeps its place in the paper's
  646-frame setting and the model never learns from padding. A clip with no
  valid frames (``too_short``) or whose crop is silent (``silent``) is refused
  by :func:`check_features` before training (:func:`crop_problems` lists them);
* after every epoch a checkpoint (model and optimizer variables, early-stopping
  state, the curves so far) is committed atomically to a working directory; a
  run that is interrupted restarts from the last finished epoch when
  :func:`train` is called again with the same directory. The unit of resumption
  is the epoch: the batches of an interrupted epoch are recomputed;
* the curves go to ``log.csv`` (one row per epoch), a tqdm bar shows progress;
* everything random comes from the seed (initial weights, dropout masks, the
  per-epoch shuffle), and the dropout generators' state is part of the
  checkpoint, so an interrupted and resumed run follows the uninterrupted one.

Notebook: ``05_cnn_baseline`` (and 06, 07 through :mod:`ctxpaper.experiment`).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import losses
from . import model as _model  # sets KERAS_BACKEND before keras is imported
from .audio import SILENCE_LOGMEL, AudioError
from .features import DTYPE as STORE_DTYPE
from .features import DONE, DamagedRowError, FeatureStore
from .fsio import atomic_open, read_json, write_json

import keras  # noqa: E402  (after ctxpaper.model chose the backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402  (keras' backend: float16 -> float32 conversion)

__all__ = [
    "LOSSES", "DEFAULT_LOSS", "loss_function",
    "TrainConfig", "TrainResult", "FeatureBatches", "check_features", "crop_problems", "crop_offset",
    "crop_window", "crop_patch",
    "train", "load_trained", "predict", "load_history", "STATE_FILE", "LOG_FILE", "BEST_WEIGHTS",
]

STATE_FILE = "state.json"
LOG_FILE = "log.csv"
BEST_WEIGHTS = "best.weights.h5"
_CHECKPOINT = "checkpoint-{epoch:04d}.npz"
_BEST_NPZ = "best-{epoch:04d}.npz"
_HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "learning_rate", "seconds")

#: Training losses by name. All read packed (batch, 45) targets
#: (:func:`ctxpaper.model.pack_targets`); ``weighted_bce`` is eq. 2 (the paper's
#: loss, its weights chosen by the loss), the others are the
#: missing-label losses of :mod:`ctxpaper.losses` (chapter 07), which read the labels only.
LOSSES = ("weighted_bce", "asl", "em")
DEFAULT_LOSS = "weighted_bce"


def loss_function(name: str):
    """The Keras loss function of a :data:`LOSSES` name."""
    table = {"weighted_bce": _model.weighted_bce, "asl": losses.asymmetric_loss,
             "em": losses.entropy_max_loss}
    if name not in table:
        raise ValueError(f"unknown training loss {name!r}: choose one of {', '.join(LOSSES)}")
    return table[name]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults: the paper's).

    Attributes
    ----------
    frames : int
        Input frames (646 = the paper's 30 s).
    max_epochs : int
        Upper bound on epochs (the paper stops by patience only).
    patience : int
        Epochs without a lower validation loss before stopping (paper: 10).
    batch_size : int
        Mini-batch size (released code: 32).
    learning_rate, decay_steps, decay_rate : float, int, float
        Adadelta's rate ``learning_rate * decay_rate ** floor(step / decay_steps)``.
    architecture : str
        :func:`ctxpaper.model.build_model` architecture (:data:`ctxpaper.model.ARCHITECTURES`).
    seed : int
        Initial weights, dropout masks and shuffling.
    loss : str
        One of :data:`LOSSES` (default: eq. 2, ``weighted_bce``).
    """

    frames: int = _model.FULL_FRAMES
    max_epochs: int = 200
    patience: int = 10
    batch_size: int = 32
    learning_rate: float = 0.1
    decay_steps: int = 1000
    decay_rate: float = 0.95
    architecture: str = "paper"
    seed: int = 0
    loss: str = DEFAULT_LOSS

    def __post_init__(self) -> None:
        for name in ("max_epochs", "patience", "batch_size", "decay_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {v!r}")
        if not (self.learning_rate > 0 and 0 < self.decay_rate <= 1):
            raise ValueError("TrainConfig needs learning_rate > 0 and 0 < decay_rate <= 1, got "
                             f"{self.learning_rate!r}, {self.decay_rate!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be a non-negative integer, got {self.seed!r}")
        _model._check_frames(self.frames)
        if self.architecture not in _model.ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown training loss {self.loss!r}: choose one of {', '.join(LOSSES)}")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (cache keys, state file).

        ``loss`` appears only when it is not the default, so the runs trained
        before the field existed keep their cache keys and state files.
        """
        d = dataclasses.asdict(self)
        if d["loss"] == DEFAULT_LOSS:
            del d["loss"]
        return d

    def learning_rate_at(self, step: int) -> float:
        """The staircase learning rate after ``step`` optimizer updates."""
        return self.learning_rate * self.decay_rate ** (step // self.decay_steps)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : keras.Model
        Compiled, holding the weights of the best epoch.
    history : pandas.DataFrame
        One row per finished epoch: ``epoch`` (1-based), ``loss``, ``val_loss``,
        ``learning_rate`` (at the epoch's end), ``seconds``.
    best_epoch : int
        1-based epoch with the lowest validation loss.
    stop_reason : str
        ``"early_stopping"`` or ``"max_epochs"``.
    workdir : pathlib.Path
    """

    model: keras.Model
    history: pd.DataFrame
    best_epoch: int
    stop_reason: str
    workdir: Path


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

def _id(x: Any) -> Any:
    """A track id as a plain Python value, for messages (not ``np.int64(5)``)."""
    return x.item() if isinstance(x, np.generic) else x


def crop_window(valid_frames: int, frames: int) -> tuple[int, int]:
    """Stored frames ``[start, stop)`` that a crop of ``frames`` reads.

    The paper's patch is 30 s taken after the first 30 s of a track (the whole
    Deezer preview). Shorter inputs keep the middle of the frames that hold
    audio (``[0, valid_frames)``), which avoids the preview's fade-in and
    fade-out and never reads padding. A clip with fewer valid frames than the
    crop gives all of them, ``[0, valid_frames)``, and the crop loops them.

    Raises
    ------
    AudioError
        ``too_short`` when ``valid_frames < 1`` (nothing to read).
    """
    valid, frames = int(valid_frames), int(frames)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if valid < 1:
        raise AudioError("too_short", "the clip has no frame that holds audio")
    if valid <= frames:
        return 0, valid
    start = (valid - frames) // 2
    return start, start + frames


def crop_offset(valid_frames: int, frames: int) -> int:
    """First stored frame of the crop (:func:`crop_window`); 0 for a looped clip."""
    return crop_window(valid_frames, frames)[0]


def _loop(x: np.ndarray, n: int) -> None:
    """Tile ``x[:n]`` (frames along axis 0) over the rest of ``x``, in place."""
    while n < x.shape[0]:
        k = min(n, x.shape[0] - n)
        x[n:n + k] = x[:k]
        n += k


class _Crops:
    """The crops of store rows, read into float32 batches: the one reader behind
    :class:`FeatureBatches`, :func:`crop_problems` and :func:`crop_patch`.

    ``features`` is a :class:`~ctxpaper.features.FeatureStore` (rows read with
    ``pread`` and checked against their checksums; valid frames from the
    store) or an array (n, stored_frames, n_mels) of any float dtype, whose
    valid frames are ``valid_frames`` (default: every stored frame).
    """

    def __init__(self, features: np.ndarray | FeatureStore, frames: int,
                 valid_frames: np.ndarray | None = None) -> None:
        self.store = features if isinstance(features, FeatureStore) else None
        shape = tuple(features.shape)
        if len(shape) != 3:
            raise ValueError(f"features must be 3-d (n, frames, mels), got shape {shape}")
        self.features, self.frames, self.n_mels = features, int(frames), int(shape[2])
        if self.frames > shape[1]:
            raise ValueError(f"cannot crop {self.frames} frames from features of {shape[1]} frames")
        if self.store is not None:
            if valid_frames is not None:
                raise ValueError("a FeatureStore knows its valid frames: do not pass valid_frames")
            valid = self.store.valid_frames
        elif valid_frames is None:
            valid = np.full(shape[0], shape[1], np.int64)
        else:
            valid = np.asarray(valid_frames)
            if valid.shape != (shape[0],) or not np.issubdtype(valid.dtype, np.integer):
                raise ValueError(f"valid_frames must be {shape[0]} integers (one per stored row), "
                                 f"got dtype {valid.dtype} shape {valid.shape}")
            if valid.size and (valid.min() < 0 or valid.max() > shape[1]):
                raise ValueError(f"valid_frames must lie in [0, {shape[1]}], got {valid.min()}..{valid.max()}")
        self.valid = valid.astype(np.int64)

    def read(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out[i]`` (float32, (frames, n_mels)) with the crop of row ``rows[i]``.

        Rows are read in sorted order (sequential on disk) into a buffer of
        the stored dtype, converted to float32 in one call.
        """
        order = np.argsort(rows, kind="stable").tolist()
        dtype = STORE_DTYPE if self.store is not None else self.features.dtype
        buf = out if dtype == np.float32 else np.empty(out.shape, dtype)
        for i in order:
            r = int(rows[i])
            a, b = crop_window(self.valid[r], self.frames)
            if self.store is not None:
                self.store.read_frames(r, a, b, buf[i, :b - a])
            else:
                buf[i, :b - a] = self.features[r, a:b]
            _loop(buf[i], b - a)
        if buf is not out:
            _to_float32(buf, out)


#: torch runs a copy of fewer elements than its grain size (32,768) in the calling
#: thread; larger ones go to its intra-op pool, whose two threads stall for ~8 ms
#: per batch when another process holds a core (measured: 0.8 ms chunked).
_CONVERT_CHUNK = 32_768


def _to_float32(src: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = src`` as float32, both C-contiguous.

    torch converts float16 ~10x faster than numpy (vectorised), which is what
    lets a batch of 32 x 646 x 96 cost under a millisecond.
    """
    if src.dtype != np.float16:
        np.copyto(out, src, casting="unsafe")
        return
    s, d = torch.from_numpy(src).view(-1), torch.from_numpy(out).view(-1)
    for i in range(0, s.numel(), _CONVERT_CHUNK):
        d[i:i + _CONVERT_CHUNK].copy_(s[i:i + _CONVERT_CHUNK])


def crop_patch(patch: np.ndarray, frames: int, valid_frames: int | None = None) -> np.ndarray:
    """The crop of ``frames`` (float32, (frames, n_mels)) the model reads from one log-mel patch.

    Parameters
    ----------
    patch : array (stored_frames, n_mels)
        A :func:`ctxpaper.audio.logmel` patch.
    frames : int
        The model's input length.
    valid_frames : int, optional
        Leading frames of ``patch`` that hold audio (default: all).

    Raises
    ------
    AudioError
        ``too_short`` (no valid frame) or ``silent`` (the crop's mean absolute
        log-mel value is below :data:`ctxpaper.audio.SILENCE_LOGMEL`).
    """
    patch = np.asarray(patch)
    if patch.ndim != 2:
        raise ValueError(f"expected a (frames, n_mels) log-mel patch, got shape {patch.shape}")
    valid = None if valid_frames is None else np.array([valid_frames], np.int64)
    out = np.empty((1, int(frames), patch.shape[1]), np.float32)
    _Crops(patch[None], frames, valid).read(np.zeros(1, np.int64), out)
    level = float(np.abs(out).mean())  # log-mel is >= 0; abs keeps arbitrary test arrays honest
    if level < SILENCE_LOGMEL:
        raise AudioError("silent", f"the {frames} frames the model reads are silent "
                                   f"(mean log-mel value {level:.2e} < {SILENCE_LOGMEL:g})")
    return out[0]


def crop_problems(features: np.ndarray | FeatureStore, rows: np.ndarray, frames: int,
                  valid_frames: np.ndarray | None = None, chunk: int = 256) -> np.ndarray:
    """Why each row's crop cannot be used for training or scoring ('' when it can).

    Parameters
    ----------
    features : FeatureStore or array (n_store, stored_frames, n_mels)
    rows : int array
        Store rows that will be read.
    frames : int
        Crop length (:func:`crop_window`).
    valid_frames : int array (n_store,), optional
        For an array: leading frames of each stored row that hold audio.
    chunk : int
        Rows read at a time.

    Returns
    -------
    np.ndarray of str, aligned with ``rows``
        ``too_short`` (no valid frame), ``silent`` (the crop is silent),
        ``non_finite`` (NaN or infinity in the crop), ``damaged`` (a store
        row that fails its checksum), or ``''``.
    """
    crops = _Crops(features, frames, valid_frames)
    rows = np.asarray(rows)
    reasons = np.full(rows.size, "", dtype=object)
    order = np.argsort(rows, kind="stable")  # sequential reads
    for start in range(0, rows.size, chunk):
        sel = order[start:start + chunk]
        block = np.zeros((sel.size, crops.frames, crops.n_mels), np.float32)
        for j, k in enumerate(sel.tolist()):
            try:
                crops.read(rows[k:k + 1], block[j:j + 1])
            except AudioError as e:
                reasons[k] = e.reason
            except DamagedRowError:
                reasons[k] = "damaged"
        finite = np.isfinite(block).reshape(sel.size, -1).all(axis=1)
        silent = np.abs(block).mean(axis=(1, 2)) < SILENCE_LOGMEL
        fresh = reasons[sel] == ""
        reasons[sel[fresh & ~finite]] = "non_finite"
        reasons[sel[fresh & finite & silent]] = "silent"
    return reasons.astype(str)


def check_features(features: np.ndarray | FeatureStore, rows: np.ndarray, frames: int,
                   n_mels: int = _model.N_MELS, ids: Sequence[Any] | None = None,
                   chunk: int = 256, valid_frames: np.ndarray | None = None) -> None:
    """Check, before training, that the crops to be read are usable (:func:`crop_problems`).

    Parameters
    ----------
    features : FeatureStore or array (n_store, stored_frames, n_mels)
        The feature store (rows are read in chunks of ``chunk`` rows; a store's
        rows are checked against their checksums on the way).
    rows : int array
        Store rows that will be read.
    frames : int
        Crop length; the crop :func:`crop_window` chooses is what is checked.
    ids : sequence, optional
        Track ids aligned with ``rows``, for the error message.
    valid_frames : int array, optional
        For an array: leading frames of each stored row that hold audio.

    Raises
    ------
    ValueError
        Wrong shape, rows out of range, or a crop that is too short, silent,
        damaged or holds a NaN / infinite value (naming the first bad track
        and the reason; drop such tracks with :func:`crop_problems`).
    """
    shape = tuple(features.shape)
    if len(shape) != 3 or shape[2] != n_mels:
        raise ValueError(f"features must have shape (n, frames, {n_mels}), got {shape}")
    rows = np.asarray(rows)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"rows must be a 1-d integer array, got dtype {rows.dtype} shape {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= shape[0]):
        raise ValueError(f"rows must lie in [0, {shape[0]}), got {rows.min()}..{rows.max()}")
    reasons = crop_problems(features, rows, frames, valid_frames, chunk)
    bad = np.flatnonzero(reasons != "")
    if bad.size:
        k = int(bad[0])
        who = f"track {_id(ids[k])!r} (store row {rows[k]})" if ids is not None else f"store row {rows[k]}"
        what = {"non_finite": "contain NaN or infinite values", "silent": "are silent where the model reads",
                "too_short": "hold no audio", "damaged": "fail their checksum (rebuild the store)"}[reasons[k]]
        raise ValueError(f"features of {who} {what} ({reasons[k]}); {bad.size} of {rows.size} rows have a "
                         "problem: drop them with ctxpaper.train.crop_problems")


class FeatureBatches(keras.utils.PyDataset):
    """Mini-batches of crops read from a feature store.

    Parameters
    ----------
    features : FeatureStore or array (n_store, stored_frames, n_mels)
        Typically a :class:`ctxpaper.features.FeatureStore`: rows are read
        with ``pread`` (never mapped or loaded whole: memory stays at a few
        batches whatever the store's size), checked against their checksum
        the first time they are read, and cropped within their valid frames.
        An in-memory or memory-mapped array of any float dtype also works.
    rows : int array (n,)
        Store rows of the samples, in sample order.
    targets : array (n, 45), optional
        :func:`ctxpaper.model.pack_targets` output; ``None`` for prediction
        (batches are then ``x`` only).
    batch_size : int
    frames : int
        Crop length (:func:`crop_window`).
    shuffle_seed : int, optional
        Shuffle the samples every epoch with ``default_rng([seed, epoch])``;
        ``None`` keeps the order (validation, prediction). :func:`train` sets
        :attr:`epoch`, so a resumed run sees the same orders.
    ids : sequence, optional
        Track ids aligned with ``rows``, named in errors.
    valid_frames : int array (n_store,), optional
        For an array: leading frames of each stored row that hold audio
        (default: all; a store knows its own).

    Batches are float32 ``(batch, frames, n_mels, 1)``. Silence is not
    checked per batch (it costs a pass over every value): :func:`check_features`
    does it once before training.
    """

    def __init__(self, features: np.ndarray | FeatureStore, rows: np.ndarray, targets: np.ndarray | None,
                 batch_size: int, frames: int, shuffle_seed: int | None = None,
                 ids: Sequence[Any] | None = None, valid_frames: np.ndarray | None = None) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self._crops = _Crops(features, frames, valid_frames)
        self.features = features
        self.n_mels = self._crops.n_mels
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.rows.size == 0:
            raise ValueError("FeatureBatches needs at least one sample")
        if self.rows.min() < 0 or self.rows.max() >= features.shape[0]:
            raise ValueError(f"rows must lie in [0, {features.shape[0]}), got {self.rows.min()}..{self.rows.max()}")
        if isinstance(features, FeatureStore) and (features.status[self.rows] != DONE).any():
            r = int(self.rows[np.argmax(features.status[self.rows] != DONE)])
            raise ValueError(f"store row {r} (track {int(features.all_ids[r])}) of {features.path} has no features")
        if targets is not None:
            targets = np.asarray(targets, dtype=np.float32)
            if targets.shape != (self.rows.size, 3 * _model.N_CONTEXTS):
                raise ValueError(f"targets must have shape ({self.rows.size}, {3 * _model.N_CONTEXTS}) "
                                 f"(see pack_targets), got {targets.shape}")
        self.targets = targets
        self.batch_size = int(batch_size)
        self.frames = int(frames)
        self.shuffle_seed = shuffle_seed
        self.ids = ids
        self.epoch = 0
        self._perm_epoch: int | None = None
        self._perm: np.ndarray | None = None

    def __len__(self) -> int:
        return -(-self.rows.size // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """Sample order of ``epoch`` (identity without a shuffle seed)."""
        if self.shuffle_seed is None:
            return np.arange(self.rows.size)
        return np.random.default_rng([self.shuffle_seed, epoch]).permutation(self.rows.size)

    def crop_windows(self) -> np.ndarray:
        """``(n, 2)`` stored frames ``[start, stop)`` each sample's crop reads (before looping)."""
        return np.array([crop_window(self._crops.valid[r], self.frames) for r in self.rows.tolist()], np.int64)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range ({len(self)} batches)")
        if self._perm_epoch != self.epoch:
            self._perm, self._perm_epoch = self.order(self.epoch), self.epoch
        idx = self._perm[index * self.batch_size:(index + 1) * self.batch_size]
        x = np.empty((idx.size, self.frames, self.n_mels), dtype=np.float32)
        try:
            self._crops.read(self.rows[idx], x)
        except AudioError as e:
            raise ValueError(f"a sample of batch {index} cannot be cropped ({e}); "
                             "drop it with ctxpaper.train.crop_problems") from None
        if self._crops.store is None and not np.isfinite(x).all():
            # A store's rows were finite when written and pass their checksum.
            k = idx[np.argmin(np.isfinite(x).reshape(idx.size, -1).all(axis=1))]
            who = f"track {_id(self.ids[k])!r}" if self.ids is not None else f"sample {k}"
            raise ValueError(f"features of {who} (store row {self.rows[k]}) contain NaN or infinite values")
        x = x[..., None]
        if self.targets is None:
            return (x,)
        return x, self.targets[idx]


# ----------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------

def _save_variables(path: Path, model: keras.Model, with_optimizer: bool) -> None:
    arrays = {f"m{i:04d}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(model.variables)}
    if with_optimizer:
        for i, v in enumerate(model.optimizer.variables):
            arrays[f"o{i:04d}"] = np.asarray(keras.ops.convert_to_numpy(v))
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _load_variables(path: Path, model: keras.Model, with_optimizer: bool) -> None:
    with np.load(path, allow_pickle=False) as z:
        groups = [("m", model.variables)] + ([("o", model.optimizer.variables)] if with_optimizer else [])
        for prefix, variables in groups:
            keys = sorted(k for k in z.files if k.startswith(prefix))
            if len(keys) != len(variables):
                raise ValueError(f"checkpoint {path} holds {len(keys)} '{prefix}' variables, "
                                 f"the model has {len(variables)}: it was written by another model")
            for k, v in zip(keys, variables):
                a = z[k]
                if tuple(a.shape) != tuple(v.shape):
                    raise ValueError(f"checkpoint {path}: variable {v.path} has shape {tuple(v.shape)}, "
                                     f"checkpoint {a.shape}")
                v.assign(a)


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    cols = list(_HISTORY_COLUMNS)
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for row in history:
            w.writerow({c: row[c] for c in cols})


def load_history(workdir: str | os.PathLike[str]) -> pd.DataFrame:
    """The curves of a (finished or interrupted) run, from its ``log.csv``."""
    path = Path(workdir) / LOG_FILE
    if not path.exists():
        raise FileNotFoundError(f"no training log at {path}")
    return pd.read_csv(path)


def _read_state(workdir: Path) -> dict[str, Any] | None:
    path = workdir / STATE_FILE
    if not path.exists():
        return None
    return read_json(path, "training state")


class _Checkpointer(keras.callbacks.Callback):
    """Early stopping + per-epoch checkpoints whose state survives a restart."""

    def __init__(self, workdir: Path, config: TrainConfig, state: dict[str, Any],
                 train_data: FeatureBatches) -> None:
        super().__init__()
        self.workdir, self.config, self.state, self.train_data = workdir, config, state, train_data
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        import time

        self.train_data.epoch = epoch
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        import time

        logs = logs or {}
        if "val_loss" not in logs:
            raise RuntimeError("training needs validation data: no val_loss after epoch "
                               f"{epoch + 1}")
        st, cfg = self.state, self.config
        val = float(logs["val_loss"])
        if not np.isfinite(val):
            raise FloatingPointError(f"validation loss is {val} after epoch {epoch + 1}")
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        st["history"].append({
            "epoch": epoch + 1, "loss": float(logs["loss"]), "val_loss": val,
            "learning_rate": cfg.learning_rate_at(step),
            "seconds": time.perf_counter() - self._t0,
        })
        old_best = st["best_epoch"]
        if st["best_val_loss"] is None or val < st["best_val_loss"]:
            st["best_val_loss"], st["best_epoch"], st["wait"] = val, epoch + 1, 0
            _save_variables(self.workdir / _BEST_NPZ.format(epoch=epoch + 1), self.model, False)
        else:
            st["wait"] += 1
        st["epochs_done"] = epoch + 1
        if st["wait"] >= cfg.patience:
            st["stop_reason"], self.model.stop_training = "early_stopping", True
        elif epoch + 1 >= cfg.max_epochs:
            st["stop_reason"] = "max_epochs"
        ckpt = self.workdir / _CHECKPOINT.format(epoch=epoch + 1)
        _save_variables(ckpt, self.model, True)
        _write_log(self.workdir / LOG_FILE, st["history"])
        write_json(self.workdir / STATE_FILE, st)  # the commit point of this epoch
        # Older files are garbage only once the state no longer points at them.
        prev = self.workdir / _CHECKPOINT.format(epoch=epoch)
        prev.unlink(missing_ok=True)
        if old_best is not None and old_best != st["best_epoch"]:
            (self.workdir / _BEST_NPZ.format(epoch=old_best)).unlink(missing_ok=True)


class _Progress(keras.callbacks.Callback):
    """One tqdm bar over all the batches of the run."""

    def __init__(self, total: int, initial: int, desc: str) -> None:
        super().__init__()
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="batch", dynamic_ncols=True)

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.bar.update(1)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        self.bar.set_postfix(epoch=epoch + 1, loss=f"{logs.get('loss', float('nan')):.4f}",
                             val_loss=f"{logs.get('val_loss', float('nan')):.4f}")

    def close(self) -> None:
        self.bar.close()


def _build_compiled(config: TrainConfig, n_mels: int) -> keras.Model:
    m = _model.build_model(config.frames, config.architecture, config.seed, n_mels=n_mels)
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate, config.decay_steps, config.decay_rate, staircase=True)
    optimizer = keras.optimizers.Adadelta(learning_rate=schedule)
    if config.loss == DEFAULT_LOSS:
        _model.compile_model(m, optimizer)
    else:
        m.compile(optimizer=optimizer, loss=loss_function(config.loss))
    m.optimizer.build(m.trainable_variables)  # so a checkpoint can be loaded into it
    return m


def train(train_data: FeatureBatches, val_data: FeatureBatches, workdir: str | os.PathLike[str],
          config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = (),
          progress: bool = True) -> TrainResult:
    """Train (or resume, or load) the CNN in ``workdir``.

    Parameters
    ----------
    train_data, val_data : FeatureBatches
        Training batches (give them a ``shuffle_seed``) and validation batches,
        both with targets packed by :func:`ctxpaper.model.pack_targets`.
    workdir : path
        Holds ``state.json``, the last checkpoint, the best weights and
        ``log.csv``. If it holds an unfinished run of the same configuration,
        training resumes after its last finished epoch; if the run finished,
        the best model is loaded and nothing is trained.
    config : TrainConfig
    callbacks : sequence of keras callbacks
        Extra callbacks (tests use one to interrupt a run).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        ``workdir`` holds a run of another configuration, or the data do not
        match the configuration.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        if not isinstance(data, FeatureBatches) or data.targets is None:
            raise ValueError(f"{name} must be a FeatureBatches with targets")
        if data.frames != config.frames:
            raise ValueError(f"{name} crops {data.frames} frames but config.frames is {config.frames}")
    if train_data.batch_size != config.batch_size:
        raise ValueError(f"train_data.batch_size {train_data.batch_size} != config.batch_size "
                         f"{config.batch_size}")
    n_mels = train_data.n_mels

    keras.utils.set_random_seed(config.seed)
    model = _build_compiled(config, n_mels)
    state = _read_state(workdir)
    if state is None:
        state = {"config": config.as_dict(), "epochs_done": 0, "best_val_loss": None,
                 "best_epoch": None, "wait": 0, "stop_reason": None, "history": []}
    else:
        if state["config"] != config.as_dict():
            raise ValueError(f"{workdir} holds a run with config {state['config']}, "
                             f"not {config.as_dict()}: use another directory")
        if state["epochs_done"]:
            _load_variables(workdir / _CHECKPOINT.format(epoch=state["epochs_done"]), model, True)

    if state["stop_reason"] is None:
        steps = len(train_data)
        cbs: list[keras.callbacks.Callback] = [_Checkpointer(workdir, config, state, train_data)]
        bar = None
        if progress:
            bar = _Progress(config.max_epochs * steps, state["epochs_done"] * steps,
                            f"training {config.architecture} seed {config.seed}")
            cbs.append(bar)
        try:
            model.fit(train_data, validation_data=val_data, epochs=config.max_epochs,
                      initial_epoch=state["epochs_done"], shuffle=False, verbose=0,
                      callbacks=cbs + list(callbacks))
        finally:
            if bar is not None:
                bar.close()

    return _finish(workdir, model, state)


def _finish(workdir: Path, model: keras.Model, state: dict[str, Any]) -> TrainResult:
    _load_variables(workdir / _BEST_NPZ.format(epoch=state["best_epoch"]), model, False)
    best_h5 = workdir / BEST_WEIGHTS
    if not best_h5.exists():
        # Keras' own format, for a reader who wants the weights without ctxpaper.
        tmp = workdir / f".tmp-{os.getpid()}.weights.h5"
        model.save_weights(tmp)
        os.replace(tmp, best_h5)
    return TrainResult(model=model, history=pd.DataFrame(state["history"], columns=list(_HISTORY_COLUMNS)),
                       best_epoch=int(state["best_epoch"]), stop_reason=state["stop_reason"],
                       workdir=workdir)


def load_trained(workdir: str | os.PathLike[str], config: TrainConfig, n_mels: int = _model.N_MELS) -> TrainResult:
    """Load a finished run of :func:`train` (best weights), without its data.

    Raises
    ------
    FileNotFoundError
        No finished run of ``config`` in ``workdir``.
    """
    workdir = Path(workdir)
    state = _read_state(workdir)
    if state is None or state.get("stop_reason") is None:
        raise FileNotFoundError(f"no finished training run in {workdir}")
    if state["config"] != config.as_dict():
        raise ValueError(f"{workdir} holds a run with config {state['config']}, not {config.as_dict()}")
    return _finish(workdir, _build_compiled(config, n_mels), state)


def predict(model: keras.Model, data: FeatureBatches) -> np.ndarray:
    """Probabilities (n, 15) for the samples of ``data`` in their order."""
    if data.shuffle_seed is not None:
        raise ValueError("predict needs unshuffled batches (shuffle_seed=None)")
    out = model.predict(data, verbose=0)
    return np.asarray(out, dtype=np.float32)
