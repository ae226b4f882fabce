"""``unlearn attack --plot DIR``: the pictures ML Privacy Meter draws, as PNG bytes.

* ``roc.png``: forget-vs-test ROC curves on log-log axes (the low-FPR corner
  is where a membership attack is judged, Carlini et al. 2022) for the
  unlearned model, the original and the reference, with the chance line.
* ``scores.png``: member (forget) and non-member (test) score histograms,
  one panel per model.

matplotlib is the optional ``plots`` extra, imported only here and only when
a plot is asked for; :func:`require_matplotlib` fails at once (exit 2) when
it is missing, before any model is trained.
"""

from __future__ import annotations

import importlib
import io
import textwrap
from typing import Any

import numpy as np

from unlearn_cli.errors import BadInput

INSTALL_HINT = ("install unlearn[plots]: pip install 'unlearn-cli[plots]' "
                "(or pip install -e '.[plots]' in a source checkout)")
FILES = {"roc": "roc.png", "scores": "scores.png"}
_NAMES = {"target": "unlearned (attacked)", "original": "original", "reference": "reference"}
_COLORS = {"target": "tab:red", "original": "tab:blue", "reference": "tab:green"}


def require_matplotlib() -> None:
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise BadInput(f"--plot needs matplotlib, which is not installed; {INSTALL_HINT}") from None


def _pyplot():
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any, plt: Any) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def roc_png(curves: dict[str, dict[str, list[float]]], title: str, floor: float) -> bytes:
    """Log-log ROC curves by role; ``floor`` is the smallest FPR the test split can show (1/N)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    for role, curve in curves.items():
        fpr, tpr = np.asarray(curve["fpr"]), np.asarray(curve["tpr"])
        # Log axes cannot show 0: a rate of 0 sits at the floor (below any rate the data can resolve).
        ax.plot(np.maximum(fpr, floor / 2), np.maximum(tpr, floor / 2), color=_COLORS.get(role),
                label=_NAMES.get(role, role), drawstyle="steps-post")
    ax.plot([floor / 2, 1], [floor / 2, 1], "k--", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor / 2, 1)
    ax.set_ylim(floor / 2, 1)
    ax.set_xlabel("false-positive rate (test records called members)")
    ax.set_ylabel("true-positive rate (forget records called members)")
    ax.set_title(textwrap.fill(title, 60), fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig, plt)


def _spread(values: np.ndarray) -> tuple[np.ndarray, str]:
    """Scores as plotted: a negated loss spanning decades (members near 0) on a log scale."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.max() <= 0 and finite.min() < 0:
        magnitude = -finite
        positive = magnitude[magnitude > 0]
        if positive.size and positive.max() / positive.min() > 1e3:
            floor = positive.min()
            return np.log10(np.maximum(-values, floor)), "log10(-score), e.g. the loss (left = more member-like)"
    return values, "attack score (higher = more member-like)"


def scores_png(samples: dict[str, dict[str, np.ndarray]], title: str) -> bytes:
    """Histograms of member and non-member scores, one panel per model."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(samples), figsize=(4.2 * len(samples), 3.8), squeeze=False)
    for ax, (role, sample) in zip(axes[0], samples.items()):
        both, label = _spread(np.concatenate([sample["members"], sample["nonmembers"]]))
        members, nonmembers = both[: len(sample["members"])], both[len(sample["members"]):]
        finite = both[np.isfinite(both)]
        bins = np.histogram_bin_edges(finite, bins=40) if finite.size else 10
        for name, values, color in (("members (forget)", members, "tab:red"),
                                    ("non-members (test)", nonmembers, "tab:blue")):
            ax.hist(values[np.isfinite(values)], bins=bins, alpha=0.5, density=True, color=color, label=name)
        ax.set_title(_NAMES.get(role, role), fontsize=10)
        ax.set_xlabel(label, fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 100), fontsize=10)
    return _png(fig, plt)


def write_plots(directory: Any, curves: dict[str, Any], samples: dict[str, Any], title: str,
                n_nonmembers: int) -> dict[str, tuple[str, str]]:
    """Write both PNGs atomically into ``directory``; returns name -> (path, sha256)."""
    from pathlib import Path

    from unlearn_cli.ops.atomic import write_bytes

    floor = 1.0 / max(n_nonmembers, 1)
    made = {"roc": roc_png(curves, title, floor), "scores": scores_png(samples, title)}
    written = {}
    for name, data in made.items():
        path = Path(directory) / FILES[name]
        written[name] = (str(path), write_bytes(path, data))
    return written
