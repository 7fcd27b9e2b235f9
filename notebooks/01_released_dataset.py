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
# # 1. The released dataset
#
# :::{admonition} What you will see
# The authors' released labels, playlist counts and official split
# {cite}`ibrahim2020dataset`, loaded and verified by sha256: how many tracks
# each context has, how many contexts each track has, which contexts go
# together (the paper's Fig. 1), and how the official 65/10/25 split is made.
# Every number here is computed from **the real released files** unless it is
# labelled as the paper's.
# :::

# %% tags=["parameters"]
profile = "quick"
seed = 0

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from ctxpaper import balance, data, glance, paper, plots, splits, stats
from ctxpaper.contexts import CONTEXTS
from ctxpaper.profiles import validate_params

P, seed = validate_params(profile, seed)
plots.apply_style()
labels = data.load_labels()
counts = data.load_counts()
split = data.load_split()

# %% [markdown]
# ## The files
#
# Six CSV files make the release. Each is checked against the sha256 pinned in
# `ctxpaper.data.REGISTRY` before it is parsed; the table says where this
# build found them.

# %%
files = data.data_hashes()
files["sha256 (first 16 hex digits)"] = files["sha256"].str[:16]
files[["file", "rows", "content", "sha256 (first 16 hex digits)"]].style.format({"rows": "{:,}"}).hide(axis="index")

# %% [markdown]
# ## The paper's statements, measured
#
# The paper states a handful of facts about the dataset (§3.2, §4.1). Beside
# each, the value measured on the released files.

# %%
facts = paper.dataset_facts_table(labels, split)
glance.record("dataset_facts", facts.iloc[:, :2],
              "The dataset: the paper's statements and the released files",
              "paper: §3–4.1; measured: the real released labels and split", "01_released_dataset")
facts

# %% [markdown]
# ## Positives per context
#
# Balancing (§3.2, chapter 3) caps contexts at 20,000 tracks, so the five
# rarest contexts sit exactly at the cap; the others exceed it because their
# tracks came in with the labels of rarer contexts.

# %%
per_context = labels.sum().rename("positives (released labels)")
ax = per_context.sort_values().plot.barh(color=plots.SOURCE_COLORS["released"], figsize=(6.5, 4.5))
ax.axvline(20000, color="k", ls="--", lw=1, label="cap of 20,000 (paper §3.2)")
ax.set_xlabel("tracks labelled with the context (count)")
ax.set_ylabel("context")
ax.set_title("Positives per context — real released labels")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
plt.show()

# %% [markdown]
# ## Labels per track
#
# The label matrix is dense: a track has 7.2 contexts on average out of 15,
# and some tracks have all fifteen. This density matters for the negative
# weights of chapter 6, which condition on the whole label vector.

# %%
lpt = stats.labels_per_track(labels)
ax = lpt.plot.bar(color=plots.SOURCE_COLORS["released"], figsize=(7, 3.5))
ax.set_xlabel("contexts per track (count)")
ax.set_ylabel("tracks (count)")
ax.set_title("Labels per track — real released labels")
plt.show()
stats.label_summary(labels).to_frame("real released labels").style.format("{:,.4g}")

# %% [markdown]
# ## Co-occurrence (the paper's Fig. 1)
#
# The number of tracks labelled with both contexts of each pair. As the paper
# observes, *relax*, *sad* and *sleep* go together, so do *club*, *dance* and
# *party*, and *chill* co-occurs with everything.

# %%
co = balance.cooccurrence(labels)
plots.heatmap(co / 1000, "Tracks co-labelled with both contexts — real released labels",
              "tracks (thousands)", fmt=".0f")
plt.show()

# %% [markdown]
# Raw counts grow with each context's size. The conditional probability
# $P(c \mid c') = |c \cap c'| / |c'|$ reads better: the row is the context
# $c$, the column the condition $c'$.

# %%
cond = balance.cooccurrence(labels, normalise="conditional")
plots.heatmap(cond, r"P(row context | column context) — real released labels",
              "probability", fmt=".2f", vmin=0, vmax=1)
plt.show()

# %% [markdown]
# ## The official split
#
# The authors released four folds: fold 0 is the test set, folds 1–3 hold the
# training and validation sets. The split was meant to keep artists apart and
# to keep each context's proportion equal in every subset (§4.1, iterative
# stratification {cite}`sechidis2011`).

# %%
sizes = stats.subset_sizes(split)
sizes["paper's target share"] = [0.65, 0.10, 0.25]
sizes.style.format({"share of tracks": "{:.1%}", "paper's target share": "{:.0%}"})

# %% [markdown]
# Of the 49,929 released tracks, this many are in no fold (the authors'
# folds hold only tracks with an artist id); they are part of the balanced
# set but of no subset:

# %%
unassigned = labels.index.difference(split.index)
print(f"{len(unassigned):,} of {len(labels):,} released tracks are in no subset")

# %% [markdown]
# Per-context positive rates per subset, and each subset's largest deviation
# from the rate over the whole split:

# %%
props = stats.subset_proportions(labels, split)
display(props.style.format("{:.3f}").background_gradient(axis=None, cmap="Blues"))
dev = splits.fold_deviation(labels, split["subset"].astype(str))
pd.DataFrame({"max |p_fc - p_c|": dev.max(axis=1), "mean |p_fc - p_c|": dev.mean(axis=1)}).style.format("{:.4f}")

# %% [markdown]
# ## Artist overlap between subsets
#
# Cell (A, B): the share of A's tracks whose artist also has a track in B.
# Train and test share no artist, as the paper says. Validation, however, was
# drawn from folds 1–3 at random, so most of its tracks share their artist with
# the training set: validation loss is measured partly on artists the model
# has already heard, which makes early stopping optimistic.

# %%
overlap = stats.artist_overlap(split)
display(overlap.style.format("{:.1%}"))
share = overlap.loc["validation", "train"]
display(Markdown(
    f"**Measured on the released split:** {share:.1%} of validation tracks share an "
    f"artist with the training set; {overlap.loc['test', 'train']:.1%} of test tracks do."
))

# %% [markdown]
# ## Data quality
#
# The label file and the count file should agree: a track is labelled with a
# context exactly when it has a positive playlist count for it. They disagree
# in a few cells. The labels stay the authors'; the disagreements are listed,
# not fixed.

# %%
dq = data.label_count_disagreements(labels, counts)
display(dq.groupby(["kind", "context"]).size().unstack(fill_value=0))
print(f"{len(dq)} of {labels.size:,} cells disagree between count > 0 and the label")
print("smallest count behind a positive label with a count:",
      int(counts.where(labels & (counts > 0)).min().min()))

# %% [markdown]
# ## Summary
#
# - The released set matches the paper's description: 49,929 tracks, about
#   24,000 positives per context and 7.2 labels per track (measured above).
# - The smallest playlist count behind a label is 3: the released rule is "at
#   least 3 playlists", where the paper's text says "more than 3".
# - Train and test are artist-disjoint; validation is not (measured above),
#   a point chapter 3 takes up when it builds a split of its own.
