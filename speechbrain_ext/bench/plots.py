"""Two-panel plots (time and peak memory against input length) of benchmark rows.

Example
-------
>>> import tempfile, pathlib
>>> rows = [{"name": n, "seconds": s, "time_s": t * s, "peak_mb": 10.0 * s, "status": "ok"}
...         for n, t in (("a", 1.0), ("b", 0.5)) for s in (10, 20)]
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = plot_time_memory(rows, pathlib.Path(tmp) / "plot.png", series="name", x="seconds",
...                             xlabel="input (s)", title="demo")
...     path.stat().st_size > 0
True
"""

from collections.abc import Sequence
from pathlib import Path


def plot_time_memory(
    rows: Sequence[dict],
    path,
    *,
    series: str,
    x: str,
    xlabel: str,
    title: str = "",
    time_key: str = "time_s",
    memory_key: str = "peak_mb",
) -> Path:
    """Save a PNG with time (left) and peak memory (right) against ``x``, one line per
    ``series`` value, log-log axes; rows whose ``status`` is not ``"ok"`` are left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(dict.fromkeys(r[series] for r in rows))
    for name in names:
        points = sorted(
            (r[x], r[time_key], r[memory_key])
            for r in rows
            if r[series] == name and r.get("status", "ok") == "ok"
        )
        if not points:
            continue
        xs, times, mems = zip(*points)
        style = "--" if str(name).startswith("sb_") else "-"
        ax_time.plot(xs, times, style, marker="o", label=str(name))
        ax_mem.plot(xs, [max(m, 1e-3) for m in mems], style, marker="o", label=str(name))
    for ax, ylabel in ((ax_time, "median time (s)"), (ax_mem, "peak memory above baseline (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_mem.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
