# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. From track ids to spectrograms
#
# :::{admonition} What you will see
# What the paper's CNN hears {cite}`ibrahim2020`: a Deezer track id becomes a
# 30 s preview and then a 646 × 96 log-mel patch (§4.1, the input of the
# model of {cite}`choi2016`). We show the real path — the Deezer client, and
# the mel pipeline on a real recording — and the path this book runs offline:
# previews **synthesised** from the simulated world's latent contexts, whose
# features the next chapters train on — or, with `data_source="released"`,
# the released tracks' own Deezer previews. Each number says where it comes
# from: the paper, a real recording, a released-data run or a simulated run
# (with its profile and seed).
# :::

# %% tags=["parameters"]
profile = "quick"
seed = 0
data_source = "simulated"  # "simulated" | "released" (the released tracks' Deezer previews)
workers = 2  # processes for feature extraction
fetch_workers = 4  # threads of the Deezer client (released source)
delete_previews = False  # released source: delete each MP3 once its features are stored

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Audio, Markdown, display

from ctxpaper import audio, plots, synth
from ctxpaper.contexts import CONTEXTS
from ctxpaper.paper import table1
from ctxpaper.runs import Run

run = Run.of(profile, seed, data_source)
P, seed = run.profile, run.seed
plots.apply_style()
SIM = Run.of(profile, seed).provenance()
RUN = run.provenance()

# %% [markdown]
# ## The input representation
#
# The paper states the input size (646 frames × 96 mel bands, 30 s "cropped
# after 30 seconds from the start of the track to match the Deezer preview
# samples"); the authors' code adds the compression `log(1 + 100·x)`. The
# FFT size and the frequency range are stated nowhere: we use librosa's
# defaults (the likely call in the authors' code), and say so.

# %%
spec = pd.DataFrame([
    ("sample rate", f"{audio.SR} Hz", "our choice (646 frames of hop 1024 = 30 s at 22,050 Hz)"),
    ("excerpt", "30 s (30–60 s of a full track; a preview's first 30 s)", "paper §4.1"),
    ("mel bands", audio.N_MELS, "paper §4.1"),
    ("frames", audio.FRAMES, "paper §4.1"),
    ("hop", f"{audio.HOP} samples ({1000 * audio.HOP / audio.SR:.1f} ms)", "authors' code"),
    ("n_fft", f"{audio.N_FFT} samples ({1000 * audio.N_FFT / audio.SR:.1f} ms)", "our choice (librosa default)"),
    ("fmin – fmax", f"{audio.FMIN:g} – {audio.FMAX:g} Hz", "our choice (librosa default)"),
    ("compression", f"log(1 + {audio.COMPRESSION:g}·mel power)", "authors' code"),
    ("shortest accepted source", f"{audio.MIN_SECONDS:g} s (a shorter preview is padded to 646 frames, "
     "its valid length kept; crops read only frames that hold audio, looped if too short)", "our choice"),
], columns=["setting", "value", "source"]).set_index("setting")
spec

# %% [markdown]
# ## The real path: Deezer previews
#
# The released dataset holds Deezer track ids only (§3.2). `ctxpaper.deezer`
# asks `GET /track/{id}` for each id's `preview` URL and downloads the MP3,
# with a client-side rate limit under the API quota (about 50 requests per
# 5 s), retries with backoff, atomic writes and a manifest so that an
# interrupted run resumes. The same client runs from the command line:
#
# ```bash
# python -m ctxpaper.deezer fetch --ids data/context-dataset/balanced_ground_truth_hot_vector.csv
# ```
#
# It needs the internet (or the local rehearsal server, `python -m
# ctxpaper.deezer serve`), so the book runs it only with
# `data_source="released"`: then it fetches exactly the tracks the run
# selected. Tracks whose preview ends `no_data`, `no_preview` or `error` are
# left out of training and evaluation; the table counts them per subset,
# beside the paper's sizes.

# %%
if run.source == "released":
    display(Markdown(f"**Previews of the selected tracks ({RUN}).**"))
    display(run.preview_counts(workers=fetch_workers))
else:
    display(Markdown(":::{note}\nThis build runs on the simulated world. `make book DATA=released` "
                     "(or `-p data_source released`) fetches the released tracks' previews here: about "
                     "0.48 MB and 0.11 s per track at the API's quota (49,929 tracks: ~24 GB, ~1.5 h).\n:::"))

