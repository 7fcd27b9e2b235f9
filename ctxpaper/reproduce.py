"""One command to reproduce the paper's experiment on the released tracks (§3.2, §4.1–4.4).

``python -m ctxpaper.reproduce`` (``make reproduce``) runs the released-data
path of :class:`ctxpaper.runs.Run` end to end on a profile (default ``full``,
the paper's setting):

1. **plan** — tracks per subset (the official split, drawn down to the
   profile's ``n_tracks``), previews already on disk and still to fetch, disk
   needed (previews ≈ :data:`PREVIEW_BYTES` each, the float16 feature store
   :func:`ctxpaper.features.store_bytes`) and the time of each stage from rates
   measured on this machine (:func:`measure_rates`): the fetch from the
   client's rate limit, the extraction from a few synthetic 30 s MP3s decoded
   and featurised through the real path, the training from a short warm-up of
   the CNN on the device :func:`ctxpaper.device.training_device` finds.
   ``--no-measure`` uses the documented nominal rates (:data:`NOMINAL`) and
   says so; ``--dry-run`` prints the plan and stops;
2. **fetch** the selected previews (:meth:`Run.fetch_previews`), **extract**
   their features (:meth:`Run.features`), **train** Table 2's five losses
   (:meth:`Run.grid` on :data:`ctxpaper.losses.TABLE2_LOSSES`), then **build
   the book** with ``data_source="released"`` (:func:`ctxpaper.book.run`)
   unless ``--skip-book``. Every stage is the run layer's cached, resumable
   one: after a kill or Ctrl-C the same command continues where it stopped;
3. **summary** — Table 2's macro averages of the run beside the paper's
   (:func:`ctxpaper.paper.table2`), printed and written as CSV with a
   provenance header (:func:`write_summary`) into the run's results folder; a
   pointer to the trained ``none`` model (:func:`released_baseline_dir`) lets
   ``python -m ctxpaper.tag`` use the released-data baseline.

Exit status: 0 done (or the plan of ``--dry-run``); 2 bad arguments, a
previews folder in use, a device that cannot be used, or the run declined at
the prompt; 3 the Deezer API (or the rehearsal server of
``$CTXPAPER_DEEZER_URL``) cannot be reached — nothing half-written; 130
interrupted (rerun to continue).

Notebooks: none imports it; its last stage executes the chapters (04–07 on
the released tracks) with ``data_source="released"`` through :mod:`ctxpaper.book`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import book, data, deezer, device, features, losses, paper
from .audio import FRAMES, N_MELS
from .cache import cache_root
from .fsio import atomic_open, read_json, write_json
from .metrics import METRICS
from .profiles import PROFILES, Profile
from .rehearsal import PREVIEW_SECONDS, PREVIEW_SR, write_mp3
from .runs import Run
from .splits import SUBSETS as _SUBSETS

__all__ = ["PREVIEW_BYTES", "NOMINAL", "Rates", "Plan", "make_plan", "measure_rates", "format_plan",
           "table2_summary", "write_summary", "summary_path", "baseline_pointer_path",
           "write_baseline_pointer", "released_baseline_dir", "main"]

#: Bytes of one 30 s Deezer preview (128 kbit/s MP3), the issue's ≈ 0.48 MB.
PREVIEW_BYTES = 480_000
#: Rates used by ``--no-measure`` (and stated as nominal in the plan):
#: ``extract_per_process`` clips/s of one process (the extraction benchmark's
#: target is 55 clips/s on 2 cores), ``cpu_flops_per_core`` and ``gpu_flops``
#: the sustained training FLOP/s divided by :func:`ctxpaper.model.training_flops`.
NOMINAL = {"extract_per_process": 27.5, "cpu_flops_per_core": 25e9, "gpu_flops": 100e12}
#: A validation sample is a forward pass only: about a third of a training sample.
VALIDATION_COST = 1 / 3
EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 2, 3, 130
_WARMUP_BATCHES = 3
_EXTRACT_CLIPS = 8


@dataclass(frozen=True)
class Rates:
    """Throughput of each stage and where each number comes from.

    Attributes
    ----------
    fetch : float
        Tracks per second (one API call each; the preview downloads are not
        rate-limited).
    extract : float
        Clips per second over all extraction workers.
    train : float
        Training samples per second of the CNN at the profile's frames.
    how : dict
        ``fetch`` / ``extract`` / ``train`` → a phrase: measured how, or nominal.
    """

    fetch: float
    extract: float
    train: float
    how: dict[str, str]


@dataclass(frozen=True)
class Plan:
    """What a reproduction will do and cost (:func:`make_plan`)."""

    profile: Profile
    seed: int
    sizes: dict[str, int]
    official: dict[str, int]
    on_disk: int
    to_fetch: int
    preview_bytes: int
    feature_bytes: int
    rates: Rates
    seconds: dict[str, float]
    n_models: int
    device: str

    @property
    def n_tracks(self) -> int:
        """Selected tracks in all subsets."""
        return sum(self.sizes.values())


def make_plan(profile: Profile, seed: int, sizes: dict[str, int], official: dict[str, int], on_disk: int,
              rates: Rates, device_line: str = "") -> Plan:
    """The plan's arithmetic: disk and time per stage from track counts and rates.

    Parameters
    ----------
    profile : Profile
        ``max_epochs`` (an upper bound: early stopping may end sooner),
        ``n_seeds`` (models per loss), ``frames`` (in ``rates.train``).
    seed : int
    sizes : dict
        Selected tracks per subset (train, validation, test).
    official : dict
        The official split's sizes, shown beside.
    on_disk : int
        Selected tracks whose preview fetch already ended (ok, no data, no
        preview): not fetched again.
    rates : Rates
    device_line : str
        :func:`ctxpaper.device.describe` of the training device.

    Returns
    -------
    Plan
        ``seconds``: ``fetch`` = to fetch / ``rates.fetch``; ``extract`` =
        selected / ``rates.extract``; ``train`` = models × epochs × (train +
        validation × :data:`VALIDATION_COST`) / ``rates.train``, models = 5
        losses × ``n_seeds``. ``preview_bytes`` is the previews still to
        download; ``feature_bytes`` the store of every selected track.
    """
    n = sum(sizes.values())
    if not 0 <= on_disk <= n:
        raise ValueError(f"on_disk must be in 0..{n} (the selected tracks), got {on_disk}")
    for name in ("fetch", "extract", "train"):
        if not getattr(rates, name) > 0:
            raise ValueError(f"rate {name} must be > 0, got {getattr(rates, name)}")
    to_fetch = n - on_disk
    n_models = len(losses.TABLE2_LOSSES) * profile.n_seeds
    per_epoch = sizes.get("train", 0) + sizes.get("validation", 0) * VALIDATION_COST
    seconds = {"fetch": to_fetch / rates.fetch, "extract": n / rates.extract,
               "train": n_models * profile.max_epochs * per_epoch / rates.train}
    return Plan(profile=profile, seed=seed, sizes=dict(sizes), official=dict(official), on_disk=on_disk,
                to_fetch=to_fetch, preview_bytes=to_fetch * PREVIEW_BYTES,
                feature_bytes=features.store_bytes(n), rates=rates, seconds=seconds, n_models=n_models,
                device=device_line)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 48 * 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s / 86400:.1f} days"


def _size(n_bytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{int(n_bytes)} B"


def format_plan(plan: Plan, skip_book: bool = False) -> str:
    """The plan as printed before any work."""
    P = plan.profile
    r = plan.rates
    rows = [f"Plan: reproduce Table 2 on the released tracks (profile {P.name}, seed {plan.seed})", "",
            f"  {'subset':<11} {'selected':>9} {'official':>9}"]
    rows += [f"  {s:<11} {plan.sizes.get(s, 0):>9,} {plan.official.get(s, 0):>9,}" for s in _SUBSETS]
    rows += [f"  {'total':<11} {plan.n_tracks:>9,} {sum(plan.official.values()):>9,}", "",
             f"Previews: {plan.on_disk:,} already fetched, {plan.to_fetch:,} to fetch",
             f"Disk: previews {_size(plan.preview_bytes)} to download (≈ {PREVIEW_BYTES / 1e6:.2f} MB each), "
             f"features {_size(plan.feature_bytes)} (float16, {FRAMES} × {N_MELS} "
             f"per track); {_size(plan.preview_bytes + plan.feature_bytes)} in all",
             f"Device: {plan.device}" if plan.device else "", "",
             "Time per stage:",
             f"  1. fetch    {_duration(plan.seconds['fetch']):>14}   {r.fetch:.1f} tracks/s ({r.how['fetch']})",
             f"  2. extract  {_duration(plan.seconds['extract']):>14}   {r.extract:.1f} clips/s ({r.how['extract']})",
             f"  3. train    {'at most ' + _duration(plan.seconds['train']):>14}   {r.train:.1f} samples/s "
             f"({r.how['train']}); {plan.n_models} models (5 losses × {P.n_seeds} seed"
             f"{'s' if P.n_seeds != 1 else ''}) × at most {P.max_epochs} epoch{'s' if P.max_epochs != 1 else ''}"
             f" of {plan.sizes.get('train', 0):,} tracks (+ validation)",
             f"  4. book     {'skipped (--skip-book)' if skip_book else 'chapters with data_source=released'}",
             f"  total {'at most ' + _duration(sum(plan.seconds.values())):>22}"]
    return "\n".join(x for x in rows if x is not None)


# --------------------------------------------------------------------------
# Measured rates


def _synthetic_mp3(dest: Path, seed: int = 0) -> Path:
    """A 30 s, 44.1 kHz stereo MP3 at Deezer's bitrate: tones over noise."""

    rng = np.random.default_rng(seed)
    t = np.arange(int(PREVIEW_SECONDS * PREVIEW_SR)) / PREVIEW_SR
    tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 2000, 6)) / 6
    y = 0.3 * tones[:, None] + 0.05 * rng.standard_normal((t.size, 2))
    write_mp3(dest, y.astype(np.float32), PREVIEW_SR)
    return dest


