"""CPU benchmark of Mamba's selective scan: our fused C++ kernel vs our chunked PyTorch scan vs our
sequential reference vs mambapy.

Times the forward pass (under ``no_grad``) and forward + backward of

- ``fused``: :func:`speechbrain_ext.nnet.selective_scan.selective_scan_fused_cpu` (the mixer's CPU
  path; left out when the kernel does not build),
- ``chunked``: :func:`speechbrain_ext.nnet.selective_scan.selective_scan_chunked` (the
  pure-PyTorch fallback),
- ``reference``: :func:`speechbrain_ext.nnet.selective_scan.selective_scan_reference` (a loop
  over time with autograd),
- ``mambapy``: ``mambapy``'s pure-PyTorch Blelloch parallel scan (``MambaBlock.selective_scan``),

on random inputs shaped like one Mamba direction of Study B's base model (d_model 474, so
d_inner 948, d_state 16). The methods are timed in turns in one process (one run of each, then the
next round), so load from other processes on a shared machine hits them alike; the medians are
reported. Writes ``mamba_scan_cpu.csv`` and ``mamba_scan_cpu.md`` (median times,
ratios to ``chunked``, extra peak resident memory) to ``--out``. Peak memory is measured in a
fresh subprocess per cell (``resource.getrusage`` high-water mark after the run minus before it).

``--layers`` instead times whole one-layer mixers in turns in one process (``no_grad`` forward,
batch 1, d_model 576 by default): ``mamba`` on the fused kernel, ``mamba`` forced onto the
chunked PyTorch scan (``set_cpu_kernels_enabled(False)``), mambapy's bidirectional pair of
``MambaBlock`` (parallel scan) and our fused ``mhsa``; it writes ``mamba_layer_cpu.{csv,md}``.

Usage::

    python benchmarks/mamba_scan.py                 # full run, a few minutes
    python benchmarks/mamba_scan.py --layers --threads 1 --repeats 7   # one layer, vs mhsa
    python benchmarks/mamba_scan.py --quick --out /tmp/bench   # smoke run, seconds
"""

import argparse
import csv
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from speechbrain_ext.nnet.selective_scan import (
    DEFAULT_CHUNK_SIZE,
    fused_cpu_scan_available,
    selective_scan_chunked,
    selective_scan_fused_cpu,
    selective_scan_reference,
)

METHODS = ("fused", "chunked", "reference", "mambapy")
MODES = ("forward", "forward_backward")


def mambapy_scan(x, delta, A, B, C, D):
    """Mambapy's own parallel selective scan (its method does not use ``self``)."""
    from mambapy.mamba import MambaBlock

    return MambaBlock.selective_scan(None, x, delta, A, B, C, D)


def scan_function(method: str, chunk_size: int):
    """The callable ``(x, delta, A, B, C, D) -> y`` for ``method``."""
    if method == "fused":
        return lambda *inputs: selective_scan_fused_cpu(*inputs, chunk_size=chunk_size)
    if method == "chunked":
        return lambda *inputs: selective_scan_chunked(*inputs, chunk_size=chunk_size)
    if method == "reference":
        return selective_scan_reference
    if method == "mambapy":
        return mambapy_scan
    raise ValueError(f"unknown method {method!r}; valid: {METHODS}")


