"""Weight-histogram figures (section 2.1 of the report), drawn with matplotlib's Agg backend."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any


def load_histograms(run_dir: Path) -> list[dict[str, Any]]:
    """A run's stored per-layer histograms (layer, edges, fractions)."""
    data = json.loads((run_dir / "histograms.json").read_text())
    assert isinstance(data, list)
    return data


def histogram_png(hists: list[dict[str, Any]], title: str) -> bytes:
    """One heat map: x the weight value, y the layer, colour the fraction of that layer's
    weights in the bin. A heat map shows every layer at once where a 3-D surface hides some."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    edges = np.asarray(hists[0]["edges"])
    grid = np.asarray([h["fractions"] for h in hists])
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(hists) + 1.8), dpi=110)
    # Zero-fraction bins are masked so "no weight here" reads as blank, not as dark blue.
    im = ax.imshow(np.ma.masked_equal(grid, 0.0), aspect="auto", cmap="viridis",
                   extent=(edges[0], edges[-1], len(hists) - 0.5, -0.5), interpolation="nearest")
    ax.set_yticks(range(len(hists)), [h["layer"] for h in hists], fontsize=8)
    ax.set_xlabel("weight value")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="fraction of layer's weights")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
