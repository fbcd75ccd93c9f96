"""Storage, FLOP, BOP and an A100 time estimate of any encoder, at any bit widths.

``python -m speechbrain_ext.bench profile PRESET_OR_FILE [--seconds S] [--bits fp32|w1a1|JSON]``
profiles one model on one random input of ``S`` seconds (batch 1); ``--study-a-table`` writes
Study A's Table 1 for our implementations beside the paper's numbers.

A model quantized by :func:`speechbrain_ext.quant.quantize_model` reports its own per-module bit
widths (:func:`speechbrain_ext.quant.quantized_bits`), which :func:`profile_model` uses when no
``bit_widths`` are given, with the packed storage of
:func:`speechbrain_ext.quant.quantized_storage_bytes`. ``--quant SPEC`` (e.g. ``w1a1``,
``w4a8,keep=frontend``) quantizes the profiled model that way instead of assuming ``--bits``.

What is counted (:mod:`.flops`; REFERENCE.md §6):

- **Storage** (MB = 1e6 bytes): Σ parameters × bits / 8, plus one 32-bit scale per binarized
  weight tensor and a 32-bit scale and shift per binarized activation quantizer.
- **FLOP** = 2 × MAC of every matmul, linear, convolution and fused attention op (PyTorch's
  ``FlopCounterMode`` formulas, plus the CPU fused-attention kernel, plus ``9·B·L·D·N`` per
  selective scan); elementwise work, norms and softmax are not counted. In a quantized model the
  FLOP column holds the floating-point ops only (ops below 16 bits are counted in BOP).
- **BOP** = Σ MAC × b_w × b_a (activation × activation products: b_a × b_a); a 32-bit MAC is 1024
  BOP. ``bop_float_g`` and ``bop_quant_g`` split it into ops at ≥ 16 bits and below (the paper's
  BOP_NonQ / BOP_BQ).
- **A100 time estimate**: Σ 2·MAC / peak rate of the op's precision, with the dense peaks of the
  NVIDIA A100 whitepaper (2020) and datasheet: FP32 19.5 TFLOP/s (CUDA cores), TF32 156, FP16/BF16
  312, INT8 624, INT4 1248, INT1 (binary) 4992 TOPS; 32-bit ops use the ``--fp32-rate`` peak
  (``tf32`` by default). It is a lower bound that ignores memory traffic and unfused work.

Models: Study A presets (``hubert_base_transformer``, ``conformer_s``, ``squeezeformer_xs``,
``sparseformer_dn_s``, ``sparseformer_sw_s``) are profiled inside HuBERT's waveform CNN front end
(the HuBERT recipe's :class:`~speechbrain_ext.ssl.hubert_model.HubertEncoder`); ``bestrq_*``
presets as the whole BEST-RQ encoder (fbank features, conv front end, encoder; no pretraining
head); other presets/kinds and ``--frontend none`` as the encoder
alone on (1, frames, d_model) input. A file may be a recipe yaml (an ``nn.Module`` under
``model`` or ``encoder``, at the top or in SpeechBrain's ``modules``; ``!PLACEHOLDER`` keys are
filled with dummies, ``output_folder`` goes to a temporary folder, and ``--override KEY=VALUE``
changes any key, e.g. ``--override mixer=performer``; a base or a variant, see
:mod:`speechbrain_ext.hparams`) or a ``bestrq_model.json`` / ``hubert_model.json``.

Example
-------
>>> from speechbrain_ext.nnet.mixers import build_mixer
>>> mixer = build_mixer("fastformer", d_model=16, nhead=2)
>>> row = profile_model(mixer, (torch.randn(1, 10, 16),), name="fastformer")
>>> row["params"], row["storage_mb"]
(848, 0.0034)
"""

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from speechbrain_ext.bench.flops import (
    A100_PEAK_OPS,
    BitWidths,
    CostCounter,
    storage_bytes,
    w1a1,
)
from speechbrain_ext.bench.tables import machine_info, markdown_table, write_csv

