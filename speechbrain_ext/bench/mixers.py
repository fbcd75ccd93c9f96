"""Micro-benchmark of one token-mixer layer: inference time and peak memory against length.

Every registered mixer (our fused ``mhsa`` with and without relative positions, Fastformer,
HyperMixing, SummaryMixing, Mamba, ...) and SpeechBrain's shipped ``MultiheadAttention``,
``RelPosMHAXL`` (with ``RelPosEncXL``) and ``HyperMixing`` (see :mod:`.baselines`) run one
``no_grad`` forward on random (batch, T, d_model) input, T = 250, 500, 1000, 2000 frames by
default (10–80 s at 40 ms per frame), d_model 576, 8 heads. Each (mixer, T) runs in a fresh
process (:mod:`.memory`): peak memory is the resident set (CPU) or the CUDA allocator's peak above
the level after the layer and its input were built; time is the median of ``--reps`` calls after
``--warmup`` calls.

Writes ``mixers_<device>.csv``, ``.md`` (ratios to our ``mhsa`` and to SpeechBrain's
``MultiheadAttention``) and ``.png`` (time and memory against T) into ``--out``.

Usage::

    python -m speechbrain_ext.bench mixers [--quick] [--out DIR] [--lengths 250 500 ...]
        [--mixers mhsa fastformer "mhsa:position=relative" sb_mha ...] [--device cuda]
"""

import argparse
import contextlib
import sys
from pathlib import Path

import torch

from speechbrain_ext.bench.flops import try_count_step_flop
from speechbrain_ext.bench.memory import (
    OOM_STATUS,
    add_measurement_arguments,
    available_memory_mb,
    measure,
    run_isolated,
)
from speechbrain_ext.bench.peak import measure_run_peak, row_throughput
from speechbrain_ext.bench.plots import plot_time_memory
from speechbrain_ext.bench.specs import parse_mixer_spec, parse_numbers
from speechbrain_ext.bench.tables import (
    machine_info,
    ratio_table,
    throughput_note,
    throughput_table,
    write_csv,
)

FRAME_SECONDS = 0.04  # BEST-RQ frame rate: 40 ms
DEFAULT_LENGTHS = (250, 500, 1000, 2000)
REFERENCES = ("mhsa", "sb_mha")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_mixer_specs() -> list[str]:
    """Every registered mixer with default options, our MHSA with relative positions too, and
    SpeechBrain's three baselines.
    """
    from speechbrain_ext.bench.baselines import list_baseline_mixers
    from speechbrain_ext.nnet.mixers import list_mixers

    specs = list_mixers()
    if "mhsa" in specs:
        specs.insert(specs.index("mhsa") + 1, "mhsa:position=relative")
    return specs + list_baseline_mixers()


def build_any_mixer(spec: str, *, d_model: int, nhead: int, frames: int):
    """Our registered mixer or a SpeechBrain baseline (``sb_*``) from a specification."""
    from speechbrain_ext.bench.baselines import BASELINE_MIXERS, build_baseline_mixer
    from speechbrain_ext.nnet.mixers import build_mixer

    name, options = parse_mixer_spec(spec)
    if name in BASELINE_MIXERS:
        if name == "sb_hypermixing":
            options.setdefault("max_length", max(3000, frames + 1))
            options.setdefault("d_ffn", 4 * d_model)  # our hypermixing's default hypernet_size
        return build_baseline_mixer(name, d_model=d_model, nhead=nhead, **options)
    return build_mixer(name, d_model=d_model, nhead=nhead, **options)


def autocast(device: str, dtype: str):
    """``torch.autocast`` for a reduced ``dtype``, a null context for float32."""
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return torch.autocast(torch.device(device).type, dtype=DTYPES[dtype])


