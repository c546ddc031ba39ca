"""The latency distributions as a picture: one CDF line per paced measurement."""

from __future__ import annotations

from pathlib import Path


def latency_plot(samples: dict[str, list[float]], path: Path) -> bool:
    """Writes a PNG of publish→receive latency; False when matplotlib is not installed."""
    if not samples:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    for label, values in samples.items():
        ordered = sorted(value * 1000 for value in values)
        share = [100 * (n + 1) / len(ordered) for n in range(len(ordered))]
        axes.plot(ordered, share, label=f"{label} (n={len(ordered):,})")
    axes.set_xscale("log")
    axes.set_xlabel("publish → receive (ms, log scale)")
    axes.set_ylabel("% of events received within")
    axes.axhline(99, color="grey", linewidth=0.6, linestyle="--")
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title("hub latency under paced load")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
