#!/usr/bin/env python3
"""Regenerate the five-mixer table: BEST-RQ with every mixer at the same budget.

Runs ``train.py hparams/cpu.yaml --mixer=<mixer>`` (the CPU-sized main job of the
README; with ``--no-cpu-defaults``, ``hparams/bestrq_<mixer>.yaml``) for each mixer,
one after the other, then gathers every run's ``results.json`` into a Markdown table and a
CSV: held-out masked-prediction accuracy beside the two baselines, parameters,
wall time and training throughput.

    python run_mixer_table.py                                   # the README's CPU-sized run
    python run_mixer_table.py --mixers mhsa fastformer -- --optimizer_step_limit=100
    python run_mixer_table.py --collect-only                    # rebuild the table only

Arguments after ``--`` are passed to every ``train.py`` run (after the defaults).
"""

import argparse
import csv
import json
import sys
from pathlib import Path

from speechbrain_ext.ssl.systems import run_systems
from speechbrain_ext.ssl.training import median_throughput

HERE = Path(__file__).resolve().parent
MIXERS = ("mhsa", "fastformer", "hypermixing", "summarymixing", "mamba")
CPU_YAML = "hparams/cpu.yaml"  # the CPU-sized configuration, also `make demo`'s


def collect(outputs: dict[str, Path], wall: dict[str, float], table: Path) -> str:
    """Write ``table`` (.md) and its .csv from the runs' results; returns the Markdown."""
    rows = []
    for mixer, output in outputs.items():
        results_file = output / "results.json"
        if not results_file.is_file():
            continue
        results = json.loads(results_file.read_text())
        config = json.loads((output / "bestrq_model.json").read_text())
        acc = results["accuracy"]
        rows.append(
            {
                "mixer": mixer,
                "d_model": config.get("d_model"),
                "layers": config.get("num_layers"),
                "steps": results["optimizer_steps"],
                "wall_min": round(wall[mixer] / 60, 1) if mixer in wall else None,
                "train_audio_s_per_s": median_throughput(output / "train_log.txt"),
                "accuracy": round(100 * acc["trained"], 2),
                "most_frequent_codeword": round(100 * acc["most_frequent_class"], 2),
                "random_init": round(100 * acc["random_init"], 2),
                "masked_frames": results["num_masked"],
            }
        )
    if not rows:
        raise SystemExit("no results.json found: run the table first")
    table.parent.mkdir(parents=True, exist_ok=True)
    with open(table.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = (
        "| mixer | layers / d_model | steps | wall (min) | train audio s/s | accuracy (%) "
        "| most frequent codeword (%) | random init (%) | masked frames |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shown = {k: "—" if v is None else v for k, v in r.items()}
        lines.append(
            f"| {r['mixer']} | {r['layers']} / {r['d_model']} | {r['steps']} | {shown['wall_min']} "
            f"| {shown['train_audio_s_per_s']} | {r['accuracy']} | {r['most_frequent_codeword']} "
            f"| {r['random_init']} | {r['masked_frames']} |"
        )
    text = "\n".join(lines) + "\n"
    table.with_suffix(".md").write_text(text)
    return text


def main(argv):
    extra = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mixers", nargs="+", choices=MIXERS, default=list(MIXERS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "mixer_table")
    parser.add_argument("--no-cpu-defaults", action="store_true", help="only the yaml + extras")
    parser.add_argument("--collect-only", action="store_true")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    outputs = {mixer: args.out / mixer for mixer in args.mixers}
    wall = {}
    if not args.collect_only:
        systems = {
            mixer: (
                [f"hparams/bestrq_{mixer}.yaml"]
                if args.no_cpu_defaults
                else [CPU_YAML, f"--mixer={mixer}"]
            )
            + ["--noprogressbar"]
            for mixer in args.mixers
        }
        wall = run_systems(HERE, systems, out=args.out, extra=extra, rerun=True)
    print(collect(outputs, wall, args.out / "mixer_table"))


if __name__ == "__main__":
    main(sys.argv[1:])
