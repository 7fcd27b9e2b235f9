"""ctxpaper: the reproducible companion to Ibrahim et al. (ICASSP 2020).

"Audio-based auto-tagging with contextual tags for music": dataset construction
from playlist titles (§3), balancing and splitting (§3, §4.1), the CNN
auto-tagger (§4.1) and the sample-level weighted cross-entropy (§4.2–4.3).
The notebooks in ``notebooks/`` import these modules and hold only the story,
figures and tables. The modules by role, with the chapters each serves:

**The paper's method** (one module per step)

- :mod:`~ctxpaper.contexts` — the 15 contexts and title matching (§3.1; ch. 01–02)
- :mod:`~ctxpaper.playlists` — the §3.1 labelling rule, ``build_dataset`` (ch. 02, 07)
- :mod:`~ctxpaper.balance` — §3.2 balancing and label co-occurrence (ch. 01, 03)
- :mod:`~ctxpaper.splits` — the artist-disjoint stratified split (§4.1; ch. 03)
- :mod:`~ctxpaper.audio` — decoding, the 30 s excerpt, the 646 × 96 log-mel (§4.1; ch. 04)
- :mod:`~ctxpaper.model` — the CNN and eq. 2 (§4.1–4.2; ch. 05)
- :mod:`~ctxpaper.weights` — the negative (eq. 3) and positive (eq. 4) weights (ch. 06)
- :mod:`~ctxpaper.losses` — Table 2's losses and chapter 07's extra ones (ch. 06–07)
- :mod:`~ctxpaper.train` — Adadelta, early stopping, checkpoints, crops (§4.1; ch. 05–07)
- :mod:`~ctxpaper.metrics` — Table 1's metrics, bootstrap intervals, thresholds (ch. 05–07)

**Inputs**

- :mod:`~ctxpaper.data` — the authors' released files, sha256-verified (ch. 01, 03, 06)
- :mod:`~ctxpaper.catalogue` — playlist catalogue readers: MPD, Deezer JSON, tables (ch. 02)
- :mod:`~ctxpaper.deezer` — the Deezer preview client (§3.2; ch. 04)
- :mod:`~ctxpaper.features` — the resumable, checksummed log-mel feature store (ch. 04–07)
- :mod:`~ctxpaper.paper` — the paper's own numbers, typed in: Tables 1–2, §3–4 facts (ch. 01–07)

**The simulated world** (where the truth is known)

- :mod:`~ctxpaper.world` — artists, tracks, latent contexts, playlists (ch. 02–07)
- :mod:`~ctxpaper.synth` — previews synthesised from latent contexts (ch. 04–07)
- :mod:`~ctxpaper.rehearsal` — a local Deezer-compatible server for offline rehearsals (tests)

**Runs**

- :mod:`~ctxpaper.profiles` — sizes per profile (smoke, quick, full; every chapter)
- :mod:`~ctxpaper.runs` — the run value: its chain, cache keys and grid (ch. 03–07)
- :mod:`~ctxpaper.experiment` — ``train_variant``, the one-call front of a run (ch. 05)
- :mod:`~ctxpaper.device` — CPU or CUDA for training (ch. 05–07)
- :mod:`~ctxpaper.cache`, :mod:`~ctxpaper.fsio` — the artifact cache, atomic writes

**Beyond the paper**

- :mod:`~ctxpaper.truth` — observed against latent labels (ch. 02, 05, 07)
- :mod:`~ctxpaper.compare` — comparisons across runs: mean ± sd, ranks, conclusions (ch. 06–07)
- :mod:`~ctxpaper.missing` — missing-label detection from labels alone (ch. 07)

**The book and its tools**

- :mod:`~ctxpaper.book` — executes the chapters with papermill, builds the book
- :mod:`~ctxpaper.reproduce` — ``make reproduce``: the paper's experiment end to end
- :mod:`~ctxpaper.tag` — tag your own audio with a trained model (ch. 05)
- :mod:`~ctxpaper.stats`, :mod:`~ctxpaper.plots`, :mod:`~ctxpaper.glance` — tables, figures,
  the intro's results at a glance
"""

from pathlib import Path

__version__ = "0.1.0"

#: The checkout (or the installed package's parent folder): where the notebooks,
#: the vendored data and the default cache live.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
