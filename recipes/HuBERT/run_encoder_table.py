#!/usr/bin/env python3
"""Regenerate the Study A table: HuBERT with each of its five encoders at one CPU budget.

Runs ``train.py hparams/cpu.yaml`` (both iterations, the same data, :data:`TABLE_STEPS` steps
per iteration) for each Study A encoder at a CPU size (depth ÷ 4; the 144-wide Conformer-S and
Squeezeformer-XS keep their width, the Transformer and Sparseformers are narrowed, the deep-
narrow / shallow-wide contrast kept), then gathers every run into a Markdown table and a CSV:
held-out masked-prediction accuracy of each iteration beside its baselines, PNMI of each
iteration's targets, parameters at the CPU size and at Study A's size next to Study A's figures,
wall time.

    python run_encoder_table.py                       # the README's table
    python run_encoder_table.py --encoders conformer_s -- --optimizer_step_limit=50
    python run_encoder_table.py --collect-only        # rebuild the table only

Arguments after ``--`` are passed to every ``train.py`` run.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

from speechbrain_ext.nnet.encoders.presets import STUDY_FIGURES
from speechbrain_ext.ssl.hubert_model import build_hubert_model
from speechbrain_ext.ssl.systems import run_systems

HERE = Path(__file__).resolve().parent
CPU_YAML = "hparams/cpu.yaml"
TABLE_STEPS = 300  # per iteration, for every encoder (the CPU job itself runs 900)
CPU_SHAPES = {  # encoder → (layers, d_model, d_ffn) of its CPU-sized model; 4 heads each
    "hubert_base_transformer": (3, 192, 768),  # 12 / 768 / 12 heads
    "conformer_s": (4, 144, 576),  # 16 / 144
    "squeezeformer_xs": (4, 144, 576),  # 16 / 144
    "sparseformer_dn_s": (4, 128, 512),  # 16 / 256: deep-narrow
    "sparseformer_sw_s": (2, 256, 1024),  # 8 / 512: shallow-wide
}


def system_arguments(encoder: str) -> list[str]:
    """The train.py arguments of one encoder's CPU-sized run."""
    layers, d_model, d_ffn = CPU_SHAPES[encoder]
    return [
        CPU_YAML,
        f"--encoder={encoder}",
        f"--num_encoder_layers={layers}",
        f"--d_model={d_model}",
        "--nhead=4",
        f"--d_ffn={d_ffn}",
        f"--optimizer_step_limit={TABLE_STEPS}",
        f"--total_steps={TABLE_STEPS}",
        "--noprogressbar",
    ]


def parameters(encoder: str, **overrides) -> int:
    """Parameters of the whole HuBERT model (CNN, encoder, head) for ``encoder``."""
    model = build_hubert_model(encoder, num_classes=500, device="meta", **overrides)
    return sum(p.numel() for p in model.parameters())


def collect(out: Path, walls: dict) -> str:
    """Write ``out/encoder_table.{md,csv}`` from the runs; returns the Markdown."""
    rows = []
    for encoder in CPU_SHAPES:
        folder = out / encoder
        per_iteration = {}
        for iteration in (1, 2):
            results_file = folder / f"iter{iteration}" / "results.json"
            if results_file.is_file():
                per_iteration[iteration] = json.loads(results_file.read_text())
        if not per_iteration:
            continue
        config = json.loads((folder / "iter1" / "hubert_model.json").read_text())
        cpu_kwargs = {k: config[k] for k in ("num_layers", "d_model", "nhead", "d_ffn")}
        cpu_kwargs["extractor_channels"] = config["extractor_channels"]
        row = {
            "encoder": encoder,
            "study_system": STUDY_FIGURES[encoder]["system"],
            "cpu_shape": f"{config['num_layers']} / {config['d_model']}",
            "cpu_params_m": round(parameters(encoder, **cpu_kwargs) / 1e6, 2),
            "study_size_params_m": round(parameters(encoder) / 1e6, 2),
            "study_fp32_mb": STUDY_FIGURES[encoder]["storage_mb"],
            "wall_min": round(walls[encoder] / 60, 1) if encoder in walls else None,
        }
        for iteration, results in sorted(per_iteration.items()):
            accuracy = results["accuracy"]
            quality = results["cluster_quality"].get("train", {})  # the largest split
            row[f"it{iteration}_accuracy"] = round(100 * accuracy["trained"], 2)
            row[f"it{iteration}_majority"] = round(100 * accuracy["most_frequent_class"], 2)
            row[f"it{iteration}_random"] = round(100 * accuracy["random_init"], 2)
            row[f"it{iteration}_pnmi"] = round(quality["pnmi"], 3) if "pnmi" in quality else None
        rows.append(row)
    if not rows:
        raise SystemExit("no results found: run the table first")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(out / "encoder_table.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| encoder (Study A system) | CPU layers / d | params CPU (M) | params at study size (M) "
        "| Study A FP32 (MB) | it. 1 acc. / majority / random (%) | it. 1 PNMI (train) "
        "| it. 2 acc. / majority / random (%) | it. 2 PNMI (train) | wall (min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:

        def cell(key, r=r):
            return "—" if r.get(key) is None else r[key]

        its = [
            f"{cell(f'it{i}_accuracy')} / {cell(f'it{i}_majority')} / {cell(f'it{i}_random')}"
            for i in (1, 2)
        ]
        lines.append(
            f"| `{r['encoder']}` ({r['study_system']}) | {r['cpu_shape']} | {r['cpu_params_m']} "
            f"| {r['study_size_params_m']} | {r['study_fp32_mb']} | {its[0]} | {cell('it1_pnmi')} "
            f"| {its[1]} | {cell('it2_pnmi')} | {cell('wall_min')} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "encoder_table.md").write_text(text)
    return text


def main(argv):
    extra = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="+", choices=list(CPU_SHAPES), default=list(CPU_SHAPES))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "encoder_table")
    parser.add_argument("--rerun", action="store_true", help="rerun finished systems too")
    parser.add_argument("--collect-only", action="store_true")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    walls = {}
    if not args.collect_only:
        systems = {encoder: system_arguments(encoder) for encoder in args.encoders}
        walls = run_systems(HERE, systems, out=out, extra=extra, rerun=args.rerun)
    for encoder in CPU_SHAPES:
        wall_file = out / encoder / "wall_time.json"
        if encoder not in walls and wall_file.is_file():
            walls[encoder] = json.loads(wall_file.read_text())["seconds"]
    print(collect(out, walls))


if __name__ == "__main__":
    main(sys.argv[1:])