SAMPLE_RATE = 16000
STUDY_A_PRESETS = (
    "hubert_base_transformer",
    "conformer_s",
    "squeezeformer_xs",
    "sparseformer_dn_s",
    "sparseformer_sw_s",
)

#: Layers left FP32 in Study A's W1A1 rows: the waveform CNN. The paper's W1A1 rows keep
#: 7.2-11.8 GFLOP of floating-point work, nearly the same for every encoder, which fits a
#: full-precision front end; ``--keep-fp32`` (nothing) binarizes it too.
STUDY_A_KEEP_FP32 = ("front_end.extractor.*",)

#: Study A (arXiv 2311.02772), Table 1: (storage MB, FLOP G, BOP_NonQ G, BOP_BQ G,
#: NVDA_Est_Time 1e-4 s) per preset and precision ("FP32", "W1A1"); None where the paper has "-".
PAPER_TABLE1 = {
    ("hubert_base_transformer", "FP32"): (184.42, 110.54, 1228.64, None, 38.46),
    ("conformer_s", "FP32"): (131.87, 22.10, 329.39, None, 10.31),
    ("squeezeformer_xs", "FP32"): (132.04, 18.31, 272.88, None, 8.54),
    ("sparseformer_dn_s", "FP32"): (60.81, 26.05, 388.18, None, 12.15),
    ("sparseformer_sw_s", "FP32"): (117.18, 40.09, 597.43, None, 18.70),
    ("hubert_base_transformer", "W1A1"): (25.23, 11.82, 172.83, 63.62, 5.53),
    ("conformer_s", "W1A1"): (12.88, 7.23, 103.44, 15.94, 3.27),
    ("squeezeformer_xs", "W1A1"): (13.05, 7.20, 104.05, 11.86, 3.28),
    ("sparseformer_dn_s", "W1A1"): (12.10, 7.35, 107.91, 10.70, 3.40),
    ("sparseformer_sw_s", "W1A1"): (19.71, 8.85, 130.38, 19.49, 4.12),
}


def profile_model(
    model: nn.Module,
    inputs: tuple,
    *,
    name: str = "",
    bit_widths: BitWidths | None = None,
    precision: str = "",
    fp32_rate: str = "tf32",
    parts: tuple[str, ...] = (),
) -> dict:
    """Storage, MAC, FLOP, BOP and A100 time of one ``model(*inputs)`` call (eval, no_grad).

    Returns a row: ``params``, ``storage_mb``, ``gmac`` (all ops), ``gflop`` (floating-point ops,
    ≥ 16 bits), ``gbop``, ``bop_float_g``, ``bop_quant_g``, ``a100_time_s``, and for every
    submodule name in ``parts`` its ``<part>_gflop`` and ``<part>_params``.
    """
    from speechbrain_ext.quant import (
        is_quantized,
        quant_spec,
        quantized_bits,
        quantized_storage_bytes,
    )

    model = model.eval()
    quantized = bit_widths is None and is_quantized(model)
    if quantized:  # the model's own bit widths
        bit_widths = BitWidths(quantized_bits(model))
        precision = precision or quant_spec(model)
    with torch.no_grad(), CostCounter(model, bit_widths=bit_widths) as counter:
        model(*inputs)
    ops = counter.ops
    storage = quantized_storage_bytes(model) if quantized else storage_bytes(model, bit_widths)
    row = {
        "model": name,
        "precision": precision,
        "params": sum(p.numel() for p in model.parameters()),
        "storage_mb": round(storage / 1e6, 4),
        "gmac": counter.total_mac() / 1e9,
        "gflop": counter.float_flop() / 1e9,
        "gbop": counter.total_bop() / 1e9,
        "bop_float_g": sum(o.bop for o in ops if o.op_bits >= 16) / 1e9,
        "bop_quant_g": sum(o.bop for o in ops if o.op_bits < 16) / 1e9,
        "a100_time_s": counter.estimated_time(fp32=fp32_rate),
    }
    for part in parts:
        inside = [o for o in ops if o.module == part or o.module.startswith(part + ".")]
        row[f"{part}_gflop"] = sum(o.flop for o in inside if o.op_bits >= 16) / 1e9
        row[f"{part}_params"] = sum(p.numel() for p in model.get_submodule(part).parameters())
    return row