def _extract_rate(previews: list[Path], workers: int) -> tuple[float, str]:
    """Clips/s of the real decode + log-mel path on up to 8 files, times the parallel workers."""
    with tempfile.TemporaryDirectory(prefix="ctxpaper-reproduce-") as d:
        files = previews[:_EXTRACT_CLIPS]
        what = f"{len(files)} fetched previews"
        if not files:
            files = [_synthetic_mp3(Path(d) / "clip.mp3")] * _EXTRACT_CLIPS
            what = f"{_EXTRACT_CLIPS} synthetic 30 s MP3s"
        features.features_from_source(files[0])  # warm-up: imports, mel basis
        t0 = time.perf_counter()
        for f in files:
            features.features_from_source(f)
        per_process = len(files) / (time.perf_counter() - t0)
    parallel = max(1, min(workers, os.cpu_count() or 1))
    return per_process * parallel, f"measured: {what} decoded in one process, × {parallel} workers"


def _train_rate(profile: Profile, info: device.DeviceInfo) -> tuple[float, str]:
    """Samples/s of a few training batches of the CNN at the profile's frames on the chosen device."""
    from . import model as _model  # deferred: imports Keras (on the device configured)

    m = _model.compile_model(_model.build_model(profile.frames, "paper", seed=0))
    rng = np.random.default_rng(0)
    shape = (profile.batch_size, *m.input_shape[1:])
    x = rng.standard_normal(shape).astype(np.float32)
    y = _model.pack_targets(rng.random((profile.batch_size, _model.N_CONTEXTS)) < 0.3)
    m.train_on_batch(x, y)  # warm-up: graph, allocations
    t0 = time.perf_counter()
    for _ in range(_WARMUP_BATCHES):
        m.train_on_batch(x, y)
    rate = _WARMUP_BATCHES * profile.batch_size / (time.perf_counter() - t0)
    return rate, f"measured: {_WARMUP_BATCHES} batches of {profile.batch_size} × {profile.frames} frames on {info.name}"


