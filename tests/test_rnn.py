"""The LSTM without packing (speechbrain_ext.nnet.rnn) against PyTorch's packed LSTM."""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from speechbrain_ext.nnet.rnn import lstm_valid_frames


def packed_lstm(rnn, x, lengths):
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = nn.utils.rnn.pad_packed_sequence(
        rnn(packed)[0], batch_first=True, total_length=x.shape[1]
    )
    return out


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_lstm_valid_frames_equals_the_packed_lstm_values_and_gradients(bidirectional, num_layers):
    torch.manual_seed(0)
    rnn = nn.LSTM(5, 6, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    x = torch.randn(4, 9, 5)
    x[1, 4:] = 7.0  # padding that is not zero must not reach a valid frame
    lengths = torch.tensor([9, 4, 1, 7])
    grads = []
    for run in (packed_lstm, lstm_valid_frames):
        inputs = x.clone().requires_grad_(True)
        out = run(rnn, inputs, lengths)
        weight = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
        (out * weight).sum().backward()
        grads.append([inputs.grad] + [p.grad.clone() for p in rnn.parameters()])
        rnn.zero_grad()
        if run is packed_lstm:
            reference = out.detach()
    assert torch.allclose(out, reference, atol=1e-6)
    assert out[1, 4:].abs().max() == 0 and out[2, 1:].abs().max() == 0
    for got, want in zip(grads[1], grads[0], strict=True):
        assert torch.allclose(got, want, atol=1e-5)
    assert grads[1][0][1, 4:].abs().max() == 0  # no gradient to padding


def test_lstm_valid_frames_applies_dropout_between_layers_in_training_only():
    torch.manual_seed(0)
    rnn = nn.LSTM(3, 4, num_layers=2, dropout=0.5, batch_first=True)
    x, lengths = torch.randn(2, 6, 3), torch.tensor([6, 4])
    assert torch.allclose(
        lstm_valid_frames(rnn.eval(), x, lengths), packed_lstm(rnn, x, lengths), atol=1e-6
    )
    rnn.train()
    assert not torch.allclose(
        lstm_valid_frames(rnn, x, lengths), lstm_valid_frames(rnn, x, lengths)
    )


def test_lstm_valid_frames_needs_a_batch_first_lstm_without_projection():
    with pytest.raises(ValueError, match="batch_first"):
        lstm_valid_frames(nn.LSTM(3, 4), torch.randn(1, 2, 3), torch.tensor([2]))
    with pytest.raises(ValueError, match="projection"):
        lstm_valid_frames(
            nn.LSTM(3, 4, proj_size=2, batch_first=True), torch.randn(1, 2, 3), torch.tensor([2])
        )


def test_probe_lstm_benchmark_quick_run(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "probe_lstm.py"
    spec = importlib.util.spec_from_file_location("probe_lstm", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    rows = benchmark.main(["--quick", "--out", str(tmp_path)])
    assert [row["method"] for row in rows] == ["speechbrain_packed", "ours_unpacked"]
    assert all(float(row["max_abs_difference"]) < 1e-5 for row in rows)
    assert "| tiny | 16 → 8 × 2 | ours_unpacked |" in (tmp_path / "probe_lstm_cpu.md").read_text()
