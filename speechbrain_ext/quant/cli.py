"""Command lines of :mod:`speechbrain_ext.quant`: ``pack`` and ``errors``
(:mod:`speechbrain_ext.quant.errors`).

``python -m speechbrain_ext.quant pack SOURCE --spec w1a1 --out DIR`` quantizes ``SOURCE``
(an encoder preset or kind built with random weights, or a BEST-RQ training output folder
loadable by :func:`speechbrain_ext.ssl.export.load_bestrq_model`), initialises its activation
quantizers on one batch of random input (``--calibrate-seconds``), writes the packed model to
``DIR`` and prints the FP32 and packed sizes measured on disk, in total and for the quantized
weights alone.
"""

import argparse
from pathlib import Path

import torch

from speechbrain_ext.bench.tables import markdown_table
from speechbrain_ext.quant.model import initialize_quantizers, quantize_model
from speechbrain_ext.quant.packing import pack_model

SAMPLE_RATE = 16000


def build_pack_source(source: str, *, dropout_off: bool = True) -> tuple[torch.nn.Module, dict]:
    """The FP32 model named by ``source`` and its :func:`~.packing.build_source` record."""
    from speechbrain_ext.nnet.encoders import ENCODERS, PRESETS, build_encoder

    if source in PRESETS or source in ENCODERS:
        options = {"dropout": 0.0} if dropout_off else {}
        record = {"type": "encoder", "name": source, "options": options}
        return build_encoder(source, **options), record
    path = Path(source)
    if path.exists():
        from speechbrain_ext.ssl.export import load_bestrq_model

        model = load_bestrq_model(path)
        return model, {"type": "bestrq", "config": model.config}
    valid = ", ".join(sorted(PRESETS))
    raise ValueError(
        f"pack source {source!r} is neither an encoder preset or kind nor an existing BEST-RQ "
        f"output folder; presets: {valid}"
    )


def calibration_inputs(model: torch.nn.Module, seconds: float) -> tuple[tuple, dict]:
    """One batch of random input for ``model`` (audio for BEST-RQ, 50 Hz frames otherwise)."""
    if hasattr(model, "encoder") and hasattr(model, "objective"):  # a BEST-RQ model
        wavs = torch.randn(1, int(seconds * SAMPLE_RATE))
        return (wavs, torch.ones(1)), {}
    frames = max(1, round(seconds * 50))
    return (torch.randn(1, frames, model.d_model),), {}


def pack_command(args) -> dict:
    """Run ``pack``; returns the sizes (bytes) and prints a table."""
    torch.manual_seed(args.seed)
    model, record = build_pack_source(args.source)
    quantize_model(model, args.spec)
    inputs, kwargs = calibration_inputs(model, args.calibrate_seconds)
    initialize_quantizers(model, *inputs, **kwargs)
    sizes = pack_model(model.eval(), args.out, source=record)
    rows = [
        [
            "total",
            f"{sizes['fp32_total'] / 1e6:.3f}",
            f"{sizes['packed_total'] / 1e6:.3f}",
            f"{sizes['fp32_total'] / sizes['packed_total']:.1f}",
        ],
        [
            f"quantized weights ({sizes['num_quantized_weights']} tensors)",
            f"{sizes['fp32_quantized'] / 1e6:.3f}",
            f"{sizes['packed_quantized'] / 1e6:.3f}",
            f"{sizes['fp32_quantized'] / sizes['packed_quantized']:.1f}",
        ],
    ]
    print(f"{args.source} at {args.spec} -> {args.out}")
    print(markdown_table(["part", "FP32 MB (on disk)", "packed MB (on disk)", "ratio"], rows))
    return sizes


def main(argv: list[str] | None = None):
    """Entry point of ``python -m speechbrain_ext.quant``."""
    parser = argparse.ArgumentParser(prog="python -m speechbrain_ext.quant")
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="write a quantized model with packed weights")
    pack.add_argument("source", help="encoder preset/kind (random weights) or BEST-RQ folder")
    pack.add_argument("--spec", default="w1a1", help="quantization spec, e.g. w1a1,keep=...")
    pack.add_argument("--out", required=True, help="output folder")
    pack.add_argument("--calibrate-seconds", type=float, default=2.0, help="α init input (s)")
    pack.add_argument("--seed", type=int, default=0)
    errors = commands.add_parser("errors", help="layer-wise quantization error vs FP32")
    from speechbrain_ext.quant.errors import add_arguments, errors_command

    add_arguments(errors)
    args = parser.parse_args(argv)
    if args.command == "errors":
        return errors_command(args, argv)
    return pack_command(args)