def measure_rates(profile: Profile, info: device.DeviceInfo, workers: int, previews: list[Path],
                  measure: bool = True, client: deezer.DeezerClient | None = None) -> Rates:
    """The three stages' rates on this machine.

    Parameters
    ----------
    profile : Profile
    info : DeviceInfo
        The training device (:func:`ctxpaper.device.configure`).
    workers : int
        Extraction processes.
    previews : list of Path
        Previews already fetched (up to 8 are timed); empty: a synthetic MP3.
    measure : bool
        False: the nominal rates of :data:`NOMINAL`, said so.
    client : DeezerClient, optional
        Whose rate limit bounds the fetch (default: a client for the default URL).

    Returns
    -------
    Rates
    """
    client = client if client is not None else deezer.DeezerClient(deezer.default_base_url())
    lim = client.limiter
    fetch = lim.max_calls / lim.period
    how = {"fetch": f"the client's limit, {lim.max_calls} API calls per {lim.period:g} s"}
    from .model import training_flops  # deferred: imports Keras, after device.configure chose the device

    parallel = max(1, min(workers, os.cpu_count() or 1))
    if measure:
        extract, how["extract"] = _extract_rate(previews, workers)
        train, how["train"] = _train_rate(profile, info)
    else:
        extract = NOMINAL["extract_per_process"] * parallel
        how["extract"] = f"nominal: {NOMINAL['extract_per_process']:g} clips/s per process × {parallel}"
        flops = NOMINAL["gpu_flops"] if info.is_cuda else NOMINAL["cpu_flops_per_core"] * info.cpu_cores
        train = flops / training_flops(profile.frames)
        how["train"] = (f"nominal: {flops / 1e9:,.0f} GFLOP/s on {info.name} / "
                        f"{training_flops(profile.frames) / 1e9:.2f} GFLOP per sample")
    return Rates(fetch=fetch, extract=extract, train=train, how=how)