def default_frontend(name: str) -> str:
    """``hubert`` for Study A presets, ``bestrq`` for BEST-RQ presets, else ``none``."""
    if name in STUDY_A_PRESETS:
        return "hubert"
    if name.startswith("bestrq_"):
        return "bestrq"
    return "none"


def build_profile_target(
    name: str,
    *,
    seconds: float,
    frontend: str = "auto",
    frame_rate: float | None = None,
    overrides: dict | None = None,
) -> tuple[nn.Module, tuple]:
    """A model (dropout off) and its batch-1 input for a preset, encoder kind or file.

    Arguments
    ---------
    name : str
        Encoder preset or kind, recipe yaml, or ``bestrq_model.json``.
    seconds : float
        Input length.
    frontend : str
        ``"auto"`` (:func:`default_frontend`), ``"hubert"``, ``"bestrq"`` or ``"none"``.
    frame_rate : float, optional
        Frames per second of an encoder profiled alone (default 50 Hz, 25 Hz for ``bestrq_*``).
    overrides : dict, optional
        A recipe yaml's keys and their values as yaml text (only for a yaml).

    Example
    -------
    >>> model, (wavs,) = build_profile_target("conformer", seconds=0.5, frontend="hubert")
    Traceback (most recent call last):
    ...
    ValueError: the hubert front end needs num_layers, d_model and nhead for 'conformer'...
    """
    from speechbrain_ext.nnet.encoders import PRESETS, build_encoder

    path = Path(name)
    if path.suffix in (".yaml", ".yml", ".json") and path.exists():
        return _from_file(path, seconds=seconds, frame_rate=frame_rate, overrides=overrides)
    if overrides:
        raise ValueError(f"overrides {sorted(overrides)} apply to a recipe yaml, not to {name!r}")
    if frontend == "auto":
        frontend = default_frontend(name)
    num_samples = int(seconds * SAMPLE_RATE)
    if frontend == "bestrq":
        from speechbrain_ext.ssl.model import build_bestrq_model

        model = build_bestrq_model(name, dropout=0.0, front_end_dropout=0.0).encoder
        return model, (torch.randn(1, num_samples), torch.ones(1))
    if name not in PRESETS and frontend == "hubert":
        raise ValueError(
            f"the hubert front end needs num_layers, d_model and nhead for {name!r}; "
            "profile a preset, or pass --frontend none"
        )
    if frontend == "hubert":  # the encoder of the HuBERT recipe's own model
        from speechbrain_ext.ssl.hubert_model import build_hubert_model

        model = build_hubert_model(name, dropout=0.0, input_dropout=0.0).encoder
        return model, (torch.randn(1, num_samples), torch.ones(1))
    encoder = build_encoder(name, dropout=0.0)
    if frontend != "none":
        raise ValueError(f"unknown frontend {frontend!r}; valid: auto, hubert, bestrq, none")
    rate = frame_rate or (25.0 if name.startswith("bestrq_") else 50.0)
    frames = max(1, round(seconds * rate))
    return encoder, (torch.randn(1, frames, encoder.d_model),)


