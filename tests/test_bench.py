"""Cost measurement: FLOP/BOP/storage counts against hand-derived formulas, and the benchmark
commands' smoke runs (CSV, Markdown and PNG written)."""

import csv
from pathlib import Path

import pytest
import torch
from torch import nn

from speechbrain_ext.bench.flops import (
    BitWidths,
    CostCounter,
    selective_scan_flop,
    storage_bytes,
    w1a1,
)
from speechbrain_ext.bench.memory import run_isolated
from speechbrain_ext.nnet.encoders import build_encoder
from speechbrain_ext.nnet.mixers import build_mixer

B, T, D, H = 2, 10, 16, 2


def count(module, *inputs, bit_widths=None):
    with torch.no_grad(), CostCounter(module, bit_widths=bit_widths) as counter:
        module(*inputs)
    return counter


def test_mhsa_flop_matches_formula():
    # in_proj: B·T·D·3D MAC, out_proj: B·T·D·D MAC, scores Q·Kᵀ and weights·V: B·T·T·D MAC each
    # (summed over heads).  FLOP = 2·MAC = 8·B·T·D² + 4·B·T²·D.
    mixer = build_mixer("mhsa", d_model=D, nhead=H, position=None)
    counter = count(mixer, torch.randn(B, T, D))
    assert counter.total_flop() == 8 * B * T * D * D + 4 * B * T * T * D
    attention = [o for o in counter.ops if o.kind == "activation"]
    assert sum(o.flop for o in attention) == 4 * B * T * T * D  # the fused SDPA is counted


def test_fastformer_flop_matches_formula():
    # in_proj (q, k; v shares q): B·T·D·2D MAC; out_proj: B·T·D² MAC; the two global poolings
    # Σ_t α_t q_t and Σ_t β_t p_t: B·T·D MAC each.  Elementwise products and softmaxes are not
    # counted.  FLOP = 2·B·T·(3D² + 2D).
    mixer = build_mixer("fastformer", d_model=D, nhead=H)
    counter = count(mixer, torch.randn(B, T, D))
    assert counter.total_flop() == 2 * B * T * (3 * D * D + 2 * D)


def test_mamba_scan_is_counted_analytically():
    pytest.importorskip("speechbrain_ext.nnet.mixers.mamba")
    mixer = build_mixer("mamba", d_model=D, d_state=4)
    block = mixer.forward_block
    di, n, r, k = block.d_inner, block.d_state, block.dt_rank, block.d_conv
    counter = count(mixer, torch.randn(B, T, D))
    scans = [o for o in counter.ops if "selective_scan" in o.op]
    assert len(scans) == 2  # forward and backward direction
    assert all(o.flop == 9 * B * T * di * n for o in scans)
    assert selective_scan_flop(B, T, di, n) == 9 * B * T * di * n
    # Everything else is the projections and the depthwise conv (one MAC per tap and frame).
    per_direction = 2 * B * T * (D * 2 * di + di * (r + 2 * n) + r * di + di * D)
    per_direction += 2 * B * T * di * k + 9 * B * T * di * n
    assert counter.total_flop() == 2 * per_direction


def test_bop_of_fp32_is_1024_mac_and_w1a1_is_mac():
    encoder = build_encoder(
        "transformer", num_layers=1, d_model=D, nhead=H, d_ffn=32, mixer="mhsa", dropout=0.0
    )
    x = torch.randn(1, T, D)
    fp32 = count(encoder, x)
    assert fp32.total_mac() > 0
    assert fp32.total_bop() == 1024 * fp32.total_mac()
    assert fp32.float_flop() == fp32.total_flop() == 2 * fp32.total_mac()
    binary = count(encoder, x, bit_widths=w1a1())
    assert binary.total_mac() == fp32.total_mac()
    assert binary.total_bop() == binary.total_mac()
    assert binary.float_flop() == 0
    assert binary.estimated_time() < fp32.estimated_time()
    mixed = count(encoder, x, bit_widths=BitWidths({"type:Linear": (1, 8)}))
    linear_mac = sum(o.mac for o in mixed.ops if o.kind == "weight")
    other_mac = mixed.total_mac() - linear_mac
    assert mixed.total_bop() == 8 * linear_mac + 1024 * other_mac