# %% [markdown]
# ## The mel pipeline on a real recording
#
# A recording shipped by a Debian package (`asc-music`: MP3, 22.05 kHz) goes
# through the same `ctxpaper.audio.logmel` as every preview: mono, resampled
# to 22,050 Hz, the 30–60 s excerpt, 96 mel bands, `log(1 + 100·x)`.

# %%
real = audio.real_recordings("asc-music")
if real:
    path = real[0]
    y = audio.load_audio(path)
    X = audio.logmel(path)
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    t = np.arange(y.size) / audio.SR + audio.OFFSET
    axes[0].plot(t[::50], y[::50], lw=0.4)
    axes[0].set_ylabel("amplitude")
    axes[0].set_title(f"{path.name} (Debian asc-music), excerpt 30–60 s")
    im = axes[1].imshow(X.T, origin="lower", aspect="auto", cmap="magma",
                        extent=[audio.OFFSET, audio.OFFSET + audio.DURATION, 0, audio.N_MELS])
    axes[1].set_xlabel("time in the track (s)")
    axes[1].set_ylabel("mel band")
    fig.colorbar(im, ax=axes, label="log(1 + 100·mel power)")
    plt.show()
    display(Markdown(f"Patch shape {X.shape[0]} × {X.shape[1]}, values {X.min():.2f} – {X.max():.2f} "
                     f"(real recording `{path}`)."))
else:
    display(Markdown("*The Debian package `asc-music` is not installed: no real recording to show "
                     "(`apt-get install asc-music`).*"))

# %% [markdown]
# ## The offline path: previews synthesised from latent contexts
#
# With no audio, the book *makes* previews. `ctxpaper.synth` maps each
# simulated track's **latent** (complete) context set to six musical
# descriptors — tempo, energy, brightness, percussiveness, mode and harmonic
# density — adds its artist's style and per-track noise, and renders a four-bar
# loop of chord pads, bass and drums tiled to 30 s. The pushes below are a
# **design choice** made so that the simulated world resembles the paper's
# finding (*club*, *party*, *sad*, *sleep* easy; *car*, *work*, *night* hard,
# Table 1); they are not a measurement of music.

# %%
fig, ax = plt.subplots(figsize=(7, 5.5))
sns.heatmap(synth.CONTEXT_EFFECTS, center=0, cmap="vlag", annot=True, fmt=".1f", ax=ax,
            cbar_kws={"label": "push on the descriptor (design units)"})
ax.set_xlabel("descriptor")
ax.set_ylabel("context")
ax.set_title("How each context moves the synthesised sound (design choice)")
plt.show()

# %% [markdown]
# A gallery: one preview per context with only that context active, a neutral
# artist style and the same seed, so that the differences are the contexts'
# pushes alone (plus the noise, identical here).

# %%
gallery = ["club", "party", "sad", "sleep", "car", "work", "night", "running"]
clips = {c: synth.synthesize(synth.demo_latent([c]), None, seed) for c in gallery}
fig, axes = plt.subplots(2, 4, figsize=(12, 5), sharex=True, sharey=True)
for ax, (c, yc) in zip(axes.ravel(), clips.items()):
    Xc = audio.logmel(yc, sr=synth.SR)
    ax.imshow(Xc[:216].T, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=8,
              extent=[0, 216 * audio.HOP / audio.SR, 0, audio.N_MELS])
    ax.set_title(c)
for ax in axes[1]:
    ax.set_xlabel("time (s)")
for ax in axes[:, 0]:
    ax.set_ylabel("mel band")
fig.suptitle(f"First 10 s of synthetic log-mel patches, one context each ({SIM})")
plt.show()

# %% [markdown]
# Three of them to listen to (the first 6 s):

# %%
for c in ("club", "sleep", "car"):
    display(Markdown(f"**{c}**"), Audio(clips[c][: 6 * synth.SR], rate=synth.SR))

# %% [markdown]
# ## Features for the run
#
# The chapters that train the CNN use the log-mel patches of the run's
# selected tracks (profile `n_tracks`; every track in the full profile),
# extracted by `ctxpaper.features.build_feature_store` with parallel workers
# into one memory-mapped float16 array that keeps, per track, how many frames
# hold audio and a checksum. The store lives in the artifact cache; a killed
# extraction resumes where it stopped, and a track that cannot be processed is
# recorded with its reason instead of stopping the batch.

