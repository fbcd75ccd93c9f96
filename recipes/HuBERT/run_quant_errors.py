#!/usr/bin/env python3
"""Study A's hypothesis on trained models: how 1-bit errors propagate, before and after BiT.

For each Study A encoder at its CPU size (as ``run_encoder_table.py``), this trains HuBERT's
first iteration (:data:`STEPS` steps), distils it into a W1A1 student (``--quantize=w1a1
--teacher=<that run>``, the same steps), then runs ``python -m speechbrain_ext.quant errors``
on the trained models and their students: one module group quantized at a time from the
trained weights (before distillation) and the distilled student (after), layer by layer.
Finished runs are reused.

    python run_quant_errors.py                        # benchmarks/results/quant_errors_trained/
    python run_quant_errors.py --encoders conformer_s sparseformer_dn_s -- --optimizer_step_limit=50
"""

import argparse
import os
import sys
from pathlib import Path

from run_encoder_table import CPU_SHAPES, system_arguments

from speechbrain_ext.quant.cli import main as quant_main
from speechbrain_ext.ssl.systems import run_systems

HERE = Path(__file__).resolve().parent
STEPS = 300  # per run, FP32 and student
DEFAULT_ENCODERS = ("conformer_s", "squeezeformer_xs", "sparseformer_dn_s", "sparseformer_sw_s")
OUT = HERE.parents[1] / "benchmarks" / "results" / "quant_errors_trained"


def main(argv):
    extra = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="+", choices=list(CPU_SHAPES), default=DEFAULT_ENCODERS)
    parser.add_argument("--runs", type=Path, default=HERE / "results" / "quant_errors")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    runs = args.runs.resolve()
    steps = [f"--optimizer_step_limit={STEPS}", f"--total_steps={STEPS}", "--iterations=1"]
    fp32 = {e: [*system_arguments(e), *steps] for e in args.encoders}
    run_systems(HERE, fp32, out=runs / "fp32", extra=extra)
    students = {
        e: [*system_arguments(e), *steps, "--quantize=w1a1", f"--teacher={runs / 'fp32' / e}"]
        for e in args.encoders
    }
    run_systems(HERE, students, out=runs / "w1a1", extra=extra)
    root = HERE.parents[1]
    os.chdir(root)  # the table names its folders relative to the repository

    def folders(kind):
        return ",".join(f"{e}={os.path.relpath(runs / kind / e, root)}" for e in args.encoders)

    quant_main(
        [
            "errors",
            "--encoders=none",
            f"--models={folders('fp32')}",
            f"--students={folders('w1a1')}",
            f"--seconds={args.seconds}",
            f"--out={os.path.relpath(args.out.resolve(), root)}",
        ]
    )


if __name__ == "__main__":
    main(sys.argv[1:])
