"""How quantization error propagates: one module type quantized at a time, layer by layer.

``python -m speechbrain_ext.quant errors --encoders conformer_s,sparseformer_dn_s --seconds S``
builds each Study A encoder inside HuBERT's waveform front end (as ``bench profile`` does), with
**random initial weights** (no trained checkpoint is used: the numbers describe how each
module type's quantization error grows through an untrained stack, not a trained model's
accuracy), and feeds it held-out synthetic speech: English sentences spoken by eSpeak NG
(:mod:`speechbrain_ext.corpus.espeak`), resampled to 16 kHz. The activation quantizers are
initialised on one utterance and the errors measured on another.

For each module group (:data:`GROUPS`: attention projections, attention probabilities (with Q,
K, V), FFN, convolutions, everything in the encoder; the waveform CNN front end stays FP32, as
in Study A) a copy of the model is quantized with ``--bits`` on that group only, and every
encoder layer's output is compared with the FP32 model's: relative error
``‖h_q − h‖ / ‖h‖`` and mean per-frame cosine similarity. Writes ``quant_errors.csv``,
``quant_errors.md`` and ``quant_errors.png`` to ``--out``.
"""

import argparse
import copy
import sys
from pathlib import Path

import torch

from speechbrain_ext.bench.tables import machine_info, markdown_table, write_csv
from speechbrain_ext.quant.model import initialize_quantizers, quantize_model

SAMPLE_RATE = 16000
DEFAULT_ENCODERS = ("conformer_s", "squeezeformer_xs", "sparseformer_dn_s", "sparseformer_sw_s")

#: Group name -> ``only=`` patterns (on the WaveformModel's module names) and the attention flag.
GROUPS = {
    "attention projections": (
        "encoder.layers.*.mixer.in_proj|encoder.layers.*.mixer.out_proj"
        "|encoder.layers.*.mixer.linear_pos",
        False,
    ),
    "attention probabilities (+Q, K, V)": ("encoder.layers.*.mixer.attention_quantizer", True),
    "FFN": ("encoder.layers.*.ffn|encoder.layers.*.ffn1|encoder.layers.*.ffn2", False),
    "convolutions": ("encoder.layers.*.conv|encoder.pos_conv|encoder.time_reduction", False),
    "everything": ("encoder", True),
}

SENTENCES = (
    "the birch canoe slid on the smooth planks and the boy was there when the sun rose",
    "glue the sheet to the dark blue background and it is easy to tell the depth of a well",
    "rice is often served in round bowls while the juice of lemons makes fine punch",
    "the box was thrown beside the parked truck and four hours of steady work faced us",
)


def synthetic_speech(seconds: float, *, sentence: int) -> torch.Tensor:
    """(1, samples) 16 kHz speech of ``seconds`` s: eSpeak NG sentences from ``sentence`` on."""
    import torchaudio

    from speechbrain_ext.corpus.espeak import get_espeak

    engine = get_espeak()
    pieces, total, index = [], 0, sentence
    while total < seconds * SAMPLE_RATE:
        text = SENTENCES[index % len(SENTENCES)]
        raw = torch.from_numpy(engine.synthesize(text, voice="en-us", seed=index).copy())
        audio = torchaudio.functional.resample(
            raw.float() / 32768.0, engine.sample_rate, SAMPLE_RATE
        )
        pieces.append(audio)
        total += audio.numel()
        index += 1
    return torch.cat(pieces)[: int(seconds * SAMPLE_RATE)].unsqueeze(0)


def layer_errors(reference: list, quantized: list) -> list[tuple[float, float]]:
    """(relative error, mean per-frame cosine) of every layer's output."""
    rows = []
    for ref, out in zip(reference, quantized):
        ref, out = ref.double().flatten(0, -2), out.double().flatten(0, -2)  # (frames, d)
        rel = float((out - ref).norm() / ref.norm().clamp(min=1e-12))
        cos = float(torch.nn.functional.cosine_similarity(out, ref, dim=-1).mean())
        rows.append((rel, cos))
    return rows


