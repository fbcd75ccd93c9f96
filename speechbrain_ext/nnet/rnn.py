"""An ``nn.LSTM`` run on padded batches without packing, exact on the valid frames.

On the CPU, ``nn.LSTM`` on a ``PackedSequence`` takes PyTorch's generic path; on a padded tensor
it takes oneDNN's fused kernel, which for the probes' sizes (2 × 64 units, batches of 8, a few
hundred frames) trains 4–5 times faster (``benchmarks/probe_lstm.py``; MP3S's LibriSpeech probe
spent 80 % of its run in the packed LSTM's forward and backward). Padding is what packing is
there for: a forward direction never sees the padded frames that follow an utterance, but a
reverse direction starts on them. :func:`lstm_valid_frames` therefore runs each direction of
each layer on its own, the reverse one on every utterance reversed within its own length (its
padding then trails too), and reverses the result back: every valid frame gets what the packed
LSTM gives it, and padded frames are zero, as ``pad_packed_sequence`` leaves them.

Example
-------
>>> torch.manual_seed(0) and None
>>> rnn = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
>>> x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
>>> packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
>>> reference, _ = nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True)
>>> out = lstm_valid_frames(rnn, x, lengths)
>>> bool(torch.allclose(out, reference, atol=1e-6)), out[1, 3:].abs().max().item()
(True, 0.0)
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.nnet.masking import lengths_to_padding_mask


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(batch, time, dim) with each row's first ``lengths[b]`` frames in reverse order and its
    padding left where it is (its own inverse).

    Example
    -------
    >>> x = torch.arange(4.0).reshape(1, 4, 1).repeat(2, 1, 1)
    >>> reverse_within_lengths(x, torch.tensor([4, 2]))[..., 0]
    tensor([[3., 2., 1., 0.],
            [1., 0., 2., 3.]])
    """
    return _gather_frames(x, _reversal_index(lengths, x.shape[1], x.device))


def _reversal_index(lengths: torch.Tensor, time: int, device) -> torch.Tensor:
    """(batch, time) source frame of each frame once reversed within its row's length."""
    frames = torch.arange(time, device=device)
    lengths = lengths.to(device).unsqueeze(1)
    return torch.where(frames < lengths, lengths - 1 - frames, frames)


def _gather_frames(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def lstm_valid_frames(rnn: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The output of a batch-first ``nn.LSTM`` (one or two directions) on the valid frames of a
    padded batch, as if packed; padded frames are zero.

    Arguments
    ---------
    rnn : nn.LSTM
        With ``batch_first=True`` and no projection; its weights, dropout and training mode are
        used (the initial states are zero).
    x : torch.Tensor
        (batch, time, input_size).
    lengths : torch.Tensor
        (batch,) valid frames of each row (integers, at least 1).

    Returns
    -------
    torch.Tensor
        (batch, time, directions × hidden_size).
    """
    if not rnn.batch_first or rnn.proj_size:
        raise ValueError("lstm_valid_frames needs a batch_first nn.LSTM without projection")
    directions = 2 if rnn.bidirectional else 1
    weights = rnn._flat_weights  # per layer and direction: w_ih, w_hh[, b_ih, b_hh]
    per = len(weights) // (rnn.num_layers * directions)
    zeros = x.new_zeros(1, x.shape[0], rnn.hidden_size)
    reverse = _reversal_index(lengths, x.shape[1], x.device) if directions > 1 else None
    out = x
    for layer in range(rnn.num_layers):
        if layer and rnn.dropout and rnn.training:
            out = F.dropout(out, rnn.dropout, training=True)
        outputs = []
        for direction in range(directions):
            start = (layer * directions + direction) * per
            params = weights[start : start + per]
            inputs = _gather_frames(out, reverse) if direction else out
            y = torch.lstm(
                inputs, (zeros, zeros), params, rnn.bias, 1, 0.0, rnn.training, False, True
            )[0]
            outputs.append(_gather_frames(y, reverse) if direction else y)
        out = torch.cat(outputs, dim=-1) if directions > 1 else outputs[0]
    padding = lengths_to_padding_mask(lengths.to(x.device), x.shape[1])
    return out.masked_fill(padding.unsqueeze(-1), 0.0)