def test_storage_against_parameter_counts():
    model = nn.Sequential(nn.Linear(64, 32), nn.LayerNorm(32), nn.Linear(32, 8, bias=False))
    params = sum(p.numel() for p in model.parameters())
    assert storage_bytes(model) == 4 * params
    binary = storage_bytes(model, BitWidths({"type:Linear": (1, 1)}))
    # Weights at 1 bit + a 32-bit scale and a 32-bit (α, β) pair per linear layer; the bias and
    # the LayerNorm stay 32-bit.
    expected_bits = (64 * 32 + 32 * 8) + 2 * (32 + 64) + 32 * 32 + 2 * 32 * 32
    assert binary == expected_bits / 8
    kept = storage_bytes(model, BitWidths({"0": (32, 32), "type:Linear": (1, 1)}))
    assert kept > binary


def test_bit_width_rules_are_validated():
    with pytest.raises(ValueError, match="weight_bits, activation_bits"):
        BitWidths({"*": (0, 32)})


def test_run_isolated_reports_timeout_and_errors():
    result = run_isolated("time:sleep", {"secs": 30}, timeout=0.5)
    assert result == {"status": "skipped (timeout)"}
    result = run_isolated("speechbrain_ext.bench.specs:parse_numbers", {"text": "x"}, timeout=60)
    assert result["status"].startswith("error:") and "comma-separated" in result["status"]