def mixer_job(
    *,
    spec: str,
    frames: int,
    d_model: int,
    nhead: int,
    batch_size: int,
    device: str,
    dtype: str,
    warmup: int,
    reps: int,
    threads: int | None = None,
    seed: int = 0,
    count_flops: bool = True,
) -> dict:
    """Time and peak memory of one mixer forward (run inside a fresh process), and its FLOP
    (``count_flops``: counted once, after the timed runs).
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    mixer = build_any_mixer(spec, d_model=d_model, nhead=nhead, frames=frames)
    mixer = mixer.to(device).eval()
    x = torch.randn(batch_size, frames, d_model, device=device)  # (batch, time, d_model)

    def step():
        with torch.no_grad(), autocast(device, dtype):
            return mixer(x)

    try:
        result = measure(step, device=device, warmup=warmup, reps=reps)
    except torch.OutOfMemoryError:
        return {"status": OOM_STATUS}
    result["params"] = sum(p.numel() for p in mixer.parameters())
    result["flop"] = try_count_step_flop(mixer, step) if count_flops else ""
    return result


def run(args: argparse.Namespace) -> list[dict]:
    """Run every (mixer, length) configuration and write the CSV, Markdown and PNG."""
    specs = args.mixers or default_mixer_specs()
    lengths = sorted(parse_numbers(args.lengths, int))
    machine = machine_info(args.device, args.threads)
    max_memory = args.max_memory_mb or _default_memory_cap(args.device)
    peak = measure_run_peak(args)
    rows = []
    for spec in specs:
        failed = None
        for frames in lengths:
            row = {
                "mixer": spec,
                "frames": frames,
                "seconds": round(frames * FRAME_SECONDS, 3),
                "batch_size": args.batch_size,
                "d_model": args.d_model,
                "nhead": args.nhead,
                "device": args.device,
                "dtype": args.dtype,
            }
            if failed:  # a shorter input already failed: a longer one will too
                result = {"status": failed}
            else:
                job = {
                    "spec": spec,
                    "frames": frames,
                    "d_model": args.d_model,
                    "nhead": args.nhead,
                    "batch_size": args.batch_size,
                    "device": args.device,
                    "dtype": args.dtype,
                    "warmup": args.warmup,
                    "reps": args.reps,
                    "threads": args.threads,
                }
                result = run_isolated(
                    "speechbrain_ext.bench.mixers:mixer_job",
                    job,
                    timeout=args.timeout,
                    in_process=args.in_process,
                    max_memory_mb=max_memory,
                )
                if result["status"].startswith("skipped"):
                    failed = result["status"]
            result.pop("times_s", None)
            row.update(
                {
                    "time_s": result.get("time_s", ""),
                    "peak_mb": result.get("peak_mb", ""),
                    "params": result.get("params", ""),
                    "flop": result.get("flop", ""),
                    "status": result["status"],
                    "machine": machine,
                }
            )
            rows.append(row)
            _log(row)
    peak = measure_run_peak(args, earlier=peak)  # the higher of the start's and the end's
    for row in rows:
        row.update(row_throughput(row, peak))
    write_outputs(rows, Path(args.out), device=args.device, machine=machine, args=args, peak=peak)
    return rows


def _default_memory_cap(device: str) -> float | None:
    if torch.device(device).type != "cpu":
        return None
    available = available_memory_mb()
    return 0.8 * available if available else None


def _log(row: dict) -> None:
    if row["status"] == "ok":
        text = f"{row['time_s'] * 1000:9.1f} ms {row['peak_mb']:9.1f} MB"
    else:
        text = row["status"]
    print(f"{row['mixer']:<28} T={row['frames']:<6} {text}", file=sys.stderr, flush=True)


def write_outputs(rows, out: Path, *, device: str, machine: str, args, peak: dict) -> None:
    """``mixers_<device>.{csv,md,png}`` under ``out``."""
    stem = f"mixers_{torch.device(device).type}"
    write_csv(rows, out / f"{stem}.csv")
    plot_time_memory(
        rows,
        out / f"{stem}.png",
        series="mixer",
        x="frames",
        xlabel="frames (40 ms each)",
        title=f"one mixer layer, d_model {args.d_model}, {args.nhead} heads, batch "
        f"{args.batch_size}, {args.dtype}, no_grad forward",
    )
    refs = [r for r in REFERENCES if any(row["mixer"] == r for row in rows)]
    ref_text = " / ".join(f"×{r}" for r in refs)
    text = [
        f"# Token-mixer micro-benchmark ({device})",
        "",
        f"Machine: {machine}.",
        f"One layer, d_model {args.d_model}, {args.nhead} heads, batch {args.batch_size}, "
        f"{args.dtype}, `no_grad` forward; median of {args.reps} runs after {args.warmup} "
        "warm-up runs; each configuration in "
        + (
            "one process (`--in-process`: memory figures unreliable)."
            if args.in_process
            else "a fresh process."
        )
        + " Columns: frames (40 ms each). "
        f"Ratios in parentheses: {ref_text}.",
        "",
        "Command: `python -m speechbrain_ext.bench mixers " + " ".join(_argv()) + "`",
        "",
        throughput_note(peak, passes="`no_grad` forward"),
        "",
        "## Time",
        "",
        ratio_table(
            rows, series="mixer", x="frames", value="time_s", refs=refs, scale=1000, unit="ms"
        ),
        "",
        "## Peak memory above the built layer and input",
        "",
        ratio_table(rows, series="mixer", x="frames", value="peak_mb", refs=refs, unit="MB"),
        "",
        "## FLOP per forward, GFLOP/s and % of peak",
        "",
        throughput_table(rows, series="mixer", x="frames"),
        "",
    ]
    (out / f"{stem}.md").write_text("\n".join(text))


def _argv() -> list[str]:
    args = sys.argv[1:]
    return args[1:] if args and args[0] == "mixers" else args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``mixers`` command's options."""
    parser.add_argument("--mixers", nargs="+", help="mixer specs (default: all, plus sb_*)")
    parser.add_argument("--lengths", nargs="+", default=None, help="frames (40 ms each)")
    parser.add_argument("--d-model", type=int, default=576)
    parser.add_argument("--nhead", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    add_measurement_arguments(
        parser,
        warmup=3,
        reps=10,
        timeout=300.0,
        quick_help="smoke run: T 16 and 32, d_model 64, 4 heads, 1 warm-up, 2 runs",
    )


def main(argv: list[str] | None = None) -> list[dict]:
    """Entry point of ``python -m speechbrain_ext.bench mixers``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ext.bench mixers", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(finalize(args))


def finalize(args: argparse.Namespace) -> argparse.Namespace:
    """Apply ``--quick`` and the default lengths."""
    if args.quick:
        args.lengths = args.lengths or ["16", "32"]
        args.d_model, args.nhead, args.warmup, args.reps = 64, 4, 1, 2
    args.lengths = args.lengths or [str(t) for t in DEFAULT_LENGTHS]
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but CUDA is not available")
    return args
