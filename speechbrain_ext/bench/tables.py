"""CSV and Markdown writers shared by the benchmarks, and a description of the machine.

Example
-------
>>> rows = [
...     {"name": "mhsa", "frames": 250, "time_s": 0.2, "status": "ok"},
...     {"name": "fast", "frames": 250, "time_s": 0.1, "status": "ok"},
... ]
>>> print(markdown_table(["name", "time_s"], [[r["name"], r["time_s"]] for r in rows]))
| name | time_s |
|---|---|
| mhsa | 0.2 |
| fast | 0.1 |
>>> table = ratio_table(rows, series="name", x="frames", value="time_s", refs=["mhsa"],
...                     scale=1000, unit="ms")
>>> print(table)
| name | 250 |
|---|---|
| mhsa | 200 ms (×1.00) |
| fast | 100 ms (×0.50) |
>>> rows[0].update(gflop=2.0, gflops_per_s=10.0, pct_of_peak=12.5)
>>> print(throughput_table(rows, series="name", x="frames"))
| name | 250 |
|---|---|
| mhsa | 2 GFLOP, 10 GFLOP/s (12.5 %) |
| fast | – |
"""

import csv
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import torch


def machine_info(device: str = "cpu", threads: int | None = None) -> str:
    """One line naming the machine: CPU (or GPU) model, threads, torch version."""
    if torch.device(device).type == "cuda":
        hardware = torch.cuda.get_device_name(torch.device(device))
    else:
        hardware = _cpu_model()
    threads = threads or torch.get_num_threads()
    return (
        f"{hardware}; {os.cpu_count()} logical CPUs, {threads} torch threads; "
        f"torch {torch.__version__}; {platform.system()} {platform.release()}"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_csv(rows: Sequence[dict], path) -> Path:
    """Write ``rows`` (dicts; the union of their keys, in first-seen order) to ``path``.

    The file is replaced atomically: a process killed while writing leaves the previous one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def ratio_table(
    rows: Sequence[dict],
    *,
    series: str,
    x: str,
    value: str,
    refs: Sequence[str],
    scale: float = 1.0,
    unit: str = "",
) -> str:
    """Markdown table of ``value`` per ``series`` (rows) and ``x`` (columns), each cell with its
    ratio to every reference series at the same ``x`` (``×r1 / ×r2``). Rows whose ``status`` is
    not ``"ok"`` show the status instead.
    """
    cell = {(r[series], r[x]): r for r in rows}

    def text(row: dict, at) -> str:
        shown = f"{_fmt(row[value] * scale)} {unit}".strip()
        ratios = []
        for ref in refs:
            base = cell.get((ref, at))
            ok = base is not None and base.get("status", "ok") == "ok" and base[value] > 0
            ratios.append(f"×{row[value] / base[value]:.2f}" if ok else "×–")
        return f"{shown} ({' / '.join(ratios)})" if ratios else shown

    return _grid_table(rows, series=series, x=x, text=text)


def _grid_table(rows: Sequence[dict], *, series: str, x: str, text) -> str:
    """Markdown table, a row per ``series`` and a column per ``x``: ``text(row, x)`` in each
    cell of a run that is ``ok``, its status where it did not run, empty where it is missing.
    """
    xs = sorted({r[x] for r in rows})
    cell = {(r[series], r[x]): r for r in rows}
    lines = []
    for name in dict.fromkeys(r[series] for r in rows):
        cells = [name]
        for at in xs:
            row = cell.get((name, at))
            if row is None:
                cells.append("")
            elif row.get("status", "ok") != "ok":
                cells.append(row["status"])
            else:
                cells.append(text(row, at))
        lines.append(cells)
    return markdown_table([series] + [str(v) for v in xs], lines)


def throughput_table(rows: Sequence[dict], *, series: str, x: str) -> str:
    """Markdown table of each row's FLOP per timed pass, achieved GFLOP/s and % of the measured
    matmul peak (columns ``gflop``, ``gflops_per_s``, ``pct_of_peak``), per ``series`` and ``x``;
    ``–`` where a row has no FLOP count, its status where it did not run.
    """

    def text(row: dict, at) -> str:
        if row.get("gflops_per_s", "") in ("", None):
            return "–"
        pct = row.get("pct_of_peak", "")
        pct = f" ({pct:.3g} %)" if pct not in ("", None) else ""
        return f"{_fmt(row['gflop'])} GFLOP, {_fmt(row['gflops_per_s'])} GFLOP/s{pct}"

    return _grid_table(rows, series=series, x=x, text=text)


def throughput_note(peak: dict, *, passes: str) -> str:
    """The Markdown paragraph under a speed table's heading explaining the throughput columns."""
    return (
        f"Throughput: FLOP of one timed pass ({passes}) counted once per configuration after "
        "the timed runs by `speechbrain_ext.bench.flops.CostCounter` (2 × MAC of matmuls, "
        "convolutions and attention; elementwise work, norms and optimiser updates uncounted), "
        "divided by the median time; % of peak is that rate over this run's measured "
        f"{peak['dtype']} matmul peak, {peak['matmul_gflops']:.1f} GFLOP/s "
        f"({peak['matmul_size']}³ `torch.mm`, {peak['threads']} threads{peak_measurements(peak)}; "
        f"copy bandwidth {peak['bandwidth_gbs']:.1f} GB/s)."
    )


def peak_measurements(peak: dict) -> str:
    """``; the higher of 70.1 and 90.3 GFLOP/s, measured at the start and the end of the run``
    for a peak measured more than once (:func:`speechbrain_ext.bench.peak.higher_peak`), else
    nothing.

    >>> peak_measurements({"measured_gflops": [70.06, 90.3]})
    '; the higher of 70.1 and 90.3 GFLOP/s, measured at the start and the end of the run'
    >>> peak_measurements({"matmul_gflops": 90.3})
    ''
    """
    measured = peak.get("measured_gflops", [])
    if len(measured) < 2:
        return ""
    return (
        "; the higher of "
        + " and ".join(f"{value:.1f}" for value in measured)
        + " GFLOP/s, measured at the start and the end of the run"
    )