def _from_file(path: Path, *, seconds: float, frame_rate: float | None, overrides=None):
    num_samples = int(seconds * SAMPLE_RATE)
    if path.suffix == ".json":
        from speechbrain_ext.ssl.export import BUILDERS, CONFIG_NAMES

        framework = CONFIG_NAMES.get(path.name, "bestrq")
        config = json.loads(path.read_text())
        config.update(dropout=0.0)
        config.update(
            {"bestrq": {"front_end_dropout": 0.0}, "hubert": {"input_dropout": 0.0}}[framework]
        )
        model = BUILDERS[framework](**config)
        return model.encoder, (torch.randn(1, num_samples), torch.ones(1))
    from speechbrain_ext.hparams import load_recipe_hparams, resolve_variant

    text = resolve_variant(path)[0].read_text()  # a variant's keys are its base's
    placeholders = re.findall(r"^(\w+):\s*!PLACEHOLDER", text, flags=re.MULTILINE)
    values = {key: "/tmp/unused" for key in placeholders}
    with tempfile.TemporaryDirectory(prefix="profile_") as scratch:
        if re.search(r"^output_folder:", text, flags=re.MULTILINE):
            values["output_folder"] = scratch  # loading a recipe yaml may create its folders
        values.update(overrides or {})
        # as a yaml text, like SpeechBrain's command line: "2" is an int, "null" is None
        text = "\n".join(f"{key}: {value}" for key, value in values.items())
        hparams = load_recipe_hparams(path, text)[0]
    modules = hparams.get("modules") if isinstance(hparams.get("modules"), dict) else {}
    candidates = [hparams.get(key) for key in ("model", "encoder")]
    candidates += [modules.get(key) for key in ("model", "encoder")]
    module = next((c for c in candidates if isinstance(c, nn.Module)), None)
    if module is None:
        raise ValueError(
            f"{path}: no nn.Module under 'model' or 'encoder' (top level or in 'modules') "
            "to profile"
        )
    if hasattr(module, "encode") and hasattr(module, "encoder"):  # a BEST-RQ or HuBERT model
        return module.encoder.eval(), (torch.randn(1, num_samples), torch.ones(1))
    if hasattr(module, "hidden_size") and hasattr(module, "downsample_rate"):
        return module.eval(), (torch.randn(1, num_samples), torch.ones(1))
    d_model = getattr(module, "d_model", None)
    if d_model is None:
        raise ValueError(f"{path}: cannot tell the input of {type(module).__name__}")
    frames = max(1, round(seconds * (frame_rate or 25.0)))
    return module.eval(), (torch.randn(1, frames, d_model),)


def parse_bits(text: str | None, *, keep_fp32: tuple[str, ...] = ()) -> tuple[str, BitWidths]:
    """``fp32`` / ``w1a1`` / a JSON mapping (or a path to one) → (label, :class:`BitWidths`).

    >>> parse_bits('{"type:Linear": [4, 8]}')[1].rules
    {'type:Linear': (4, 8)}
    """
    if text in (None, "fp32", "FP32"):
        return "FP32", BitWidths()
    if text.lower() == "w1a1":
        return "W1A1", w1a1(keep_fp32=keep_fp32)
    source = Path(text).read_text() if Path(text).exists() else text
    try:
        rules = json.loads(source)
    except json.JSONDecodeError:
        raise ValueError(
            f"--bits must be fp32, w1a1, or a JSON mapping pattern -> [weight_bits, "
            f"activation_bits] (or a file holding one), got {text!r}"
        ) from None
    return "custom", BitWidths({k: tuple(v) for k, v in rules.items()})


def study_a_rows(
    *, seconds: float, fp32_rate: str, keep_fp32: tuple[str, ...] = STUDY_A_KEEP_FP32
) -> list:
    """Table 1 rows (ours beside the paper's) for every Study A preset, FP32 and W1A1 (with the
    layers matching ``keep_fp32`` left at FP32).
    """
    from speechbrain_ext.nnet.encoders import preset_config

    rows = []
    for precision in ("FP32", "W1A1"):
        bits = w1a1(keep_fp32=keep_fp32) if precision == "W1A1" else None
        for preset in STUDY_A_PRESETS:
            torch.manual_seed(0)
            model, inputs = build_profile_target(preset, seconds=seconds, frontend="hubert")
            row = profile_model(
                model,
                inputs,
                name=preset,
                bit_widths=bits,
                precision=precision,
                fp32_rate=fp32_rate,
                parts=("encoder",),
            )
            config = preset_config(preset)
            paper = PAPER_TABLE1[(preset, precision)]
            row.update(
                {
                    "seconds": seconds,
                    "layers_dim_heads": f"{config['num_layers']} / {config['d_model']} / "
                    f"{config['nhead']}",
                    "paper_storage_mb": paper[0],
                    "paper_gflop": paper[1],
                    "paper_bop_nonq_g": paper[2],
                    "paper_bop_bq_g": paper[3] if paper[3] is not None else "",
                    "paper_time_1e-4_s": paper[4],
                }
            )
            rows.append(row)
    return rows


