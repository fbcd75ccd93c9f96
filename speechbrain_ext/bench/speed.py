"""Whole-model speed test: BEST-RQ inference and training-step time and peak memory vs length.

For each scale (``base``, ``large``), mixer and input length (10, 20, 40, 80, 160, 320 s of random
16 kHz audio by default, batch 6 as in Study B), one configuration runs in a fresh process
(:mod:`.memory`):

- ``infer``: ``model.eval()``, ``torch.no_grad()``: features + front end + encoder
  (``model.encode``) + the prediction head on the last layer;
- ``train``: ``model.train()``: the BEST-RQ loss (masking, targets, front end, encoder, head),
  ``backward`` and an AdamW step (with a ``GradScaler`` under fp16).

The model is :func:`speechbrain_ext.ssl.model.build_bestrq_model` of the preset
``bestrq_<scale>_<mixer>`` (Study B's parameter-matched widths); a mixer without its own preset
runs in the ``bestrq_<scale>_mhsa`` Conformer. The baselines ``sb_mha``, ``sb_relposxl`` and
``sb_hypermixing`` are SpeechBrain's ``ConformerEncoder`` (``attention_type`` ``regularMHA``,
``RelPosMHAXL``, ``hypermixing``; :class:`.baselines.SpeechBrainConformer`) at the size of the
``mhsa`` (``hypermixing``) preset, inside the same front end and head.

CPU: fp32 by default (``--dtype bfloat16`` autocasts), peak resident memory above the built
model; CUDA: ``--dtype`` autocast (bf16 by default), ``torch.cuda.max_memory_allocated`` above
the built model, synchronised timing. A configuration that runs past ``--timeout`` or out of
memory is recorded as skipped, and longer inputs of the same model and mode are skipped too.

Writes ``speed_<device>.csv``, ``speed_<device>.md`` (ratios to our MHSA and to SpeechBrain's
MHSA) and one ``speed_<device>_<scale>_<mode>.png`` per scale and mode into ``--out``.
"""

import argparse
import csv
import sys
from pathlib import Path

import torch

from speechbrain_ext.bench.flops import try_count_step_flop
from speechbrain_ext.bench.memory import (
    OOM_STATUS,
    add_measurement_arguments,
    measure,
    run_isolated,
)
from speechbrain_ext.bench.mixers import DTYPES, _default_memory_cap, autocast
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

SAMPLE_RATE = 16000
DEFAULT_SECONDS = (10, 20, 40, 80, 160, 320)
REFERENCES = ("mhsa", "sb_mha")
#: Baseline -> the preset whose size it takes.
BASELINE_SIZES = {"sb_mha": "mhsa", "sb_relposxl": "mhsa", "sb_hypermixing": "hypermixing"}
#: Overrides of ``--quick``: a one-layer, 64-wide model with a small codebook.
QUICK_OVERRIDES = {"num_layers": 1, "d_model": 64, "d_ffn": 64, "codebook_size": 64}


def default_mixer_specs() -> list[str]:
    """Every registered mixer (those with a BEST-RQ preset first), then the baselines."""
    from speechbrain_ext.bench.baselines import list_baseline_mixers
    from speechbrain_ext.nnet.encoders.presets import BESTRQ_WIDTHS
    from speechbrain_ext.nnet.mixers import list_mixers

    registered = list_mixers()
    with_preset = [m for m in BESTRQ_WIDTHS if m in registered]
    return with_preset + [m for m in registered if m not in with_preset] + list_baseline_mixers()


