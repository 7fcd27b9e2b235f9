"""The paper's published numbers, typed in once (Tables 1 and 2, §3.2 and §4.1 facts).

Every comparison in the book takes the paper's side from here, so that a
number of the paper appears in one place only, with its source. The tables
use the layout of :func:`ctxpaper.metrics.per_context_metrics` (rows: the 15
contexts, then ``"Macro average"``; columns ``HL, AUC, Recall, Precision, F1,
TN rate``); Table 2's "TN ratio" column is the same quantity, named "TN rate"
here.

A finding about Table 1, checked in the tests: its macro row does not equal the
mean of its 15 rows for two columns. The row means give recall 0.69 and
precision 0.66; the printed macro row has recall 0.66 and precision 0.69, the
two swapped (Table 2's "No Weights" row prints 0.69 and 0.66). The authors'
released evaluation code builds its first report with
``[auc, precision, recall, …]`` under the labels ``["AUC", "Recall",
"Precision", …]``, which would produce exactly this swap.

Notebooks: ``01_released_dataset``, ``05_cnn_baseline``, ``06_weighted_cross_entropy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .contexts import CONTEXTS
from .metrics import MACRO, METRICS, ROWS

# Table 1, in the paper's row order (which is CONTEXTS order); columns = METRICS.
_TABLE1 = [
    [0.39, 0.65, 0.58, 0.58, 0.58, 0.63],  # car
    [0.27, 0.71, 0.93, 0.75, 0.83, 0.29],  # chill
    [0.24, 0.84, 0.64, 0.74, 0.68, 0.85],  # club
    [0.26, 0.80, 0.83, 0.79, 0.81, 0.58],  # dance
    [0.34, 0.72, 0.74, 0.62, 0.67, 0.60],  # gym
    [0.34, 0.70, 0.46, 0.61, 0.53, 0.80],  # happy
    [0.44, 0.58, 0.54, 0.54, 0.54, 0.58],  # night
    [0.26, 0.77, 0.86, 0.76, 0.81, 0.53],  # party
    [0.31, 0.74, 0.66, 0.63, 0.65, 0.70],  # relax
    [0.38, 0.68, 0.64, 0.58, 0.61, 0.61],  # running
    [0.22, 0.85, 0.74, 0.71, 0.73, 0.80],  # sad
    [0.23, 0.84, 0.73, 0.71, 0.72, 0.80],  # sleep
    [0.37, 0.67, 0.74, 0.63, 0.68, 0.51],  # summer
    [0.41, 0.62, 0.61, 0.57, 0.59, 0.57],  # work
    [0.30, 0.77, 0.62, 0.63, 0.62, 0.75],  # workout
    [0.32, 0.73, 0.66, 0.69, 0.67, 0.64],  # Macro average, as printed
]

#: Table 2's rows, with the paper's names, and the loss each stands for.
TABLE2_ROWS: tuple[str, ...] = (
    "No Weights",
    "Negative Weights (exact match)",
    "Negative Weights (ignore zeros)",
    "Both Weights (exact match)",
    "Both Weights (ignore zeros)",
)
TABLE2_CONFIGS: dict[str, dict[str, Any]] = {
    "No Weights": {"negative": None, "positive": False},
    "Negative Weights (exact match)": {"negative": "exact", "positive": False},
    "Negative Weights (ignore zeros)": {"negative": "ignore_zeros", "positive": False},
    "Both Weights (exact match)": {"negative": "exact", "positive": True},
    "Both Weights (ignore zeros)": {"negative": "ignore_zeros", "positive": True},
}
_TABLE2 = [
    [0.32, 0.73, 0.69, 0.66, 0.67, 0.64],
    [0.32, 0.73, 0.77, 0.63, 0.69, 0.55],
    [0.39, 0.72, 0.94, 0.56, 0.70, 0.27],
    [0.32, 0.73, 0.66, 0.67, 0.66, 0.67],
    [0.37, 0.73, 0.91, 0.59, 0.71, 0.33],
]


def table1() -> pd.DataFrame:
    """The paper's Table 1 (CNN baseline, test set), macro row as printed.

    Rows ``CONTEXTS + ("Macro average",)``, columns ``METRICS``; the values are
    the paper's two-decimal numbers.
    """
    return pd.DataFrame(_TABLE1, index=pd.Index(ROWS, name="context"), columns=list(METRICS))


def table1_row_mean() -> pd.Series:
    """Mean of Table 1's 15 context rows (to compare with its printed macro row)."""
    return table1().loc[list(CONTEXTS)].mean()


def table2() -> pd.DataFrame:
    """The paper's Table 2 (macro averages per weighting scheme), rows :data:`TABLE2_ROWS`."""
    return pd.DataFrame(_TABLE2, index=pd.Index(TABLE2_ROWS, name="loss"), columns=list(METRICS))


