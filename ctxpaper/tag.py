"""Tag your own audio with a trained context CNN (paper §4.1, applied to new files).

The paper's auto-tagger maps 30 s of a track to 15 context probabilities. This
module runs a CNN trained by this book on any audio file through exactly the
pipeline it was trained on: :func:`ctxpaper.audio.logmel` (decode, 30 s after
30 s or the whole preview, 646 × 96 log-mel) and then the centred crop of the
model's own input length (:func:`ctxpaper.train.crop_offset`), as training did.

Command line (``ctxpaper-tag`` once the package is installed)::

    python -m ctxpaper.tag FILE_OR_DIR... [--model PATH] [--profile quick] [--seed 0]
                           [--top K] [--csv OUT] [--no-progress]

Directories are searched recursively, following symbolic links to folders
(each folder once, so a link loop ends). ``--csv OUT`` is checked before any
work: it must not be an input, nor a file named or made as audio (``--csv
*.mp3`` expanded by the shell is refused, and ``a.mp3`` is left as it was),
nor a folder, and its folder must exist and be writable. The CSV is written
atomically with the umask's permissions; a file name that is not UTF-8 is
written with ``\\xNN`` escapes (such files are tagged like any other). If the
CSV cannot be written at the end, the results are saved to a file in the
temporary folder, named in the message.

Where the model comes from:

* ``--model PATH``: a **tagger directory** written by :func:`export_model`:
  ``model.weights.h5`` (Keras weights: arrays in HDF5, no code, no pickle) and
  ``tagger.json`` (input frames, mel bands, model variant, context order, the
  feature parameters, the weights' sha256 and the provenance). Loading rebuilds
  the architecture with :func:`ctxpaper.model.build_model` and loads the
  arrays into it, so nothing from the file is ever executed.
* otherwise the baseline (loss ``none``, the paper's text) of ``--profile`` /
  ``--seed`` in the build cache: the one trained on the **released tracks'**
  Deezer previews by ``python -m ctxpaper.reproduce`` when there is one
  (:mod:`ctxpaper.reproduce`), else the one chapter 05 trained on
  **simulated previews**. The command never trains: when the model is absent
  it says how to build it.

The provenance printed before the results says which data the model learned
from (simulated or released, and a rehearsal server's previews as such), with
the profile and seed. A model trained on simulated previews has never heard
real music: treat its probabilities as a demonstration of the pipeline, not as
a judgement of the music.

Exit status:

* 0 -- every file was tagged;
* 1 -- some inputs failed (each named on stderr with its reason, and in the
  CSV); the others were tagged;
* 2 -- nothing was tagged because an argument, the model or the ``--csv``
  destination is wrong (one line on stderr names it), or the CSV could not be
  written at the end (the results went to the fallback file named);
* 130 -- interrupted (Ctrl-C); with ``--csv`` the files tagged so far are
  written, the others marked ``interrupted``.

Notebook: 05_cnn_baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import stat
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, train
from . import model as _model  # sets KERAS_BACKEND before keras is imported
from .model import keras
from .audio import FEATURE_PARAMS, FRAMES, AudioError, logmel_valid
from .contexts import CONTEXTS
from .fsio import (BadFileError, DestinationError, atomic_open, check_output, display_path,
                   make_temp_dir, open_regular, read_json, remove_stale_temp_dirs, sha256_file,
                   write_json)
from .profiles import DEFAULT_PROFILE, PROFILES, validate_params, validate_seed
from .reproduce import released_baseline_dir
from .runs import Run
from .train import STATE_FILE, crop_offset, crop_patch

__all__ = [
    "AUDIO_EXTENSIONS", "META_FILE", "WEIGHTS_FILE", "TaggerError", "ModelNotFoundError",
    "Tagger", "FileResult", "export_model", "load_tagger", "cached_baseline_dir", "cached_baseline",
    "find_audio", "tag_files", "write_csv", "check_csv_destination", "main", "cli",
]

FORMAT = "ctxpaper-tagger"
FORMAT_VERSION = 2  # 2: channels-first CNN (ctxpaper.model.DATA_FORMAT)
META_FILE = "tagger.json"
WEIGHTS_FILE = "model.weights.h5"
#: Loss variant of chapter 05's baseline (Table 1: no weights).
BASELINE_LOSS = "none"
#: Extensions picked up when a directory is given (explicit files are always tried).
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
                              ".aifc", ".au", ".snd", ".w64", ".caf"})
SIMULATED = "simulated previews (ctxpaper.synth), not real music"
RELEASED = "the released tracks' Deezer previews (official split, released labels)"
#: A tagger.json is a few kB; anything far larger is not one.
_MAX_META_BYTES = 1 << 20
# First bytes of the audio formats libsndfile reads (and MP3), to refuse a CSV
# destination that holds a recording whatever its name.
_AUDIO_SIGNATURES = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"ID3", b"FORM", b".snd", b"caff",
                     b"riff", b"wvpk")
#: Exit status of the command line (see the module docstring).
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class TaggerError(Exception):
    """A tagger model that cannot be used (missing, corrupt, incompatible)."""


class ModelNotFoundError(TaggerError, FileNotFoundError):
    """No model at the given path, or no trained baseline in the cache."""


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


# ----------------------------------------------------------------------------
# the model and its provenance
# ----------------------------------------------------------------------------

@dataclass
class Tagger:
    """A loaded model ready to tag audio.

    Attributes
    ----------
    model : keras.Model
        Input ``(frames, n_mels, 1)``, 15 sigmoid outputs in :data:`CONTEXTS` order.
    frames : int
        Input frames: the length of the centred crop of each 646-frame patch.
    model_variant : str
        ``"paper"`` or ``"released_code"`` (:data:`ctxpaper.model.ARCHITECTURES`).
    provenance : dict
        What the model was trained on: ``trained_on``, ``profile``, ``seed``,
        ``loss_variant``, epochs… (whatever :func:`export_model` recorded).
    source : str
        Where it was loaded from (a tagger directory or a cache entry).
    """

    model: Any
    frames: int
    model_variant: str
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def offset(self) -> int:
        """First frame of the crop of a full 30 s clip (:func:`ctxpaper.train.crop_offset`).

        A shorter clip's crop is centred within its own valid frames instead.
        """
        return crop_offset(FRAMES, self.frames)

    def crop(self, patch: np.ndarray, valid_frames: int | None = None) -> np.ndarray:
        """The model's input ``(1, frames, n_mels, 1)`` from a ``logmel`` patch.

        The crop is the one training reads (:func:`ctxpaper.train.crop_patch`):
        centred within the ``valid_frames`` that hold audio (default: all),
        looped when the clip is shorter than the model's input; an
        :class:`~ctxpaper.audio.AudioError` (``too_short``, ``silent``) when
        the model would read nothing or silence.
        """
        patch = np.asarray(patch, dtype=np.float32)
        if patch.ndim != 2 or patch.shape[0] != FRAMES:
            raise ValueError(f"expected a ({FRAMES}, n_mels) log-mel patch, got shape {patch.shape}")
        return crop_patch(patch, self.frames, valid_frames)[None, :, :, None]

    def predict_patch(self, patch: np.ndarray, valid_frames: int | None = None) -> np.ndarray:
        """Context probabilities (15,) of one log-mel patch (see :meth:`crop`)."""
        out = self.model.predict_on_batch(self.crop(patch, valid_frames))
        return np.asarray(out, dtype=np.float32)[0]

    def predict_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        """Context probabilities (15,) of an audio file (raises AudioError, OSError)."""
        return self.predict_patch(*logmel_valid(path))

    def describe(self) -> str:
        """One paragraph of provenance, printed before the results."""
        p = self.provenance
        seconds = self.frames * FEATURE_PARAMS["hop"] / FEATURE_PARAMS["sr"]
        who = [f"profile {p['profile']}" if p.get("profile") else None,
               f"seed {p['seed']}" if p.get("seed") is not None else None,
               f"loss variant {p['loss_variant']!r}" if p.get("loss_variant") else None]
        epochs = ""
        if p.get("epochs") is not None:
            epochs = f"; {p['epochs']} epoch(s), best epoch {p.get('best_epoch')} restored"
        text = (f"Model: the §4.1 CNN ({self.model_variant} variant), trained on "
                f"{p.get('trained_on', 'an unknown source')}"
                + (f" — {', '.join(w for w in who if w)}" if any(who) else "") + epochs + ".\n"
                f"Input: {self.frames} frames ({seconds:.1f} s) from the middle of the audio in each "
                "file's 30 s log-mel excerpt (a shorter file is looped to fill them; padding is never "
                f"read).\nLoaded from: {self.source}")
        if "simulated" in str(p.get("trained_on", "")):
            text += ("\nThe contexts it learned are those of the book's simulated world: read the "
                     "probabilities as a demonstration of the pipeline, not as a verdict on the music.")
        return text


def _model_variant_of(keras_model: Any) -> str:
    name = str(getattr(keras_model, "name", ""))
    for v in _model.ARCHITECTURES:
        if name == f"choi_cnn_{v}":
            return v
    raise ValueError(f"cannot tell the variant of model {name!r}: export_model needs a model built by "
                     "ctxpaper.model.build_model (named choi_cnn_<variant>)")


def _run_provenance(run: Any, profile: str | None, seed: int | None) -> dict[str, Any]:
    """Provenance of a :class:`ctxpaper.runs.TrainedRun` (from its cache entry)."""
    prov: dict[str, Any] = {"loss_variant": run.loss, "best_epoch": int(run.best_epoch),
                            "epochs": int(len(run.history)), "stop_reason": run.stop_reason,
                            "cache_entry": str(run.directory)}
    params_file = Path(run.directory) / "params.json"
    params = read_json(params_file, "cache entry parameters") if params_file.exists() else {}
    train_cfg = params.get("params", {}).get("train", {}) if isinstance(params, dict) else {}
    if "seed" in train_cfg:
        prov["train_seed"] = int(train_cfg["seed"])
    known = (getattr(run, "profile", None), getattr(run, "seed", None))
    if None not in known:
        if (profile, seed) != (None, None) and validate_params(profile, seed) != validate_params(*known):
            raise ValueError(f"run {run.directory} was trained on profile {known[0]!r}, seed {known[1]}, "
                             f"not profile {profile!r}, seed {seed}")
        profile, seed = known
    if profile is None or seed is None:
        raise ValueError(f"cannot tell the profile and seed of run {run.directory}: "
                         "pass export_model(run, path, profile=..., seed=...)")
    prov["profile"], prov["seed"] = str(profile), int(seed)
    return prov


def export_model(run: Any, path: str | os.PathLike[str], *, profile: str | None = None,
                 seed: int | None = None, trained_on: str | None = None,
                 overwrite: bool = False) -> Path:
    """Write a trained model as a self-contained tagger directory.

    Parameters
    ----------
    run : ctxpaper.runs.TrainedRun or keras.Model
        A trained run (its cache entry gives the provenance) or a model built
        by :func:`ctxpaper.model.build_model`.
    path : path-like
        Directory to create, holding ``model.weights.h5`` and ``tagger.json``.
    profile, seed : optional
        Profile and data seed of the run. For a ``TrainedRun`` they are found
        from its cache entry when omitted (and checked against it when given).
    trained_on : str, optional
        What the model was trained on, shown to every user of the export;
        default: the run's source (:data:`SIMULATED`, or the released tracks'
        previews with the run's provenance).
    overwrite : bool
        Replace an existing tagger directory at ``path``.

    Returns
    -------
    pathlib.Path
        ``path``. The directory is built beside it and renamed into place, so
        an interrupted export leaves no half-written model.

    Notebook: 05_cnn_baseline.
    """
    path = Path(path)
    keras_model = run if isinstance(run, keras.Model) else run.model
    if isinstance(run, keras.Model):
        prov: dict[str, Any] = {}
        if profile is not None:
            prov["profile"] = validate_params(profile, 0)[0].name
        if seed is not None:
            prov["seed"] = validate_seed(seed)
    else:
        prov = _run_provenance(run, profile, seed)
    if trained_on is None:
        source = getattr(getattr(run, "run", None), "source", "simulated")
        trained_on = SIMULATED if source == "simulated" else \
            f"the released tracks' Deezer previews ({run.run.provenance()})"
    prov["trained_on"] = str(trained_on)
    variant = _model_variant_of(keras_model)
    _, frames, n_mels, channels = keras_model.input_shape
    if channels != 1 or tuple(keras_model.output_shape) != (None, len(CONTEXTS)):
        raise ValueError(f"not a ctxpaper context CNN: input {keras_model.input_shape}, "
                         f"output {keras_model.output_shape}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")

    path.parent.mkdir(parents=True, exist_ok=True)
    for name in (path.name, f"{path.name}.old"):  # leftovers of killed exports
        remove_stale_temp_dirs(path.parent, name)
    tmp = make_temp_dir(path.parent, path.name)
    try:
        keras_model.save_weights(tmp / WEIGHTS_FILE)

        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "frames": int(frames),
                "n_mels": int(n_mels), "model_variant": variant, "contexts": list(CONTEXTS),
                "feature_params": FEATURE_PARAMS, "weights_file": WEIGHTS_FILE,
                "weights_sha256": sha256_file(tmp / WEIGHTS_FILE), "provenance": prov,
                "ctxpaper_version": __version__, "keras_version": keras.__version__}
        write_json(tmp / META_FILE, meta)
        # Prove the export reproduces the model before it replaces anything.
        probe = np.random.default_rng(0).normal(size=(2, frames, n_mels, 1)).astype(np.float32)
        again = load_tagger(tmp).model.predict_on_batch(probe)
        if not np.allclose(again, keras_model.predict_on_batch(probe), rtol=1e-5, atol=1e-6):
            raise TaggerError(f"exported model does not reproduce {keras_model.name}'s outputs")
        if path.exists():
            old = make_temp_dir(path.parent, f"{path.name}.old")
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_tagger(path: str | os.PathLike[str]) -> Tagger:
    """Load a tagger directory written by :func:`export_model` (or its ``tagger.json``).

    Raises
    ------
    ModelNotFoundError
        Nothing at ``path``, or no ``tagger.json`` in it.
    TaggerError
        Corrupt or incompatible: unknown format, other contexts or feature
        parameters, weights whose sha256 does not match, wrong shapes.
    """
    path = Path(path)
    if path.is_file() and path.name == META_FILE:
        path = path.parent
    if not path.exists():
        raise ModelNotFoundError(f"no model at {path}")
    meta_file = path / META_FILE
    if not path.is_dir() or not meta_file.exists():
        raise ModelNotFoundError(f"{path} is not a tagger directory (no {META_FILE}); write one with "
                                 "ctxpaper.tag.export_model(run, path)")
    try:
        meta = read_json(meta_file, "tagger metadata", max_bytes=_MAX_META_BYTES)
    except (BadFileError, OSError) as e:
        raise TaggerError(str(e)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TaggerError(f"{meta_file} is not a {FORMAT} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise TaggerError(f"{meta_file} has format version {meta.get('format_version')!r}; "
                          f"this ctxpaper reads version {FORMAT_VERSION}")
    if meta.get("contexts") != list(CONTEXTS):
        raise TaggerError(f"{meta_file}: the model's outputs are {meta.get('contexts')}, "
                          f"not this ctxpaper's contexts {list(CONTEXTS)}")
    if meta.get("feature_params") != _jsonable(FEATURE_PARAMS):
        raise TaggerError(f"{meta_file}: the model was trained on other log-mel parameters "
                          f"({meta.get('feature_params')}) than ctxpaper.audio computes")
    frames, n_mels, variant = meta.get("frames"), meta.get("n_mels"), meta.get("model_variant")
    if variant not in _model.ARCHITECTURES:
        raise TaggerError(f"{meta_file}: unknown model variant {variant!r}")
    if not isinstance(frames, int) or not 16 <= frames <= FRAMES or n_mels != FEATURE_PARAMS["n_mels"]:
        raise TaggerError(f"{meta_file}: input of {frames} frames x {n_mels} mel bands does not fit "
                          f"the {FRAMES} x {FEATURE_PARAMS['n_mels']} log-mel patches")
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise TaggerError(f"{path}: {WEIGHTS_FILE} is missing")
    try:
        digest = sha256_file(weights)
    except (BadFileError, OSError) as e:
        raise TaggerError(f"{weights} cannot be read: {e}") from None
    if digest != meta.get("weights_sha256"):
        raise TaggerError(f"{weights}: sha256 does not match {META_FILE} (corrupt or replaced file)")
    m = _model.build_model(frames, variant, n_mels=n_mels)
    try:
        m.load_weights(weights)
    except Exception as e:  # h5py and keras raise many types for a damaged file; all mean "unusable"
        raise TaggerError(f"{weights} cannot be loaded into a {frames}-frame {variant} CNN "
                          f"({type(e).__name__}: {e})") from None
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
    return Tagger(model=m, frames=frames, model_variant=variant, provenance=prov, source=str(path))


def cached_baseline_dir(profile: str, seed: int) -> tuple[Path, str]:
    """Cache entry of chapter 05's baseline of (profile, seed) and its data source.

    The released-data baseline that ``python -m ctxpaper.reproduce`` trained
    (:func:`ctxpaper.reproduce.released_baseline_dir`) when there is one,
    else the simulated run's (:meth:`ctxpaper.runs.Run.run_dir`). Computed,
    never created.

    Returns
    -------
    (Path, str)
        The folder and ``"released"`` or ``"simulated"``.
    """

    found = released_baseline_dir(profile, seed)
    if found is not None:
        return found[0], "released"
    return Run.of(profile, seed, "simulated").run_dir(BASELINE_LOSS), "simulated"


def _book_command(profile: str, seed: int) -> str:
    args = ([] if profile == DEFAULT_PROFILE else [f"--profile {profile}"]) + ([] if seed == 0 else
                                                                                 [f"--seed {seed}"])
    return " ".join(["python -m ctxpaper.book", *args, "05"])


def _reproduce_command(profile: str, seed: int) -> str:
    return " ".join(["python -m ctxpaper.reproduce", f"--profile {profile}",
                     *([] if seed == 0 else [f"--seed {seed}"])])


def _check_run_files(run: Path) -> None:
    """Refuse a training folder whose files could hang or fool its loader.

    Every file must be a regular file (not a FIFO or a link to a device), and
    the state must be sound JSON (size and depth capped): it is read again by
    :func:`ctxpaper.train.load_trained`, whose plain ``json.load`` trusts it.
    Raises :class:`~ctxpaper.fsio.BadFileError` naming the file.
    """

    for f in sorted(run.iterdir()):
        if f.is_dir():
            continue
        with open_regular(f, "cached training file"):
            pass
    read_json(run / STATE_FILE, "cached training state", max_bytes=_MAX_META_BYTES * 64)


def cached_baseline(profile: str = DEFAULT_PROFILE, seed: int = 0) -> Tagger:
    """Chapter 05's trained baseline of (profile, seed), loaded from the build cache.

    The released-data baseline (trained by ``python -m ctxpaper.reproduce``)
    when one exists, else the simulated run's; the provenance says which.
    Never trains. Raises :class:`ModelNotFoundError` naming the commands that
    build it when neither is in the cache.
    """

    P, seed = validate_params(profile, seed)
    d, source = cached_baseline_dir(P.name, seed)
    config = Run.of(P, seed, source).train_config(BASELINE_LOSS, seed)
    rebuild = _book_command(P.name, seed) if source == "simulated" else _reproduce_command(P.name, seed)
    try:
        if not (d / "scores.parquet").exists():
            raise FileNotFoundError(d)
        _check_run_files(d / "run")
        result = train.load_trained(d / "run", config)
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"no trained baseline for profile {P.name!r}, seed {seed} in the cache ({d.parent}).\n"
            f"Train it by running chapter 05: `{rebuild}` (simulated previews), or on the released "
            f"tracks with `{_reproduce_command(P.name, seed)}` "
            "(or pass --model PATH to a model written by ctxpaper.tag.export_model).") from None
    except BadFileError as e:
        raise TaggerError(f"the cached baseline is damaged: {e}.\nDelete {d} and rebuild it with "
                          f"`{rebuild}`.") from None
    except (ValueError, OSError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        # A damaged checkpoint (truncated or garbage .npz / .h5) raises any of these.
        raise TaggerError(f"the cached baseline in {d / 'run'} cannot be loaded ({type(e).__name__}: "
                          f"{e}).\nDelete {d} and rebuild it with `{rebuild}`.") from None
    if source == "released":
        rec = released_baseline_dir(P.name, seed)[1]
        trained_on = RELEASED + (f" (rehearsal previews from {rec.get('previews_from')})"
                                 if rec.get("rehearsal") else "")
    else:
        trained_on = SIMULATED
    prov = {"trained_on": trained_on, "data_source": source, "profile": P.name, "seed": seed,
            "loss_variant": BASELINE_LOSS, "train_seed": seed, "epochs": int(len(result.history)),
            "best_epoch": result.best_epoch, "stop_reason": result.stop_reason, "cache_entry": str(d)}
    return Tagger(model=result.model, frames=config.frames, model_variant=config.architecture,
                  provenance=prov, source=f"build cache ({source} run), {d}")


# ----------------------------------------------------------------------------
# inputs, tagging, output
# ----------------------------------------------------------------------------

@dataclass
class FileResult:
    """The outcome for one file: probabilities (15,) or an error."""

    path: Path
    probabilities: np.ndarray | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.probabilities is not None


def _os_failure(path: Path) -> FileResult | None:
    """Why the operating system will not let ``path`` be read as a file, or None if it will."""
    try:
        with open_regular(path, "input"):
            return None
    except FileNotFoundError:
        if path.is_symlink():
            return FileResult(path, reason="missing", message=(
                f"broken symbolic link to {display_path(os.readlink(path))}"))
        return FileResult(path, reason="missing", message="no such file or directory")
    except BadFileError as e:
        return FileResult(path, reason="unreadable", message=str(e).removeprefix(f"input {display_path(path)} "))
    except OSError as e:
        return FileResult(path, reason="unreadable", message=e.strerror or str(e))


def _walk_audio(top: Path) -> tuple[list[Path], list[FileResult]]:
    """Audio files under ``top``, following links to folders, each folder once."""
    found: list[Path] = []
    errors: list[FileResult] = []
    seen: set[tuple[int, int]] = set()

    def unreadable(e: OSError) -> None:
        where = Path(e.filename) if e.filename else top
        errors.append(FileResult(where, reason="unreadable", message=f"cannot list directory: {e.strerror or e}"))

    for root, dirs, names in os.walk(top, onerror=unreadable, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:  # a link loop, or a folder reached twice
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            f = Path(root) / name
            if name.startswith(".") or f.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISREG(f.stat().st_mode):
                    found.append(f)
                    continue
            errors.append(_os_failure(f) or FileResult(f, reason="unreadable", message="not a regular file"))
    return sorted(found), errors


def find_audio(inputs: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[FileResult]]:
    """Expand files and directories into the files to tag.

    Directories are searched recursively for :data:`AUDIO_EXTENSIONS` (hidden
    files and folders skipped, sorted), following symbolic links to folders
    with loop protection; files given explicitly are always tried. Returns the
    files (duplicates removed, order kept) and the inputs that failed, each
    with the operating system's reason: ``missing`` (no such path, a broken
    link), ``unreadable`` (permission denied, a FIFO or device, a folder that
    cannot be listed, a link to audio that is not a regular file) or
    ``no_audio`` (a directory holding none).
    """
    files: list[Path] = []
    errors: list[FileResult] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found, failed = _walk_audio(p)
            if not found and not failed:
                errors.append(FileResult(p, reason="no_audio", message=(
                    f"directory {display_path(p)} holds no audio files "
                    f"({', '.join(sorted(AUDIO_EXTENSIONS))})")))
            files.extend(found)
            errors.extend(failed)
        elif (failure := _os_failure(p)) is not None:
            errors.append(failure)
        else:
            files.append(p)
    return list(dict.fromkeys(files)), errors


def _error_text(e: BaseException, path: Path) -> str:
    msg = str(e)
    reason = getattr(e, "reason", None)
    if reason and msg.startswith(f"{reason}: "):
        msg = msg[len(reason) + 2:]
    return msg.removeprefix(f"{path}: ")


@contextlib.contextmanager
def _decodable_name(path: Path) -> Iterator[Path]:
    """``path``, or a link to it with a UTF-8 name when its own name is not UTF-8.

    libsndfile is given file names as UTF-8 text: a name holding other bytes
    cannot reach it, so such a file is read through a link in a private folder.
    """
    try:
        os.fspath(path).encode("utf-8")
        yield path
        return
    except UnicodeEncodeError:
        pass
    with tempfile.TemporaryDirectory(prefix="ctxpaper-tag-") as d:
        suffix = path.suffix if path.suffix.isascii() and path.suffix.isprintable() else ""
        alias = Path(d) / f"input{suffix}"
        alias.symlink_to(path.absolute())
        yield alias


def _read_failure(e: Exception, path: Path, read_as: Path) -> FileResult:
    """The result of ``path`` (read as ``read_as``) that could not be read, with the real reason.

    libsndfile reports an operating-system failure as "System error" or a file
    that "does not exist": the reason shown is the operating system's own.
    """
    failure = _os_failure(path)
    if failure is not None:
        return failure
    if isinstance(e, AudioError):
        return FileResult(path, reason=e.reason, message=_error_text(e, read_as))
    return FileResult(path, reason="unreadable", message=getattr(e, "strerror", None) or str(e))


def tag_files(tagger: Tagger, files: Sequence[str | os.PathLike[str]],
              progress: bool = True) -> Iterator[FileResult]:
    """Tag files one by one; a file that fails gives a result with its reason.

    Yields
    ------
    FileResult
        In the order of ``files``; ``reason`` is an :class:`~ctxpaper.audio.AudioError`
        code (``unreadable``, ``empty``, ``too_short``, ``silent``…) or
        ``missing`` / ``unreadable`` for operating-system errors (with the
        operating system's reason, whatever libsndfile said).
    """
    from tqdm import tqdm

    with tqdm(files, desc="tagging", unit="file", disable=not progress or len(files) < 2,
              file=sys.stderr, dynamic_ncols=True) as bar:
        for f in bar:
            path = readable = Path(f)
            try:
                with _decodable_name(path) as readable:
                    result = FileResult(path, probabilities=tagger.predict_file(readable))
            except AudioError as e:
                result = (_read_failure(e, path, readable) if e.reason == "unreadable" else
                          FileResult(path, reason=e.reason, message=_error_text(e, readable)))
            except OSError as e:  # missing, permission denied, a directory, an I/O error
                result = _read_failure(e, path, readable)
            yield result


def format_result(result: FileResult, top: int) -> str:
    """The printed block of one file: its path, then the top contexts, sorted."""
    if not result.ok:
        return f"{display_path(result.path)}\n  failed ({result.reason}): {result.message}"
    order = np.argsort(-result.probabilities, kind="stable")[:top]
    width = max(len(CONTEXTS[i]) for i in order)
    lines = [f"  {CONTEXTS[i]:<{width}}  {result.probabilities[i]:.3f}" for i in order]
    return "\n".join([display_path(result.path), *lines])


def write_csv(results: Sequence[FileResult], dest: str | os.PathLike[str]) -> Path:
    """Write every result atomically: ``file, error, <15 contexts>`` (all contexts).

    A failed file has its ``reason: message`` in ``error`` and empty
    probabilities. The CSV is UTF-8: bytes of a file name that are not UTF-8
    are written as ``\\xNN`` (:func:`ctxpaper.fsio.display_path`).
    """
    dest = Path(dest)
    with atomic_open(dest, "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "error", *CONTEXTS])
        for r in results:
            if r.ok:
                w.writerow([display_path(r.path), "", *(f"{p:.6f}" for p in r.probabilities)])
            else:
                w.writerow([display_path(r.path), f"{r.reason}: {r.message}", *([""] * len(CONTEXTS))])
    return dest


def _looks_like_audio(path: Path) -> bool:
    """Whether an existing file starts like a recording (RIFF/WAV, FLAC, Ogg, MP3, AIFF…)."""
    try:
        with open_regular(path) as fh:
            head = fh.read(4)
    except (OSError, BadFileError):
        return False
    # An MP3 without an ID3 tag starts with an MPEG frame sync: 11 set bits.
    return head.startswith(_AUDIO_SIGNATURES) or (len(head) >= 2 and head[0] == 0xFF and head[1] >= 0xE0)


def check_csv_destination(dest: str, inputs: Iterable[str | os.PathLike[str]]) -> Path:
    """Check ``--csv DEST`` before any work (:func:`ctxpaper.fsio.check_output`).

    Besides the general checks, an existing file whose first bytes are those of
    a recording is refused whatever its name. Returns the file to write.
    """
    real = check_output(dest, inputs, refuse_suffixes=AUDIO_EXTENSIONS, what="--csv")
    if _looks_like_audio(real):
        raise DestinationError(f"--csv {display_path(dest)} holds audio; refusing to write over it")
    return real


def _save_csv(results: Sequence[FileResult], dest: Path, shown: str) -> int:
    """Write the CSV; if that fails, save it in the temporary folder. Returns the exit status."""
    try:
        write_csv(results, dest)
    except OSError as e:
        fd, fallback = tempfile.mkstemp(prefix="ctxpaper-tag-", suffix=".csv")
        os.close(fd)
        try:
            write_csv(results, fallback)
        except OSError as e2:
            os.unlink(fallback)
            print(f"error: cannot write --csv {shown} ({e.strerror or e}) nor a copy in "
                  f"{tempfile.gettempdir()} ({e2.strerror or e2}); the results are only above",
                  file=sys.stderr)
        else:
            print(f"error: cannot write --csv {shown} ({e.strerror or e}); the results were saved "
                  f"to {fallback} instead", file=sys.stderr)
        return EXIT_USAGE
    print(f"\nwrote {shown}")
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage is for ``--help``."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = minimum - 1
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text!r}")
        return v
    return parse


def _path_text(text: str) -> str:
    """An argparse type: a non-empty path (``Path("")`` would mean the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    return text


_positive_int = _int_at_least(1, "positive")
_seed = _int_at_least(0, "non-negative")


def main(argv: Sequence[str] | None = None, prog: str = "python -m ctxpaper.tag") -> int:
    """Command line: tag files; see the module docstring. Returns the exit status."""

    parser = _Parser(
        prog=prog,
        description="Print the context probabilities a trained CNN gives audio files "
                    "(same log-mel pipeline and crop as training).",
        epilog="Exit status: 0 all files tagged, 1 some files failed, 2 bad argument, model or "
               "--csv destination (nothing tagged), 130 interrupted.")
    parser.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", type=_path_text,
                        help="audio files, or directories searched recursively for audio")
    parser.add_argument("--model", type=_path_text, help="tagger directory written by "
                        "ctxpaper.tag.export_model (default: chapter 05's cached baseline of --profile/--seed)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=list(PROFILES),
                        help="profile of the cached baseline (default: %(default)s)")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the cached baseline (default: 0)")
    parser.add_argument("--top", type=_positive_int, default=5,
                        help="contexts printed per file, most probable first "
                             f"(default: 5; max {len(CONTEXTS)})")
    parser.add_argument("--csv", type=_path_text, metavar="OUT",
                        help="also write all 15 probabilities per file (checked before any work)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    # File names are bytes: never let one that is not UTF-8 end the run at a print.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")

    files: list[Path] = []
    bad_inputs: list[FileResult] = []
    results: list[FileResult] = []
    csv_dest: Path | None = None
    try:
        files, bad_inputs = find_audio(args.inputs)
        if args.csv:
            model_files = ([args.model, *(Path(args.model) / n for n in (META_FILE, WEIGHTS_FILE))]
                           if args.model else [])
            csv_dest = check_csv_destination(args.csv, [*args.inputs, *files, *model_files])
        tagger = load_tagger(args.model) if args.model else cached_baseline(args.profile, args.seed)
        print(tagger.describe())
        print()
        for r in bad_inputs:
            print(f"error: {display_path(r.path)}: {r.reason}: {r.message}", file=sys.stderr)
        from tqdm import tqdm

        for r in tag_files(tagger, files, progress=not args.no_progress):
            results.append(r)
            if r.ok:
                tqdm.write(format_result(r, min(args.top, len(CONTEXTS))), file=sys.stdout)
            else:
                tqdm.write(f"error: {display_path(r.path)}: {r.reason}: {r.message}", file=sys.stderr)
    except (TaggerError, DestinationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\ninterrupted: {sum(r.ok for r in results)} of {len(files)} file(s) tagged", file=sys.stderr)
        if results and args.csv:
            rest = [FileResult(Path(f), reason="interrupted", message="not tagged: the run was interrupted")
                    for f in files[len(results):]]
            _save_csv(results + rest + bad_inputs, csv_dest, display_path(args.csv))
        return EXIT_INTERRUPTED
    status = _save_csv(results + bad_inputs, csv_dest, display_path(args.csv)) if args.csv else EXIT_OK
    n_failed = len(bad_inputs) + sum(not r.ok for r in results)
    if n_failed:
        print(f"{sum(r.ok for r in results)} file(s) tagged, {n_failed} failed", file=sys.stderr)
    return status or (EXIT_SOME_FAILED if n_failed else EXIT_OK)


def cli() -> None:
    """Console entry point ``ctxpaper-tag``: exit with :func:`main`'s status."""
    sys.exit(main(sys.argv[1:], prog=os.path.basename(sys.argv[0]) or "ctxpaper-tag"))


if __name__ == "__main__":
    sys.exit(main())
