"""One figure style for the whole book, and the figures shared by chapters.

Every chapter calls :func:`apply_style` once; figures then share fonts, sizes
and the colour map. Helpers here draw figures that more than one chapter
shows (the context co-occurrence heatmap of the paper's Fig. 1).
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .contexts import CONTEXTS

#: Sequential colour map for counts and probabilities.
CMAP = "rocket_r"
#: Colours for the sources a figure may compare.
SOURCE_COLORS = {"paper": "#7f7f7f", "released": "#1f77b4", "simulated": "#ff7f0e",
                 "latent": "#2ca02c", "observed": "#d62728"}


def apply_style() -> None:
    """Set the book's matplotlib/seaborn style (idempotent)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    mpl.rcParams.update({
        "figure.figsize": (7.0, 4.0),
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "savefig.bbox": "tight",
        "axes.titleweight": "bold",
        "axes.titlesize": 11,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })


def heatmap(
    matrix: pd.DataFrame,
    title: str,
    cbar_label: str,
    fmt: str = ".0f",
    annot: bool = True,
    ax: plt.Axes | None = None,
    **kwargs,
) -> plt.Axes:
    """A labelled square heatmap of a context × context matrix.

    Parameters
    ----------
    matrix : DataFrame
        Square, contexts on both axes.
    title, cbar_label : str
        Figure title and colour-bar label (with units).
    fmt : str
        Number format of the annotations.
    **kwargs
        ``xlabel``/``ylabel`` (default "context"), and anything
        :func:`seaborn.heatmap` takes (``cmap``, ``center``, ``vmin``, ``mask``…).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8.5, 7.0))
    values = matrix.to_numpy(dtype=float)
    xlabel = kwargs.pop("xlabel", "context")
    ylabel = kwargs.pop("ylabel", "context")
    kwargs.setdefault("cmap", CMAP)
    kwargs.setdefault("vmin", np.nanmin(values))
    sns.heatmap(matrix, ax=ax, square=True, annot=annot, fmt=fmt,
                annot_kws={"fontsize": 6.5}, cbar_kws={"label": cbar_label, "shrink": 0.8},
                linewidths=0.3, linecolor="white", **kwargs)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def cell_boxplot(
    matrices: dict[str, np.ndarray],
    cells: np.ndarray,
    hue_title: str,
    ylabel: str,
    title: str,
    legend_loc: str = "best",
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Per-context box plots of (n, 15) matrices over the selected cells.

    Parameters
    ----------
    matrices : dict
        Variant name → (n, 15) values (e.g. weights of each eq. 3 mode).
    cells : (n, 15) bool array
        Which cells enter the boxes (e.g. the zero cells of the labels).
    hue_title, ylabel, title : str
        Legend title, y-axis label (with units) and figure title.
    """
    col = np.nonzero(cells)[1]
    long = pd.concat([
        pd.DataFrame({"context": np.asarray(CONTEXTS)[col], "value": m[cells], hue_title: name})
        for name, m in matrices.items()
    ], ignore_index=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.2))
    sns.boxplot(data=long, x="context", y="value", hue=hue_title, showfliers=False, ax=ax,
                order=list(CONTEXTS), linewidth=0.8)
    ax.set_xlabel("context")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    ax.legend(title=hue_title, loc=legend_loc)
    return ax