def _fetched(run: Run, ids: np.ndarray) -> tuple[int, list[Path]]:
    """Selected ids whose fetch already ended, and the files of those that are ok."""
    out = run.previews_dir()
    if not (out / deezer.MANIFEST).exists():
        return 0, []
    m = deezer.read_manifest(out)
    m = m[m["id"].isin(ids)]
    ok = m[m["status"] == "ok"]
    files = [Path(p) for p in ok["path"] if p and Path(p).exists()]
    done = int(m["status"].isin(list(deezer.FINAL_STATUSES)).sum()) - (len(ok) - len(files))
    return done, files


def plan_run(run: Run, workers: int, measure: bool = True) -> Plan:
    """The plan of a released run on this machine (reads the selection and the manifest; no network)."""
    sel = run.selection()
    sizes = {s: int(v) for s, v in sel.sizes().items()}
    official = {s: int(v) for s, v in
                data.load_split()["subset"].astype(str).value_counts().reindex(list(_SUBSETS), fill_value=0).items()}
    on_disk, files = _fetched(run, sel.split.index.to_numpy(np.int64))
    info = device.configure()
    rates = measure_rates(run.profile, info, workers, files, measure=measure,
                          client=deezer.DeezerClient(run.deezer_url))
    return make_plan(run.profile, run.seed, sizes, official, on_disk, rates, device.describe(info))


# --------------------------------------------------------------------------
# Summary and the pointer to the trained baseline


def table2_summary(grid: pd.DataFrame) -> pd.DataFrame:
    """Table 2 of a run (:meth:`Run.grid`, observed labels, mean over training seeds) beside the paper's.

    Returns
    -------
    DataFrame
        Rows the paper's Table 2 names; columns ``(metric, source)`` as
        :func:`ctxpaper.paper.side_by_side`, sources ``"ours"`` and ``"paper"``.
    """
    g = grid[grid["against"] == "observed"]
    missing = [loss for loss in losses.TABLE2_LOSSES if loss not in set(g["loss"])]
    if missing:
        raise ValueError(f"the grid has no rows for losses {missing}")
    ours = g.groupby("loss")[list(METRICS)].mean().reindex(list(losses.TABLE2_LOSSES))
    ours.index = pd.Index([losses.LABELS[k] for k in ours.index], name="loss")
    return paper.side_by_side(ours, paper.table2(), "ours", "paper")


def summary_path(run: Run) -> Path:
    """Where :func:`write_summary` writes a run's Table 2 CSV (the run's results folder)."""
    return run.results_dir() / "table2_summary.csv"


def write_summary(run: Run, table: pd.DataFrame) -> Path:
    """Write Table 2 beside the paper's as CSV, atomically, under a ``#`` provenance header.

    :meth:`ctxpaper.runs.Run.export_table` with the training seeds and what
    the numbers are; read it with ``pd.read_csv(path, comment="#", header=[0, 1], index_col=0)``.
    """
    return run.export_table(table, "table2_summary", {
        "table": "Table 2, macro averages on the test subset (observed labels), mean over training seeds",
        "train_seeds": " ".join(map(str, run.train_seeds()))})


def baseline_pointer_path(profile: str, seed: int) -> Path:
    """The pointer file naming the released run's trained ``none`` model of (profile, seed)."""
    return cache_root() / "reproduce" / f"baseline_released_{profile}_seed{seed}.json"


def write_baseline_pointer(run: Run, directory: Path) -> Path:
    """Record where the released run's baseline (loss ``none``, training seed = seed) was trained."""
    path = baseline_pointer_path(run.profile.name, run.seed)
    write_json(path, {"source": run.source, "profile": run.profile.name, "seed": run.seed,
                      "loss": "none", "directory": str(directory), "previews_from": run.deezer_url,
                      "rehearsal": run.rehearsal})
    return path