def build_speed_model(spec: str, *, scale: str, overrides: dict | None = None):
    """The BEST-RQ model of a mixer specification at ``scale`` (see the module docstring).

    Arguments
    ---------
    spec : str
        ``"name"`` or ``"name:key=value,..."`` (mixer options), or a baseline ``sb_*``.
    scale : str
        ``"base"`` or ``"large"``.
    overrides : dict, optional
        Keyword arguments for ``build_bestrq_model`` (``num_layers``, ``d_model``...).

    Example
    -------
    >>> model = build_speed_model("sb_mha", scale="base", overrides=QUICK_OVERRIDES)
    >>> type(model.encoder.encoder).__name__, model.encoder.encoder.d_model
    ('SpeechBrainConformer', 64)
    """
    from speechbrain_ext.bench.baselines import ATTENTION_TYPES, SpeechBrainConformer
    from speechbrain_ext.nnet.encoders import preset_config
    from speechbrain_ext.nnet.encoders.presets import bestrq_preset
    from speechbrain_ext.ssl.model import build_bestrq_model, encoder_config

    overrides = dict(overrides or {})
    name, options = parse_mixer_spec(spec)
    if name in ATTENTION_TYPES:
        preset, _ = bestrq_preset(scale, BASELINE_SIZES[name])
        model = build_bestrq_model(preset, **overrides)
        config = preset_config(preset)
        config.update({k: v for k, v in overrides.items() if k in config})
        encoder = model.encoder.encoder
        model.encoder.encoder = SpeechBrainConformer(
            attention_type=ATTENTION_TYPES[name],
            num_layers=encoder.num_layers,
            d_model=encoder.d_model,
            nhead=config["nhead"],
            d_ffn=config["d_ffn"],
            kernel_size=config["kernel_size"],
            dropout=config["dropout"],
            **options,
        )
        return model
    encoder = f"bestrq_{scale}_{name}"  # the MHSA widths for a mixer without a study preset
    mixer_options = {**encoder_config(encoder).get("mixer_options", {}), **options}
    return build_bestrq_model(encoder, mixer_options=mixer_options, **overrides)


def speed_job(
    *,
    spec: str,
    scale: str,
    seconds: float,
    batch_size: int,
    mode: str,
    device: str,
    dtype: str,
    warmup: int,
    reps: int,
    threads: int | None = None,
    overrides: dict | None = None,
    seed: int = 0,
    count_flops: bool = True,
) -> dict:
    """Time and peak memory of one model, length and mode (run inside a fresh process), and the
    FLOP of one timed pass (``count_flops``: counted once, after the timed runs).
    """
    if mode not in ("infer", "train"):
        raise ValueError(f"mode must be 'infer' or 'train', got {mode!r}")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    overrides = dict(overrides or {})
    if spec.startswith("sb_hypermixing"):
        frames = int(seconds * SAMPLE_RATE) // 640 + 2
        spec = spec + ("," if ":" in spec else ":") + f"max_length={max(3000, frames)}"
    model = build_speed_model(spec, scale=scale, overrides=overrides).to(device)
    wavs = torch.randn(batch_size, int(seconds * SAMPLE_RATE), device=device)  # (batch, samples)
    wav_lens = torch.ones(batch_size, device=device)
    params = sum(p.numel() for p in model.parameters())

    if mode == "infer":
        model.eval()

        def step():
            with torch.no_grad(), autocast(device, dtype):
                hidden = model.encode(wavs, wav_lens)
                return model.head(hidden[-1])

    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(torch.device(device).type, enabled=dtype == "float16")

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                loss = model(wavs, wav_lens)["loss"]
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    try:
        result = measure(step, device=device, warmup=warmup, reps=reps)
    except torch.OutOfMemoryError:
        return {"status": OOM_STATUS}
    result["params"] = params
    result["flop"] = try_count_step_flop(model, step) if count_flops else ""
    return result


