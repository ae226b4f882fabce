"""Reliability diagrams as PNG bytes (needs the ``plots`` extra: matplotlib).

``require_matplotlib`` is called by commands before any work so a missing
extra fails at once with a one-line message.
"""

from __future__ import annotations

import io
import importlib
from typing import Any

from unlearn_cli.errors import BadInput

#: A source checkout installs its own extra; pip's index knows only the released package.
INSTALL_HINT = "pip install -e '.[plots]' (from a source checkout) or pip install 'unlearn-cli[plots]'"


def require_matplotlib() -> None:
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise BadInput(f"--plot needs matplotlib, which is not installed: {INSTALL_HINT}") from None


def reliability_png(panels: dict[str, dict[str, Any]], title: str = "") -> bytes:
    """One reliability diagram per panel; each panel is a metrics dict with 'reliability' and 'ece'."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    for ax, (name, metrics) in zip(axes[0], panels.items()):
        rows = metrics["reliability"]
        lows = [r["lower"] for r in rows]
        width = rows[0]["upper"] - rows[0]["lower"] if rows else 1.0
        accs = [r["accuracy"] if r["count"] else 0.0 for r in rows]
        confs = [r["confidence"] if r["count"] else 0.0 for r in rows]
        ax.bar(lows, accs, width=width, align="edge", edgecolor="black", color="tab:blue", label="accuracy")
        ax.bar(lows, [c - a for c, a in zip(confs, accs)], bottom=accs, width=width, align="edge",
               color="tab:red", alpha=0.35, edgecolor="tab:red", label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name}\nECE {metrics['ece']:.4f}, accuracy {metrics['accuracy']:.4f}", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