def released_baseline_dir(profile: str, seed: int) -> tuple[Path, dict[str, Any]] | None:
    """The released run's trained baseline of (profile, seed) and its pointer record, or None.

    None when no reproduction wrote a pointer, or the folder it names no
    longer holds a finished model (``scores.parquet``).
    """
    path = baseline_pointer_path(profile, seed)
    if not path.exists():
        return None
    rec = read_json(path, "released baseline pointer")
    if not isinstance(rec, dict) or rec.get("source") != "released" or "directory" not in rec:
        return None
    d = Path(rec["directory"])
    return (d, rec) if (d / "scores.parquet").exists() else None


# --------------------------------------------------------------------------
# The command


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# The command lines share their argument types (deezer.py's fetch has the same flags).
_positive, _seed = deezer._POSITIVE_INT, deezer._NONNEG_INT


def _parser() -> _Parser:
    p = _Parser(prog="python -m ctxpaper.reproduce", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="full", choices=list(PROFILES),
                   help="sizes of the run (default: full, the paper's setting)")
    p.add_argument("--seed", type=_seed, default=0, help="data seed (default 0)")
    p.add_argument("--workers", type=_positive, default=max(1, os.cpu_count() or 1),
                   help="feature-extraction processes (default: every core); the fetch uses at least "
                        f"{deezer.DEFAULT_WORKERS} threads")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    p.add_argument("--yes", action="store_true", help="start without asking")
    p.add_argument("--skip-book", action="store_true", help="stop after training and the summary")
    p.add_argument("--no-measure", action="store_true",
                   help="plan with nominal rates instead of a short measurement")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--delete-previews", action="store_true",
                   help="delete each MP3 once its features are stored (saves ~24 GB on full)")
    return p


def _confirm(yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        print("python -m ctxpaper.reproduce: not started: pass --yes to run without a terminal",
              file=sys.stderr)
        return False
    return input("Start? [y/N] ").strip().lower() in ("y", "yes")


def _stages(run: Run, workers: int, skip_book: bool, progress: bool, delete_previews: bool = False) -> Path:
    fetch_workers = max(workers, deezer.DEFAULT_WORKERS)
    print("\n[1/4] fetch previews", flush=True)
    print(run.preview_counts(workers=fetch_workers, progress=progress).to_string(), flush=True)
    print("\n[2/4] extract features", flush=True)
    store = run.features(workers=workers, progress=progress, delete_previews=delete_previews)
    print(f"{len(store.ids):,} tracks in {store.path}", flush=True)
    print(f"\n[3/4] train Table 2's {len(losses.TABLE2_LOSSES)} losses × {run.profile.n_seeds} seed(s)",
          flush=True)
    grid = run.grid(losses.TABLE2_LOSSES, progress=progress)
    pointer = write_baseline_pointer(run, run.train("none", progress=False).directory)
    table = table2_summary(grid)
    path = write_summary(run, table)
    if skip_book:
        print("\n[4/4] book: skipped (--skip-book)", flush=True)
    else:
        print("\n[4/4] build the book with data_source=released", flush=True)
        book.run(run.profile.name, run.seed, data_source="released", progress=progress)
    print(f"\nTable 2, {run.provenance(run.train_seeds())}, "
          "beside the paper's:")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"\nwrote {path}\nthe tagger now uses this baseline ({pointer})")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; see the module docstring. Returns the exit status."""
    a = _parser().parse_args(argv)
    err = sys.stderr
    try:
        run = Run.of(a.profile, a.seed, "released")
        plan = plan_run(run, a.workers, measure=not a.no_measure)
        print(format_plan(plan, skip_book=a.skip_book), flush=True)
        if a.dry_run:
            return EXIT_OK
        if not _confirm(a.yes):
            return EXIT_USAGE
        _stages(run, a.workers, a.skip_book, progress=not a.no_progress, delete_previews=a.delete_previews)
    except (device.DeviceError, deezer.FolderBusy) as e:
        print(f"python -m ctxpaper.reproduce: {e}", file=err)
        return EXIT_USAGE
    except deezer.NetworkUnreachable as e:
        print(f"python -m ctxpaper.reproduce: {e}", file=err)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print("\npython -m ctxpaper.reproduce: interrupted; run the same command again to continue "
              "(every stage resumes)", file=err)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