def _read(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_mixers_quick_in_subprocess(tmp_path):
    from speechbrain_ext.bench.mixers import main

    rows = main(
        ["--quick", "--mixers", "mhsa", "--lengths", "8", "--threads", "1", "--out", str(tmp_path)]
    )
    assert [r["status"] for r in rows] == ["ok"]
    assert rows[0]["time_s"] > 0 and rows[0]["peak_mb"] >= 0
    assert _read(tmp_path / "mixers_cpu.csv")[0]["mixer"] == "mhsa"
    assert "| mhsa |" in (tmp_path / "mixers_cpu.md").read_text()
    assert (tmp_path / "mixers_cpu.png").stat().st_size > 0
    _check_throughput(rows, tmp_path / "mixers_cpu.csv", tmp_path / "mixers_cpu.md")
    # the FLOP of one no_grad forward, as the cost counter counts it
    mixer = build_mixer("mhsa", d_model=64, nhead=4)
    assert rows[0]["gflop"] == pytest.approx(count(mixer, torch.randn(1, 8, 64)).total_flop() / 1e9)


def _check_throughput(rows, csv_path, md_path):
    """Every ok row has positive FLOP, GFLOP/s and % of peak, in the CSV and the Markdown."""
    import math

    for row in rows:
        assert row["gflop"] > 0 and row["gflops_per_s"] > 0 and row["peak_gflops"] > 0
        assert math.isfinite(row["pct_of_peak"]) and row["pct_of_peak"] > 0
        assert row["gflops_per_s"] == pytest.approx(row["gflop"] / row["time_s"])
        assert row["pct_of_peak"] == pytest.approx(100 * row["gflops_per_s"] / row["peak_gflops"])
    for row in _read(csv_path):
        assert float(row["gflops_per_s"]) > 0 and float(row["pct_of_peak"]) > 0
    assert len({row["peak_gflops"] for row in rows}) == 1  # one peak per run
    text = md_path.read_text()
    assert "GFLOP/s (" in text and "% of peak" in text and "Throughput:" in text
    assert "measured at the start and the end of the run" in text


def test_a_run_keeps_the_higher_of_its_start_and_end_peaks(tmp_path, monkeypatch):
    """A peak measured while another job loads the machine is too low; the end's measurement
    replaces it, and every row's % of peak is against the higher one."""
    import speechbrain_ext.bench.peak as peak_module
    from speechbrain_ext.bench.speed import main

    measured = iter([40.0, 100.0])
    real = peak_module.measure_peak

    def loaded_then_idle(*args, **kwargs):
        return {**real(*args, **kwargs), "matmul_gflops": next(measured)}

    monkeypatch.setattr(peak_module, "measure_peak", loaded_then_idle)
    argv = ["--quick", "--scale", "base", "--seconds", "0.5", "--batch-size", "1"]
    argv += ["--mode", "infer", "--in-process", "--out", str(tmp_path), "--mixers", "fastformer"]
    (row,) = main(argv)
    assert row["peak_gflops"] == 100.0
    assert row["pct_of_peak"] == pytest.approx(row["gflops_per_s"])  # rate / 100 GFLOP/s × 100
    text = (tmp_path / "speed_cpu.md").read_text()
    assert "100.0 GFLOP/s" in text and "the higher of 40.0 and 100.0 GFLOP/s" in text
    assert float(_read(tmp_path / "speed_cpu.csv")[0]["peak_gflops"]) == 100.0


def test_peak_is_positive_and_finite(tmp_path):
    import math

    from speechbrain_ext.bench.peak import main, measure_peak

    peak = measure_peak("cpu", threads=1, size=256, bandwidth_mb=8, reps=2)
    assert peak["threads"] == 1
    for key in ("matmul_gflops", "bandwidth_gbs"):
        assert math.isfinite(peak[key]) and peak[key] > 0
    threads = torch.get_num_threads()
    printed = main(["--size", "128", "--bandwidth-mb", "4", "--reps", "1", "--out", str(tmp_path)])
    assert printed["matmul_gflops"] > 0 and torch.get_num_threads() == threads  # restored
    assert float(_read(tmp_path / "peak_cpu.csv")[0]["bandwidth_gbs"]) > 0
    assert "| matmul_gflops |" in (tmp_path / "peak_cpu.md").read_text()


def test_bench_dispatch_knows_peak():
    from speechbrain_ext.bench.__main__ import COMMANDS

    assert COMMANDS["peak"] == "speechbrain_ext.bench.peak"


def test_mixers_quick_with_baselines(tmp_path):
    from speechbrain_ext.bench.mixers import main

    rows = main(
        [
            "--quick",
            "--mixers",
            "mhsa",
            "fastformer",
            "sb_mha",
            "sb_relposxl",
            "sb_hypermixing",
            "--lengths",
            "8",
            "--in-process",
            "--out",
            str(tmp_path),
        ]
    )
    assert {r["status"] for r in rows} == {"ok"}
    text = (tmp_path / "mixers_cpu.md").read_text()
    assert "×mhsa / ×sb_mha" in text and "| sb_relposxl |" in text


def test_speed_quick(tmp_path):
    from speechbrain_ext.bench.speed import main

    rows = main(
        [
            "--quick",
            "--scale",
            "base",
            "--mixers",
            "mhsa",
            "sb_mha",
            "--seconds",
            "0.5",
            "--batch-size",
            "1",
            "--in-process",
            "--out",
            str(tmp_path),
        ]
    )
    assert {(r["mode"], r["model"]) for r in rows} == {
        (mode, model) for mode in ("infer", "train") for model in ("mhsa", "sb_mha")
    }
    assert {r["status"] for r in rows} == {"ok"}
    assert len(_read(tmp_path / "speed_cpu.csv")) == 4
    assert "## base, train: time" in (tmp_path / "speed_cpu.md").read_text()
    for mode in ("infer", "train"):
        assert (tmp_path / f"speed_cpu_base_{mode}.png").stat().st_size > 0
    _check_throughput(rows, tmp_path / "speed_cpu.csv", tmp_path / "speed_cpu.md")
    gflop = {(r["mode"], r["model"]): r["gflop"] for r in rows}
    for model in ("mhsa", "sb_mha"):  # forward + backward is about three forwards
        assert 1.5 * gflop["infer", model] < gflop["train", model] < 5 * gflop["infer", model]


def test_speed_resume_reuses_measured_rows(tmp_path):
    from speechbrain_ext.bench.speed import main

    common = ["--quick", "--scale", "base", "--seconds", "0.5", "--batch-size", "1"]
    common += ["--mode", "infer", "--in-process", "--out", str(tmp_path)]
    first = main([*common, "--mixers", "fastformer"])
    second = main([*common, "--mixers", "fastformer", "summarymixing", "--resume"])
    assert [r["model"] for r in second] == ["fastformer", "summarymixing"]
    assert second[0]["time_s"] == first[0]["time_s"]  # read back, not measured again
    assert second[0]["peak_mb"] == first[0]["peak_mb"]
    assert second[0]["gflop"] == pytest.approx(first[0]["gflop"])  # the FLOP count is read back
    assert second[0]["pct_of_peak"] > 0
    assert second[1]["status"] == "ok" and second[1]["time_s"] > 0
    assert len(_read(tmp_path / "speed_cpu.csv")) == 2
    # other settings (here the batch size) are not reused
    third = main([*common, "--batch-size", "2", "--mixers", "fastformer", "--resume"])
    assert third[0]["batch_size"] == 2 and third[0]["time_s"] != first[0]["time_s"]


def test_speed_resume_retries_skipped_rows_only_when_asked(tmp_path):
    from speechbrain_ext.bench.speed import main

    common = ["--quick", "--scale", "base", "--seconds", "0.5", "--batch-size", "1"]
    common += ["--mode", "infer", "--out", str(tmp_path), "--mixers", "fastformer"]
    skipped = main([*common, "--timeout", "0.001"])  # no fresh process starts that fast
    assert skipped[0]["status"] == "skipped (timeout)"
    kept = main([*common, "--in-process", "--resume"])
    assert kept[0]["status"] == "skipped (timeout)"  # a skip is reused like a measurement
    retried = main([*common, "--in-process", "--resume", "--retry-skipped"])
    assert retried[0]["status"] == "ok" and retried[0]["time_s"] > 0
    again = main([*common, "--in-process", "--resume", "--retry-skipped"])
    assert again[0]["time_s"] == retried[0]["time_s"]  # measured rows are never redone
    with pytest.raises(SystemExit, match="add --resume"):
        main([*common, "--retry-skipped"])


def test_speed_killed_midway_resumes_where_it_stopped(tmp_path, monkeypatch):
    import speechbrain_ext.bench.speed as speed

    common = ["--quick", "--scale", "base", "--seconds", "0.5", "1", "--batch-size", "1"]
    common += ["--mode", "infer", "--in-process", "--out", str(tmp_path), "--resume"]
    common += ["--mixers", "fastformer", "summarymixing"]
    measure = speed.run_isolated
    calls = []

    def killed_at_the_third(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the run were stopped during the third measurement
        return measure(*args, **kwargs)

    monkeypatch.setattr(speed, "run_isolated", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        speed.main(common)
    kept = _read(tmp_path / "speed_cpu.csv")
    assert [(r["model"], float(r["seconds"])) for r in kept] == [
        ("fastformer", 0.5),
        ("fastformer", 1.0),
    ]
    monkeypatch.setattr(speed, "run_isolated", measure)
    rows = speed.main(common)
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert [float(r["time_s"]) for r in rows[:2]] == [float(r["time_s"]) for r in kept]


def test_profile_command_writes_tables(tmp_path):
    from speechbrain_ext.bench.profile import main

    rows = main(
        [
            "conformer_s",
            "--frontend",
            "none",
            "--seconds",
            "0.2",
            "--bits",
            "w1a1",
            "--out",
            str(tmp_path),
        ]
    )
    assert rows[0]["precision"] == "W1A1" and rows[0]["gbop"] > 0
    assert (tmp_path / "profile_conformer_s_w1a1.csv").exists()


def test_profile_a_recipe_yaml_with_overrides(tmp_path, monkeypatch):
    from speechbrain_ext.bench.profile import main

    monkeypatch.chdir(tmp_path)  # the recipe's output folder must not appear under the cwd
    yaml = Path(__file__).resolve().parents[1] / "recipes/BEST-RQ/hparams/bestrq_mhsa.yaml"
    small = ["num_encoder_layers=1", "d_model=32", "nhead=4", "d_ffn=64"]
    rows = main(
        [str(yaml), "--seconds", "1", "--out", str(tmp_path / "out")]
        + [arg for item in ["mixer=performer", *small] for arg in ("--override", item)]
    )
    (row,) = rows
    assert row["model"].endswith("bestrq_mhsa.yaml mixer=performer num_encoder_layers=1 "
                                "d_model=32 nhead=4 d_ffn=64")  # fmt: skip
    assert 0 < row["params"] < 200_000 and row["gflop"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert list((tmp_path / "out").glob("profile_bestrq_mhsa_mixer_performer_*_fp32.md"))
    with pytest.raises(ValueError, match="apply to a recipe yaml"):
        main(["conformer_s", "--override", "mixer=performer"])