def _g(value) -> str:
    if value == "" or value is None:
        return "–"
    return f"{value:.2f}" if value < 1000 else f"{value:.0f}"


def study_a_markdown(
    rows: list[dict], *, seconds: float, fp32_rate: str, command: str, keep_fp32=()
) -> str:
    """Study A's Table 1, ours beside the paper's, as Markdown."""
    headers = [
        "encoder (in HuBERT)",
        "L / D / H",
        "prec",
        "storage MB",
        "FLOP G",
        "BOP G",
        "BOP ≥16 bit G",
        "BOP <16 bit G",
        "A100 est. (1e-4 s)",
        "encoder-only FLOP G",
        "paper: storage MB",
        "paper: FLOP G",
        "paper: BOP_NonQ G",
        "paper: BOP_BQ G",
        "paper: time (1e-4 s)",
    ]
    body = [
        [
            r["model"],
            r["layers_dim_heads"],
            r["precision"],
            _g(r["storage_mb"]),
            _g(r["gflop"]),
            _g(r["gbop"]),
            _g(r["bop_float_g"]),
            _g(r["bop_quant_g"]),
            _g(r["a100_time_s"] * 1e4),
            _g(r["encoder_gflop"]),
            _g(r["paper_storage_mb"]),
            _g(r["paper_gflop"]),
            _g(r["paper_bop_nonq_g"]),
            _g(r["paper_bop_bq_g"]),
            _g(r["paper_time_1e-4_s"]),
        ]
        for r in rows
    ]
    peak = A100_PEAK_OPS[fp32_rate] / 1e12
    return "\n".join(
        [
            "# Study A, Table 1: cost of each encoder inside HuBERT (ours beside the paper's)",
            "",
            f"Input: {seconds:g} s of 16 kHz audio, batch 1, through HuBERT's waveform CNN front "
            "end (7 convolutions, 512 channels, ×320) and the encoder (no pretraining head). "
            "The paper does not state its input length, and its BOP (≈11–15 × its FLOP) does "
            "not follow MAC × b_w × b_a; compare shapes of the columns, not their values.",
            "",
            "W1A1: every Linear/Conv1d/Conv2d layer at 1-bit weights and activations, every "
            "activation × activation product (attention, scan) at 1 × 1 bit; norms, biases, "
            "embeddings and position tensors FP32; layers kept FP32: "
            + (", ".join(f"`{p}`" for p in keep_fp32) or "none")
            + ". FLOP counts floating-point ops only; binary ops are in BOP.",
            "",
            f"A100 estimate: Σ 2·MAC / peak, 32-bit ops at {fp32_rate.upper()} {peak:g} "
            "TFLOP/s, 1-bit ops at INT1 4992 TOPS (dense peaks of the A100 whitepaper).",
            "",
            f"Command: `{command}`",
            "",
            markdown_table(headers, body),
            "",
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``profile`` command's options."""
    parser.add_argument("target", nargs="?", help="encoder preset or kind, recipe yaml, or json")
    parser.add_argument("--seconds", type=float, default=10.0, help="input length (s)")
    parser.add_argument("--frontend", default="auto", choices=["auto", "hubert", "bestrq", "none"])
    parser.add_argument(
        "--frame-rate",
        type=float,
        default=None,
        help="frames per second of an encoder profiled alone",
    )
    parser.add_argument(
        "--bits",
        default="fp32",
        help="fp32, w1a1, or JSON {pattern: [weight_bits, activation_bits]}",
    )
    parser.add_argument(
        "--quant",
        default=None,
        metavar="SPEC",
        help="quantize the model with speechbrain_ext.quant (e.g. w1a1, w4a8,keep=frontend) "
        "and read the bit widths from it (instead of --bits)",
    )
    parser.add_argument(
        "--keep-fp32",
        nargs="*",
        default=None,
        help="module-name patterns kept FP32 under w1a1 (default: none; for "
        f"--study-a-table: {' '.join(STUDY_A_KEEP_FP32)}, the waveform CNN)",
    )
    parser.add_argument(
        "--fp32-rate",
        default="tf32",
        choices=["fp32", "tf32", "fp16"],
        help="A100 peak used for 32-bit ops",
    )
    parser.add_argument(
        "--study-a-table",
        action="store_true",
        help="write Study A's Table 1 (ours beside the paper's)",
    )
    parser.add_argument(
        "--by-module",
        type=int,
        default=0,
        metavar="DEPTH",
        help="also print FLOP per module name prefix of this depth",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a recipe yaml's key, e.g. mixer=performer (repeatable)",
    )
    parser.add_argument("--out", default=None, help="folder for CSV + Markdown")


def parse_overrides(items) -> dict:
    """``["mixer=performer", "scale=large"]`` → ``{"mixer": "performer", "scale": "large"}``.

    >>> parse_overrides(["mixer=performer", "num_encoder_layers=2"])
    {'mixer': 'performer', 'num_encoder_layers': '2'}
    """
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--override wants KEY=VALUE, got {item!r}")
        overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> list[dict]:
    """Entry point of ``python -m speechbrain_ext.bench profile``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ext.bench profile", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    command = "python -m speechbrain_ext.bench profile " + " ".join(
        sys.argv[2:] if argv is None else argv
    )
    if args.study_a_table:
        out = Path(args.out or "benchmarks/results")
        keep = STUDY_A_KEEP_FP32 if args.keep_fp32 is None else tuple(args.keep_fp32)
        rows = study_a_rows(seconds=args.seconds, fp32_rate=args.fp32_rate, keep_fp32=keep)
        for row in rows:
            row["machine"] = machine_info("cpu")
        write_csv(rows, out / "study_a_table1.csv")
        text = study_a_markdown(
            rows, seconds=args.seconds, fp32_rate=args.fp32_rate, command=command, keep_fp32=keep
        )
        (out / "study_a_table1.md").write_text(text)
        print(text)
        return rows
    if not args.target:
        parser.error("give a preset, kind or file to profile, or --study-a-table")
    label, bits = parse_bits(args.bits, keep_fp32=tuple(args.keep_fp32 or ()))
    torch.manual_seed(0)
    model, inputs = build_profile_target(
        args.target,
        seconds=args.seconds,
        frontend=args.frontend,
        frame_rate=args.frame_rate,
        overrides=parse_overrides(args.override),
    )
    if args.quant:
        if args.bits not in (None, "fp32", "FP32"):
            parser.error("give --bits or --quant, not both")
        from speechbrain_ext.quant import quantize_model

        model = quantize_model(model, args.quant)
        label, bits = model.quant_spec, None
    name = " ".join([args.target, *args.override])  # the target and its yaml overrides
    row = profile_model(
        model, inputs, name=name, bit_widths=bits, precision=label, fp32_rate=args.fp32_rate
    )
    row["seconds"] = args.seconds
    headers = list(row)
    print(markdown_table(headers, [[_cell(row[h]) for h in headers]]))
    if args.by_module:
        with torch.no_grad(), CostCounter(model, bit_widths=bits) as counter:
            model(*inputs)
        per_module = sorted(counter.by_module(args.by_module).items(), key=lambda kv: -kv[1])
        print(markdown_table(["module", "GFLOP"], [[k, f"{v / 1e9:.4g}"] for k, v in per_module]))
    if args.out:
        out = Path(args.out)
        stem = "_".join([Path(args.target).stem, *args.override])
        stem = re.sub(r"[^\w.-]", "_", f"{stem}_{label.lower()}")
        write_csv([row], out / f"profile_{stem}.csv")
        (out / f"profile_{stem}.md").write_text(
            f"Command: `{command}`\n\n"
            + markdown_table(headers, [[_cell(row[h]) for h in headers]])
            + "\n"
        )
    return [row]


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