def side_by_side(
    ours: pd.DataFrame,
    paper_table: pd.DataFrame,
    ours_label: str,
    paper_label: str,
) -> pd.DataFrame:
    """One table holding ours and the paper's, each column labelled by its source.

    Parameters
    ----------
    ours, paper_table : DataFrame
        Same metric columns (a subset of ``METRICS`` is fine, but the same in
        both); rows are matched by name. Rows present in only one table are
        kept, with NaN on the other side.
    ours_label, paper_label : str
        Where each number comes from, e.g. ``"ours (simulated, quick, seed 0)"``
        and ``"paper (Table 1)"``. They must differ.

    Returns
    -------
    DataFrame
        Columns a MultiIndex (metric, source) with ours first; rows in the
        paper's order, then any rows only ours has.
    """
    if ours_label == paper_label:
        raise ValueError(f"the two sources need different labels, both are {ours_label!r}")
    if list(ours.columns) != list(paper_table.columns):
        raise ValueError(
            f"metric columns differ: ours {list(ours.columns)}, paper {list(paper_table.columns)}"
        )
    rows = list(paper_table.index) + [r for r in ours.index if r not in paper_table.index]
    a = ours.reindex(rows)
    b = paper_table.reindex(rows)
    parts = {}
    for m in ours.columns:
        parts[(m, ours_label)] = a[m]
        parts[(m, paper_label)] = b[m]
    out = pd.DataFrame(parts, index=pd.Index(rows, name=ours.index.name or paper_table.index.name))
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["metric", "source"])
    return out


# --------------------------------------------------------------------------
# the paper's facts about the dataset
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class PaperFact:
    """A number stated in the paper, with the sentence it comes from."""

    value: Any
    quote: str
    section: str
    #: True when the paper rounds ("~", "k", "on average").
    approximate: bool = False


DATASET_FACTS: dict[str, PaperFact] = {
    "n_tracks": PaperFact(
        49929, "The number of tracks dropped to 49929 unique tracks.", "3.2"),
    "positives_per_label": PaperFact(
        24_000, "The balanced dataset contains on average 24k positive samples per label "
        "and 7 labels per sample.", "3.2", approximate=True),
    "labels_per_track": PaperFact(
        7, "The balanced dataset contains on average 24k positive samples per label "
        "and 7 labels per sample.", "3.2", approximate=True),
    "split": PaperFact(
        (0.65, 0.10, 0.25), "We selected a split of 65% training, 10% validation, and 25% testing.",
        "4.1"),
    "tracks_before_balancing": PaperFact(
        198_000, "The playlists contained 198k unique tracks.", "3.2", approximate=True),
    "playlists": PaperFact(
        612_000, "we retrieved 612k playlists that belonged to one or more of the 15 selected "
        "contexts.", "3.2", approximate=True),
    "balancing_cap": PaperFact(
        20_000, "We applied an iterative approach to add samples to incomplete classes with a "
        "limit of 20000 tracks, which was the number of tracks in the least represented "
        "context class.", "3.2"),
    "n_contexts": PaperFact(
        15, "we selected the 15 most frequent keywords found in the playlist titles", "3.1"),
}


def facts_table() -> pd.DataFrame:
    """The dataset facts as a table: value, approximate?, section, quote."""
    return pd.DataFrame(
        [{"fact": k, "value": f.value, "approximate": f.approximate, "section": f"§{f.section}",
          "quote": f.quote} for k, f in DATASET_FACTS.items()]
    ).set_index("fact")


def table1_macro_discrepancy() -> pd.DataFrame:
    """Table 1's printed macro row beside the mean of its rows (rounded to 2 decimals)."""
    t = table1()
    return pd.DataFrame({
        "printed macro row": t.loc[MACRO],
        "mean of the 15 rows": table1_row_mean(),
        "mean, rounded": np.round(table1_row_mean() + 1e-9, 2),
    })


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return " / ".join(f"{x:.0%}" if isinstance(x, float) else str(x) for x in v)
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    return str(v)


def dataset_facts_table(labels: pd.DataFrame, split: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's dataset facts beside the values measured on the released files.

    Parameters
    ----------
    labels : DataFrame
        :func:`ctxpaper.data.load_labels` (or any bool label frame of the same layout).
    split : DataFrame, optional
        :func:`ctxpaper.data.load_split` (``subset`` column); without it the
        split row is not measured.

    Returns
    -------
    DataFrame
        One row per fact of :data:`DATASET_FACTS`: the paper's value (with
        ``~`` when the paper rounds), the measured value, the section and the
        quote. Facts the release cannot show (playlists, tracks before
        balancing) say so.
    """
    lab = labels.astype(bool)
    per_label = lab.sum(axis=0)
    measured: dict[str, str] = {
        "n_tracks": _fmt(len(lab)),
        "positives_per_label": _fmt(float(per_label.mean())),
        "labels_per_track": _fmt(float(lab.sum(axis=1).mean())),
        "balancing_cap": f"{_fmt(int(per_label.min()))} (smallest context)",
        "n_contexts": _fmt(lab.shape[1]),
        "tracks_before_balancing": "not in the release",
        "playlists": "not in the release",
        "split": "(no split given)",
    }
    if split is not None:
        share = split["subset"].value_counts(normalize=True)
        measured["split"] = (
            " / ".join(f"{share.get(s, 0.0):.1%}" for s in ("train", "validation", "test"))
            + f" of {len(split):,} tracks in a fold"
        )
    rows = []
    for k, f in DATASET_FACTS.items():
        rows.append({
            "fact": k,
            "paper": ("~" if f.approximate else "") + _fmt(f.value),
            "measured (released files)": measured[k],
            "section": f"§{f.section}",
            "quote (paper)": f.quote,
        })
    return pd.DataFrame(rows).set_index("fact")
