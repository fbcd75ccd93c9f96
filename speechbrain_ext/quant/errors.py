"""How quantization error propagates: one module type quantized at a time, layer by layer.

``python -m speechbrain_ext.quant errors --encoders conformer_s,sparseformer_dn_s --seconds S``
builds each Study A encoder inside HuBERT's waveform front end (as ``bench profile`` does), with
**random initial weights** (the numbers then describe how each module type's quantization
error grows through an untrained stack); ``--models NAME=FOLDER,...`` measures trained SSL
models instead (BEST-RQ or HuBERT output folders, through ``load_ssl_encoder``), and
``--students NAME=FOLDER,...`` adds, for a model, its distilled quantized student (e.g. the
recipe's ``--quantize=w1a1 --teacher=FOLDER`` run): the error before distillation (the trained
weights quantized, α initialised) beside the error after. Input: held-out synthetic speech,
English sentences spoken by eSpeak NG (:mod:`speechbrain_ext.corpus.espeak`), resampled to
16 kHz. The activation quantizers are initialised on one utterance and the errors measured on
another.

For each module group (:data:`GROUPS`: attention projections, attention probabilities (with Q,
K, V), FFN, convolutions, everything in the encoder; the waveform CNN front end stays FP32, as
in Study A) a copy of the model is quantized with ``--bits`` on that group only, and every
encoder layer's output is compared with the FP32 model's: relative error
``‖h_q − h‖ / ‖h‖`` and mean per-frame cosine similarity. A student's rows are the group
:data:`DISTILLED`. Writes ``quant_errors.csv``, ``quant_errors.md`` and ``quant_errors.png`` to
``--out``.
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

#: The group name of a distilled student's rows (everything quantized as its spec says, trained).
DISTILLED = "everything, after distillation"

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


def measure(
    encoder: str,
    *,
    bits: str,
    seconds: float,
    seed: int = 0,
    model: torch.nn.Module | None = None,
    student: torch.nn.Module | None = None,
) -> list[dict]:
    """Rows (encoder, weights, group, layer, rel_error, cosine) for one encoder.

    Arguments
    ---------
    encoder : str
        A Study A preset, built with random weights (seeded by ``seed``), unless ``model`` is
        given; then the name shown for it.
    bits, seconds : str, float
        Precision of the quantized group and length of the utterances.
    model : nn.Module, optional
        A trained encoder (``load_ssl_encoder``): ``(wavs, wav_lens) -> list of layers``.
    student : nn.Module, optional
        ``model``'s distilled quantized student, measured as the group :data:`DISTILLED`.
    """
    from speechbrain_ext.bench.profile import build_profile_target

    weights = "trained"
    if model is None:
        torch.manual_seed(seed)
        model, _ = build_profile_target(encoder, seconds=seconds, frontend="hubert")
        weights = f"random (seed {seed})"
    model = model.eval()
    calibration = synthetic_speech(seconds, sentence=0)
    held_out = synthetic_speech(seconds, sentence=2)
    ones = torch.ones(1)
    with torch.no_grad():  # the encoder layers' outputs (the front end's, first, is FP32)
        reference = model(held_out, ones)[1:]
    measured = []
    for group, (patterns, attention) in GROUPS.items():
        spec = {"bits": bits, "only": patterns.split("|"), "attention": attention}
        spec["only"] = [p for p in spec["only"] if _has_match(model, p)]
        if not spec["only"]:
            continue  # e.g. no convolution in this encoder
        quantized = quantize_model(copy.deepcopy(model), spec)
        initialize_quantizers(quantized, calibration, ones)
        with torch.no_grad():
            measured.append((group, layer_errors(reference, quantized(held_out, ones)[1:])))
    if student is not None:
        with torch.no_grad():
            measured.append(
                (DISTILLED, layer_errors(reference, student.eval()(held_out, ones)[1:]))
            )
    return [
        {
            "encoder": encoder,
            "weights": weights,
            "bits": bits,
            "group": group,
            "layer": layer,
            "rel_error": round(rel, 5),
            "cosine": round(cos, 5),
            "seconds": seconds,
        }
        for group, errors in measured
        for layer, (rel, cos) in enumerate(errors, start=1)
    ]


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
    fig, axes = plt.subplots(
        1, len(encoders), figsize=(4.2 * len(encoders), 3.6), squeeze=False, sharey=True
    )
    for ax, encoder in zip(axes[0], encoders):
        for group in (*GROUPS, DISTILLED):
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
    parser.add_argument(
        "--encoders", default=",".join(DEFAULT_ENCODERS),
        help="Study A presets built with random weights, comma-separated (none: no preset)",
    )  # fmt: skip
    parser.add_argument(
        "--models", default="", metavar="NAME=FOLDER,...",
        help="trained SSL output folders (BEST-RQ or HuBERT), measured instead of / beside presets",
    )  # fmt: skip
    parser.add_argument(
        "--students", default="", metavar="NAME=FOLDER,...",
        help="the distilled quantized student of a --models NAME (after-distillation rows)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each utterance")
    parser.add_argument("--bits", default="w1a1", help="precision of the quantized group")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--out", default="benchmarks/results/quant_errors")


def errors_command(args, argv=None) -> list[dict]:
    """Run ``errors``; writes CSV, Markdown and PNG and returns the rows."""
    from speechbrain_ext.ssl.export import load_ssl_encoder

    encoders = [e.strip() for e in args.encoders.split(",") if e.strip() not in ("", "none")]
    models, students = (
        named_folders(args.models, "--models"),
        named_folders(args.students, "--students"),
    )
    unknown = sorted(set(students) - set(models))
    if unknown:
        raise ValueError(f"--students {unknown}: no --models entry of that name")
    if not encoders and not models:
        raise ValueError("nothing to measure: give --encoders or --models")
    rows = [
        row
        for encoder in encoders
        for row in measure(encoder, bits=args.bits, seconds=args.seconds, seed=args.seed)
    ]
    for name, folder in models.items():
        student = load_ssl_encoder(students[name]) if name in students else None
        rows += measure(
            name,
            bits=args.bits,
            seconds=args.seconds,
            model=load_ssl_encoder(folder),
            student=student,
        )
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
            "weights",
            "quantized group",
            "layers",
            "rel. error, last layer",
            "cosine, last layer",
            "mean rel. error",
        ],
        [
            [
                encoder,
                row["weights"],
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
        + models_description(encoders, models, students, seed=args.seed)
        + " Eval mode. Input: "
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


def models_description(encoders, models: dict, students: dict, *, seed: int) -> str:
    """What the table measured, in a sentence or two."""
    parts = []
    if encoders:
        parts.append(
            "Study A encoders inside HuBERT's waveform CNN front end (kept FP32) with **random "
            f"initial weights** (seed {seed}; no trained checkpoint): {', '.join(encoders)}."
        )
    if models:
        parts.append(
            "Trained models (their FP32 front end kept): "
            + ", ".join(f"{name} = `{folder}`" for name, folder in models.items())
            + "."
        )
    if students:
        parts.append(
            f"Rows '{DISTILLED}': the distilled student against its FP32 teacher: "
            + ", ".join(f"{name} = `{folder}`" for name, folder in students.items())
            + "."
        )
    return "Models: " + " ".join(parts)


def named_folders(text: str, option: str) -> dict[str, str]:
    """``"a=x,b=y"`` → ``{"a": "x", "b": "y"}``; ``ValueError`` naming ``option`` otherwise.

    Example
    -------
    >>> named_folders("conformer_s=runs/c, sparse=runs/s", "--models")
    {'conformer_s': 'runs/c', 'sparse': 'runs/s'}
    >>> named_folders("runs/c", "--models")
    Traceback (most recent call last):
    ...
    ValueError: --models wants NAME=FOLDER,..., got 'runs/c'
    """
    pairs = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"{option} wants NAME=FOLDER,..., got {item!r}")
        pairs[name.strip()] = folder.strip()
    return pairs


def _mean(rows, encoder, group) -> float:
    values = [r["rel_error"] for r in rows if r["encoder"] == encoder and r["group"] == group]
    return sum(values) / len(values)