def run(args: argparse.Namespace) -> list[dict]:
    """Run every configuration and write the CSV, Markdown and PNGs."""
    specs = args.mixers or default_mixer_specs()
    seconds_list = sorted(parse_numbers(args.seconds, float))
    modes = ("infer", "train") if args.mode == "both" else (args.mode,)
    machine = machine_info(args.device, args.threads)
    max_memory = args.max_memory_mb or _default_memory_cap(args.device)
    peak = measure_run_peak(args)
    overrides = dict(QUICK_OVERRIDES) if args.quick else {}
    device = torch.device(args.device).type
    csv_path = Path(args.out) / f"speed_{device}.csv"
    done = measured_rows(csv_path, args=args, machine=machine) if args.resume else {}
    if args.retry_skipped:
        done = {key: row for key, row in done.items() if not _skip_status(row)}
    progress = dict(done)  # on disk after every measurement, so a killed run can --resume
    rows = []
    for scale in args.scale:
        for mode in modes:
            for spec in specs:
                failed = None
                for seconds in seconds_list:
                    job = {
                        "spec": spec,
                        "scale": scale,
                        "seconds": seconds,
                        "batch_size": args.batch_size,
                        "mode": mode,
                        "device": args.device,
                        "dtype": args.dtype,
                        "warmup": args.warmup,
                        "reps": args.reps,
                        "threads": args.threads,
                        "overrides": overrides,
                    }
                    key = (scale, mode, spec, float(seconds))
                    if key in done:  # --resume: measured earlier with the same settings
                        rows.append(done[key])
                        failed = failed or _skip_status(done[key])
                        continue
                    if failed:
                        result = {"status": failed}
                    else:
                        result = run_isolated(
                            "speechbrain_ext.bench.speed:speed_job",
                            job,
                            timeout=args.timeout,
                            in_process=args.in_process,
                            max_memory_mb=max_memory,
                        )
                        failed = _skip_status(result)
                    row = {
                        "scale": scale,
                        "mode": mode,
                        "model": spec,
                        "seconds": seconds,
                        "batch_size": args.batch_size,
                        "device": args.device,
                        "dtype": args.dtype,
                        "time_s": result.get("time_s", ""),
                        "peak_mb": result.get("peak_mb", ""),
                        "params": result.get("params", ""),
                        "flop": result.get("flop", ""),
                        "status": result["status"],
                        "machine": machine,
                    }
                    row.update(row_throughput(row, peak))  # for the CSV written below
                    rows.append(row)
                    _log(row)
                    progress[key] = row
                    write_csv(list(progress.values()), csv_path)
    peak = measure_run_peak(args, earlier=peak)  # the higher of the start's and the end's
    for row in rows:
        row.update(row_throughput(row, peak))
    write_outputs(rows, Path(args.out), args=args, machine=machine, peak=peak)
    return rows


def _skip_status(row: dict) -> str | None:
    return row["status"] if row["status"].startswith("skipped") else None


def measured_rows(path: Path, *, args, machine: str) -> dict:
    """Rows of an earlier run's CSV that match this run's settings, by
    (scale, mode, model, seconds); an absent file gives none.

    A row matches when its batch size, device, dtype and machine (CPU or GPU, threads,
    torch version) are this run's; measured times and memory are read back as floats.
    """
    if not path.exists():
        return {}
    rows = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            same = (
                int(row["batch_size"]) == args.batch_size
                and row["device"] == args.device
                and row["dtype"] == args.dtype
                and row["machine"] == machine
            )
            if not same:
                continue
            row["seconds"] = float(row["seconds"])
            row["batch_size"] = int(row["batch_size"])
            for name in ("time_s", "peak_mb", "params", "flop"):
                if row.get(name, "") != "":
                    row[name] = (
                        float(row[name]) if name not in ("params", "flop") else int(row[name])
                    )
            rows[(row["scale"], row["mode"], row["model"], row["seconds"])] = row
    print(f"--resume: {len(rows)} configurations reused from {path}", file=sys.stderr)
    return rows


def _log(row: dict) -> None:
    if row["status"] == "ok":
        text = f"{row['time_s']:9.3f} s {row['peak_mb']:9.1f} MB"
    else:
        text = row["status"]
    print(
        f"{row['scale']:<5} {row['mode']:<5} {row['model']:<26} {row['seconds']:>6g} s  {text}",
        file=sys.stderr,
        flush=True,
    )


