"""The machine's measured peak: dense matmul throughput and memory bandwidth.

``python -m speechbrain_ext.bench peak [--device cuda] [--threads N] [--out DIR]`` prints, and
:func:`measure_peak` returns:

- ``matmul_gflops``: the best rate of ``--reps`` products ``torch.mm(a, b, out=c)`` of two
  random ``size × size`` matrices (2048 by default) in ``dtype`` (float32 by default; on CUDA
  TF32 stays as torch's ``allow_tf32`` setting leaves it, off by default), counted as
  ``2·size³`` FLOP per product, after one warm-up product;
- ``bandwidth_gbs``: the best rate of ``--reps`` copies ``dst.copy_(src)`` between two float32
  tensors of ``bandwidth_mb`` MB (256 by default, well above any cache), counted as
  ``2 × bytes`` moved per copy (each byte read once and written once, as STREAM's *Copy*
  counts it; the write-allocate read of ``dst`` is not counted), GB = 10⁹ bytes;
- ``threads`` (torch's intra-op threads during the measurement: ``threads`` if given, else
  torch's current count, which is restored afterwards), ``device``, ``dtype``, ``machine``
  (:func:`~speechbrain_ext.bench.tables.machine_info`) and the sizes used.

The speed commands (``bench speed``, ``bench mixers``, ``benchmarks/bestrq_throughput.py``)
call :func:`measure_peak` at the start and again at the end of a run, with their own thread count
and dtype, keep the higher of the two (:func:`higher_peak`), and report every row's achieved
FLOP rate as a percentage of its ``matmul_gflops``. The best rep is taken (not the median), and
the better of two measurements: a peak is what the machine can do, and on a shared machine a
peak measured while another job loads it is too low, which would show as rows above 100 %.

Example
-------
>>> peak = measure_peak(size=128, bandwidth_mb=4, reps=2)
>>> peak["matmul_gflops"] > 0 and peak["bandwidth_gbs"] > 0
True
>>> sorted(k for k in peak if k.endswith(("_gflops", "_gbs")))
['bandwidth_gbs', 'matmul_gflops']
"""

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from speechbrain_ext.bench.memory import synchronize
from speechbrain_ext.bench.tables import machine_info, markdown_table, peak_measurements, write_csv

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _best_time(step, *, device: str, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        step()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def measure_peak(
    device: str = "cpu",
    threads: int | None = None,
    *,
    dtype: str = "float32",
    size: int = 2048,
    bandwidth_mb: float = 256.0,
    reps: int = 5,
    seed: int = 0,
) -> dict:
    """Measured matmul throughput (GFLOP/s) and copy bandwidth (GB/s) of ``device``.

    Arguments
    ---------
    device : str
        ``"cpu"`` or a CUDA device.
    threads : int, optional
        Torch intra-op threads for the measurement (default: torch's current count); the
        previous count is restored afterwards.
    dtype : str
        Matmul dtype: ``float32``, ``bfloat16`` or ``float16`` (the copy is always float32).
    size : int
        Side of the square matrices.
    bandwidth_mb : float
        Size of each of the two copied tensors, MB (10⁶ bytes).
    reps : int
        Timed repetitions of each; the best is reported.
    seed : int
        Seed of the random matrices.

    Returns
    -------
    dict
        ``matmul_gflops``, ``bandwidth_gbs``, ``threads``, ``device``, ``dtype``,
        ``matmul_size``, ``bandwidth_mb``, ``reps``, ``machine``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if reps < 1 or size < 1 or bandwidth_mb <= 0:
        raise ValueError(f"need reps, size >= 1 and bandwidth_mb > 0, got {reps}, {size}")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda asked for but CUDA is not available")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        used_threads = torch.get_num_threads()
        generator = torch.Generator().manual_seed(seed)
        a = torch.randn(size, size, generator=generator).to(device, DTYPES[dtype])
        b = torch.randn(size, size, generator=generator).to(device, DTYPES[dtype])
        c = torch.empty_like(a)
        with torch.no_grad():
            matmul_s = _best_time(lambda: torch.mm(a, b, out=c), device=device, warmup=1, reps=reps)
        a = b = c = None  # free them before the copy's tensors
        numel = max(1, int(bandwidth_mb * 1e6) // 4)
        src = torch.ones(numel, device=device)
        dst = torch.empty_like(src)
        copy_s = _best_time(lambda: dst.copy_(src), device=device, warmup=1, reps=reps)
        moved = 2 * src.numel() * src.element_size()
    finally:
        torch.set_num_threads(previous)
    return {
        "device": device,
        "dtype": dtype,
        "threads": used_threads,
        "matmul_gflops": 2 * size**3 / matmul_s / 1e9,
        "bandwidth_gbs": moved / copy_s / 1e9,
        "matmul_size": size,
        "bandwidth_mb": numel * 4 / 1e6,
        "reps": reps,
        "machine": machine_info(device, used_threads),
    }


def higher_peak(earlier: dict, later: dict) -> dict:
    """The better of two :func:`measure_peak` results of one run (matmul rate and bandwidth each
    at its higher value), with ``measured_gflops``: every matmul rate measured, in order.

    >>> start = {"matmul_gflops": 70.0, "bandwidth_gbs": 20.0}
    >>> end = {"matmul_gflops": 90.0, "bandwidth_gbs": 18.0}
    >>> higher_peak(start, end)
    {'matmul_gflops': 90.0, 'bandwidth_gbs': 20.0, 'measured_gflops': [70.0, 90.0]}
    >>> higher_peak(higher_peak(start, end), start)["measured_gflops"]
    [70.0, 90.0, 70.0]
    """
    best = max(earlier, later, key=lambda peak: peak["matmul_gflops"])
    measured = [
        *earlier.get("measured_gflops", [earlier["matmul_gflops"]]),
        *later.get("measured_gflops", [later["matmul_gflops"]]),
    ]
    return {
        **best,
        "bandwidth_gbs": max(earlier["bandwidth_gbs"], later["bandwidth_gbs"]),
        "measured_gflops": measured,
    }


def peak_summary(peak: dict) -> str:
    """One Markdown sentence stating a :func:`measure_peak` result.

    >>> peak_summary({"matmul_gflops": 80.0, "bandwidth_gbs": 20.0, "threads": 2,
    ...               "dtype": "float32", "matmul_size": 2048, "bandwidth_mb": 256.0, "reps": 5})
    'Measured peak: 80.0 GFLOP/s float32 matmul (2048³, best of 5), 20.0 GB/s copy (256 MB, read + write), 2 threads.'
    """  # noqa: E501
    return (
        f"Measured peak: {peak['matmul_gflops']:.1f} GFLOP/s {peak['dtype']} matmul "
        f"({peak['matmul_size']}³, best of {peak['reps']}{peak_measurements(peak)}), "
        f"{peak['bandwidth_gbs']:.1f} GB/s copy ({peak['bandwidth_mb']:g} MB, read + write), "
        f"{peak['threads']} " + ("thread." if peak["threads"] == 1 else "threads.")
    )


def write_outputs(peak: dict, out: Path, *, command: str) -> None:
    """``peak_<device>.{csv,md}`` under ``out``."""
    stem = f"peak_{torch.device(peak['device']).type}"
    write_csv([peak], out / f"{stem}.csv")
    keys = ["matmul_gflops", "bandwidth_gbs", "threads", "dtype", "matmul_size", "bandwidth_mb"]
    table = markdown_table(
        keys, [[f"{peak[k]:.1f}" if isinstance(peak[k], float) else peak[k] for k in keys]]
    )
    text = [
        f"# Measured peak ({peak['device']})",
        "",
        f"Machine: {peak['machine']}.",
        "",
        f"Command: `{command}`",
        "",
        "matmul: `torch.mm` of two size × size matrices, 2·size³ FLOP; bandwidth: "
        "`dst.copy_(src)`, 2 × bytes moved (read + write); best of "
        f"{peak['reps']} after one warm-up.",
        "",
        table,
        "",
    ]
    (out / f"{stem}.md").write_text("\n".join(text))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``peak`` command's options."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--size", type=int, default=2048, help="matmul size (size³)")
    parser.add_argument("--bandwidth-mb", type=float, default=256.0, help="MB per copied tensor")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=None, help="write peak_<device>.{csv,md} here")


def main(argv: list[str] | None = None) -> dict:
    """Entry point of ``python -m speechbrain_ext.bench peak``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ext.bench peak", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but CUDA is not available")
    peak = measure_peak(
        args.device,
        args.threads,
        dtype=args.dtype,
        size=args.size,
        bandwidth_mb=args.bandwidth_mb,
        reps=args.reps,
    )
    print(f"Machine: {peak['machine']}")
    print(peak_summary(peak))
    if args.out:
        argv = sys.argv[1:] if argv is None else ["peak", *argv]
        command = "python -m speechbrain_ext.bench " + " ".join(argv)
        write_outputs(peak, Path(args.out), command=command)
    return peak


