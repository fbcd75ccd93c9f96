#!/usr/bin/env python3
"""BEST-RQ training throughput: our MHSA and Fastformer models against SpeechBrain's.

One training step = the full BEST-RQ forward (fbank, normalisation, masking with
noise, quantizer targets, front end, encoder, head, masked cross-entropy),
backward and an AdamW step. Three models, same sizes, same random audio, same
machine, one run:

- ``speechbrain_mhsa``: the study's MHSA model as SpeechBrain 1.1.2 ships it
  (``ConvolutionFrontEnd``, ``TransformerASR`` with a Conformer encoder and
  ``RelPosMHAXL``, ``EncoderWrapper``, SpeechBrain's ``RandomProjectionQuantizer``
  and BEST-RQ mask), wired as in its BEST-RQ recipe's ``compute_forward``;
- ``ours_mhsa`` and ``ours_fastformer``: ``build_bestrq_model("bestrq_base_<mixer>")``.

``--variants`` adds rows of our models trained as the recipes' opt-in keys train them:
``compile`` (``--compile``: ``torch.compile`` of the encoder, :mod:`speechbrain_ext.ssl.compile`;
compilation happens in the warm-up steps, whose total is reported), ``fused``
(``optimizer_fused``: one fused AdamW kernel) and ``compile+fused``. SpeechBrain's model always
runs as its recipe runs it (eager, the default AdamW).

Each model runs in a fresh subprocess, so its peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the process' peak resident memory
minus its resident memory once the libraries are imported.
Throughput is seconds of audio per second of wall time (median over the timed
steps). Each row also gives its step's FLOP (forward and backward, counted once on the eager
model before the timed steps) divided by the step time, as a percentage of the machine's
matmul peak, the higher of its measurements at the start and the end of the run
(:mod:`speechbrain_ext.bench.peak`): how close each implementation runs to what the machine can
do. Results:
``<out>/bestrq_throughput.csv`` and ``.md`` (ratios against ``speechbrain_mhsa``).

Usage::

    python benchmarks/bestrq_throughput.py                       # study base sizes
    python benchmarks/bestrq_throughput.py --device cuda --precision bf16 --batch-size 8
    python benchmarks/bestrq_throughput.py --variants eager compile fused compile+fused
    python benchmarks/bestrq_throughput.py --quick               # a seconds-long smoke run
"""

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("speechbrain_mhsa", "ours_mhsa", "ours_fastformer")
VARIANTS = ("eager", "compile", "fused", "compile+fused")
QUICK = {"num_layers": 1, "nhead": 2, "d_ffn": 64, "codebook_size": 64, "d_model": 32}
STUDY = {"num_layers": 12, "nhead": 8, "d_ffn": 2048, "codebook_size": 8192}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
PEAK_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def build_speechbrain_model(*, d_model, nhead, num_layers, d_ffn, codebook_size):
    """SpeechBrain's BEST-RQ MHSA model (its recipe's modules) as one nn.Module."""
    import torch
    import torch.nn.functional as F
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.BESTRQ import compute_mask
    from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
    from speechbrain.lobes.models.transformer.TransformerASR import (
        EncoderWrapper,
        TransformerASR,
    )
    from speechbrain.nnet.linear import Linear
    from speechbrain.nnet.quantisers import RandomProjectionQuantizer
    from speechbrain.processing.features import InputNormalization

    class SpeechBrainBestRQ(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fbank = Fbank(sample_rate=16000, n_fft=400, n_mels=80)
            self.normalize = InputNormalization(norm_type="sentence")
            self.cnn = ConvolutionFrontEnd(
                input_shape=(8, 10, 80),
                num_blocks=2,
                num_layers_per_block=1,
                out_channels=(128, 32),
                kernel_sizes=(3, 3),
                strides=(2, 2),
                residuals=(False, False),
            )
            transformer = TransformerASR(
                input_size=640,
                tgt_vocab=codebook_size,
                d_model=d_model,
                nhead=nhead,
                num_encoder_layers=num_layers,
                num_decoder_layers=0,
                d_ffn=d_ffn,
                dropout=0.1,
                activation=torch.nn.GELU,
                conformer_activation=torch.nn.GELU,
                encoder_module="conformer",
                attention_type="RelPosMHAXL",
                normalize_before=True,
                causal=False,
            )
            self.wrapper = EncoderWrapper(transformer)
            self.quantizer = RandomProjectionQuantizer(320, 16, codebook_size)
            self.linear = Linear(input_size=d_model, n_neurons=codebook_size)

        def forward(self, wavs, wav_lens):
            with torch.autocast(wavs.device.type, enabled=False):
                feats = self.normalize(self.fbank(wavs.float()), wav_lens)
            feats = F.pad(feats, (0, 0, 0, -feats.shape[1] % 4))
            batch, time, dim = feats.shape
            lengths = (wav_lens * time).long().tolist()
            mask = compute_mask((batch, time, dim), lengths, 0.15, 4).to(wavs.device)
            mask_idx = mask[::4] // 4
            targets = self.quantizer(feats.view(batch, time // 4, -1)[:, mask_idx, :])
            noise = torch.normal(0.0, 0.1, size=(batch, mask.shape[0], dim), device=wavs.device)
            feats[:, mask, :] = noise
            logits = self.linear(self.wrapper(self.cnn(feats), wav_lens))[:, mask_idx, :]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.view(-1))
            return {"loss": loss}

    return SpeechBrainBestRQ()


def build_model(name: str, sizes: dict):
    """One of :data:`MODELS` at ``sizes`` (``d_model`` None: the study's per-mixer width)."""
    from speechbrain_ext.nnet.encoders import preset_config
    from speechbrain_ext.ssl.model import build_bestrq_model

    mixer = name.split("_", 1)[1]
    d_model = sizes["d_model"] or preset_config(f"bestrq_base_{mixer}")["d_model"]
    common = {k: sizes[k] for k in ("nhead", "d_ffn", "codebook_size")}
    if name == "speechbrain_mhsa":
        return build_speechbrain_model(d_model=d_model, num_layers=sizes["num_layers"], **common)
    return build_bestrq_model(
        f"bestrq_base_{mixer}", d_model=d_model, num_layers=sizes["num_layers"], **common
    )


def _current_rss_mb() -> float:
    """Resident memory of this process now (Linux), in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_worker(config: dict) -> dict:
    """Time training steps of one model in this process; returns the measurements."""
    import torch

    from speechbrain_ext.bench.flops import try_count_step_flop

    torch.manual_seed(0)
    device = torch.device(config["device"])
    rss_before_mb = _current_rss_mb()  # imports done, nothing built yet
    model = build_model(config["model"], config["sizes"]).to(device).train()
    variant = config.get("variant", "eager")
    compiled = False
    samples = int(config["seconds"] * 16000)
    generator = torch.Generator().manual_seed(0)
    wavs = (0.1 * torch.randn(config["batch_size"], samples, generator=generator)).to(device)
    wav_lens = torch.ones(config["batch_size"], device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config["precision"])

    def forward_backward():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(wavs, wav_lens)["loss"]
        loss.backward()

    # FLOP of one step's forward and backward, counted on the eager model (the same FLOP a
    # compiled one runs; the counter does not see inside compiled graphs) before anything is timed.
    flop = try_count_step_flop(model, forward_backward)
    model.zero_grad(set_to_none=True)
    if "compile" in variant:
        from speechbrain_ext.ssl.compile import compile_encoder, is_compiled

        compile_encoder(model)
    fused = {"fused": True} if "fused" in variant else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, **fused)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(wavs, wav_lens)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{config['model']}: non-finite loss {float(loss)}")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    for _ in range(config["warmup"]):
        step()
    sync()
    warmup_s = time.perf_counter() - start
    if "compile" in variant:
        compiled = is_compiled(model)  # False: it fell back to eager (logged), the row says so
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(config["steps"]):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        peak_mb = peak_rss_mb - rss_before_mb  # the model's and its training's share
    median = statistics.median(times)
    return {
        "model": config["model"] if variant == "eager" else f"{config['model']}+{variant}",
        "compiled": compiled,
        "warmup_s": warmup_s,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "step_s": median,
        "audio_s_per_s": config["batch_size"] * config["seconds"] / median,
        "peak_mb": peak_mb,
        "flop": flop,
    }


def measure(name: str, args, variant: str = "eager") -> dict:
    """Run :func:`run_worker` for ``name`` (and ``variant``) in a fresh subprocess."""
    config = {
        "model": name,
        "variant": variant,
        "device": args.device,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "steps": args.steps,
        "sizes": args.sizes,
    }
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(config)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} ({variant}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_results(rows: list[dict], args, peak: dict) -> tuple[Path, Path]:
    """CSV and Markdown (with ratios against SpeechBrain's model, and each step's FLOP rate
    against the machine's measured matmul ``peak``) in ``args.out``.
    """
    from speechbrain_ext.bench.peak import peak_summary, throughput_columns
    from speechbrain_ext.bench.tables import machine_info

    base = next(r for r in rows if r["model"] == "speechbrain_mhsa")
    for row in rows:
        row["speedup_vs_speechbrain"] = row["audio_s_per_s"] / base["audio_s_per_s"]
        row["memory_vs_speechbrain"] = row["peak_mb"] / base["peak_mb"]
        row.update(throughput_columns(row["flop"], row["step_s"], peak["matmul_gflops"]))
        row["peak_gflops"] = peak["matmul_gflops"]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / ("bestrq_throughput_quick" if args.quick else "bestrq_throughput")
    fields = list(rows[0])
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    sizes = args.sizes
    memory = (
        "peak CUDA allocated"
        if args.device.startswith("cuda")
        else "peak process RSS minus the RSS after imports (each model in a fresh process)"
    )
    rounds_text = (
        f", each model's fastest of {args.rounds} rounds (every model once per round, in turn)"
        if args.rounds > 1
        else ""
    )
    lines = [
        "# BEST-RQ training throughput",
        "",
        f"Generated by `python benchmarks/bestrq_throughput.py {' '.join(args.argv)}`. "
        f"Device `{args.device}`, precision {args.precision}, batch {args.batch_size} x "
        f"{args.seconds} s of random audio, {args.steps} timed steps after {args.warmup} "
        f"warm-up{rounds_text}; {sizes['num_layers']} layers, {sizes['nhead']} heads, "
        f"FFN {sizes['d_ffn']}, "
        f"{sizes['codebook_size']} codewords, d_model "
        f"{sizes['d_model'] or 'per mixer (Study B)'}. Memory: {memory}.",
        "",
        f"Machine: {machine_info(args.device)}.",
        "",
        "`+compile`: the encoder under `torch.compile` (warm-up = compilation + the warm-up "
        "steps); `+fused`: fused AdamW. A `+compile` row whose compilation fell back to eager "
        "says `eager` under compiled.",
        "",
        "FLOP: one step's forward and backward as `speechbrain_ext.bench.flops` counts them "
        "(2 x MAC of matmuls, convolutions and attention; the optimiser and elementwise work "
        "uncounted), on the eager model; % of peak = FLOP / step time against the machine's "
        f"measured matmul peak. {peak_summary(peak)}",
        "",
        "| model | params (M) | step (s) | audio s / s | peak memory (MB) "
        "| speed vs SpeechBrain | memory vs SpeechBrain | GFLOP / step | GFLOP/s | % of peak "
        "| warm-up (s) | compiled |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        compiled = "yes" if r["compiled"] else ("eager" if "compile" in r["model"] else "–")
        rate = (
            f"{r['gflop']:.4g} | {r['gflops_per_s']:.1f} | {r['pct_of_peak']:.0f} %"
            if r["pct_of_peak"] != ""
            else "– | – | –"
        )
        lines.append(
            f"| {r['model']} | {r['params_m']:.1f} | {r['step_s']:.3f} | "
            f"{r['audio_s_per_s']:.1f} | {r['peak_mb']:.0f} | "
            f"{r['speedup_vs_speechbrain']:.2f}x | {r['memory_vs_speechbrain']:.2f}x | {rate} | "
            f"{r['warmup_s']:.1f} | {compiled} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem.with_suffix(".csv"), stem.with_suffix(".md")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per utterance")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every model this many times, in turn, and keep each one's fastest round "
        "(on a shared machine, load that comes and goes then hits every model alike)",
    )
    parser.add_argument("--num-layers", type=int, default=STUDY["num_layers"])
    parser.add_argument("--d-model", type=int, default=None, help="default: Study B widths")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=["eager"],
        help="training variants of our models (SpeechBrain's always runs eager)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds-long run")
    args = parser.parse_args(argv)
    args.argv = argv
    if "speechbrain_mhsa" not in args.models:
        parser.error("the SpeechBrain model is the reference of the ratios; keep it in --models")
    if args.quick:
        args.sizes = dict(QUICK)
        args.batch_size, args.seconds, args.warmup, args.steps = 2, 1.0, 1, 2
    else:
        args.sizes = {**STUDY, "num_layers": args.num_layers, "d_model": args.d_model}
    return args


def main(argv):
    if argv[:1] == ["--worker"]:
        print(json.dumps(run_worker(json.loads(argv[1]))))
        return
    args = parse_args(argv)
    from speechbrain_ext.bench.peak import higher_peak, measure_peak, peak_summary

    # The workers run at torch's default thread count; the peak is measured at the same count.
    sizes = {"size": 512, "bandwidth_mb": 16.0, "reps": 2} if args.quick else {}
    peak = measure_peak(args.device, dtype=PEAK_DTYPE[args.precision], **sizes)
    print(peak_summary(peak), flush=True)
    rows = []
    runs = [
        (name, variant)
        for name in args.models
        for variant in (["eager"] if name == "speechbrain_mhsa" else args.variants)
    ]
    best = {}  # per model: its fastest round
    for round_index in range(args.rounds):
        for name, variant in runs:  # every model once per round, in turn
            r = measure(name, args, variant)
            print(
                f"round {round_index + 1}/{args.rounds}, {r['model']}: "
                f"{r['audio_s_per_s']:.1f} audio s/s, peak {r['peak_mb']:.0f} MB",
                flush=True,
            )
            if r["model"] not in best or r["step_s"] < best[r["model"]]["step_s"]:
                best[r["model"]] = {**r, "rounds": args.rounds}
    rows = list(best.values())
    peak = higher_peak(peak, measure_peak(args.device, dtype=PEAK_DTYPE[args.precision], **sizes))
    print(peak_summary(peak), flush=True)  # the higher of the start's and the end's
    csv_path, md_path = write_results(rows, args, peak)
    print(md_path.read_text())
    print(f"wrote {csv_path} and {md_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