def make_inputs(*, batch: int, length: int, d_inner: int, d_state: int, seed: int = 0):
    """Random scan inputs with Mamba's initial statistics (Δ ≈ 0.001-0.1, A = -(1..N))."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, d_inner, generator=generator)
    delta = torch.nn.functional.softplus(
        torch.randn(batch, length, d_inner, generator=generator) - 4
    )
    A = -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
    B = torch.randn(batch, length, d_state, generator=generator)
    C = torch.randn(batch, length, d_state, generator=generator)
    D = torch.ones(d_inner)
    return [t.requires_grad_() for t in (x, delta, A, B, C, D)]


def run_once(function, inputs, mode: str) -> torch.Tensor:
    """One forward (no grad) or forward + backward; returns the output."""
    if mode == "forward":
        with torch.no_grad():
            return function(*inputs)
    for tensor in inputs:
        tensor.grad = None
    y = function(*inputs)
    y.sum().backward()
    return y.detach()


def time_cells(functions: dict, inputs, mode: str, repeats: int) -> dict[str, list[float]]:
    """Wall-clock seconds of ``repeats`` rounds, each running every function once in turn, after
    one warm-up run of each.
    """
    for function in functions.values():
        run_once(function, inputs, mode)
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            run_once(function, inputs, mode)
            times[name].append(time.perf_counter() - start)
    return times


LAYERS = ("mamba", "mamba_chunked", "mambapy", "mhsa")


def build_layers(d_model: int, nhead: int, d_state: int) -> dict:
    """``name -> callable(x)`` for every entry of :data:`LAYERS` (mambapy when installed)."""
    from speechbrain_ext.nnet import cpu_kernels
    from speechbrain_ext.nnet.mixers import build_mixer

    torch.manual_seed(0)
    mamba = build_mixer("mamba", d_model=d_model, nhead=nhead, d_state=d_state).eval()
    mhsa = build_mixer("mhsa", d_model=d_model, nhead=nhead).eval()

    def chunked(x):
        cpu_kernels.set_cpu_kernels_enabled(False)
        try:
            return mamba(x)
        finally:
            cpu_kernels.set_cpu_kernels_enabled(None)

    layers = {"mamba": mamba, "mamba_chunked": chunked, "mhsa": mhsa}
    try:
        from mambapy.mamba import MambaBlock, MambaConfig
    except ImportError:
        return layers
    config = MambaConfig(d_model=d_model, n_layers=1, d_state=d_state, pscan=True)
    forward_block, backward_block = MambaBlock(config).eval(), MambaBlock(config).eval()
    layers["mambapy"] = lambda x: forward_block(x) + backward_block(x.flip(1)).flip(1)
    return layers


def run_layers(args) -> list[dict]:
    """One-layer timings, every layer once per round (see the module docstring)."""
    layers = build_layers(args.d_model, args.nhead, args.d_state)
    names = [name for name in LAYERS if name in layers]
    rows = []
    for length in args.lengths:
        x = torch.randn(args.batch, length, args.d_model)
        with torch.no_grad():
            for name in names:
                layers[name](x)  # warm-up
            times = {name: [] for name in names}
            for _ in range(args.repeats):
                for name in names:
                    start = time.perf_counter()
                    layers[name](x)
                    times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) for name, t in times.items()}
        for name in names:
            rows.append(
                {
                    "layer": name,
                    "d_model": args.d_model,
                    "d_state": args.d_state,
                    "batch": args.batch,
                    "length": length,
                    "threads": torch.get_num_threads(),
                    "median_s": medians[name],
                    "min_s": min(times[name]),
                    "ratio_to_mhsa": medians[name] / medians["mhsa"],
                    "ratio_to_mamba": medians[name] / medians["mamba"],
                }
            )
            print(
                f"T={length:5d} {name:14s} {medians[name] * 1000:8.1f} ms "
                f"(x{medians[name] / medians['mhsa']:.2f} of mhsa)",
                flush=True,
            )
    write_csv(args.out / "mamba_layer_cpu.csv", rows)
    lines = [
        "# One mixer layer on CPU: Mamba (fused scan / chunked scan / mambapy) vs fused MHSA",
        "",
        f"d_model {args.d_model}, {args.nhead} heads (mhsa), d_state {args.d_state}, batch "
        f"{args.batch}, fp32, no_grad forward, {torch.get_num_threads()} thread(s), "
        f"torch {torch.__version__}, {cpu_name()}.",
        f"Median of {args.repeats} rounds after a warm-up; in each round every layer runs once, in "
        "turn, in one process (a shared machine: other engineers' jobs ran alongside, so load "
        "hits all layers alike). 'x mhsa' = time / mhsa time.",
        "Command: `" + " ".join(["python benchmarks/mamba_scan.py", *args.argv]) + "`",
        "",
        "| T | " + " | ".join(f"{name} ms (x mhsa)" for name in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    cells = {(r["length"], r["layer"]): r for r in rows}
    for length in args.lengths:
        values = [cells[(length, name)] for name in names]
        lines.append(
            f"| {length} | "
            + " | ".join(f"{r['median_s'] * 1000:.1f} ({r['ratio_to_mhsa']:.2f})" for r in values)
            + " |"
        )
    (args.out / "mamba_layer_cpu.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'mamba_layer_cpu.csv'} and .md")
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _status_mb(field: str) -> float:
    """A memory field (``VmRSS``, ``VmHWM``) of /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024.0
    raise OSError(f"no {field} in /proc/self/status")


def start_peak_window() -> float:
    """Reset the peak-RSS mark where Linux allows it; return the baseline (MB) to subtract.

    Writing 5 to /proc/self/clear_refs lowers the high-water mark (VmHWM) to the current RSS, so
    a peak reached while importing torch does not hide the run's. Elsewhere, fall back to the
    ``getrusage`` high-water mark (which can then under-report).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process (since :func:`start_peak_window`), in MB."""
    try:
        return _status_mb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def measure_memory(args, method: str, length: int, mode: str) -> float:
    """Extra peak resident memory (MB) of one run, measured in a fresh subprocess."""
    command = [
        sys.executable,
        __file__,
        "--_measure",
        f"{method},{length},{mode}",
        f"--d-model={args.d_model}",
        f"--d-state={args.d_state}",
        f"--batch={args.batch}",
        f"--chunk-size={args.chunk_size}",
    ]
    if args.threads:
        command.append(f"--threads={args.threads}")
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _measure_child(args) -> None:
    """Subprocess body of :func:`measure_memory`: print the extra peak RSS in MB."""
    method, length, mode = args._measure.split(",")
    inputs = make_inputs(
        batch=args.batch, length=int(length), d_inner=2 * args.d_model, d_state=args.d_state
    )
    function = scan_function(method, args.chunk_size)
    before = start_peak_window()
    run_once(function, inputs, mode)
    print(f"{peak_rss_mb() - before:.1f}")


