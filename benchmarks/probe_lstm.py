#!/usr/bin/env python3
"""Training speed of the BiLSTM probes: our unpacked LSTM against SpeechBrain's packed one.

MP3S's ASR probes (and SUPERB's ASR and SF) are BiLSTMs over padded batches. SpeechBrain's
``speechbrain.nnet.RNN.LSTM`` packs the batch by its relative lengths; our probes run the same
module's weights through :func:`speechbrain_ext.nnet.rnn.lstm_valid_frames` (no packing, each
direction on its own, the reverse one on every utterance reversed within its length). Both give
the same values on the valid frames (checked before timing: the largest difference is in the
table). One row per size and method: one training step (forward, backward of a weighted sum of
the outputs) on one thread (``--threads``), median of ``--reps`` after ``--warmup``, ratio
against SpeechBrain's.

Sizes: the built-in probes (hidden 64, 2 layers, batches of 8 utterances of up to 10 s at 25 Hz)
on an encoder's 144 features and on the 40 ms fbank baseline's 320; and a real-corpus-sized
probe (hidden 256 and 1024 on 768 features).

Usage::

    python benchmarks/probe_lstm.py                     # ~9 min on one core (the 1024-unit size: 7)
    python benchmarks/probe_lstm.py --quick --out /tmp/bench
"""

import argparse
import os
import sys
from pathlib import Path

import torch
from speechbrain.nnet.RNN import LSTM

from speechbrain_ext.bench.memory import measure
from speechbrain_ext.bench.tables import machine_info, markdown_table, write_csv
from speechbrain_ext.nnet.rnn import lstm_valid_frames

#: (name, input size, hidden size, layers, batch, frames)
SIZES = (
    ("built-in probe, encoder features", 144, 64, 2, 8, 250),
    ("built-in probe, fbank baseline", 320, 64, 2, 8, 250),
    ("real-size probe, hidden 256", 768, 256, 2, 8, 250),
    ("real-size probe, hidden 1024", 768, 1024, 2, 8, 250),
)
QUICK = (("tiny", 16, 8, 2, 3, 20),)


def run_size(name, input_size, hidden, layers, batch, frames, *, warmup, reps) -> list[dict]:
    torch.manual_seed(0)
    lstm = LSTM(hidden_size=hidden, input_size=input_size, num_layers=layers, bidirectional=True)
    x = torch.randn(batch, frames, input_size)
    lens = torch.linspace(1.0, 0.6, batch)  # relative lengths, the longest first
    lengths = torch.round(lens * frames).long()
    lens = lengths / frames  # exact, so that SpeechBrain's truncation and our rounding agree
    weight = torch.randn(batch, frames, 2 * hidden)
    valid = (torch.arange(frames) < lengths[:, None]).unsqueeze(-1)

    def packed():
        out, _ = lstm(x, lengths=lens)
        return torch.nn.functional.pad(out, (0, 0, 0, frames - out.shape[1]))

    def ours():
        return lstm_valid_frames(lstm.rnn, x, lengths)

    with torch.no_grad():
        difference = ((packed() - ours()) * valid).abs().max().item()
    rows, times = [], {}
    for method, forward in (("speechbrain_packed", packed), ("ours_unpacked", ours)):

        def step(forward=forward):
            (forward() * weight).sum().backward()
            lstm.zero_grad(set_to_none=True)

        times[method] = measure(step, device="cpu", warmup=warmup, reps=reps)["time_s"]
        rows.append(
            {
                "size": name,
                "input_size": input_size,
                "hidden_size": hidden,
                "num_layers": layers,
                "batch": batch,
                "frames": frames,
                "method": method,
                "median_ms": round(times[method] * 1e3, 2),
                "speedup_vs_speechbrain": round(times["speechbrain_packed"] / times[method], 2),
                "max_abs_difference": f"{difference:.1e}",
                "threads": torch.get_num_threads(),
                "machine": machine_info("cpu"),
            }
        )
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a tiny size, 1 rep")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else SIZES
    warmup, reps = (0, 1) if args.quick else (args.warmup, args.reps)
    load_before = os.getloadavg()[0]
    rows = [row for size in sizes for row in run_size(*size, warmup=warmup, reps=reps)]
    load = f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after the run"
    out = Path(args.out)
    write_csv(rows, out / "probe_lstm_cpu.csv")
    command = "python benchmarks/probe_lstm.py " + " ".join(sys.argv[1:] if argv is None else argv)
    table = markdown_table(
        ["size", "in → hidden × layers", "method", "median ms", "speed-up", "max abs diff"],
        [
            [
                r["size"],
                f"{r['input_size']} → {r['hidden_size']} × {r['num_layers']}",
                r["method"],
                r["median_ms"],
                r["speedup_vs_speechbrain"],
                r["max_abs_difference"],
            ]
            for r in rows
        ],
    )
    text = (
        "# BiLSTM probe training step on CPU: unpacked (ours) vs SpeechBrain's packed LSTM\n\n"
        f"Machine: {machine_info('cpu')} ({load})\n\nCommand: `{command.strip()}`\n\n"
        f"One training step (forward and backward), median of {reps} after {warmup} warm-up "
        "steps; bidirectional, batches of utterances from 100 % down to 60 % of the longest. "
        "Speed-up against SpeechBrain's packed LSTM; max abs diff is the largest difference of "
        "the two outputs on valid frames.\n\n" + table + "\n"
    )
    (out / "probe_lstm_cpu.md").write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
