"""CPU speed of a binary (W1A1) matrix product: XNOR-popcount on packed bits vs FP32 matmul.

For each shape (M, K, N) — M frames of K features times an (N, K) weight, by default Study B's
FFN of d_model 576 on 2000 frames (80 s at 25 Hz): 2000×576 @ 576×2304 and back 2000×2304 @
2304×576 — on one thread (``--threads``), median of ``--reps`` calls after ``--warmup``:

- ``fp32_matmul``: ``torch.nn.functional.linear`` on FP32 (oneDNN/MKL sgemm);
- ``xnor_torch``: :func:`speechbrain_ext.quant.xnor.xnor_matmul` pure-PyTorch path on packed
  operands;
- ``xnor_cpp``: the same with the compiled C++ kernel (built on first use);
- ``pack_activations_{torch,cpp}``: :func:`~speechbrain_ext.quant.xnor.pack_signs` of the (M, K)
  input, which a binary layer pays on every call (weights are packed once);
- ``xnor_linear``: a whole :class:`~speechbrain_ext.quant.xnor.XnorLinear` call (pack, C++
  product, scales and bias) from FP32 input.

Before timing, both XNOR paths are checked to equal the FP32 product of the ±1 matrices
exactly. Writes ``xnor_cpu.csv`` and ``xnor_cpu.md`` to ``--out``.

Usage::

    python benchmarks/xnor_cpu.py                  # ~1 min (plus ~40 s to build the kernel once)
    python benchmarks/xnor_cpu.py --quick --out /tmp/bench
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from speechbrain_ext.bench.tables import machine_info, markdown_table, write_csv
from speechbrain_ext.quant.layers import QuantLinear
from speechbrain_ext.quant.xnor import XnorLinear, cpp_kernel, pack_signs, xnor_matmul

DEFAULT_SHAPES = ((2000, 576, 2304), (2000, 2304, 576))


def median_time(fn, *, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_shape(m: int, k: int, n: int, *, warmup: int, reps: int) -> list[dict]:
    torch.manual_seed(0)
    x, weight = torch.randn(m, k), torch.randn(n, k)
    sx, sw = torch.where(x >= 0, 1.0, -1.0), torch.where(weight >= 0, 1.0, -1.0)
    px, pw = pack_signs(x), pack_signs(weight)
    reference = (sx @ sw.T).to(torch.int32)
    if not torch.equal(pack_signs(x, backend="cpp"), px):
        raise AssertionError("C++ and PyTorch sign packing differ")
    for backend in ("torch", "cpp"):
        if not torch.equal(xnor_matmul(px, pw, k=k, backend=backend), reference):
            raise AssertionError(f"xnor_{backend} differs from the float product of signs")
    layer = QuantLinear(k, n, weight_bits=1, act_bits=1)
    with torch.no_grad():
        layer(x)  # initialises α
        fast = XnorLinear(layer, backend="cpp")
        cases = {
            "fp32_matmul": lambda: torch.nn.functional.linear(x, weight),
            "xnor_torch": lambda: xnor_matmul(px, pw, k=k, backend="torch"),
            "xnor_cpp": lambda: xnor_matmul(px, pw, k=k, backend="cpp"),
            "pack_activations_torch": lambda: pack_signs(x),
            "pack_activations_cpp": lambda: pack_signs(x, backend="cpp"),
            "xnor_linear": lambda: fast(x),
        }
        times = {name: median_time(fn, warmup=warmup, reps=reps) for name, fn in cases.items()}
    return [
        {
            "shape": f"{m}x{k} @ {k}x{n}",
            "method": name,
            "median_ms": round(seconds * 1e3, 3),
            "speedup_vs_fp32": round(times["fp32_matmul"] / seconds, 2),
            "threads": torch.get_num_threads(),
            "machine": machine_info("cpu"),
        }
        for name, seconds in times.items()
    ]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small shapes, 1 rep")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if cpp_kernel() is None:
        raise SystemExit("the C++ kernel did not build; this benchmark needs it")
    shapes = ((200, 576, 256),) if args.quick else DEFAULT_SHAPES
    warmup, reps = (0, 1) if args.quick else (args.warmup, args.reps)
    load_before = os.getloadavg()[0]
    rows = [row for shape in shapes for row in run_shape(*shape, warmup=warmup, reps=reps)]
    load = f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after the run"
    out = Path(args.out)
    write_csv(rows, out / "xnor_cpu.csv")
    command = "python benchmarks/xnor_cpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    table = markdown_table(
        ["shape", "method", "median ms", "speed-up vs FP32"],
        [[r["shape"], r["method"], r["median_ms"], r["speedup_vs_fp32"]] for r in rows],
    )
    text = (
        "# W1A1 matrix product on CPU: XNOR-popcount on packed bits vs FP32\n\n"
        f"Machine: {machine_info('cpu')} ({load}; other processes share the CPUs, so "
        f"compare rows of one run)\n\nCommand: `{command.strip()}`\n\n"
        f"Median of {reps} calls after {warmup} warm-up calls. Both XNOR paths equal the FP32 "
        "product of the ±1 matrices exactly (checked before timing). `xnor_*` rows time the "
        "product of already-packed operands; `pack_activations_*` is the packing of the input "
        "that a binary layer pays per call; `xnor_linear` is a whole binary layer (C++ pack + C++ "
        "product + scales + bias) from FP32 input.\n\n" + table + "\n"
    )
    (out / "xnor_cpu.md").write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