def write_markdown(path: Path, rows: list[dict], args) -> None:
    """One table: per length and mode, each method's median time and its ratio to chunked."""
    cpu = cpu_name()
    lines = [
        "# Selective scan on CPU: fused C++ kernel vs chunked PyTorch vs reference vs mambapy",
        "",
        f"d_model {args.d_model} (d_inner {2 * args.d_model}), d_state {args.d_state}, "
        f"batch {args.batch}, chunk_size {args.chunk_size}, fp32, "
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, {cpu}.",
        f"Median of {args.repeats} runs after a warm-up, the methods timed in turns in one process "
        "(a shared machine: other engineers' jobs ran alongside); 'x' = time / chunked time; "
        "memory = extra peak RSS of one run in a fresh process.",
        "Command: `" + " ".join(["python benchmarks/mamba_scan.py", *args.argv]) + "`",
        "",
        "| T | mode | "
        + " | ".join(f"{m} s (x)" for m in METHODS)
        + " | "
        + " | ".join(f"{m} MB" for m in METHODS)
        + " |",
        "|---|---|" + "---|" * (2 * len(METHODS)),
    ]
    cells = {(r["length"], r["mode"], r["method"]): r for r in rows}
    for length in args.lengths:
        for mode in MODES:
            times, memory = [], []
            for method in METHODS:
                row = cells.get((length, mode, method))
                if row is None:
                    times.append("n/a")
                    memory.append("n/a")
                    continue
                times.append(f"{row['median_s']:.4f} ({row['ratio_to_chunked']:.2f})")
                mb = row["extra_peak_rss_mb"]
                memory.append("n/a" if mb == "" else f"{mb:.0f}")
            lines.append(f"| {length} | {mode} | " + " | ".join(times + memory) + " |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--d-model", type=int, default=474)
    parser.add_argument("--d-state", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--reference-max-length",
        type=int,
        default=1000,
        help="time the reference's forward + backward only up to this length (autograd through "
        "a loop over time is slow)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--layers", action="store_true", help="time one-layer mixers instead (mamba vs mhsa)"
    )
    parser.add_argument("--nhead", type=int, default=8, help="heads of mhsa (--layers)")
    parser.add_argument("--_measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._measure:
        _measure_child(args)
        return []
    if args.layers and "--d-model" not in " ".join(args.argv):
        args.d_model = 576  # the mixer benchmark's width
    if args.quick:
        args.lengths, args.d_model, args.d_state, args.repeats = [16, 45], 8, 4, 1
        args.chunk_size = min(args.chunk_size, 8)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.layers:
        return run_layers(args)
    rows = []
    methods = [m for m in METHODS if m != "fused" or fused_cpu_scan_available(args.d_state)]
    for length in args.lengths:
        inputs = make_inputs(
            batch=args.batch, length=length, d_inner=2 * args.d_model, d_state=args.d_state
        )
        for mode in MODES:
            slow = mode == "forward_backward" and length > args.reference_max_length
            functions = {
                method: scan_function(method, args.chunk_size)
                for method in methods
                if not (method == "reference" and slow)
            }
            times = time_cells(functions, inputs, mode, args.repeats)
            outputs = {name: run_once(f, inputs, mode) for name, f in functions.items()}
            medians = {name: statistics.median(t) for name, t in times.items()}
            for method in functions:
                memory = "" if args.no_memory else measure_memory(args, method, length, mode)
                rows.append(
                    {
                        "d_model": args.d_model,
                        "d_inner": 2 * args.d_model,
                        "d_state": args.d_state,
                        "batch": args.batch,
                        "length": length,
                        "mode": mode,
                        "method": method,
                        "chunk_size": args.chunk_size,
                        "threads": torch.get_num_threads(),
                        "median_s": medians[method],
                        "min_s": min(times[method]),
                        "ratio_to_chunked": medians[method] / medians["chunked"],
                        "max_abs_diff_to_chunked": float(
                            (outputs[method] - outputs["chunked"]).abs().max()
                        ),
                        "extra_peak_rss_mb": memory,
                    }
                )
                print(
                    f"T={length:5d} {mode:16s} {method:9s} {medians[method]:.4f} s "
                    f"(x{medians[method] / medians['chunked']:.2f})"
                    + ("" if memory == "" else f" {memory:.0f} MB"),
                    flush=True,
                )
    csv_path = args.out / "mamba_scan_cpu.csv"
    write_csv(csv_path, rows)
    write_markdown(args.out / "mamba_scan_cpu.md", rows, args)
    print(f"wrote {csv_path} and {csv_path.with_suffix('.md')}")
    return rows


if __name__ == "__main__":
    main()