# %%
selection = run.selection()
store = run.features(workers=workers, fetch_workers=fetch_workers, delete_previews=delete_previews)
if run.has_truth:
    world, ds = run.world()
    display(Markdown(f"{store!r}  \n({RUN}; {len(world.latent):,} tracks in the world, "
                     f"{len(ds.labels):,} labelled by the §3 procedure, "
                     f"{len(selection.reference_labels):,} after balancing, "
                     f"{len(selection.split):,} kept for training and evaluation.)"))
else:
    display(Markdown(f"{store!r}  \n({RUN}; {len(selection.reference_labels):,} released balanced tracks, "
                     f"{selection.excluded:,} of them in no fold, {len(selection.split):,} selected, "
                     f"{len(store):,} with features.)"))
if len(store.failures):
    display(store.failures.head())

# %% [markdown]
# ## Which contexts can be heard?
#
# Three interpretable descriptors measured on the synthesised audio (not read
# from the design): tempo (librosa's estimate), loudness (mean RMS) and
# brightness (mean spectral centroid). For each context and descriptor, the
# ROC AUC of the descriptor alone as a detector of the **latent** context:
# 0.5 is no separation. It is a first look at what the CNN may learn in
# chapter 5. It needs the latent contexts and the synthesiser, so it runs on
# the simulated source only.

# %%
if not run.has_truth:
    display(Markdown(f"*Skipped: a {run.source} run has no latent contexts to measure descriptors against.*"))
else:
    n_desc = min(len(store.ids), P.n_descriptor_tracks)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(store.ids, size=n_desc, replace=False))
    src = synth.SimulatedPreviews.from_world(world, seed)
    desc = pd.DataFrame([audio.audio_descriptors(src(int(i))[0]) for i in sample], index=sample)
    desc.columns = ["tempo (BPM)", "RMS (linear)", "spectral centroid (Hz)"]
    auc = synth.descriptor_auc(desc, world.latent.loc[sample])

    fig, ax = plt.subplots(figsize=(6, 6))
    sns.heatmap(auc, center=0.5, cmap="vlag", vmin=0.2, vmax=0.8, annot=True, fmt=".2f", ax=ax,
                cbar_kws={"label": "ROC AUC of the descriptor alone"})
    ax.set_xlabel("audio descriptor")
    ax.set_ylabel("latent context")
    ax.set_title(f"Descriptor AUC per context ({n_desc} tracks; {SIM})")
    plt.show()

# %% [markdown]
# Side by side: how well one descriptor separates each context here, and the
# CNN's test AUC in the paper's Table 1. Agreement in the *ordering* is what
# the synthesis was designed for; the values are not comparable (one
# hand-picked descriptor vs a trained CNN on real audio).

# %%
if run.has_truth:
    sep = synth.context_separation(desc, world.latent.loc[sample])
    cmp = pd.DataFrame({f"best |AUC − 0.5|, one descriptor ({SIM})": sep,
                        "CNN AUC, paper Table 1": table1().loc[list(CONTEXTS), "AUC"]})
    cmp = cmp.sort_values("CNN AUC, paper Table 1", ascending=False)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(cmp.iloc[:, 1], cmp.iloc[:, 0])
    for c, row in cmp.iterrows():
        ax.annotate(c, (row.iloc[1], row.iloc[0]), fontsize=8, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel("CNN test AUC (paper, Table 1)")
    ax.set_ylabel("best single-descriptor |AUC − 0.5| (simulated)")
    ax.set_title("Audible contexts: paper vs synthesised previews")
    plt.show()
    display(cmp.round(3))

# %% [markdown]
# ## Summary
#
# * The model's input is a 646 × 96 log-mel patch of a 30 s excerpt; the
#   settings the paper leaves open are fixed and exposed in `ctxpaper.audio`.
# * Real previews come from the Deezer API through a rate-limited, resumable
#   client (`python -m ctxpaper.deezer fetch`; `data_source="released"`
#   fetches the run's tracks); offline, previews are synthesised from the
#   simulated world's latent contexts.
# * By design, energetic (*club*, *party*) and calm (*sleep*, *sad*) contexts
#   are audible in the synthetic previews and *car*, *work*, *night* barely;
#   chapter 5 trains the paper's CNN on these features.
