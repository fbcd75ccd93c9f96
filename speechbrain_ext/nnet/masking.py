"""Padding-mask helpers shared by every mixer and encoder.

Convention (SpeechBrain/PyTorch): a ``key_padding_mask`` is a bool tensor of
shape (batch, time) that is ``True`` on padded frames.

Example
-------
>>> import torch
>>> mask = lengths_to_padding_mask(torch.tensor([3, 1]), max_len=4)
>>> mask
tensor([[False, False, False,  True],
        [False,  True,  True,  True]])
>>> padding_mask_to_lengths(mask)
tensor([3, 1])
>>> wav_lens_to_padding_mask(torch.tensor([1.0, 0.5]), max_len=4)
tensor([[False, False, False, False],
        [False, False,  True,  True]])
"""

import torch


def lengths_to_padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Bool mask (batch, max_len), True where ``t >= lengths[b]`` (padded)."""
    if max_len is None:
        max_len = int(lengths.max())
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) >= lengths.unsqueeze(1)


def wav_lens_to_lengths(wav_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """Absolute lengths from SpeechBrain relative lengths (rounded, at least 1)."""
    return torch.round(wav_lens * max_len).long().clamp(min=1, max=max_len)


def wav_lens_to_padding_mask(wav_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """Bool mask (batch, max_len) from SpeechBrain relative lengths."""
    return lengths_to_padding_mask(wav_lens_to_lengths(wav_lens, max_len), max_len)


def padding_mask_to_lengths(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """Number of valid frames per row of a padding mask."""
    return (~key_padding_mask).sum(dim=1)


def zero_padded(x: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` (batch, time, dim) with padded frames set to zero."""
    if key_padding_mask is None:
        return x
    return x.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