def measure(encoder: str, *, bits: str, seconds: float, seed: int = 0) -> list[dict]:
    """Rows (encoder, group, layer, rel_error, cosine) for one encoder preset."""
    from speechbrain_ext.bench.profile import build_profile_target

    torch.manual_seed(seed)
    model, _ = build_profile_target(encoder, seconds=seconds, frontend="hubert")
    model = model.eval()
    calibration = synthetic_speech(seconds, sentence=0)
    held_out = synthetic_speech(seconds, sentence=2)
    ones = torch.ones(1)
    with torch.no_grad():  # the encoder layers' outputs (the front end's, first, is FP32)
        reference = model(held_out, ones)[1:]
    rows = []
    for group, (patterns, attention) in GROUPS.items():
        spec = {"bits": bits, "only": patterns.split("|"), "attention": attention}
        spec["only"] = [p for p in spec["only"] if _has_match(model, p)]
        if not spec["only"]:
            continue  # e.g. no convolution in this encoder
        student = quantize_model(copy.deepcopy(model), spec)
        initialize_quantizers(student, calibration, ones)
        with torch.no_grad():
            errors = layer_errors(reference, student(held_out, ones)[1:])
        for layer, (rel, cos) in enumerate(errors, start=1):
            rows.append(
                {
                    "encoder": encoder,
                    "bits": bits,
                    "group": group,
                    "layer": layer,
                    "rel_error": round(rel, 5),
                    "cosine": round(cos, 5),
                    "seconds": seconds,
                }
            )
    return rows


def _has_match(model, pattern: str) -> bool:
    from speechbrain_ext.quant.spec import _matches

    names = [n for n, _ in model.named_modules()]
    names += [
        f"{n}.attention_quantizer"
        for n, m in model.named_modules()
        if hasattr(m, "attention_quantizer")
    ]
    return any(_matches(n, pattern) for n in names if n)


def plot(rows: list[dict], path: Path) -> None:
    """Relative error against layer, one panel per encoder, one line per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    encoders = list(dict.fromkeys(r["encoder"] for r in rows))
    fig, axes = plt.subplots(1, len(encoders), figsize=(4.2 * len(encoders), 3.6), squeeze=False)
    for ax, encoder in zip(axes[0], encoders):
        for group in GROUPS:
            points = [
                (r["layer"], r["rel_error"])
                for r in rows
                if r["encoder"] == encoder and r["group"] == group
            ]
            if points:
                ax.plot(*zip(*points), marker=".", label=group)
        ax.set_title(encoder)
        ax.set_xlabel("layer")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("relative error of the hidden state")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``errors`` command's options."""
    parser.add_argument("--encoders", default=",".join(DEFAULT_ENCODERS), help="Study A presets")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each utterance")
    parser.add_argument("--bits", default="w1a1", help="precision of the quantized group")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--out", default="benchmarks/results/quant_errors")


def errors_command(args, argv=None) -> list[dict]:
    """Run ``errors``; writes CSV, Markdown and PNG and returns the rows."""
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    rows = [
        row
        for encoder in encoders
        for row in measure(encoder, bits=args.bits, seconds=args.seconds, seed=args.seed)
    ]
    machine = machine_info("cpu")
    for row in rows:
        row["machine"] = machine
    out = Path(args.out)
    write_csv(rows, out / "quant_errors.csv")
    plot(rows, out / "quant_errors.png")
    last = {}
    for row in rows:
        last[(row["encoder"], row["group"])] = row  # the final layer's row
    table = markdown_table(
        [
            "encoder",
            "quantized group",
            "layers",
            "rel. error, last layer",
            "cosine, last layer",
            "mean rel. error",
        ],
        [
            [
                encoder,
                group,
                row["layer"],
                f"{row['rel_error']:.3f}",
                f"{row['cosine']:.3f}",
                f"{_mean(rows, encoder, group):.3f}",
            ]
            for (encoder, group), row in last.items()
        ],
    )
    command = "python -m speechbrain_ext.quant " + " ".join(sys.argv[1:] if argv is None else argv)
    text = (
        f"# Quantization error propagation ({args.bits}, one module group at a time)\n\n"
        f"Machine: {machine}\n\nCommand: `{command.strip()}`\n\n"
        "Models: Study A encoders inside HuBERT's waveform CNN front end (kept FP32), **random "
        f"initial weights** (seed {args.seed}; no trained checkpoint), eval mode. Input: "
        f"{args.seconds:g} s of synthetic English speech (eSpeak NG, 16 kHz); activation "
        "quantizers initialised on another utterance. Error of every encoder layer's output "
        "against the FP32 model: relative error ‖h_q − h‖/‖h‖ and mean per-frame cosine "
        "similarity. Per-layer values: `quant_errors.csv`; plot: `quant_errors.png`.\n\n"
        + table
        + "\n"
    )
    (out / "quant_errors.md").write_text(text)
    print(text)
    return rows


def _mean(rows, encoder, group) -> float:
    values = [r["rel_error"] for r in rows if r["encoder"] == encoder and r["group"] == group]
    return sum(values) / len(values)