def throughput_columns(flop, time_s, peak_gflops: float | None) -> dict:
    """A benchmark row's ``gflop`` (FLOP of one timed pass, in 10⁹), ``gflops_per_s``
    (FLOP / time) and ``pct_of_peak`` (that / the measured matmul peak × 100); empty strings
    where the FLOP, the time or the peak is missing.

    >>> throughput_columns(2e9, 0.5, 8.0)
    {'gflop': 2.0, 'gflops_per_s': 4.0, 'pct_of_peak': 50.0}
    >>> throughput_columns("", 0.5, 8.0)
    {'gflop': '', 'gflops_per_s': '', 'pct_of_peak': ''}
    """
    if flop in ("", None) or time_s in ("", None) or float(time_s) <= 0:
        gflop = "" if flop in ("", None) else float(flop) / 1e9
        return {"gflop": gflop, "gflops_per_s": "", "pct_of_peak": ""}
    rate = float(flop) / float(time_s) / 1e9
    pct = 100 * rate / peak_gflops if peak_gflops else ""
    return {"gflop": float(flop) / 1e9, "gflops_per_s": rate, "pct_of_peak": pct}


def row_throughput(row: dict, peak: dict) -> dict:
    """:func:`throughput_columns` of a speed or mixer table's row (``flop``, ``time_s``; none
    unless its ``status`` is ``ok``), and ``peak_gflops``: the run's peak.

    >>> row_throughput({"status": "ok", "flop": 2e9, "time_s": 0.5}, {"matmul_gflops": 8.0})
    {'gflop': 2.0, 'gflops_per_s': 4.0, 'pct_of_peak': 50.0, 'peak_gflops': 8.0}
    """
    ok = row.get("status") == "ok"
    columns = throughput_columns(
        row.get("flop", "") if ok else "", row.get("time_s", ""), peak["matmul_gflops"]
    )
    return {**columns, "peak_gflops": peak["matmul_gflops"]}


def measure_run_peak(args, earlier: dict | None = None) -> dict:
    """The peak a speed command measures at the start of its run and again at its end:
    ``args.device``, ``args.threads`` and ``args.dtype`` as in its timed runs (``args.quick``:
    512³ and 16 MB, 2 reps), announced on stderr. Given the start's peak as ``earlier``, returns
    the higher of the two (:func:`higher_peak`).
    """
    sizes = {"size": 512, "bandwidth_mb": 16.0, "reps": 2} if args.quick else {}
    peak = measure_peak(args.device, args.threads, dtype=args.dtype, **sizes)
    print(peak_summary(peak), file=sys.stderr, flush=True)
    return peak if earlier is None else higher_peak(earlier, peak)
