"""PNG plots of a run's ``metrics.jsonl``: one figure per metric, every split on it."""

from __future__ import annotations

import re

from pathlib import Path

from jaxrnn.train.metrics import group, read_metrics

__all__ = ["plot_metrics"]


def plot_metrics(workdir) -> list[Path]:
    """Writes ``plot_<metric>.png`` for each metric in ``workdir/metrics.jsonl``; returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workdir = Path(workdir)
    grouped = group(read_metrics(workdir))
    names = sorted({m for split in grouped.values() for m in split})
    paths = []
    for name in names:
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        for split in sorted(grouped):
            if name in grouped[split]:
                steps, vals = grouped[split][name]
                style = "-" if len(steps) > 20 else "o-"
                ax.plot(steps, vals, style, label=split, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.set_title(f"{workdir.name}: {name}")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = workdir / f"plot_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