def write_outputs(rows: list[dict], out: Path, *, args, machine: str, peak: dict) -> None:
    """``speed_<device>.{csv,md}`` and one PNG per (scale, mode) under ``out``."""
    device = torch.device(args.device).type
    stem = f"speed_{device}"
    write_csv(rows, out / f"{stem}.csv")
    text = [
        f"# BEST-RQ speed test ({device})",
        "",
        f"Machine: {machine}.",
        f"Batch {args.batch_size} of random 16 kHz audio, {args.dtype}; median of {args.reps} runs "
        f"after {args.warmup} warm-up runs; each configuration in "
        + (
            "one process (`--in-process`: memory figures unreliable)."
            if args.in_process
            else "a fresh process."
        )
        + " `infer`: "
        "`no_grad` features + front end + encoder + head; `train`: loss, backward and AdamW "
        "step. Memory: peak above the built model "
        + ("(`torch.cuda.max_memory_allocated`)." if device == "cuda" else "(resident set).")
        + " Columns: input seconds. Ratios in parentheses: "
        + " / ".join(f"×{r}" for r in REFERENCES)
        + ".",
        "",
        "Command: `python -m speechbrain_ext.bench speed " + " ".join(_argv()) + "`",
    ]
    text += ["", throughput_note(peak, passes="forward; `train`: forward + backward")]
    if args.quick:
        text += ["", f"**Quick smoke run**: models shrunk with {QUICK_OVERRIDES}."]
    for scale in dict.fromkeys(r["scale"] for r in rows):
        for mode in dict.fromkeys(r["mode"] for r in rows):
            subset = [r for r in rows if r["scale"] == scale and r["mode"] == mode]
            if not subset:
                continue
            refs = [r for r in REFERENCES if any(row["model"] == r for row in subset)]
            text += [
                "",
                f"## {scale}, {mode}: time",
                "",
                ratio_table(
                    subset, series="model", x="seconds", value="time_s", refs=refs, unit="s"
                ),
                "",
                f"## {scale}, {mode}: peak memory",
                "",
                ratio_table(
                    subset, series="model", x="seconds", value="peak_mb", refs=refs, unit="MB"
                ),
                "",
                f"## {scale}, {mode}: FLOP per pass, GFLOP/s and % of peak",
                "",
                throughput_table(subset, series="model", x="seconds"),
            ]
            plot_time_memory(
                subset,
                out / f"{stem}_{scale}_{mode}.png",
                series="model",
                x="seconds",
                xlabel="input length (s)",
                title=f"BEST-RQ {scale}, {mode}, batch {args.batch_size}, {args.dtype}, {device}",
            )
    (out / f"{stem}.md").write_text("\n".join(text) + "\n")


def _argv() -> list[str]:
    args = sys.argv[1:]
    return args[1:] if args and args[0] == "speed" else args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``speed`` command's options."""
    parser.add_argument(
        "--scale",
        "--presets",
        nargs="+",
        default=["base", "large"],
        choices=["base", "large"],
        help="BEST-RQ preset sizes",
    )
    parser.add_argument(
        "--mixers", nargs="+", help="mixer specs (default: every registered mixer, then sb_*)"
    )
    parser.add_argument("--seconds", nargs="+", default=None, help="input lengths in seconds")
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=sorted(DTYPES),
        help="autocast dtype (default: float32 on CPU, bfloat16 on CUDA)",
    )
    parser.add_argument("--mode", default="both", choices=["infer", "train", "both"])
    add_measurement_arguments(
        parser,
        warmup=2,
        reps=5,
        timeout=900.0,
        quick_help=f"smoke run: {QUICK_OVERRIDES}, 0.5 and 1 s, 1 warm-up, 1 run",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the configurations of <out>/speed_<device>.csv measured with the same "
        "batch size, dtype and machine; run only the others",
    )
    parser.add_argument(
        "--retry-skipped",
        action="store_true",
        help="with --resume, measure again the configurations that an earlier run skipped "
        "(timeout, memory), e.g. under a longer --timeout; measured rows are still reused",
    )


def finalize(args: argparse.Namespace) -> argparse.Namespace:
    """Apply ``--quick`` and the device-dependent defaults."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but CUDA is not available")
    if args.retry_skipped and not args.resume:
        raise SystemExit("--retry-skipped re-measures the skipped rows of a --resume; add --resume")
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    if args.quick:
        args.seconds = args.seconds or ["0.5", "1"]
        args.warmup, args.reps = 1, 1
    args.seconds = args.seconds or [str(s) for s in DEFAULT_SECONDS]
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Entry point of ``python -m speechbrain_ext.bench speed``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ext.bench speed", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    return run(finalize(parser.parse_args(argv)))
